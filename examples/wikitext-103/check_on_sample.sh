#!/usr/bin/env bash
# Runs the recipe's preprocess / finetune / evaluate scripts on the embedded sample, on CPU, with
# the main job's attention base standing in for adaptive_lm_wiki103.v2 (run scripts/main.sh first).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
# the sample with its test set cut to its first 80 lines, so context-480 evaluation takes a minute
mkdir -p runs/recipe-check/text
for s in train valid; do ln -sf "$ROOT/data/wikitext-103-sample/wiki.$s.tokens" runs/recipe-check/text/; done
head -n 80 data/wikitext-103-sample/wiki.test.tokens > runs/recipe-check/text/wiki.test.tokens
export WT103_DIR=runs/recipe-check/text DICT=data/wikitext-103-sample/dict.txt
export DATA_BIN=runs/recipe-check/data-bin SAVE_DIR=runs/recipe-check/decay
export BASE_CKPT=runs/main/base/checkpoint_last.pt ARCH=decay_transformer_lm
[ -f "$BASE_CKPT" ] || { echo "run scripts/main.sh first (it trains the base used here)"; exit 2; }
[ -f "$DATA_BIN/test.bin" ] || WORKERS=2 examples/wikitext-103/preprocess.sh > /dev/null
ARCH_FLAGS=(--decoder-layers 2 --decoder-embed-dim 128 --decoder-input-dim 128 --decoder-output-dim 128
  --decoder-ffn-embed-dim 512 --decoder-attention-heads 4 --decoder-normalize-before --adaptive-input
  --adaptive-input-cutoff 20000,60000 --adaptive-softmax-cutoff 20000,60000 --tie-adaptive-weights
  --tie-adaptive-proj --adaptive-input-factor 4 --adaptive-softmax-factor 4)
MAX_UPDATE=10 MAX_TOKENS=2048 WARMUP=5 examples/wikitext-103/finetune.sh "${ARCH_FLAGS[@]}" --cpu \
  --no-progress-bar --num-workers 0 --disable-validation > runs/recipe-check/finetune.log 2>&1
examples/wikitext-103/evaluate.sh "$SAVE_DIR/checkpoint_last.pt" --cpu
