"""The chunkwise tensor-core CUDA path against the fp64 CPU op (the oracle), and the choice between
it and the recurrent path. The same programs run on CPU in tests/cpp/test_chunk_program.cpp; this
file checks the device executor (WMMA fragments, the warp split, shared memory) and the launcher.
Runs only where a GPU and a CUDA build of decayfw are present; CI skips it."""
import os
import sys

import pytest
import torch

import decayfw
from decayfw import decay_fast_weights

from gpu_cases import make, rel, requires_gpu, saturated

pytestmark = requires_gpu


@pytest.fixture
def path(monkeypatch):
    def use(name):
        monkeypatch.setenv("DECAYFW_CUDA_PATH", name)
    return use


def run(ins, s0, dy, ds, device, dtype):
    """Forward and every gradient; the inputs rounded to dtype first so both sides see the same values."""
    xs = [t.to(dtype).to(device, torch.float64 if device == "cpu" else dtype).requires_grad_(True) for t in ins]
    s = s0.to(device, torch.float64 if device == "cpu" else torch.float32).requires_grad_(True)
    y, sT = decay_fast_weights(*xs, initial_state=s, output_final_state=True)
    loss = (y * dy.to(device, y.dtype)).sum() + (sT * ds.to(device, sT.dtype)).sum()
    return [y, sT] + list(torch.autograd.grad(loss, xs + [s]))


NAMES = ["y", "final_state", "dq", "dk", "dv", "dz", "df", "ds0"]


def expect_close_to_the_cpu_op(ins, s0, dy, ds, dtype, tol):
    """Every output on the GPU finite and within tol (rel) of the fp64 CPU op's, on the same rounded inputs."""
    want = run(ins, s0, dy, ds, "cpu", dtype)
    got = run(ins, s0, dy, ds, "cuda", dtype)
    for name, a, b in zip(NAMES, got, want):
        assert torch.isfinite(a).all(), name
        assert rel(a, b) < tol, f"{name}: {rel(a, b):.2e}"
SIZES = [(2, 1, 2, 64, 32), (2, 63, 1, 64, 32), (1, 64, 2, 64, 64), (2, 65, 3, 128, 64), (1, 300, 2, 64, 16),
         (1, 257, 2, 128, 128), (1, 200, 1, 192, 32), (4, 1000, 4, 128, 64)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3), (torch.float32, 4e-3)])
def test_chunk_path_matches_the_fp64_cpu_op(size, dtype, tol, path):
    path("chunk")
    q, k, v, z, f, s0 = make(*size)
    expect_close_to_the_cpu_op((q, k, v, z, f), s0, torch.randn_like(v), torch.randn_like(s0), dtype, tol)


def test_chunk_and_recurrent_paths_agree(path):
    q, k, v, z, f, s0 = make(2, 777, 4, 128, 64, seed=1)
    dy, ds = torch.randn_like(v), torch.randn_like(s0)
    path("recurrent")
    a = run((q, k, v, z, f), s0, dy, ds, "cuda", torch.bfloat16)
    path("chunk")
    b = run((q, k, v, z, f), s0, dy, ds, "cuda", torch.bfloat16)
    for name, x, y in zip(NAMES, a, b):
        assert rel(x, y) < 2e-2, name


def test_saturated_gates_over_65536_tokens_on_the_chunk_path(path):
    path("chunk")
    T, D, M = 65536, 64, 16
    q, k, v, z, f = saturated(T, D, M)
    s0, dy = torch.zeros(1, 1, D, M, dtype=torch.float64), torch.randn_like(v)
    expect_close_to_the_cpu_op((q, k, v, z, f), s0, dy, torch.zeros_like(s0), torch.bfloat16, 2e-2)


def test_segments_equal_one_pass(path):
    path("chunk")
    q, k, v, z, f, s0 = (t.bfloat16().cuda() for t in make(2, 300, 2, 64, 64, seed=2))
    s0 = s0.float()
    y, s = decay_fast_weights(q, k, v, z, f, s0, output_final_state=True)
    cut = 130  # not a multiple of the chunk
    y1, s1 = decay_fast_weights(q[:, :cut], k[:, :cut], v[:, :cut], z[:, :cut], f[:, :cut], s0, output_final_state=True)
    y2, s2 = decay_fast_weights(q[:, cut:], k[:, cut:], v[:, cut:], z[:, cut:], f[:, cut:], s1, output_final_state=True)
    assert rel(torch.cat([y1, y2], 1), y) < 1e-2 and rel(s2, s) < 1e-3


