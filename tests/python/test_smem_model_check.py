"""tests/gpu/smem_model_check.py, where there is no GPU: it reads Nsight Compute's CSV (both layouts ncu
writes) and sets each chunk kernel's measured shared-memory wavefronts beside the model's. The CSVs here are
written in ncu's documented layouts from numbers chosen for the test, not taken from a run."""
import csv
import io
import os
import subprocess
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "gpu"))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_gpu  # noqa: E402
import smem_model_check as check  # noqa: E402

SIZES = dict(N=64, T=2048, D=128, M=64)
CALLS_KERNELS = [  # what profile_chunk.py launches, call by call
    ["state_pass", "output_pass", "dstate_pass", "grad_pass"],
    ["state_pass", "output_pass", "dstate_pass", "grad_pass"],
    ["forward_pass", "dstate_pass", "grad_pass"],
    ["forward_pass", "dstate_pass", "grad_pass"],
]


def ncu_name(kernel):
    return (f"void decayfw::cuda::chunk_launch::<unnamed>::{kernel}_kernel<__nv_bfloat16, "
            "decayfw::chunk::Config<64, 64, __nv_bfloat16>>(decayfw::chunk::ChunkArgs)")


def measured(call, kernel):
    """Wavefronts the test's "run" measured: the model's, times 1.1 for the 256-thread calls."""
    form = check.CALLS[call][0]
    return bench_gpu.chunk_kernel_smem(**SIZES, forward=form)[kernel] * (1.1 if check.CALLS[call][1] == 256 else 1.0)


def launches(xu=False):
    """The test's launches; with xu, the MUFU metric too: the model's warp instructions (MUFU_OPS ÷ 32) times 1.25."""
    lid = 0
    for call, kernels in enumerate(CALLS_KERNELS):
        for kernel in kernels:
            w = measured(call, kernel)
            metrics = {check.WAVEFRONTS: w, check.CONFLICTS: w / 4, check.CYCLES: w * 2, check.DURATION: 12345.0}
            if xu:
                metrics[check.XU] = bench_gpu.chunk_kernel_mufu(**SIZES, forward=check.CALLS[call][0])[kernel] / 32 * 1.25
            yield lid, kernel, metrics
            lid += 1


def details_csv(xu=False):
    out = io.StringIO()
    out.write("==PROF== Connected to process 4242\nprofiled the split forward + backward, 512 threads\n")
    w = csv.writer(out, quoting=csv.QUOTE_ALL)
    w.writerow(["ID", "Process ID", "Process Name", "Host Name", "Kernel Name", "Context", "Stream", "Block Size",
                "Grid Size", "Device", "CC", "Section Name", "Metric Name", "Metric Unit", "Metric Value"])
    for lid, kernel, metrics in launches(xu):
        for name, value in metrics.items():
            w.writerow([lid, 4242, "python3", "127.0.0.1", ncu_name(kernel), 1, 7, "(512, 1, 1)", "(2048, 1, 1)",
                        0, "9.0", "Command line profiler metrics", name, "", f"{value:,.0f}"])
    return out.getvalue()


def raw_csv(xu=False):
    out = io.StringIO()
    w = csv.writer(out, quoting=csv.QUOTE_ALL)
    names = list(check.METRICS) + ([check.XU] if xu else [])
    w.writerow(["ID", "Kernel Name", *names])
    w.writerow(["", "", "sector", "", "cycle", "nsecond"] + (["inst"] if xu else []))
    for lid, kernel, metrics in launches(xu):
        w.writerow([lid, ncu_name(kernel), *(f"{metrics[m]:.1f}" for m in names)])
    return out.getvalue() + "==PROF== Disconnected from process 4242\n"


@pytest.mark.parametrize("layout", [details_csv, raw_csv])
def test_each_launch_is_set_beside_the_model_of_its_call(layout):
    lines = check.table(layout(), **SIZES)
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines if line.startswith("| split") or
            line.startswith("| fused")]
    assert len(rows) == sum(len(k) for k in CALLS_KERNELS)
    by = {(r[0], r[1], r[2]): r for r in rows}
    grad = by[("split", "512", "grad_pass")]
    model = bench_gpu.chunk_kernel_smem(**SIZES)["grad_pass"]
    assert grad[4] == f"{model:,.0f}" and grad[3] == f"{model:,.0f}" and grad[5] == "1.00"
    assert grad[6] == "0.25" and grad[7] == "0.50" and grad[8] == "12"
    assert by[("split", "256", "grad_pass")][5] == "1.10"
    # forward_pass only in the fused calls, state_pass and output_pass only in the split ones
    assert by[("fused", "256", "forward_pass")][5] == "1.10"
    assert {r[0] for r in rows if r[2] in ("state_pass", "output_pass")} == {"split"}
    assert ("split", "512", "forward_pass") not in by


@pytest.mark.parametrize("layout", [details_csv, raw_csv])
def test_the_mufu_count_is_set_beside_its_model_where_ncu_measured_it(layout):
    """With the XU pipe's metric in the CSV, each launch's MUFU warp instructions beside MUFU_OPS ÷ 32; without
    it (an ncu that does not list it), dashes, and the wavefronts' columns as before."""
    rows = lambda text: {(r[0], r[1], r[2]): r for r in ([c.strip() for c in line.split("|")[1:-1]]
                                                          for line in check.table(text, **SIZES))
                         if r and r[0] in ("split", "fused")}
    model = bench_gpu.chunk_kernel_mufu(**SIZES)["grad_pass"] / 32
    grad = rows(layout(xu=True))[("split", "512", "grad_pass")]
    assert grad[9] == f"{model * 1.25:,.0f}" and grad[10] == f"{model:,.0f}" and grad[11] == "1.25"
    without = rows(layout())[("split", "512", "grad_pass")]
    assert without[9] == "—" and without[10] == f"{model:,.0f}" and without[11] == "—" and without[5] == "1.00"


def test_the_mufu_metric_is_asked_for_only_where_ncu_lists_it():
    listing = "Device NVIDIA H100\nsmsp__inst_executed_pipe_xu   Counter   # of warp instructions executed by xu pipe\n"
    assert check.metrics_to_ask(listing) == list(check.METRICS) + [check.XU]
    assert check.metrics_to_ask("") == list(check.METRICS)  # `ncu --query-metrics` failed: the required ones only
    assert check.metrics_to_ask("smsp__inst_executed_pipe_xu_pred_on") == list(check.METRICS)  # whole names only


def test_kernel_names_are_told_apart():
    assert check.kernel_of(ncu_name("state_pass")) == "state_pass"
    assert check.kernel_of(ncu_name("dstate_pass")) == "dstate_pass"
    assert check.kernel_of("void at::native::vectorized_elementwise_kernel<4, ...>") is None


def test_a_failed_profile_says_what_is_missing(tmp_path):
    """ncu without counter access prints an error and no CSV: the script says so and exits 1, no traceback."""
    path = tmp_path / "ncu_smem.csv"
    path.write_text("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU "
                    "Performance Counters on the target device 0.\nncu_smem rc=1\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "gpu", "smem_model_check.py"), str(path)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "smem_model_check:" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ValueError, match="no CSV table"):
        check.launches("profiled the split forward + backward, 512 threads\n")
    with pytest.raises(ValueError, match="no column"):
        check.launches('"ID","Kernel Name","gpu__time_duration.sum"\n"0","grad_pass_kernel","1"\n')
