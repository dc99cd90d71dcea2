"""tests/gpu/run_all.sh's bookkeeping, where there is no GPU (CI): the device tool returns at most 8 files
from $OUT and a call runs at most 10 minutes, so the script packs its logs (tests/gpu/publish_results.py)
after every step and keeps a deadline. A GPU session gets one try at this; it must not be the first."""
import os
import re
import subprocess
import sys
import tarfile

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "gpu"))
import publish_results  # noqa: E402

RUN_ALL = os.path.join(ROOT, "tests", "gpu", "run_all.sh")
DEVICE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")  # what the device tool returns (its README, "Limits")


def write(path, text):
    with open(path, "w") as fh:
        fh.write(text)


def returned_files(out):
    names = sorted(os.listdir(out))
    assert all(os.path.isfile(os.path.join(out, n)) for n in names)
    assert len(names) <= publish_results.MAX_FILES, names
    assert all(DEVICE_NAME.match(n) for n in names), names
    return names


def test_every_log_comes_back_in_at_most_eight_files(tmp_path):
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    write(logs / "steps.txt", "build rc=0 3 s\ntests rc=1 95 s (limit 150 s)\nracecheck rc=124 90 s (limit 90 s, stopped at it)\n")
    write(logs / "pytest.txt", "..F..\nFAILED tests/gpu/test_cuda_chunk.py::test_chunk_matches_cpu[bf16-64] - AssertionError\n"
                               "1 failed, 140 passed, 3 skipped in 80.1s\n")
    write(logs / "memcheck.txt", "========= COMPUTE-SANITIZER\nsanitize run ok\n========= ERROR SUMMARY: 0 errors\n")
    write(logs / "bench_gpu.md", "GPU: NVIDIA H200; torch 2.11.0+cu130\n| D | M |\n")
    for i in range(10):  # more logs than the device tool returns files
        write(logs / f"engine-{i}.txt", f"log {i}\nnothing to see\n")
    publish_results.publish(str(logs), str(out))

    names = returned_files(out)
    assert names == ["bench_gpu.md", "results.tar.gz", "summary.txt"]
    with tarfile.open(out / "results.tar.gz") as tar:
        packed = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert packed == {p.name: p.read_bytes() for p in logs.iterdir()}
    summary = (out / "summary.txt").read_text()
    for line in ("tests rc=1 95 s (limit 150 s)", "racecheck rc=124 90 s (limit 90 s, stopped at it)",
                 "FAILED tests/gpu/test_cuda_chunk.py::test_chunk_matches_cpu[bf16-64]",
                 "1 failed, 140 passed, 3 skipped", "ERROR SUMMARY: 0 errors", "GPU: NVIDIA H200"):
        assert line in summary
    assert "nothing to see" not in summary  # only the telling lines
    assert (out / "bench_gpu.md").read_text() == (logs / "bench_gpu.md").read_text()

    # Published again after the next step: the new log is in, nothing half-written is left.
    write(logs / "bench_fairseq.md", "| model | tokens/s |\n")
    publish_results.publish(str(logs), str(out))
    assert returned_files(out) == ["bench_fairseq.md", "bench_gpu.md", "results.tar.gz", "summary.txt"]
    with tarfile.open(out / "results.tar.gz") as tar:
        assert "bench_fairseq.md" in tar.getnames()


def test_every_headline_fits_beside_the_summary_and_the_archive():
    assert len(publish_results.HEADLINES) + 2 <= publish_results.MAX_FILES


