#!/usr/bin/env bash
# The main job (see main_job.py): attention LM -> decaying fast weights on the WikiText-103 sample.
# Arguments are passed on, e.g. --fresh, --base-updates N, --gpu.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
exec "${DECAYFW_VENV:-$ROOT/.venv}/bin/python" "$ROOT/examples/main_job/main_job.py" "$@"
