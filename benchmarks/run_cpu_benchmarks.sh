#!/usr/bin/env bash
# Runs the CPU op benchmark (Google Benchmark) and prints the Markdown tables recorded in
# docs/benchmarks.md. Usage: benchmarks/run_cpu_benchmarks.sh [--quick] [extra benchmark flags]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${DECAYFW_BUILD:-$ROOT/build}"
OUT="$BUILD/bench"
mkdir -p "$OUT"
args=(--benchmark_min_time=0.5 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true)
if [ "${1:-}" = "--quick" ]; then
  shift
  # The main job's default: small sizes only, so it finishes in about a minute.
  args=(--benchmark_min_time=0.1 "--benchmark_filter=/(128|512|2048)/|DecodeStep")
fi
"$BUILD/benchmarks/bench_cpu_ops" "${args[@]}" --benchmark_out="$OUT/cpu.json" --benchmark_out_format=json "$@" >"$OUT/cpu.txt"
/usr/bin/python3 "$ROOT/benchmarks/format_cpu_benchmarks.py" "$OUT/cpu.json"
