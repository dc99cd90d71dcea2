#!/usr/bin/env bash
# Builds the decayfw extension for a Python and a CUDA torch into OUT, with the torch, Python and sources it
# was built from written beside it. Run here, without a GPU, for the GPU machine's Python and torch (pip's
# torch==2.11.0, CUDA 13.0, Python 3.12; tests/gpu/prepare_session.sh makes such a venv), so that a GPU
# session spends its minutes on tests and benchmarks rather than on nvcc (79 s from an empty tree on the
# 2-core VM). tests/gpu/run_all.sh also builds through it, on the GPU machine itself, when
# no matching prebuilt build was carried.
#
#   PY=V/bin/python tests/gpu/prebuild.sh [OUT]          # default OUT: build-gpu-prebuilt (git-ignored)
#   TREE=dir (build tree, default build-gpu-tree), CUDA_ARCHS (default 90), NATIVE=ON (-march=native: only
#   for the machine that builds, so OFF for a build carried elsewhere), LINEINFO=ON (-lineinfo in the kernels:
#   source lines in compute-sanitizer's and ncu's reports, about 20 MB more device code, which a device call
#   cannot carry beside the wheels; default OFF)
#
# OUT/decayfw/ holds _C and libdecayfw_ops, OUT/signature.txt what tests/gpu/build_signature.py printed.
# With ENGINE=ON (the default when FIXTURES, default build/engine-fixtures, exists: `ctest --test-dir build
# -R engine_fixtures` makes them where fairseq is) it also builds the C++ engine's device and model tests and
# the decayfw CLI against the same torch (tree build-gpu-engine) into OUT/engine/, with a copy of the
# fixtures and engine_signature.txt: tests/gpu/run_engine_cuda.sh runs them there, on OUT/decayfw's
# libdecayfw_ops (the engine binaries reach the ops through the dispatcher only, so any build of the same
# sources serves), instead of compiling the engine on the GPU machine.
# Carry OUT to the GPU machine (run(carry=["build-gpu-prebuilt"])); tests/gpu/run_all.sh copies them into the
# package when that machine's signature is the same, and builds there otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-build-gpu-prebuilt}"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac  # a relative OUT is relative to the repository root
PY="${PY:?set PY to a Python with the torch of the GPU machine (see the top of this script)}"
TREE="${TREE:-build-gpu-tree}"
"$PY" -c "import torch; assert torch.version.cuda, 'this torch has no CUDA'" || {
  echo "prebuild: $PY's torch is not a CUDA build" >&2; exit 1; }
TP="$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
BIN="$(dirname "$PY")"  # the venv's cmake and ninja, when it has them
export PATH="$BIN:/usr/local/cuda/bin:$PATH"
rm -rf "$OUT"; mkdir -p "$OUT/decayfw"
cmake -S . -B "$TREE" $(command -v ninja >/dev/null && echo -G Ninja) -DCMAKE_PREFIX_PATH="$TP" -DDECAYFW_PYTHON="$PY" -DDECAYFW_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" -DDECAYFW_NATIVE="${NATIVE:-OFF}" -DDECAYFW_BUILD_ANALYZER=OFF -DDECAYFW_BUILD_GUI=OFF \
  -DDECAYFW_BUILD_TESTS=OFF -DDECAYFW_BUILD_BENCHMARKS=OFF -DDECAYFW_PY_PACKAGE_DIR="$OUT/decayfw" \
  -DDECAYFW_CUDA_LINEINFO="${LINEINFO:-OFF}" >/dev/null
cmake --build "$TREE" -j "$(nproc)"
"$PY" tests/gpu/build_signature.py > "$OUT/signature.txt"
# The standalone CUDA programs (no LibTorch) run_all.sh runs: the chunk executor's operations against the host
# executor's (tests/gpu/cta_executor_check.cu, first in the tests step) and the bank model's calibration
# (benchmarks/smem_patterns.cu, first in the bench step).
for src in tests/gpu/cta_executor_check.cu benchmarks/smem_patterns.cu; do
  nvcc -O3 -std=c++17 -arch="sm_${CUDA_ARCHS:-90}" -Ikernels/cuda -Ikernels/include "$src" -o "$OUT/$(basename "$src" .cu)"
done
echo "prebuilt for $(cat "$OUT/signature.txt") in $OUT:"; ls -l "$OUT/decayfw" "$OUT/smem_patterns" "$OUT/cta_executor_check"
FIXTURES="${FIXTURES:-build/engine-fixtures}"
ENGINE="${ENGINE:-$([ -f "$FIXTURES/decay/checkpoint_last.pt" ] && echo ON || echo OFF)}"
if [ "$ENGINE" = ON ]; then
  [ -f "$FIXTURES/decay/checkpoint_last.pt" ] || { echo "prebuild: no engine fixtures in $FIXTURES" >&2; exit 1; }
  ETREE="${ENGINE_TREE:-build-gpu-engine}"
  PY="$PY" NATIVE=OFF bash tests/gpu/build_engine.sh "$ETREE"
  mkdir -p "$OUT/engine"
  cp "$ETREE/tests/test_engine_device" "$ETREE/tests/test_engine_model" "$ETREE/bin/decayfw" "$OUT/engine/"
  strip "$OUT/engine/"* 2>/dev/null || true
  cp -r "$FIXTURES" "$OUT/engine/fixtures"
  "$PY" tests/gpu/build_signature.py --engine > "$OUT/engine/engine_signature.txt"
  echo "engine prebuilt for $(cat "$OUT/engine/engine_signature.txt"):"; du -sh "$OUT/engine"
fi
