# Shared helpers for the set-up, main-job and test scripts: quiet on success, loud on failure.
# Each step's output goes to a log under build/logs; a failing step prints its log and stops.
set -euo pipefail
DECAYFW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DECAYFW_VENV="${DECAYFW_VENV:-$DECAYFW_ROOT/.venv}"
DECAYFW_BUILD="${DECAYFW_BUILD:-$DECAYFW_ROOT/build}"
LOG_DIR="$DECAYFW_BUILD/logs"
mkdir -p "$LOG_DIR"
export CCACHE_BASEDIR="$DECAYFW_ROOT"
export PYTHONPATH="$DECAYFW_ROOT/bindings/python:$DECAYFW_ROOT/plugin${PYTHONPATH:+:$PYTHONPATH}"
JOBS="${DECAYFW_JOBS:-$(nproc)}"

step() {  # step NAME COMMAND...: run quietly, show the log tail on failure
  local name="$1"; shift
  local log="$LOG_DIR/$name.log"
  local t0=$SECONDS
  if "$@" >"$log" 2>&1; then
    [ -n "${DECAYFW_VERBOSE:-}" ] && echo "ok   $name ($((SECONDS - t0)) s)"
    return 0
  fi
  local rc=$?
  echo "FAILED: $name (exit $rc) — last lines of $log:" >&2
  tail -n 60 "$log" >&2
  return $rc
}
