#!/usr/bin/env bash
# Binarizes WikiText-103 with the base checkpoint's dictionary (--srcdict), so token ids match it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WT103_DIR="${WT103_DIR:-data/wikitext-103}"
DICT="${DICT:-${BASE_DIR:-models/adaptive_lm_wiki103.v2}/dict.txt}"
DATA_BIN="${DATA_BIN:-data-bin/wikitext-103}"
"${DECAYFW_VENV:-$ROOT/.venv}/bin/fairseq-preprocess" --only-source --srcdict "$DICT" \
  --trainpref "$WT103_DIR/wiki.train.tokens" --validpref "$WT103_DIR/wiki.valid.tokens" \
  --testpref "$WT103_DIR/wiki.test.tokens" --destdir "$DATA_BIN" --workers "${WORKERS:-8}"
