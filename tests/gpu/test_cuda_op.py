"""CUDA decay op against the fp64 CPU op (the oracle). Runs only where a GPU and a CUDA build of
decayfw are present (the H100 machine); CI has neither and skips the whole file."""
import pytest
import torch

from decayfw import decay_fast_weights, decay_step

from gpu_cases import make, rel, requires_gpu, saturated

pytestmark = requires_gpu


def cpu_reference(q, k, v, z, f, s0, dy, ds):
    ins = [t.clone().requires_grad_(True) for t in (q, k, v, z, f, s0)]
    y, s = decay_fast_weights(*ins[:5], initial_state=ins[5], output_final_state=True)
    grads = torch.autograd.grad((y * dy).sum() + (s * ds).sum(), ins)
    return y, s, grads


SIZES = [(2, 1, 2, 64, 16), (2, 65, 3, 64, 32), (1, 300, 4, 128, 64), (2, 100, 2, 128, 128),
         (1, 77, 2, 33, 5), (3, 129, 1, 100, 200)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_forward_and_every_gradient_match_the_fp64_cpu_op(size, dtype, tol):
    q, k, v, z, f, s0 = make(*size)
    y, s, grads = cpu_reference(q, k, v, z, f, s0, dy := torch.randn_like(v), ds := torch.randn_like(s0))
    sdt = torch.float64 if dtype == torch.float64 else torch.float32
    ins = [t.to("cuda", dtype).requires_grad_(True) for t in (q, k, v, z, f)]
    s0c = s0.to("cuda", sdt).requires_grad_(True)
    yc, sc = decay_fast_weights(*ins, initial_state=s0c, output_final_state=True)
    gc = torch.autograd.grad((yc * dy.to("cuda", dtype)).sum() + (sc * ds.to("cuda", sdt)).sum(), ins + [s0c])
    assert rel(yc, y) < tol and rel(sc, s) < tol
    for name, a, b in zip("q k v z f s0".split(), gc, grads):
        assert rel(a, b) < 10 * tol, name


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 4e-3)])
def test_16_bit_inputs_with_fp32_state(dtype, tol):
    q, k, v, z, f, s0 = make(2, 500, 4, 64, 64)
    ins = [t.to(dtype) for t in (q, k, v, z, f)]
    y, s = decay_fast_weights(*[t.double() for t in ins], initial_state=s0, output_final_state=True)
    yc, sc = decay_fast_weights(*[t.cuda() for t in ins], initial_state=s0.float().cuda(), output_final_state=True)
    assert yc.dtype == dtype and sc.dtype == torch.float32
    assert rel(yc, y) < tol and rel(sc, s) < 1e-4


def test_segments_and_decode_steps():
    q, k, v, z, f, s0 = (t.float().cuda() for t in make(2, 90, 3, 64, 32))
    y, s = decay_fast_weights(q, k, v, z, f, s0, output_final_state=True)
    y1, s1 = decay_fast_weights(q[:, :37], k[:, :37], v[:, :37], z[:, :37], f[:, :37], s0, output_final_state=True)
    y2, s2 = decay_fast_weights(q[:, 37:], k[:, 37:], v[:, 37:], z[:, 37:], f[:, 37:], s1, output_final_state=True)
    assert rel(torch.cat([y1, y2], 1), y) < 1e-5 and rel(s2, s) < 1e-5
    state = s0.clone()
    for t in range(90):
        yt = decay_step(q[:, t], k[:, t], v[:, t], z[:, t], f[:, t], state)
        assert rel(yt, y[:, t]) < 1e-5
    assert rel(state, s) < 1e-5


def test_decode_step_is_cuda_graph_capturable():
    q, k, v, z, f, s0 = (t.float().cuda() for t in make(4, 1, 8, 128, 64))
    state = s0.clone()
    args = [t[:, 0].contiguous() for t in (q, k, v, z, f)]
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        decay_step(*args, state)  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(s)
    state.copy_(s0)
    with torch.cuda.graph(g):
        y = decay_step(*args, state)
    state.copy_(s0)
    g.replay()
    g.replay()
    ref_state = s0.clone()
    decay_step(*args, ref_state)
    ref = decay_step(*args, ref_state)
    torch.cuda.synchronize()
    assert rel(y, ref) < 1e-6 and rel(state, ref_state) < 1e-6