def test_runs_are_bitwise_deterministic(path):
    path("chunk")
    ins = [t.bfloat16().cuda().requires_grad_(True) for t in make(2, 500, 2, 128, 64, seed=3)[:5]]
    outs = []
    for _ in range(2):
        y = decay_fast_weights(*ins)
        outs.append([y] + list(torch.autograd.grad(y.float().square().sum(), ins)))
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_time_first_strided_inputs(path):
    path("chunk")
    T, B, H, D, M = 130, 3, 2, 64, 32
    x = [torch.randn(T, B, H, X, device="cuda", dtype=torch.bfloat16) for X in (M, M, D, D, M)]
    a = decay_fast_weights(*(t.transpose(0, 1) for t in x))
    b = decay_fast_weights(*(t.transpose(0, 1).contiguous() for t in x))
    assert torch.equal(a, b)


def test_unaligned_inputs_and_states(path):
    """Views one element into their storage: the inputs cannot be read as 16-byte vectors (the
    programs fall back to element loads), and the states are copied to aligned memory first; the
    results equal those of aligned copies, bit for bit."""
    path("chunk")
    B, T, H, D, M = 2, 150, 2, 128, 64
    shifted = lambda t: torch.empty(t.numel() + 1, device="cuda", dtype=t.dtype)[1:].view_as(t).copy_(t)
    x = [t.bfloat16().cuda() for t in make(B, T, H, D, M, seed=9)[:5]]
    s0 = torch.randn(B, H, D, M, device="cuda")
    dy, dsT = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16), torch.randn(B, H, D, M, device="cuda")

    def outputs(xs, s, ds):
        xs = [t.detach().requires_grad_(True) for t in xs]
        s = s.detach().requires_grad_(True)
        y, sT = decay_fast_weights(*xs, initial_state=s, output_final_state=True)
        return [y, sT] + list(torch.autograd.grad((y * dy).sum() + (sT * ds).sum(), xs + [s]))

    odd = [shifted(t) for t in x]
    assert all(t.data_ptr() % 16 != 0 for t in odd)
    for a, b in zip(outputs(x, s0, dsT), outputs(odd, shifted(s0), shifted(dsT))):
        assert torch.equal(a, b)


def test_automatic_choice(path, monkeypatch):
    """auto: bf16 long sequences take the chunk path (tf32-level differences from recurrent); fp32
    stays exact (recurrent) unless TF32 matmuls are allowed."""
    path("auto")
    q, k, v, z, f, _ = (t.float().cuda() for t in make(1, 400, 2, 64, 64, seed=4))
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    exact = decay_fast_weights(q, k, v, z, f)
    want = decay_fast_weights(*(t.double().cpu() for t in (q, k, v, z, f)))
    assert rel(exact, want) < 2e-5
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    tf32 = decay_fast_weights(q, k, v, z, f)
    assert 2e-5 < rel(tf32, want) < 4e-3  # it did change path, and tf32 is still close


def test_forced_chunk_path_explains_unsupported_sizes(path):
    path("chunk")
    x = [torch.randn(1, 100, 1, X, device="cuda") for X in (24, 24, 64, 64, 24)]
    with pytest.raises(RuntimeError, match="M is not 16, 32, 64 or 128"):
        decay_fast_weights(*x)
    x = [torch.randn(1, 100, 1, X, device="cuda") for X in (32, 32, 96, 96, 32)]
    with pytest.raises(RuntimeError, match="D is not a multiple of 64"):
        decay_fast_weights(*x)


def test_bad_path_name_is_refused(path):
    path("fastest")
    x = [torch.randn(1, 100, 1, X, device="cuda") for X in (32, 32, 64, 64, 32)]
    with pytest.raises(RuntimeError, match="DECAYFW_CUDA_PATH must be auto, chunk or recurrent"):
        decay_fast_weights(*x)


