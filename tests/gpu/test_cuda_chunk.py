"""The chunkwise tensor-core CUDA path against the fp64 CPU op (the oracle), and the choice between
it and the recurrent path. The same programs run on CPU in tests/cpp/test_chunk_program.cpp; this
file checks the device executor (WMMA fragments, the warp split, shared memory) and the launcher.
Runs only where a GPU and a CUDA build of decayfw are present; CI skips it."""
import pytest
import torch

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
SIZES = [(2, 1, 2, 64, 32), (2, 63, 1, 64, 32), (1, 64, 2, 64, 64), (2, 65, 3, 128, 64), (1, 300, 2, 64, 16),
         (1, 257, 2, 128, 128), (1, 200, 1, 192, 32), (4, 1000, 4, 128, 64)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3), (torch.float32, 4e-3)])
def test_chunk_path_matches_the_fp64_cpu_op(size, dtype, tol, path):
    path("chunk")
    q, k, v, z, f, s0 = make(*size)
    dy, ds = torch.randn_like(v), torch.randn_like(s0)
    want = run((q, k, v, z, f), s0, dy, ds, "cpu", dtype)
    got = run((q, k, v, z, f), s0, dy, ds, "cuda", dtype)
    for name, a, b in zip(NAMES, got, want):
        assert torch.isfinite(a).all(), name
        assert rel(a, b) < tol, f"{name}: {rel(a, b):.2e}"


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
    ds = torch.zeros_like(s0)
    want = run((q, k, v, z, f), s0, dy, ds, "cpu", torch.bfloat16)
    got = run((q, k, v, z, f), s0, dy, ds, "cuda", torch.bfloat16)
    for name, a, b in zip(NAMES, got, want):
        assert torch.isfinite(a).all(), name
        assert rel(a, b) < 2e-2, f"{name}: {rel(a, b):.2e}"


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


def test_backward_memory_is_chunk_boundary_states(path):
    """Training memory beyond inputs and gradients: the chunk-boundary states and their gradients,
    (2·T/C + 1)·D·M fp32 per sequence; never O(T·D·M). T2FW's design keeps two fp16 histories of
    every state (the saved states and the state gradients), 2·T·D·M·2 bytes per sequence."""
    path("chunk")
    B, T, H, D, M = 1, 8192, 16, 128, 64
    ins = [t.requires_grad_(True) for t in (torch.randn(B, T, H, X, device="cuda", dtype=torch.bfloat16)
                                            for X in (M, M, D, D, M))]
    y = decay_fast_weights(*ins)
    dy = torch.randn_like(y)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    y.backward(dy)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base
    N, chunks = B * H, T // 64
    grads = sum(t.numel() * 2 for t in ins)
    bound = grads + 4 * N * (2 * chunks + 1) * D * M + (1 << 20)
    store_all = 2 * N * T * D * M * 2
    assert extra <= bound, (extra, bound)
    assert extra - grads <= store_all / 16
