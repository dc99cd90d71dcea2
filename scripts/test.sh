#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every test: C++ (GoogleTest/CTest), the same C++ tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, Python (pytest: the package, the fairseq plugin,
# the rules), and a short fuzz run of the checkpoint reader. Quiet on success, loud on failure;
# ends with one summary line "N passed, N failed".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$DECAYFW_ROOT/scripts/setup.sh"

PASSED=0
FAILED=0
FAILED_SUITES=()

count_ctest() {  # "100% tests passed, 0 tests failed out of 21"
  local line; line=$(grep -E "tests passed, [0-9]+ tests? failed out of [0-9]+" "$1" | tail -1 || true)
  local total failed
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line"); failed=$(sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/' <<<"$line")
  [ -n "$line" ] && PASSED=$((PASSED + total - failed)) && FAILED=$((FAILED + failed)) || true
}
count_pytest() {  # "12 passed, 1 skipped in 3.2s" (with -q) or "=== 12 passed ... in 3.2s ==="
  local line; line=$(grep -E "^(=+ )?[0-9]+ (passed|failed|errors?)(,.*)? in [0-9.]+s" "$1" | tail -1 || true)
  local p f e
  p=$(grep -oE "[0-9]+ passed" <<<"$line" | grep -oE "[0-9]+" || echo 0)
  f=$(grep -oE "[0-9]+ failed" <<<"$line" | grep -oE "[0-9]+" || echo 0)
  e=$(grep -oE "[0-9]+ errors?" <<<"$line" | grep -oE "[0-9]+" || echo 0)
  PASSED=$((PASSED + p)); FAILED=$((FAILED + f + e))
}

suite() {  # suite NAME COUNTER COMMAND...
  local name="$1" counter="$2"; shift 2
  local log="$LOG_DIR/test-$name.log" t0=$SECONDS
  if "$@" >"$log" 2>&1; then
    echo "ok    $name ($((SECONDS - t0)) s)"
  else
    echo "FAIL  $name ($((SECONDS - t0)) s) — last lines of $log:"
    tail -n 80 "$log"
    FAILED_SUITES+=("$name")
  fi
  "$counter" "$log"
}
none() { :; }

export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"

# 1. C++ tests of the release build.
suite cpp count_ctest ctest --test-dir "$DECAYFW_BUILD" --output-on-failure -j "$JOBS"

# 2. The C++ tests again under ASan + UBSan (separate build dir; LibTorch itself is not
#    instrumented, and its intentional process-lifetime allocations make leak checking noise).
ASAN_BUILD="$DECAYFW_ROOT/build-asan"
asan_build() {
  cmake -S "$DECAYFW_ROOT" -B "$ASAN_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DDECAYFW_SANITIZE=ON -DDECAYFW_BUILD_PYTHON=OFF \
    -DDECAYFW_BUILD_BENCHMARKS=OFF -DDECAYFW_BUILD_GUI=OFF -DDECAYFW_CUDA=OFF
  cmake --build "$ASAN_BUILD" -j "$JOBS"
}
suite asan-build none asan_build
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  suite cpp-asan-ubsan count_ctest ctest --test-dir "$ASAN_BUILD" --output-on-failure -j "$JOBS"

# 3. Python: the decayfw package, the rules, the fairseq plugin (real fairseq, CPU).
PYTEST_DIRS=()
for d in tests/python tests/plugin; do [ -d "$DECAYFW_ROOT/$d" ] && PYTEST_DIRS+=("$DECAYFW_ROOT/$d"); done
if [ ${#PYTEST_DIRS[@]} -gt 0 ]; then
  suite python count_pytest "$DECAYFW_VENV/bin/python" -m pytest -q -p no:cacheprovider "${PYTEST_DIRS[@]}"
fi

# 4. A short fuzz run of the checkpoint reader (libFuzzer + ASan/UBSan).
if [ -x "$DECAYFW_ROOT/analyzer/fuzz/run_fuzz.sh" ]; then
  suite fuzz none "$DECAYFW_ROOT/analyzer/fuzz/run_fuzz.sh"
fi

echo "decayfw tests: ${#FAILED_SUITES[@]} suite(s) failed${FAILED_SUITES:+: ${FAILED_SUITES[*]}}"
if [ ${#FAILED_SUITES[@]} -gt 0 ] && [ "$FAILED" -eq 0 ]; then FAILED=${#FAILED_SUITES[@]}; fi
echo "$PASSED passed, $FAILED failed"
[ ${#FAILED_SUITES[@]} -eq 0 ]
