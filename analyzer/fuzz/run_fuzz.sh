#!/usr/bin/env bash
# Builds the checkpoint reader's libFuzzer target with clang + ASan + UBSan (build-fuzz/) and fuzzes
# it for DECAYFW_FUZZ_SECONDS (default 60) from a seed corpus of real files: fairseq checkpoints and
# torch.save files of every pickle protocol and format, hostile and broken files (the engine test
# fixtures, tests/engine/make_engine_fixtures.py and make_reader_fixtures.py), cut to their first
# 64 KiB so mutations reach every part. Exits 0 when the run is clean, non-zero on any crash, hang or
# sanitizer report (the reproducer is left in build-fuzz/artifacts/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${DECAYFW_FUZZ_BUILD:-$ROOT/build-fuzz}"
SECONDS_TO_RUN="${DECAYFW_FUZZ_SECONDS:-60}"
JOBS="${DECAYFW_JOBS:-$(nproc)}"
VENV_PY="${DECAYFW_VENV:-$ROOT/.venv}/bin/python"

if ! command -v clang++ >/dev/null; then  # scripts/setup.sh installs it; do it here for direct runs
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
  { $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null 2>&1 &&
    command -v clang++ >/dev/null; } ||
    { echo "run_fuzz.sh: clang++ not found and could not be installed (apt-get install clang libclang-rt-14-dev)"; exit 1; }
fi

mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DDECAYFW_BUILD_FUZZERS=ON \
  -DDECAYFW_BUILD_PYTHON=OFF -DDECAYFW_BUILD_TESTS=OFF -DDECAYFW_BUILD_BENCHMARKS=OFF -DDECAYFW_BUILD_GUI=OFF \
  -DDECAYFW_CUDA=OFF -DDECAYFW_WERROR=OFF >"$BUILD/configure.log" 2>&1 || { tail -40 "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" --target fuzz_checkpoint_reader -j "$JOBS" >"$BUILD/build.log" 2>&1 || { tail -40 "$BUILD/build.log"; exit 1; }

FIXTURES="$BUILD/fixtures"
export PYTHONPATH="$ROOT/bindings/python:$ROOT/plugin${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1
if [ ! -f "$FIXTURES/legacy/checkpoint_legacy.pt" ]; then
  "$VENV_PY" "$ROOT/tests/engine/make_engine_fixtures.py" "$FIXTURES" >"$BUILD/fixtures.log" 2>&1 ||
    { tail -40 "$BUILD/fixtures.log"; exit 1; }
fi
"$VENV_PY" "$ROOT/tests/engine/make_reader_fixtures.py" "$FIXTURES" >>"$BUILD/fixtures.log" 2>&1 ||
  { tail -40 "$BUILD/fixtures.log"; exit 1; }
CORPUS="$BUILD/corpus"
mkdir -p "$CORPUS" "$BUILD/artifacts"
for f in "$FIXTURES"/legacy/checkpoint_legacy.pt "$FIXTURES"/base/checkpoint_last.pt "$FIXTURES"/tensors_*.pt \
         "$FIXTURES"/evil_*.pt "$FIXTURES"/expected_base.pt "$FIXTURES"/reader/*.pt "$FIXTURES"/reader/*.pkl; do
  [ -f "$f" ] && head -c 65536 "$f" >"$CORPUS/$(basename "$(dirname "$f")")_$(basename "$f")"
done
cd "$BUILD"
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ./analyzer/fuzz/fuzz_checkpoint_reader "$CORPUS" -max_total_time="$SECONDS_TO_RUN" -max_len=70000 \
  -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/"
