#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the main job on the embedded WikiText-103 sample:
# train a small attention LM, swap it into decaying fast weights, fine-tune, evaluate, generate,
# and print a report (examples/main_job/run.sh). Extra arguments go to the main job.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$DECAYFW_ROOT/scripts/setup.sh"
if [ -x "$DECAYFW_ROOT/examples/main_job/run.sh" ]; then
  exec "$DECAYFW_ROOT/examples/main_job/run.sh" "$@"
fi
# Until the fairseq recipe is in place the main job is the CPU op benchmark.
exec "$DECAYFW_ROOT/benchmarks/run_cpu_benchmarks.sh" "$@"
