#!/usr/bin/env bash
# Swap-then-finetune: decay_transformer_lm_wiki103 initialised from the attention checkpoint.
# Re-running the same command resumes from $SAVE_DIR/checkpoint_last.pt. Extra arguments are passed
# to fairseq-train (e.g. --max-update 200 --cpu for a check on the sample).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DATA_BIN="${DATA_BIN:-data-bin/wikitext-103}"
BASE_CKPT="${BASE_CKPT:-${BASE_DIR:-models/adaptive_lm_wiki103.v2}/model.pt}"
SAVE_DIR="${SAVE_DIR:-checkpoints/decay_wiki103}"
ARCH="${ARCH:-decay_transformer_lm_wiki103}"
export PYTHONPATH="$ROOT/bindings/python:$ROOT/plugin${PYTHONPATH:+:$PYTHONPATH}"
"${DECAYFW_VENV:-$ROOT/.venv}/bin/fairseq-train" "$DATA_BIN" \
  --user-dir "$ROOT/plugin/decayfw_fairseq" --task language_modeling --arch "$ARCH" \
  --finetune-from-model "$BASE_CKPT" --save-dir "$SAVE_DIR" \
  --criterion adaptive_loss --sample-break-mode none --tokens-per-sample 512 \
  --max-tokens "${MAX_TOKENS:-8192}" --update-freq "${UPDATE_FREQ:-1}" \
  --optimizer adam --adam-betas '(0.9,0.98)' --weight-decay 0.01 --clip-norm 0.1 \
  --lr "${LR:-1e-4}" --lr-scheduler cosine --warmup-updates "${WARMUP:-1000}" --warmup-init-lr 1e-7 \
  --max-update "${MAX_UPDATE:-20000}" --ddp-backend legacy_ddp --seed 1 "$@"
