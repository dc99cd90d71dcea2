#!/usr/bin/env bash
# The paper's Table 3 protocol (context 0 and 480 at --tokens-per-sample 512) plus streaming.
# Usage: evaluate.sh CKPT [--cpu]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CKPT="$1"; shift
DEVICE=(); [ "${1:-}" = "--cpu" ] && DEVICE=(--cpu)
DATA_BIN="${DATA_BIN:-data-bin/wikitext-103}"
SUBSET="${SUBSET:-test}"
BIN="${DECAYFW_VENV:-$ROOT/.venv}/bin"
export PYTHONPATH="$ROOT/bindings/python:$ROOT/plugin${PYTHONPATH:+:$PYTHONPATH}"
for cw in 0 480; do
  echo "== context $cw"
  "$BIN/fairseq-eval-lm" "$DATA_BIN" --user-dir "$ROOT/plugin/decayfw_fairseq" --path "$CKPT" \
    --gen-subset "$SUBSET" --tokens-per-sample 512 --context-window "$cw" --max-tokens 512 --num-workers 0 "${DEVICE[@]}" 2>&1 \
    | grep -E "Evaluated|Perplexity"
done
echo "== streaming (state carried over the whole split)"
"$BIN/python" -m decayfw_fairseq.eval_streaming "$DATA_BIN" --path "$CKPT" --gen-subset "$SUBSET" \
  --tokens-per-sample 512 "${DEVICE[@]}"
