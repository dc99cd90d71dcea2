#!/usr/bin/env bash
# The C++ engine on the GPU: its device and model tests and the decayfw CLI with --device cuda, on the
# engine fixtures (fairseq checkpoints, which fairseq makes; the GPU machine has no fairseq).
# Binaries: the ones tests/gpu/prebuild.sh made beforehand for this torch and these sources
# ($PREBUILT/engine, default build-gpu-prebuilt/engine, with its fixtures), else built here against this
# machine's CUDA LibTorch (needs GoogleTest, and FIXTURES=a copy of build/engine-fixtures).
# Results go to $OUT. The Qt analyzer is not built.
set -uo pipefail
OUT="${OUT:-/tmp/decayfw-gpu}"; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
PY="${PY:-$(command -v python || command -v python3)}"
PREBUILT="${PREBUILT:-build-gpu-prebuilt}"
TORCH_LIB="$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
prebuilt_matches() {
  [ -x "$PREBUILT/engine/test_engine_device" ] && [ -f "$PREBUILT/engine/engine_signature.txt" ] &&
    [ -f "$PREBUILT/decayfw/libdecayfw_ops.so" ] || return 1
  local here; here="$("$PY" tests/gpu/build_signature.py --engine 2>/dev/null)"
  [ "$here" = "$(cat "$PREBUILT/engine/engine_signature.txt")" ] ||
    { echo "engine prebuilt is for $(cat "$PREBUILT/engine/engine_signature.txt"), this is $here"; return 1; }
}
if prebuilt_matches > "$OUT/engine-build.txt" 2>&1; then
  BIN="$PREBUILT/engine"; DEVICE_TEST="$BIN/test_engine_device"; MODEL_TEST="$BIN/test_engine_model"; CLI="$BIN/decayfw"
  FIXTURES="${FIXTURES:-$BIN/fixtures}"
  # The binaries' run paths name the build machine's trees: find the ops, torch and CUDA's libraries here.
  NV="$(dirname "$TORCH_LIB")/../nvidia/cu13/lib"
  export LD_LIBRARY_PATH="$PWD/$PREBUILT/decayfw:$TORCH_LIB:$NV:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "prebuilt engine ($(cat "$BIN/engine_signature.txt"))" >> "$OUT/engine-build.txt"
else
  FIXTURES="${FIXTURES:?no matching prebuilt engine: set FIXTURES to a copy of build/engine-fixtures to build here}"
  B=build-gpu-engine
  if ! PY="$PY" bash tests/gpu/build_engine.sh "$B" > "$OUT/engine-cmake.log" 2>&1; then
    echo "engine build failed (see engine-cmake.log)" | tee -a "$OUT/engine-build.txt" > "$OUT/engine-device.txt"
    exit 1
  fi
  echo "built here in $B" >> "$OUT/engine-build.txt"
  DEVICE_TEST="$B/tests/test_engine_device"; MODEL_TEST="$B/tests/test_engine_model"; CLI="$B/bin/decayfw"
fi
export DECAYFW_ENGINE_FIXTURES="$FIXTURES"
rc=0
"$DEVICE_TEST" > "$OUT/engine-device.txt" 2>&1; r=$?; echo "test_engine_device rc=$r" >> "$OUT/engine-device.txt"; rc=$((rc | r))
"$MODEL_TEST" > "$OUT/engine-model.txt" 2>&1; r=$?; echo "test_engine_model rc=$r" >> "$OUT/engine-model.txt"; rc=$((rc | r))
{
  "$CLI" generate "$FIXTURES/decay/checkpoint_last.pt" --prompt "a b c d" --max-tokens 8 --json --device "${ENGINE_DEVICE:-cuda}" &&
  "$CLI" bench "$FIXTURES/decay/checkpoint_last.pt" --compare "$FIXTURES/base/checkpoint_last.pt" \
    --device "${ENGINE_DEVICE:-cuda}" --contexts 128,1024,4096 --steps 16 --json
} > "$OUT/engine-cli.txt" 2>&1
r=$?; echo "cli rc=$r" >> "$OUT/engine-cli.txt"; rc=$((rc | r))
exit $rc