def test_backward_reusing_the_forward_states_gives_the_same_bits(path):
    """decay_fast_weights keeps decay_fwd_train's chunk states for the backward, which then skips
    state_pass; the states are the same computation, so every gradient equals a recomputing
    backward's, bit for bit (T not a multiple of the chunk; with S0 and dS_T)."""
    path("chunk")
    x = [t.bfloat16().cuda() for t in make(2, 300, 2, 128, 64, seed=12)[:5]]
    s0, dsT = torch.randn(2, 2, 128, 64, device="cuda"), torch.randn(2, 2, 128, 64, device="cuda")
    dy = torch.randn(2, 300, 2, 128, device="cuda", dtype=torch.bfloat16)
    grads = []
    for save in (True, False):
        xs = [t.detach().requires_grad_(True) for t in x] + [s0.detach().requires_grad_(True)]
        y, sT = decay_fast_weights(*xs[:5], initial_state=xs[5], output_final_state=True, save_chunk_states=save)
        grads.append(torch.autograd.grad((y * dy).sum() + (sT * dsT).sum(), xs))
    for name, a, b in zip(NAMES[2:], *grads):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("dtype,M,C", [(torch.bfloat16, 64, 64), (torch.float16, 128, 32), (torch.bfloat16, 16, 64)])
