"""decayfw.ops: the native op through torch.ops against the pure-PyTorch reference, autograd,
segments, decode steps and argument errors."""
import os
import subprocess
import sys

import pytest
import torch

import decayfw
from decayfw import decay_fast_weights, decay_step
from decayfw.reference import decay_fast_weights_reference

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def make(B=2, T=9, H=3, D=5, M=4, dtype=torch.float64, requires_grad=False, gate_mean=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, f = (torch.randn(B, T, H, M, generator=g, dtype=dtype) for _ in range(3))
    v, z = (torch.randn(B, T, H, D, generator=g, dtype=dtype) for _ in range(2))
    z, f = z + gate_mean, f + gate_mean
    s0 = torch.randn(B, H, D, M, generator=g, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    ts = [q, k, v, z, f, s0]
    if requires_grad:
        for t in ts:
            t.requires_grad_(True)
    return ts


def test_extension_is_loaded_and_ops_are_registered():
    assert decayfw.HAS_EXTENSION, decayfw._loader.LOAD_ERROR
    assert hasattr(torch.ops.decayfw, "decay_fwd") and hasattr(torch.ops.decayfw, "decay_step")
    assert isinstance(decayfw.__version__, str)


def test_gradcheck_every_input_including_initial_state():
    inputs = make(B=1, T=5, H=2, D=3, M=2, requires_grad=True)
    fn = lambda q, k, v, z, f, s0: decay_fast_weights(q, k, v, z, f, initial_state=s0, output_final_state=True)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_without_initial_state_and_only_output_used():
    q, k, v, z, f, _ = make(B=2, T=4, H=1, D=2, M=3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: decay_fast_weights(*a), (q, k, v, z, f), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 1), (2, 17, 3, 16, 8), (1, 300, 2, 64, 32), (3, 40, 4, 128, 64)])
def test_fp32_op_equals_reference(shape):
    B, T, H, D, M = shape
    q, k, v, z, f, s0 = make(B, T, H, D, M, dtype=torch.float32)
    q, k = q / M ** 0.5, k / M ** 0.5
    y, s = decay_fast_weights(q, k, v, z, f, initial_state=s0, output_final_state=True)
    yr, sr = decay_fast_weights_reference(q.double(), k.double(), v.double(), z.double(), f.double(), s0.double())
    scale = max(1.0, yr.abs().max().item())
    assert (y.double() - yr).abs().max().item() / scale < 1e-5
    assert (s.double() - sr).abs().max().item() / max(1.0, sr.abs().max().item()) < 1e-5


def test_fp32_gradients_equal_reference_autograd():
    q, k, v, z, f, s0 = make(2, 30, 2, 16, 8, dtype=torch.float32, requires_grad=True)
    y, s = decay_fast_weights(q, k, v, z, f, initial_state=s0, output_final_state=True)
    dy, ds = torch.randn_like(y), torch.randn_like(s)
    grads = torch.autograd.grad((y * dy).sum() + (s * ds).sum(), [q, k, v, z, f, s0])
    yr, sr = decay_fast_weights_reference(q, k, v, z, f, s0)
    ref = torch.autograd.grad((yr * dy).sum() + (sr * ds).sum(), [q, k, v, z, f, s0])
    for name, a, b in zip("q k v z f s0".split(), grads, ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), name


def test_segments_with_carried_state_equal_one_pass():
    q, k, v, z, f, s0 = make(2, 30, 2, 8, 4, dtype=torch.float32)
    y, s = decay_fast_weights(q, k, v, z, f, s0, output_final_state=True)
    y1, s1 = decay_fast_weights(*(t[:, :11] for t in (q, k, v, z, f)), s0, output_final_state=True)
    y2, s2 = decay_fast_weights(*(t[:, 11:] for t in (q, k, v, z, f)), s1, output_final_state=True)
    assert torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6)
    assert torch.allclose(s2, s, atol=1e-6)


def test_decode_steps_equal_forward_and_update_state_in_place():
    q, k, v, z, f, s0 = make(2, 12, 3, 8, 4, dtype=torch.float32)
    y, s = decay_fast_weights(q, k, v, z, f, s0, output_final_state=True)
    state = s0.clone()
    ptr = state.data_ptr()
    for t in range(12):
        yt = decay_step(q[:, t], k[:, t], v[:, t], z[:, t], f[:, t], state)
        assert torch.allclose(yt, y[:, t], atol=1e-6)
    assert state.data_ptr() == ptr and torch.allclose(state, s, atol=1e-6)


def test_time_first_views_need_no_copy_and_match():
    T, B, H, D, M = 6, 3, 2, 4, 4
    x = [torch.randn(T, B, H, X) for X in (M, M, D, D, M)]
    y_view = decay_fast_weights(*(t.transpose(0, 1) for t in x))
    y_cont = decay_fast_weights(*(t.transpose(0, 1).contiguous() for t in x))
    assert torch.equal(y_view, y_cont)
    assert y_view.transpose(0, 1).is_contiguous()  # output keeps the time-first layout


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_inputs_keep_an_fp32_state(dtype):
    q, k, v, z, f, s0 = make(1, 50, 2, 16, 8, dtype=torch.float32)
    ins = [t.to(dtype) for t in (q, k, v, z, f)]
    y, s = decay_fast_weights(*ins, initial_state=s0, output_final_state=True)
    assert y.dtype == dtype and s.dtype == torch.float32
    y32, s32 = decay_fast_weights(*(t.float() for t in ins), initial_state=s0, output_final_state=True)
    assert torch.allclose(s, s32, rtol=1e-5, atol=1e-5)


