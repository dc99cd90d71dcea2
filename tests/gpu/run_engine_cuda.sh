#!/usr/bin/env bash
# The C++ engine on the GPU: builds the engine, the decayfw tool and the engine's device tests
# against the GPU machine's CUDA LibTorch (with the project's CUDA kernels) and runs them on the
# engine fixtures, which fairseq makes (the GPU machine has no fairseq): make them on a CPU machine
# (`ctest --test-dir build -R engine_fixtures`) and pass a copy, FIXTURES=dir (build/engine-fixtures).
# Results go to $OUT. Needs GoogleTest there; the Qt analyzer is not built.
set -uo pipefail
OUT="${OUT:-/tmp/decayfw-gpu}"; mkdir -p "$OUT"
FIXTURES="${FIXTURES:?set FIXTURES to a copy of build/engine-fixtures}"
cd "$(dirname "$0")/../.."
PY="$(command -v python || command -v python3)"
TP="$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
B=build-gpu-engine
if cmake -S . -B "$B" $(command -v ninja >/dev/null && echo -G Ninja) -DCMAKE_BUILD_TYPE=Release \
     -DCMAKE_PREFIX_PATH="$TP" -DDECAYFW_PYTHON="$PY" -DDECAYFW_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
     -DDECAYFW_BUILD_PYTHON=OFF -DDECAYFW_BUILD_GUI=OFF -DDECAYFW_BUILD_BENCHMARKS=OFF -DDECAYFW_BUILD_TESTS=ON \
     > "$OUT/engine-cmake.log" 2>&1 &&
   cmake --build "$B" -j "$(nproc)" --target test_engine_device test_engine_model decayfw_cli >> "$OUT/engine-cmake.log" 2>&1; then
  export DECAYFW_ENGINE_FIXTURES="$FIXTURES"
  "$B/tests/test_engine_device" > "$OUT/engine-device.txt" 2>&1; echo "test_engine_device rc=$?" >> "$OUT/engine-device.txt"
  "$B/tests/test_engine_model" > "$OUT/engine-model.txt" 2>&1; echo "test_engine_model rc=$?" >> "$OUT/engine-model.txt"
  {
    "$B/bin/decayfw" generate "$FIXTURES/decay/checkpoint_last.pt" --prompt "a b c d" --max-tokens 8 --json --device cuda
    "$B/bin/decayfw" bench "$FIXTURES/decay/checkpoint_last.pt" --compare "$FIXTURES/base/checkpoint_last.pt" \
      --device cuda --contexts 128,1024,4096 --steps 16 --json
  } > "$OUT/engine-cli.txt" 2>&1
  echo "cli rc=$?" >> "$OUT/engine-cli.txt"
else
  echo "engine build failed (see engine-cmake.log)" > "$OUT/engine-device.txt"
fi
