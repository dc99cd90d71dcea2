"""Packs a GPU run's logs into the few files the device tool brings back.

The device tool returns at most 8 files from $OUT, and a run of tests/gpu/run_all.sh writes more logs
than that (pytest, two sanitizers, benchmark tables and their raw rows, the engine's tests, fairseq).
run_all.sh therefore writes its logs to a folder of its own and calls this after every step, so that
$OUT always holds, whatever step the call is stopped in:

  summary.txt       the steps' exit codes and times, and the lines of each log that say how it went
                    (test counts and failures, sanitizer summaries, errors), read first;
  results.tar.gz    every log, whole;
  the headline results (HEADLINES: the chunk executor's operations against the host's, the two
                    benchmarks' tables, the shared-memory model against timed access patterns and against
                    Nsight Compute's counters, its report of the chunk kernels)
                    as they are, when present.

Each file is written beside its final name and renamed, so a call stopped mid-write still returns the
previous complete version.

  python3 tests/gpu/publish_results.py LOGS_DIR OUT_DIR
"""
import os
import re
import sys
import tarfile

MAX_FILES = 8  # what the device tool returns from $OUT (its README, "Limits")
HEADLINES = ("cta_executor.md", "bench_gpu.md", "bench_fairseq.md", "smem_patterns.md", "smem_model.md", "ncu_chunk.txt")
STEPS = "steps.txt"  # run_all.sh's ledger: one line per step, "NAME rc=N S s (limit L s)"
KEY_LINE = re.compile(
    r"\d+ (passed|failed|errors?)\b|^FAILED |^ERROR |ERROR SUMMARY|RACECHECK SUMMARY|========= (Invalid|Race|Error)"
    r"|\brc=|Error:|Error\b.*:|Traceback|not available|no GPU|timed out|HAS_EXTENSION|prebuilt|built (here|with)"
    r"|^GPU:|NVIDIA H|torch \d")
MAX_KEY_LINES = 40  # per log


def key_lines(path):
    """The lines of one log worth reading first; the last ones where there are many."""
    try:
        with open(path, errors="replace") as fh:
            lines = [line.rstrip("\n") for line in fh if KEY_LINE.search(line)]
    except OSError as e:
        return [f"(unreadable: {e})"]
    if len(lines) > MAX_KEY_LINES:
        lines = [f"... {len(lines) - MAX_KEY_LINES} earlier matching lines, see results.tar.gz"] + lines[-MAX_KEY_LINES:]
    return [line[:400] for line in lines]


def summary_text(logs):
    names = sorted(n for n in os.listdir(logs) if os.path.isfile(os.path.join(logs, n)))
    out = ["decayfw GPU run: summary (every log whole in results.tar.gz)", ""]
    if STEPS in names:
        with open(os.path.join(logs, STEPS), errors="replace") as fh:
            out += ["== steps =="] + [line.rstrip("\n") for line in fh] + [""]
    for n in names:
        if n == STEPS:
            continue
        size = os.path.getsize(os.path.join(logs, n))
        out.append(f"== {n} ({size} bytes) ==")
        out += key_lines(os.path.join(logs, n))
        out.append("")
    return "\n".join(out) + "\n"


def replace_atomically(final, write):
    partial = final + ".partial"
    write(partial)
    os.replace(partial, final)


def publish(logs, out):
    os.makedirs(out, exist_ok=True)

    def pack(path):
        with tarfile.open(path, "w:gz") as tar:
            for n in sorted(os.listdir(logs)):
                if os.path.isfile(os.path.join(logs, n)):
                    tar.add(os.path.join(logs, n), arcname=n)

    def text(content):
        def write(path):
            with open(path, "w") as fh:
                fh.write(content)
        return write

    replace_atomically(os.path.join(out, "results.tar.gz"), pack)
    replace_atomically(os.path.join(out, "summary.txt"), text(summary_text(logs)))
    for n in HEADLINES:
        src = os.path.join(logs, n)
        if os.path.isfile(src):
            with open(src, errors="replace") as fh:
                replace_atomically(os.path.join(out, n), text(fh.read()))


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: publish_results.py LOGS_DIR OUT_DIR")
    logs, out = argv[1], argv[2]
    if not os.path.isdir(logs):
        sys.exit(f"publish_results: no logs folder {logs!r}")
    publish(logs, out)


if __name__ == "__main__":
    main(sys.argv)
