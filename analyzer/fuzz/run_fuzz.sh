#!/usr/bin/env bash
# Builds the checkpoint reader's libFuzzer target with clang + ASan + UBSan (build-fuzz/) and fuzzes
# it for DECAYFW_FUZZ_SECONDS (default 60) from a seed corpus of real checkpoints: the engine test
# fixtures (tests/engine/make_engine_fixtures.py), cut to their first 64 KiB so mutations reach
# every part. Exits non-zero on any crash or sanitizer report; the reproducer is left in build-fuzz/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${DECAYFW_FUZZ_BUILD:-$ROOT/build-fuzz}"
SECONDS_TO_RUN="${DECAYFW_FUZZ_SECONDS:-60}"
VENV_PY="${DECAYFW_VENV:-$ROOT/.venv}/bin/python"
command -v clang++ >/dev/null || { echo "run_fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)"; exit 1; }

cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DDECAYFW_BUILD_FUZZERS=ON \
  -DDECAYFW_BUILD_PYTHON=OFF -DDECAYFW_BUILD_TESTS=OFF -DDECAYFW_BUILD_BENCHMARKS=OFF -DDECAYFW_BUILD_GUI=OFF \
  -DDECAYFW_CUDA=OFF -DDECAYFW_WERROR=OFF >"$BUILD.configure.log" 2>&1 || { tail -40 "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" --target fuzz_checkpoint_reader -j "$(nproc)"

FIXTURES="$BUILD/fixtures"
if [ ! -f "$FIXTURES/legacy/checkpoint_legacy.pt" ]; then
  PYTHONPATH="$ROOT/bindings/python:$ROOT/plugin" OMP_NUM_THREADS=1 \
    "$VENV_PY" "$ROOT/tests/engine/make_engine_fixtures.py" "$FIXTURES" >"$BUILD/fixtures.log" 2>&1
fi
CORPUS="$BUILD/corpus"
mkdir -p "$CORPUS"
for f in "$FIXTURES"/legacy/checkpoint_legacy.pt "$FIXTURES"/base/checkpoint_last.pt "$FIXTURES"/tensors_*.pt \
         "$FIXTURES"/evil_*.pt "$FIXTURES"/expected_base.pt; do
  [ -f "$f" ] && head -c 65536 "$f" >"$CORPUS/$(basename "$(dirname "$f")")_$(basename "$f")"
done
cd "$BUILD"
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ./analyzer/fuzz/fuzz_checkpoint_reader "$CORPUS" -max_total_time="$SECONDS_TO_RUN" -max_len=70000 \
  -rss_limit_mb=4096 -timeout=20 -print_final_stats=1