def test_training_forward_returns_the_chunk_states(dtype, M, C, path):
    """Their shape is [B, H, ceil(T/C) + 1, D, M] with C = decay_chunk_size (the value the benchmark's
    traffic model assumes); slot c is chunk c's start state, the last one S_T; empty off the chunk path."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    import bench_gpu
    path("chunk")
    B, T, H, D = 2, 200, 3, 64
    assert torch.ops.decayfw.decay_chunk_size(B, T, H, D, M, dtype, torch.device("cuda")) == C
    assert bench_gpu.compiled_chunk(M) == C
    q, k, v, z, f, s0 = make(B, T, H, D, M, seed=13)
    x = [t.to(dtype).cuda() for t in (q, k, v, z, f)]
    y, sT, states = torch.ops.decayfw.decay_fwd_train(*x, s0.float().cuda())
    assert states.shape == (B, H, -(-T // C) + 1, D, M) and states.dtype == torch.float32
    assert torch.equal(states[:, :, -1], sT)
    assert torch.equal(states[:, :, 0], s0.float().cuda())
    _, s1 = decay_fast_weights(*(t[:, :C] for t in x), initial_state=s0.float().cuda(), output_final_state=True)
    assert rel(states[:, :, 1], s1) < 1e-5  # the state after the first chunk
    path("recurrent")
    assert torch.ops.decayfw.decay_fwd_train(*x)[2].numel() == 0
    assert torch.ops.decayfw.decay_chunk_size(B, T, H, D, M, dtype, torch.device("cuda")) == 0
    path("auto")
    assert torch.ops.decayfw.decay_chunk_size(B, 63, H, D, M, dtype, torch.device("cuda")) == 0  # short: recurrent


def test_bad_chunk_states_are_refused_and_other_paths_ignore_them(path):
    path("chunk")
    x = [t.bfloat16().cuda() for t in make(1, 130, 2, 64, 32, seed=14)[:5]]
    dy = torch.randn(1, 130, 2, 64, device="cuda", dtype=torch.bfloat16)
    _, _, states = torch.ops.decayfw.decay_fwd_train(*x)
    assert states.shape[2] == 4  # ceil(130 / 64) + 1
    with pytest.raises(RuntimeError, match="holds 3 chunk-boundary states, but the chunk path splits T = 130 "
                                           "into chunks of 64 tokens and needs 4"):
        torch.ops.decayfw.decay_bwd(*x, None, dy, None, states[:, :, :3].contiguous())
    with pytest.raises(RuntimeError, match="'chunk_states' is on cpu"):
        torch.ops.decayfw.decay_bwd(*x, None, dy, None, states.cpu())
    want = torch.ops.decayfw.decay_bwd(*x, None, dy, None, None)
    path("recurrent")  # a path that keeps no states takes none: the same gradients as without them
    got = torch.ops.decayfw.decay_bwd(*x, None, dy, None, states)
    assert torch.equal(got[0], torch.ops.decayfw.decay_bwd(*x, None, dy, None, None)[0])
    assert rel(got[0], want[0]) < 2e-2


@pytest.mark.skipif(not getattr(decayfw._loader, "NATIVE_AUTOGRAD", False), reason="needs torch >= 2.4")
def test_opcheck_on_the_chunk_path(path):
    """The fake kernels (torch.compile) give the chunk states the real op returns."""
    path("chunk")
    x = [t.bfloat16().cuda().requires_grad_(True) for t in make(1, 130, 2, 64, 32, seed=15)[:5]]
    s0 = torch.randn(1, 2, 64, 32, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.decayfw.decay_fwd_train.default, (*x, s0))
    _, _, states = torch.ops.decayfw.decay_fwd_train(*x, s0)
    dy = torch.randn(1, 130, 2, 64, device="cuda", dtype=torch.bfloat16)
    torch.library.opcheck(torch.ops.decayfw.decay_bwd.default,
                          tuple(t.detach() for t in (*x, s0)) + (dy, None, states.detach()))


@pytest.mark.parametrize("save", [True, False])
def test_training_memory_is_chunk_boundary_states(save, path):
    """Training memory beyond inputs, y and gradients: the chunk-boundary states (kept from the
    forward, or recomputed by the backward), (T/C + 1)·D·M fp32 per sequence, and their gradients,
    T/C·D·M in the input type (bf16 here); never O(T·D·M). T2FW's design keeps two fp16 histories of every state (the saved states and the
    state gradients), 2·T·D·M·2 bytes per sequence."""
    path("chunk")
    B, T, H, D, M = 1, 8192, 16, 128, 64
    ins = [t.requires_grad_(True) for t in (torch.randn(B, T, H, X, device="cuda", dtype=torch.bfloat16)
                                            for X in (M, M, D, D, M))]
    dy = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    y = decay_fast_weights(*ins, save_chunk_states=save)
    kept = torch.cuda.memory_allocated() - base - y.numel() * 2  # what the graph holds for the backward
    y.backward(dy)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    N, chunks = B * H, T // 64
    states = 4 * N * (chunks + 1) * D * M
    assert (kept >= states) if save else (kept < (1 << 20)), kept
    grads = sum(t.numel() * 2 for t in ins)
    bound = y.numel() * 2 + grads + 4 * N * (chunks + 1) * D * M + 2 * N * chunks * D * M + (1 << 20)
    store_all = 2 * N * T * D * M * 2
    assert extra <= bound, (extra, bound)
    assert extra - grads <= store_all / 16


# Sizes for the tests that compare two launch choices bit for bit: every operand type, one to three row
# tiles, chunk boundaries, and the smallest and largest compiled key dimensions.
SAME_BITS_CASES = [(torch.bfloat16, (2, 300, 2, 128, 64)), (torch.float16, (1, 130, 3, 64, 16)),
                   (torch.bfloat16, (1, 100, 1, 192, 128)), (torch.float32, (2, 70, 1, 64, 32))]


def same_bits_problem(dtype, size, seed):
    """Inputs (dtype, on the GPU), an initial state and the gradients flowing into y and S_T."""
    B, T, H, D, M = size
    x = [t.to(dtype).cuda() for t in make(B, T, H, D, M, seed=seed)[:5]]
    s0, dsT = torch.randn(B, H, D, M, device="cuda"), torch.randn(B, H, D, M, device="cuda")
    return x, s0, dsT, torch.randn(B, T, H, D, device="cuda", dtype=dtype)


def expect_same_bits_for_each(variable, values, problem, monkeypatch, rounded=()):
    """Every output of both forward forms and the backward, once per value of an environment variable that
    steers the chunk kernels: all bit-identical, but those whose index (in forward_and_grads' list) is in
    `rounded`, which must agree within 2e-2 of their largest magnitude."""
    results = []
    for value in values:
        monkeypatch.setenv(variable, value)
        out = []
        for form in ("split", "fused"):
            monkeypatch.setenv("DECAYFW_CHUNK_FORWARD", form)
            out += forward_and_grads(*problem)
        results.append(out)
    for value, other in zip(values[1:], results[1:]):
        for i, (a, b) in enumerate(zip(results[0], other)):
            if i % 8 in rounded:
                a, b = a.double(), b.double()
                assert (a - b).abs().max() <= 2e-2 * max(1.0, a.abs().max().item()), (variable, values[0], value, i)
            else:
                assert torch.equal(a, b), (variable, values[0], value, i)


def forward_and_grads(x, s0, dy, dsT):
    """y, S_T and the gradients of every input and of S0, through decay_fast_weights."""
    xs = [t.detach().requires_grad_(True) for t in x] + [s0.detach().requires_grad_(True)]
    y, sT = decay_fast_weights(*xs[:5], initial_state=xs[5], output_final_state=True)
    return [y, sT] + list(torch.autograd.grad((y * dy).sum() + (sT * dsT).sum(), xs))


@pytest.mark.parametrize("dtype,size", SAME_BITS_CASES)
def test_fused_and_split_forwards_give_the_same_bits(dtype, size, path, monkeypatch):
    """DECAYFW_CHUNK_FORWARD=fused runs forward_pass alone, split runs state_pass and output_pass: the
    same values in the same order (tests/cpp: FusedForwardGivesTheSameBitsAsTheSplitPair), so S_T, the
    training forward's chunk states and every gradient are bit-identical on the device too; y is
    computed in another kernel, where nvcc may contract other products into FMAs, so it is held to two
    roundings of its type."""
    path("chunk")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    x, s0, dsT, dy = same_bits_problem(dtype, size, seed=16)
    results = []
    for form in ("split", "fused"):
        monkeypatch.setenv("DECAYFW_CHUNK_FORWARD", form)
        inference = torch.ops.decayfw.decay_fwd(*x, s0)
        train = torch.ops.decayfw.decay_fwd_train(*x, s0)
        results.append(list(inference) + list(train) + forward_and_grads(x, s0, dy, dsT))
    unit = {torch.bfloat16: 2 ** -8, torch.float16: 2 ** -11, torch.float32: 2 ** -23}[dtype]
    for i, (a, b) in enumerate(zip(*results)):
        if i in (0, 2, 5):  # y of decay_fwd, decay_fwd_train and decay_fast_weights
            assert rel(a, b) <= 2 * unit, (i, rel(a, b))
        else:
            assert torch.equal(a, b), i


def test_fused_inference_forward_allocates_no_chunk_states(path, monkeypatch):
    """decay_fwd (no gradients wanted) on the fused form writes y and S_T only: beyond them it needs
    no memory, where the split form allocates the (T/C + 1)·D·M fp32 chunk states per sequence."""
    path("chunk")
    B, T, H, D, M = 1, 4096, 8, 128, 64
    x = [torch.randn(B, T, H, X, device="cuda", dtype=torch.bfloat16) for X in (M, M, D, D, M)]
    states = 4 * B * H * (T // 64 + 1) * D * M
    outputs = 2 * B * T * H * D + 4 * B * H * D * M
    for form in ("fused", "split"):
        monkeypatch.setenv("DECAYFW_CHUNK_FORWARD", form)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        y, sT = torch.ops.decayfw.decay_fwd(*x, None)
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        if form == "fused":
            assert extra <= outputs + (1 << 20), extra
        else:
            assert extra >= outputs + states, extra
        del y, sT


@pytest.mark.parametrize("variable,value,message", [
    ("DECAYFW_CHUNK_FORWARD", "both", "DECAYFW_CHUNK_FORWARD must be auto, fused or split, got 'both'"),
    ("DECAYFW_CHUNK_THREADS", "384", "DECAYFW_CHUNK_THREADS must be auto, 256 or 512, got '384'"),
    ("DECAYFW_CHUNK_DIAGONAL", "fast",
     "DECAYFW_CHUNK_DIAGONAL must be auto, factored, elementwise, tensor or chunk, got 'fast'"),
    ("DECAYFW_CHUNK_CHAIN", "yes", "DECAYFW_CHUNK_CHAIN must be auto, on or off, got 'yes'"),
    ("DECAYFW_CHUNK_GRAD_PHASES", "two", "DECAYFW_CHUNK_GRAD_PHASES must be auto, four or one, got 'two'"),
])
def test_bad_chunk_steering_value_is_refused(variable, value, message, path, monkeypatch):
    """Each variable that steers the chunk kernels refuses a value it does not know, naming itself."""
    path("chunk")
    monkeypatch.setenv(variable, value)
    x = [torch.randn(1, 100, 1, X, device="cuda", dtype=torch.bfloat16) for X in (32, 32, 64, 64, 32)]
    with pytest.raises(RuntimeError, match=message):
        decay_fast_weights(*x)


@pytest.mark.parametrize("dtype,size", SAME_BITS_CASES)
def test_thread_counts_give_the_same_bits(dtype, size, path, monkeypatch):
    """DECAYFW_CHUNK_THREADS=256|512 launches every chunk kernel with 8 or 16 warps: each index of a
    phase is still one thread's work and each output tile one warp's, in the same order, so every
    output of both forward forms and the backward is bit-identical."""
    path("chunk")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    x, s0, dsT, dy = same_bits_problem(dtype, size, seed=17)
    expect_same_bits_for_each("DECAYFW_CHUNK_THREADS", ("256", "512", "auto"), (x, s0, dy, dsT), monkeypatch)


@pytest.mark.parametrize("dtype,size", SAME_BITS_CASES)
@pytest.mark.parametrize("diagonal", ["chunk", "factored"])
def test_chained_products_give_the_same_bits(dtype, size, diagonal, path, monkeypatch):
    """DECAYFW_CHUNK_CHAIN=on|off (auto: on): a chunk taken whole (gate logits N(2, 1): every chunk here, in both
    forms) computes its y with the masked product kept in registers between its two multiplications (mma.sync,
    DeviceCta::gemm_chain), or through shared memory (WMMA). The same fp32 sums in the same order, the product
    rounded alike, so every output of both forward forms and the backward is bit-identical (as on the host
    executor: ChainedProductsGiveTheSameBits). In the chunk form the gradient's dV and dK are chains too, with
    dS_end rounded once more (chunk_grad_chains): there y, S_T and dq keep their bits and dk, dv and the gate and
    state gradients agree within 2e-2 (the host measured up to 1.3e-2). fp32 and fp16 never chain, so they
    compare a form with itself. Should the two tensor-core instruction sets sum differently after all, this fails
    where the tolerance tests still pass: the kernels are then right, and only the bits of the two choices
    differ (both instructions are HMMA.16816 by the machine code: benchmarks/sass_report.py)."""
    path("chunk")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setenv("DECAYFW_CHUNK_DIAGONAL", diagonal)
    x, s0, dsT, dy = same_bits_problem(dtype, size, seed=29)
    rounded = (3, 4, 5, 6, 7) if diagonal == "chunk" and dtype == torch.bfloat16 else ()  # dk, dv, dz, df, ds0
    expect_same_bits_for_each("DECAYFW_CHUNK_CHAIN", ("on", "off", "auto"), (x, s0, dy, dsT), monkeypatch,
                              rounded=rounded)


@pytest.mark.parametrize("dtype,size", SAME_BITS_CASES)
def test_grad_pass_in_one_phase_gives_the_same_bits(dtype, size, path, monkeypatch):
    """DECAYFW_CHUNK_GRAD_PHASES=four|one (auto: four): grad_pass runs the chunk form's four chains (y, dV, dQ, dK)
    as four phases of two warps a 16-row block, or side by side in one phase at 256 threads, one warp a block
    (grad_pass_one_phase_kernel). Each element's products are summed in the same order either way, so every output
    is bit-identical (as on the host executor: GradOnePhaseGivesTheSameBits). fp32 never chains and fp16 takes no
    chunk form: there the one-phase kernel differs only in its thread count."""
    path("chunk")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setenv("DECAYFW_CHUNK_DIAGONAL", "chunk")
    x, s0, dsT, dy = same_bits_problem(dtype, size, seed=31)
    expect_same_bits_for_each("DECAYFW_CHUNK_GRAD_PHASES", ("four", "one", "auto"), (x, s0, dy, dsT), monkeypatch)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2)])
def test_grad_pass_in_one_phase_matches_the_fp64_cpu_op(dtype, tol, path, monkeypatch):
    """The one-phase grad_pass against the oracle, with a partial last chunk and two heads."""
    path("chunk")
    monkeypatch.setenv("DECAYFW_CHUNK_DIAGONAL", "chunk")
    monkeypatch.setenv("DECAYFW_CHUNK_GRAD_PHASES", "one")
    q, k, v, z, f, s0 = make(2, 333, 2, 128, 64, seed=5)
    expect_close_to_the_cpu_op((q, k, v, z, f), s0, torch.randn_like(v), torch.randn_like(s0), dtype, tol)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2)])
def test_chunk_form_without_chained_products_matches_the_fp64_cpu_op(dtype, tol, path, monkeypatch):
    """DECAYFW_CHUNK_CHAIN=off (the products through shared memory) against the oracle, as the chained default
    is by the other tests."""
    path("chunk")
    monkeypatch.setenv("DECAYFW_CHUNK_DIAGONAL", "chunk")
    monkeypatch.setenv("DECAYFW_CHUNK_CHAIN", "off")
    q, k, v, z, f, s0 = make(2, 333, 2, 128, 64, seed=4)
    expect_close_to_the_cpu_op((q, k, v, z, f), s0, torch.randn_like(v), torch.randn_like(s0), dtype, tol)


# Gate logits N(−2, 3²): over 16 rows some columns' log gates span more than 40 ("wide", taken per pair)
# and the others less ("narrow": factored in fp32, or on tensor cores), in every sub-chunk.
MIXED_SPANS = dict(gate_mean=-2.0, gate_spread=3.0)


# bf16 with the tensor-core diagonal: 3e-2 (its products are rounded to bf16 like the off-diagonal ones;
# the host tests of the same programs measured up to 2.2e-2 in the gate gradients for these gates).
@pytest.mark.parametrize("dtype,tol,tensor_tol", [(torch.bfloat16, 2e-2, 3e-2), (torch.float32, 4e-3, 4e-3),
                                                  (torch.float16, 4e-3, 4e-3)])
@pytest.mark.parametrize("diagonal", ["factored", "elementwise", "tensor", "chunk", "auto"])
def test_every_diagonal_form_matches_the_fp64_cpu_op(dtype, tol, tensor_tol, diagonal, path, monkeypatch):
    """DECAYFW_CHUNK_DIAGONAL=factored|elementwise|tensor|chunk (auto: factored): the narrow columns of the
    diagonal blocks factored in fp32, per pair, or on tensor cores (the wide ones per pair in every form);
    each against the oracle, with gates that give both kinds of columns (and so no chunk the chunk form
    takes whole, but the last, partial one: test_chunk_form_takes_whole_chunks)."""
    tol = tensor_tol if diagonal in ("tensor", "chunk") else tol
    path("chunk")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setenv("DECAYFW_CHUNK_DIAGONAL", diagonal)
    q, k, v, z, f, s0 = make(2, 333, 2, 128, 64, seed=3, **MIXED_SPANS)
    expect_close_to_the_cpu_op((q, k, v, z, f), s0, torch.randn_like(v), torch.randn_like(s0), dtype, tol)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float32, 4e-3), (torch.float16, 4e-3)])
def test_chunk_form_takes_whole_chunks(dtype, tol, path, monkeypatch):
    """DECAYFW_CHUNK_DIAGONAL=chunk with gate logits N(2, 1): every chunk's gates span far less than 40, so
    every chunk is taken whole, but for three set otherwise: chunk 1's second row tile (rows 64..127 of D)
    and chunk 2's first forget fast (logits −2: the tile takes the sub-chunks, the other stays whole), and
    one key column of chunk 4 (no tile whole). Against the oracle; fp16 runs the factored form."""
    path("chunk")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setenv("DECAYFW_CHUNK_DIAGONAL", "chunk")
    q, k, v, z, f, s0 = make(2, 333, 2, 128, 64, seed=4)
    z[:, 64:128, :, 64:] = -2.0
    z[:, 128:192, :, :64] = -2.0
    f[:, 256:320, :, 5] = -2.0
    expect_close_to_the_cpu_op((q, k, v, z, f), s0, torch.randn_like(v), torch.randn_like(s0), dtype, tol)


@pytest.mark.parametrize("dtype,same", [(torch.bfloat16, False), (torch.float32, False), (torch.float16, True)])
def test_diagonal_forms_differ_only_where_tensor_cores_can_take_them(dtype, same, path, monkeypatch):
    """The tensor and factored forms round differently where the diagonal takes the tensor cores (bf16,
    tf32), so their outputs differ; fp16 has no room for the scaled operands and runs the factored form
    either way, bit for bit. The factored form differs from the per-pair one in every type (other fp32
    products), and auto is the factored form, bit for bit."""
    path("chunk")
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    x, s0, dsT, dy = same_bits_problem(dtype, (1, 200, 2, 128, 32), seed=23)
    outs = {}
    for diagonal in ("tensor", "elementwise", "factored", "auto", "chunk"):
        monkeypatch.setenv("DECAYFW_CHUNK_DIAGONAL", diagonal)
        outs[diagonal] = forward_and_grads(x, s0, dy, dsT)
    same_bits = lambda a, b: all(torch.equal(x, y) for x, y in zip(outs[a], outs[b]))
    assert same_bits("tensor", "factored") == same
    # The chunk form takes these chunks whole (gate logits N(2, 1)): other products than the tensor form's.
    assert same_bits("chunk", "tensor") == same and same_bits("chunk", "factored") == same
    assert not same_bits("factored", "elementwise")
    assert same_bits("factored", "auto")