def test_a_long_log_keeps_its_last_telling_lines(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    write(logs / "pytest.txt", "".join(f"FAILED tests/gpu/t.py::case{i}\n" for i in range(100)) + "100 failed in 9.0s\n")
    lines = publish_results.key_lines(str(logs / "pytest.txt"))
    assert len(lines) == publish_results.MAX_KEY_LINES + 1
    assert lines[0].startswith("... 61 earlier") and lines[-1] == "100 failed in 9.0s"


def run_all(tmp_path, **env):
    """run_all.sh with the GPU hidden and no wheels, so that on any machine (the GPU one included, where
    pytest runs this file too) every step stops at once and only the bookkeeping is under test."""
    out, logs = tmp_path / "out", tmp_path / "logs"
    e = dict(os.environ, OUT=str(out), GPU_LOGS=str(logs), GPU_BUILD="none", PY=sys.executable,
             CUDA_VISIBLE_DEVICES="", WHEELHOUSE=str(tmp_path / "no-wheelhouse"))
    e.update(env)
    r = subprocess.run(["bash", RUN_ALL], capture_output=True, text=True, env=e, timeout=300)
    return r, out, logs


def test_run_all_records_every_step_and_returns_few_files(tmp_path):
    """Without CUDA both benchmarks stop at once; the ledger says so, with exit codes and limits."""
    r, out, logs = run_all(tmp_path, GPU_STEPS="bench fairseq", GPU_DEADLINE="200", BENCH_TIMEOUT="50")
    assert r.returncode == 0, r.stderr
    assert returned_files(out)[:2] == ["bench_gpu.md", "results.tar.gz"]
    steps = (logs / "steps.txt").read_text().splitlines()
    assert [s.split()[:2] for s in steps] == [["build", "rc=0"], ["bench", "rc=1"], ["fairseq", "rc=1"]], steps
    assert "(limit 50 s)" in steps[1]
    summary = (out / "summary.txt").read_text()
    assert "bench rc=1" in summary and "CUDA is not available" in summary


def test_run_all_skips_what_the_deadline_leaves_no_time_for(tmp_path):
    r, out, logs = run_all(tmp_path, GPU_STEPS="bench fairseq", GPU_DEADLINE="1", STEP_RESERVE="30")
    assert r.returncode == 0, r.stderr
    steps = (logs / "steps.txt").read_text()
    assert "bench skipped" in steps and "fairseq skipped" in steps, steps
    assert not (logs / "bench_gpu.err").exists()
    assert "bench skipped" in (out / "summary.txt").read_text()


def test_an_earlier_step_keeps_its_reserve_when_later_ones_would_eat_the_deadline(tmp_path):
    """Steps run in order of importance (tests, sanitizers, benchmark, engine, fairseq): a short deadline
    cuts the later ones, never skips an earlier one that has its reserve left. With 55 s, the benchmark's
    limit would be 24 s if it left fairseq its 30; it keeps its own 30 instead, and fairseq still starts as long
    as the benchmark stops within 24 s (it stops at once without CUDA; with a 40 s deadline that margin was 9 s,
    which Python's start took on the 2-core CI machine under load, and fairseq was skipped)."""
    r, out, logs = run_all(tmp_path, GPU_STEPS="bench fairseq", GPU_DEADLINE="55", STEP_RESERVE="30")
    assert r.returncode == 0, r.stderr
    steps = (logs / "steps.txt").read_text().splitlines()
    assert steps[1].startswith("bench rc=1") and steps[1].endswith("(limit 30 s)"), steps
    assert steps[2].startswith("fairseq rc=1"), steps


def fake_ncu(tmp_path, listing):
    """An `ncu` on PATH that lists `listing` for --query-metrics and otherwise writes the --metrics it was asked for
    (one line per run) to ncu_metrics.txt and fails, as ncu does without counter access."""
    bin_dir, asked = tmp_path / "bin", tmp_path / "ncu_metrics.txt"
    bin_dir.mkdir()
    script = bin_dir / "ncu"
    write(script, "#!/usr/bin/env bash\n"
                  f"if [ \"$1\" = --query-metrics ]; then printf '%s\\n' {listing!r}; exit 0; fi\n"
                  "while [ $# -gt 0 ]; do [ \"$1\" = --metrics ] && { echo \"$2\" >> " + str(asked) + "; }; shift; done\n"
                  "echo '==ERROR== ERR_NVGPUCTRPERM'; exit 1\n")
    script.chmod(0o755)
    return dict(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"), asked


def test_the_profile_asks_for_the_mufu_metric_only_where_ncu_lists_it(tmp_path):
    """An unknown metric name fails ncu's whole run, and with it the shared-memory table: the MUFU metric goes
    into --metrics only where `ncu --query-metrics` names it."""
    import smem_model_check
    for listing, with_xu in (("smsp__inst_executed_pipe_xu  Counter  # of warp instructions executed by xu", True),
                             ("smsp__inst_executed  Counter", False)):
        case = tmp_path / ("with" if with_xu else "without")
        case.mkdir()
        env, asked = fake_ncu(case, listing)
        r, out, logs = run_all(case, GPU_STEPS="profile", **env)
        assert r.returncode == 0, r.stderr
        metrics = asked.read_text().split()[0].split(",")
        assert metrics[:len(smem_model_check.METRICS)] == list(smem_model_check.METRICS)
        assert (smem_model_check.XU in metrics) == with_xu, metrics
        assert "profile rc=" in (logs / "steps.txt").read_text()
