#!/usr/bin/env bash
# Everything that needs the GPU machine, in one go: build against its CUDA LibTorch, run the GPU
# tests and the Python tests on torch 2.x, compute-sanitizer, and the GPU benchmark.
# Results go to $OUT (the device tool brings them back).
set -uo pipefail
OUT="${OUT:-/tmp/decayfw-gpu}"; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
PY="$(command -v python || command -v python3)"
{ nvidia-smi; "$PY" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda)";
  command -v cmake ninja nvcc compute-sanitizer; "$PY" -m pip list 2>/dev/null | grep -i -E "torch|triton|flash|fla|pybind|ninja|cmake|pytest"; } > "$OUT/env.txt" 2>&1
TP="$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
export PYTHONPATH="$PWD/bindings/python"
if command -v cmake >/dev/null && cmake -S . -B build-gpu $(command -v ninja >/dev/null && echo -G Ninja) \
    -DCMAKE_PREFIX_PATH="$TP" -DDECAYFW_PYTHON="$PY" -DDECAYFW_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DDECAYFW_BUILD_ANALYZER=OFF -DDECAYFW_BUILD_GUI=OFF -DDECAYFW_BUILD_TESTS=OFF -DDECAYFW_BUILD_BENCHMARKS=OFF \
    > "$OUT/cmake.log" 2>&1 && cmake --build build-gpu -j "$(nproc)" >> "$OUT/cmake.log" 2>&1; then
  echo "built with CMake" > "$OUT/build.txt"
else
  echo "CMake build failed or missing; torch.utils.cpp_extension fallback" > "$OUT/build.txt"
  mkdir -p build-gpu-ext
  "$PY" tests/gpu/build_with_torch.py build-gpu-ext > "$OUT/ext.log" 2>&1
  export DECAYFW_OPS_LIBRARY="$PWD/build-gpu-ext/decayfw_ops_ext.so"
fi
"$PY" -c "import decayfw; print('HAS_EXTENSION', decayfw.HAS_EXTENSION, 'CUDA', decayfw.BUILT_WITH_CUDA)" >> "$OUT/build.txt" 2>&1
"$PY" -m pytest -q -p no:cacheprovider tests/gpu tests/python > "$OUT/pytest.txt" 2>&1
echo "pytest rc=$?" >> "$OUT/pytest.txt"
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck "$PY" tests/gpu/sanitize_small.py > "$OUT/memcheck.txt" 2>&1
  compute-sanitizer --tool racecheck "$PY" tests/gpu/sanitize_small.py > "$OUT/racecheck.txt" 2>&1
fi
timeout "${BENCH_TIMEOUT:-300}" "$PY" benchmarks/bench_gpu.py ${BENCH_ARGS:-} --json "$OUT/bench_gpu.json" > "$OUT/bench_gpu.md" 2> "$OUT/bench_gpu.err"
echo "bench rc=$?" >> "$OUT/bench_gpu.err"
