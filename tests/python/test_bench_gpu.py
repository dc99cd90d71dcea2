"""benchmarks/bench_gpu.py where there is no GPU (CI): its HBM traffic model of the chunk path, the
mapping of profiler kernel names to the chunk passes, and its refusal to time anything without CUDA.
The timings themselves need the GPU machine (tests/gpu/run_all.sh)."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_gpu  # noqa: E402

BENCH = os.path.join(ROOT, "benchmarks", "bench_gpu.py")
SIZES = [(N, T, D, M) for N in (64, 256) for T in (512, 2048, 8192) for D in (64, 128) for M in (32, 64)]


def test_profiler_kernel_names_map_to_the_chunk_passes():
    name = "void decayfw::cuda::chunk_launch::(anonymous namespace)::{}_kernel<__nv_bfloat16, " \
           "decayfw::chunk::Config<64, 64, __nv_bfloat16> >(decayfw::chunk::ChunkArgs)"
    for k in bench_gpu.CHUNK_KERNELS:  # dstate_pass contains state_pass: each must still map to itself
        assert bench_gpu.kernel_of(name.format(k)) == k
    assert bench_gpu.kernel_of("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>") == "other"
    assert bench_gpu.kernel_of("Memset (Device)") == "other"


@pytest.mark.parametrize("forward", bench_gpu.CHUNK_FORWARDS)
@pytest.mark.parametrize("N,T,D,M", SIZES)
def test_traffic_model_moves_at_least_the_io_floor(N, T, D, M, forward):
    """Every byte of the floor (inputs, y, dy, gradients) is read or written by some pass, so the model
    can never be below it; and the fp32 state workspace it adds grows as N·T/C·D·M."""
    model = bench_gpu.chunk_kernel_bytes(N, T, D, M, forward=forward)
    assert set(model) == set(bench_gpu.CHUNK_KERNELS)
    floor = bench_gpu.io_floor_bytes(N, T, D, M, True)
    assert floor < sum(model.values()) < 5 * floor
    half = bench_gpu.chunk_kernel_bytes(N, T // 2, D, M, forward=forward)
    assert sum(half.values()) == pytest.approx(sum(model.values()) / 2, rel=0.05)  # linear in T (+1 state slot)


@pytest.mark.parametrize("N,T,D,M", SIZES)
def test_reusing_the_forward_states_saves_exactly_one_state_pass(N, T, D, M):
    reused = bench_gpu.chunk_kernel_bytes(N, T, D, M)
    recomputed = bench_gpu.chunk_kernel_bytes(N, T, D, M, reuse_states=False)
    assert recomputed["state_pass"] == 2 * reused["state_pass"]
    assert {k: v for k, v in recomputed.items() if k != "state_pass"} == {k: v for k, v in reused.items() if k != "state_pass"}


@pytest.mark.parametrize("N,T,D,M", SIZES)
def test_fused_forward_reads_what_output_pass_reads_once(N, T, D, M):
    """forward_pass reads q, k, f, v, z and writes y, as output_pass does, but writes the chunk states
    (one slot more) instead of reading them back, and no state_pass runs; the backward is the same. With
    save_chunk_states=False it writes no states, and the backward's state_pass recomputes them."""
    split, fused = (bench_gpu.chunk_kernel_bytes(N, T, D, M, forward=f) for f in ("split", "fused"))
    C = bench_gpu.compiled_chunk(M)
    state_slot = N * D * M * 4
    chunks = -(-T // C)
    assert fused["forward_pass"] == split["output_pass"] + state_slot
    assert fused["state_pass"] == fused["output_pass"] == split["forward_pass"] == 0
    assert {k: fused[k] for k in ("dstate_pass", "grad_pass")} == {k: split[k] for k in ("dstate_pass", "grad_pass")}
    recomputed = bench_gpu.chunk_kernel_bytes(N, T, D, M, reuse_states=False, forward="fused")
    assert recomputed["forward_pass"] == fused["forward_pass"] - (chunks + 1) * state_slot
    assert recomputed["state_pass"] == split["state_pass"]


def test_traffic_model_table_prints_without_a_gpu():
    r = subprocess.run([sys.executable, BENCH, "--traffic-model", "--N", "64", "--T", "8192", "--D", "128", "--M", "64"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python")))
    assert r.returncode == 0, r.stderr
    rows = {line.split("|")[5].strip(): line.rstrip() for line in r.stdout.splitlines()
            if line.startswith("| 64 | 8192 | 128 | 64 |")}
    assert set(rows) == {"split", "fused"}, r.stdout
    assert rows["split"].endswith("| 47% | 40% |") and rows["fused"].endswith("| 58% | 51% |"), r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_refuses_to_time_without_cuda():
    r = subprocess.run([sys.executable, BENCH, "--reps", "1"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python")))
    assert r.returncode == 1
    assert "CUDA is not available" in r.stderr and "Traceback" not in r.stderr


def test_sweep_runs_the_target_lengths_first():
    """A run stopped by --time-budget must already have the rows the issue's targets read (T ≥ 2048)."""
    order = bench_gpu.sweep_order([64, 256], [512, 2048, 8192], [128, 64], [32, 64])
    assert sorted(order) == sorted(SIZES)
    assert [T for _, T, _, _ in order] == [2048] * 8 + [8192] * 8 + [512] * 8
    assert order[:2] == [(64, 2048, 128, 32), (256, 2048, 128, 32)]