def test_saturated_gates_over_65536_tokens():
    T, D, M = 65536, 64, 16
    q, k, v, z, f = saturated(T, D, M)
    y, s = decay_fast_weights(q, k, v, z, f, output_final_state=True)
    ins = [t.float().cuda().requires_grad_(True) for t in (q, k, v, z, f)]
    yc, sc = decay_fast_weights(*ins, output_final_state=True)
    assert torch.isfinite(yc).all() and torch.isfinite(sc).all()
    assert rel(yc, y) < 1e-3
    (yc.sum() + sc.sum()).backward()
    for t in ins:
        assert torch.isfinite(t.grad).all()


def test_time_first_strided_inputs():
    T, B, H, D, M = 50, 3, 2, 64, 32
    x = [torch.randn(T, B, H, X, device="cuda") for X in (M, M, D, D, M)]
    a = decay_fast_weights(*(t.transpose(0, 1) for t in x))
    b = decay_fast_weights(*(t.transpose(0, 1).contiguous() for t in x))
    assert torch.equal(a, b)


@pytest.mark.parametrize("rule", ["add", "gated", "delta"])
def test_other_rules_on_cuda_equal_the_cpu_op(rule):
    """add and gated run through the decay CUDA op with unit gates; delta through the chunked loop."""
    from decayfw import rules
    g = torch.Generator().manual_seed(3)
    B, T, H, D, M = 2, 150, 3, 64, 32
    q = torch.randn(B, T, H, M, generator=g, dtype=torch.float64) / M ** 0.5
    k = torch.softmax(torch.randn(B, T, H, M, generator=g, dtype=torch.float64), -1)
    v = torch.randn(B, T, H, D, generator=g, dtype=torch.float64)
    logit = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    fn = {"add": lambda q, k, v, l, **kw: rules.add_fast_weights(q, k, v, **kw),
          "gated": rules.gated_fast_weights, "delta": rules.delta_fast_weights}[rule]

    def run(device):
        ins = [t.to(device).float().requires_grad_(True) for t in (q, k, v, logit)]
        y, s = fn(*ins, output_final_state=True)
        grads = torch.autograd.grad(y.square().sum() + s.sum(), ins, allow_unused=True)
        return y, s, grads

    y_c, s_c, g_c = run("cpu")
    y_g, s_g, g_g = run("cuda")
    assert rel(y_g, y_c) < 1e-4 and rel(s_g, s_c) < 1e-4
    for a, b in zip(g_g, g_c):
        if b is not None:
            assert rel(a, b) < 1e-3


@pytest.mark.parametrize("D,M,dtype", [(128, 64, torch.bfloat16), (100, 20, torch.float32), (64, 256, torch.float16),
                                       (33, 5, torch.float32)])
def test_vector_step_equals_the_recurrent_step(D, M, dtype, monkeypatch):
    """decay_step uses the vectorised step kernel (M a multiple of 4, fp32 state) unless
    DECAYFW_CUDA_PATH=recurrent; M = 5 falls back to the recurrent kernel by itself."""
    q, k, v, z, f, s0 = make(3, 1, 4, D, M)
    args = [t[:, 0].to("cuda", dtype).contiguous() for t in (q, k, v, z, f)]
    out = {}
    for path in ("auto", "recurrent"):
        monkeypatch.setenv("DECAYFW_CUDA_PATH", path)
        state = s0.float().cuda()
        ys = [decay_step(*args, state) for _ in range(3)]
        out[path] = (torch.stack(ys), state)
    assert rel(out["auto"][0], out["recurrent"][0]) < (1e-2 if dtype != torch.float32 else 1e-6)
    assert rel(out["auto"][1], out["recurrent"][1]) < 1e-6