def test_bad_inputs_name_the_argument():
    q, k, v, z, f, s0 = make(2, 5, 3, 4, 2, dtype=torch.float32)
    with pytest.raises(ValueError, match="'k'.*rank 4"):
        decay_fast_weights(q, k[..., 0], v, z, f)
    with pytest.raises(ValueError, match=r"'f'.*\[2, 5, 3, 2\]"):
        decay_fast_weights(q, k, v, z, f[:, :4])
    with pytest.raises(ValueError, match="'z'.*dtype"):
        decay_fast_weights(q, k, v, z.double(), f)
    with pytest.raises(ValueError, match="'v'.*dtype"):
        decay_fast_weights(q, k, v.int(), z, f)
    with pytest.raises(ValueError, match="'initial_state'.*\\[B, H, D, M\\]"):
        decay_fast_weights(q, k, v, z, f, initial_state=s0[:, :2])
    with pytest.raises(ValueError, match="'initial_state'.*float32"):
        decay_fast_weights(q, k, v, z, f, initial_state=s0.double())
    with pytest.raises(ValueError, match="'state'"):
        decay_step(q[:, 0], k[:, 0], v[:, 0], z[:, 0], f[:, 0], s0.transpose(2, 3))
    with pytest.raises(TypeError, match="'q'"):
        decay_fast_weights(None, k, v, z, f)
    with pytest.raises(RuntimeError, match="empty"):
        decay_fast_weights(q[:, :0], k[:, :0], v[:, :0], z[:, :0], f[:, :0])


@pytest.mark.skipif(decayfw.BUILT_WITH_CUDA, reason="only meaningful for a CPU-only build")
def test_cuda_tensor_without_cuda_build_is_refused():
    q, k, v, z, f, _ = make(1, 2, 1, 2, 2, dtype=torch.float32)
    meta = [t.to("meta") for t in (q, k, v, z, f)]
    with pytest.raises(ValueError, match="'q' is on meta"):
        decay_fast_weights(*meta)
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        with pytest.raises(ValueError, match="built without CUDA"):
            decay_fast_weights(*(t.cuda() for t in (q, k, v, z, f)))


def test_missing_extension_falls_back_with_a_warning():
    code = ("import warnings, torch\n"
            "warnings.simplefilter('always')\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    import decayfw\n"
            "assert not decayfw.HAS_EXTENSION\n"
            "assert any('pure-PyTorch reference' in str(x.message) for x in w), [str(x.message) for x in w]\n"
            "q = torch.randn(1, 3, 1, 2); v = torch.randn(1, 3, 1, 2)\n"
            "y = decayfw.decay_fast_weights(q, q, v, v, q)\n"
            "assert y.shape == (1, 3, 1, 2)\n")
    env = dict(os.environ, DECAYFW_DISABLE_EXTENSION="1",
               PYTHONPATH=os.path.join(ROOT, "bindings", "python"))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.skipif(not getattr(decayfw._loader, "NATIVE_AUTOGRAD", False), reason="needs torch >= 2.4")
def test_torch_compile_fullgraph():  # pragma: no cover - runs on torch 2.x only
    q, k, v, z, f, s0 = make(1, 8, 2, 4, 4, dtype=torch.float32, requires_grad=True)
    fn = torch.compile(lambda *a: decay_fast_weights(*a, output_final_state=True), fullgraph=True)
    y, s = fn(q, k, v, z, f, s0)
    (y.sum() + s.sum()).backward()
    ye, se = decay_fast_weights(q, k, v, z, f, s0, output_final_state=True)
    assert torch.allclose(y, ye) and q.grad is not None


def test_cuda_path_sets_and_restores_the_choice(monkeypatch):
    import os
    monkeypatch.delenv("DECAYFW_CUDA_PATH", raising=False)
    with decayfw.cuda_path("chunk"):
        assert os.environ["DECAYFW_CUDA_PATH"] == "chunk"
        with decayfw.cuda_path("recurrent"):
            assert os.environ["DECAYFW_CUDA_PATH"] == "recurrent"
        assert os.environ["DECAYFW_CUDA_PATH"] == "chunk"
    assert "DECAYFW_CUDA_PATH" not in os.environ
    with pytest.raises(ValueError, match="expected one of auto, chunk, recurrent, got 'fast'"):
        with decayfw.cuda_path("fast"):
            pass


