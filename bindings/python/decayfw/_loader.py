"""Loads the native extension and registers what torch >= 2.4 needs for torch.compile.

Importing ``decayfw._C`` loads ``libdecayfw_ops`` from the same folder, whose static initialisers
register the ``torch.ops.decayfw.*`` schemas and kernels. When that fails (no build, ABI mismatch),
decayfw falls back to the pure-PyTorch reference and says so with a warning, never silently.
"""
import os
import warnings

import torch

HAS_EXTENSION = False
BUILT_WITH_CUDA = False
NATIVE_AUTOGRAD = False  # autograd registered with the dispatcher (torch >= 2.4)
LOAD_ERROR = None

try:
    if os.environ.get("DECAYFW_DISABLE_EXTENSION"):
        raise ImportError("disabled by DECAYFW_DISABLE_EXTENSION")
    if os.environ.get("DECAYFW_OPS_LIBRARY"):
        # An ops library built some other way (e.g. torch.utils.cpp_extension); registers the ops.
        try:
            torch.ops.load_library(os.environ["DECAYFW_OPS_LIBRARY"])
        except OSError as exc:
            raise ImportError(str(exc)) from exc
        BUILT_WITH_CUDA = torch._C._dispatch_has_kernel_for_dispatch_key("decayfw::decay_fwd", "CUDA")
    else:
        from . import _C  # noqa: F401  (registers torch.ops.decayfw.*)

        BUILT_WITH_CUDA = bool(getattr(_C, "built_with_cuda", False))
    HAS_EXTENSION = True
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    LOAD_ERROR = exc
    warnings.warn(
        f"decayfw: the native extension could not be loaded ({exc}); using the slow pure-PyTorch "
        f"reference (decayfw.reference) instead. Build it with scripts/setup.sh or `pip install .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def _torch_version():
    parts = torch.__version__.split("+")[0].split(".")
    return tuple(int("".join(ch for ch in p if ch.isdigit()) or 0) for p in parts[:2])


def _register_for_torch_compile():
    """Fake (meta) kernels and dispatcher-level autograd, so torch.compile traces through the ops."""
    global NATIVE_AUTOGRAD
    lib = torch.library

    def _state_dtype(q):
        return torch.float64 if q.dtype == torch.float64 else torch.float32

    @lib.register_fake("decayfw::decay_fwd")
    def _fwd_fake(q, k, v, z, f, initial_state=None):
        B, _, H, M = q.shape
        D = v.shape[-1]
        return torch.empty_like(v), q.new_empty((B, H, D, M), dtype=_state_dtype(q))

    @lib.register_fake("decayfw::decay_fwd_train")
    def _fwd_train_fake(q, k, v, z, f, initial_state=None):
        B, T, H, M = q.shape
        D = v.shape[-1]
        # The same host-side choice the CUDA op makes at run time (device, DECAYFW_CUDA_PATH, TF32).
        C = torch.ops.decayfw.decay_chunk_size(int(B), int(T), int(H), int(D), int(M), q.dtype, q.device)
        shape = (B, H, (T + C - 1) // C + 1, D, M) if C else (0,)
        return (torch.empty_like(v), q.new_empty((B, H, D, M), dtype=_state_dtype(q)),
                q.new_empty(shape, dtype=torch.float32))

    @lib.register_fake("decayfw::decay_bwd")
    def _bwd_fake(q, k, v, z, f, initial_state, dy, grad_final_state=None, chunk_states=None):
        B, _, H, M = q.shape
        D = v.shape[-1]
        return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(z),
                torch.empty_like(f), q.new_empty((B, H, D, M), dtype=_state_dtype(q)))

    @lib.register_fake("decayfw::decay_step")
    def _step_fake(q, k, v, z, f, state):
        return torch.empty_like(v)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)
        ctx.has_initial_state = inputs[5] is not None

    def backward(ctx, dy, d_final_state):
        from .ops import decay_backward  # here: ops imports this module

        return decay_backward(ctx.saved_tensors, None, dy, d_final_state, ctx.has_initial_state)

    def setup_context_train(ctx, inputs, output):
        chunk_states = output[2]
        ctx.mark_non_differentiable(chunk_states)
        ctx.save_for_backward(*inputs, chunk_states)
        ctx.has_initial_state = inputs[5] is not None

    def backward_train(ctx, dy, d_final_state, _d_chunk_states):
        from .ops import decay_backward

        *inputs, chunk_states = ctx.saved_tensors
        return decay_backward(inputs, chunk_states, dy, d_final_state, ctx.has_initial_state)

    lib.register_autograd("decayfw::decay_fwd", backward, setup_context=setup_context)
    lib.register_autograd("decayfw::decay_fwd_train", backward_train, setup_context=setup_context_train)
    NATIVE_AUTOGRAD = True


if HAS_EXTENSION and _torch_version() >= (2, 4) and hasattr(torch.library, "register_autograd"):
    _register_for_torch_compile()
