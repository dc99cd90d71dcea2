#!/usr/bin/env bash
# Downloads WikiText-103 and the Baevski & Auli checkpoint (needs internet; not used in tests).
set -euo pipefail
WT103_DIR="${WT103_DIR:-data/wikitext-103}"
BASE_DIR="${BASE_DIR:-models/adaptive_lm_wiki103.v2}"
mkdir -p "$(dirname "$WT103_DIR")" "$(dirname "$BASE_DIR")"
if [ ! -f "$WT103_DIR/wiki.test.tokens" ]; then
  curl -fL -o /tmp/wikitext-103-v1.zip https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip
  unzip -q -o /tmp/wikitext-103-v1.zip -d "$(dirname "$WT103_DIR")"
fi
if [ ! -f "$BASE_DIR/model.pt" ]; then
  curl -fL -o /tmp/adaptive_lm_wiki103.v2.tar.bz2 https://dl.fbaipublicfiles.com/fairseq/models/lm/adaptive_lm_wiki103.v2.tar.bz2
  tar -xjf /tmp/adaptive_lm_wiki103.v2.tar.bz2 -C "$(dirname "$BASE_DIR")"
fi
echo "data: $WT103_DIR  base: $BASE_DIR"