def test_chunk_forward_sets_and_restores_the_choice(monkeypatch):
    import os
    monkeypatch.setenv("DECAYFW_CHUNK_FORWARD", "split")
    with decayfw.chunk_forward("fused"):
        assert os.environ["DECAYFW_CHUNK_FORWARD"] == "fused"
        with pytest.raises(RuntimeError, match="inner"):
            with decayfw.chunk_forward("auto"):
                assert os.environ["DECAYFW_CHUNK_FORWARD"] == "auto"
                raise RuntimeError("inner")  # restored on the way out of an error too
        assert os.environ["DECAYFW_CHUNK_FORWARD"] == "fused"
    assert os.environ["DECAYFW_CHUNK_FORWARD"] == "split"
    with pytest.raises(ValueError, match="expected one of auto, fused, split, got 'both'"):
        with decayfw.chunk_forward("both"):
            pass
    assert os.environ["DECAYFW_CHUNK_FORWARD"] == "split"


def test_chunk_diagonal_sets_and_restores_the_choice(monkeypatch):
    import os
    monkeypatch.delenv("DECAYFW_CHUNK_DIAGONAL", raising=False)
    with decayfw.chunk_diagonal("elementwise"):
        assert os.environ["DECAYFW_CHUNK_DIAGONAL"] == "elementwise"
        with decayfw.chunk_diagonal("tensor"):
            assert os.environ["DECAYFW_CHUNK_DIAGONAL"] == "tensor"
            with decayfw.chunk_diagonal("factored"):
                assert os.environ["DECAYFW_CHUNK_DIAGONAL"] == "factored"
                with decayfw.chunk_diagonal("chunk"):
                    assert os.environ["DECAYFW_CHUNK_DIAGONAL"] == "chunk"
                assert os.environ["DECAYFW_CHUNK_DIAGONAL"] == "factored"
            assert os.environ["DECAYFW_CHUNK_DIAGONAL"] == "tensor"
        assert os.environ["DECAYFW_CHUNK_DIAGONAL"] == "elementwise"
    assert "DECAYFW_CHUNK_DIAGONAL" not in os.environ
    with pytest.raises(ValueError, match="expected one of auto, factored, elementwise, tensor, chunk, got 'fast'"):
        with decayfw.chunk_diagonal("fast"):
            pass
    assert "DECAYFW_CHUNK_DIAGONAL" not in os.environ


def test_saving_chunk_states_or_not_gives_the_same_gradients():
    grads = []
    for save in (True, False):
        q, k, v, z, f, s0 = make(2, 70, 2, 8, 4, dtype=torch.float32, requires_grad=True, seed=3)
        y, s = decay_fast_weights(q, k, v, z, f, s0, output_final_state=True, save_chunk_states=save)
        (y.square().sum() + s.sum()).backward()
        grads.append([t.grad for t in (q, k, v, z, f, s0)])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_training_forward_on_cpu_keeps_no_chunk_states():
    q, k, v, z, f, s0 = make(2, 9, 3, 5, 4, dtype=torch.float32)
    y, s, states = torch.ops.decayfw.decay_fwd_train(q, k, v, z, f, s0)
    ye, se = torch.ops.decayfw.decay_fwd(q, k, v, z, f, s0)
    assert torch.equal(y, ye) and torch.equal(s, se)
    assert states.numel() == 0 and states.dtype == torch.float32
    assert torch.ops.decayfw.decay_chunk_size(2, 9, 3, 5, 4, torch.float32, torch.device("cpu")) == 0


def test_decay_bwd_names_bad_chunk_states():
    q, k, v, z, f, s0 = make(2, 9, 3, 5, 4, dtype=torch.float32)
    dy = torch.randn_like(v)
    with pytest.raises(RuntimeError, match=r"'chunk_states' must have shape \[B, H, chunks \+ 1, D, M\] = "
                                           r"\[2, 3, chunks \+ 1, 5, 4\], got \[2, 3, 1, 5, 3\]"):
        torch.ops.decayfw.decay_bwd(q, k, v, z, f, s0, dy, None, torch.zeros(2, 3, 1, 5, 3))
    with pytest.raises(RuntimeError, match="'chunk_states' must be float32"):
        torch.ops.decayfw.decay_bwd(q, k, v, z, f, s0, dy, None, torch.zeros(2, 3, 1, 5, 4, dtype=torch.float64))


@pytest.mark.skipif(not getattr(decayfw._loader, "NATIVE_AUTOGRAD", False), reason="needs torch >= 2.4")
def test_opcheck_training_forward_and_backward():  # pragma: no cover - runs on torch 2.x only
    # Schema, autograd registration, fake kernels against the real ones (shapes of the chunk states
    # included), and tracing with dynamic shapes. tests/gpu runs the same on the CUDA chunk path.
    q, k, v, z, f, s0 = make(2, 9, 3, 5, 4, dtype=torch.float32, requires_grad=True)
    for op in (torch.ops.decayfw.decay_fwd_train.default, torch.ops.decayfw.decay_fwd.default):
        torch.library.opcheck(op, (q, k, v, z, f, s0))
    _, _, states = torch.ops.decayfw.decay_fwd_train(q, k, v, z, f, s0)
    inputs = tuple(t.detach() for t in (q, k, v, z, f, s0))
    torch.library.opcheck(torch.ops.decayfw.decay_bwd.default, inputs + (torch.randn_like(v), None, states.detach()))
