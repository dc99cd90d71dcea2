"""The decay rule as differentiable PyTorch functions.

:func:`decay_fast_weights` runs a whole sequence (training, scoring, prefill); :func:`decay_step`
runs one token for generation. Both call the native ops ``torch.ops.decayfw.*`` (CPU, and CUDA when
the library was built with it). No per-token state is ever stored: the backward recomputes what
it needs, except that on the CUDA chunk path it reuses the forward's chunk-boundary states.

Shapes (see kernels/README.md for the layout): q, k, f ``[B, T, H, M]``; v, z ``[B, T, H, D]``;
states ``[B, H, D, M]`` in fp32 (fp64 for fp64 inputs). B, T and H may have any strides as long as
the last dimension is contiguous, so time-first projections ``x.view(T, B, H, X).transpose(0, 1)``
are accepted without a copy.
"""
import contextlib
import os
from typing import Iterator, Optional, Tuple, Union

import torch

from . import _loader
from .reference import decay_fast_weights_reference, decay_step_reference, state_dtype_for

__all__ = ["decay_fast_weights", "decay_step", "cuda_path", "chunk_forward", "chunk_diagonal"]

CUDA_PATHS = ("auto", "chunk", "recurrent")
CHUNK_FORWARDS = ("auto", "fused", "split")
CHUNK_DIAGONALS = ("auto", "factored", "elementwise", "tensor", "chunk")


@contextlib.contextmanager
def cuda_path(name: str) -> Iterator[None]:
    """Chooses the CUDA implementation of the decay op inside a ``with`` block.

    ``"auto"`` (the default) takes the chunkwise tensor-core path for bf16/fp16 (and fp32 when
    ``torch.backends.cuda.matmul.allow_tf32``) sequences of at least 64 tokens with M in {16, 32, 64,
    128} and D a multiple of 64, and the recurrent path otherwise; ``"chunk"`` forces the chunk path
    (a call it cannot run fails with the reason); ``"recurrent"`` forces the recurrent path. Sets the
    ``DECAYFW_CUDA_PATH`` environment variable, which the op reads at every call, and restores it.
    """
    if name not in CUDA_PATHS:
        raise ValueError(f"decayfw.cuda_path: expected one of {', '.join(CUDA_PATHS)}, got {name!r}")
    with _environment("DECAYFW_CUDA_PATH", name):
        yield

@contextlib.contextmanager
def _environment(variable: str, value: str) -> Iterator[None]:
    before = os.environ.get(variable)
    os.environ[variable] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


@contextlib.contextmanager
def chunk_forward(name: str) -> Iterator[None]:
    """Chooses the form of the CUDA chunk path's forward inside a ``with`` block.

    ``"split"`` runs a serial pass that writes every chunk's start state, then a pass parallel over
    chunks that reads them back with the inputs and writes y. ``"fused"`` computes y inside the serial
    pass: the inputs are read once, the states are written only when the backward keeps them, and an
    inference forward needs no memory beyond y and the final state. Both do the same arithmetic: the
    states and gradients agree bit for bit, y up to the last bit (the compiler's FMA contraction).
    ``"auto"`` (the default) takes the fused form when its B·H·D/64 serial blocks fill every SM of
    the device, where the split form's parallel pass has nothing left to fill. Sets the
    ``DECAYFW_CHUNK_FORWARD`` environment variable, which the op reads at every call, and restores it.
    """
    if name not in CHUNK_FORWARDS:
        raise ValueError(f"decayfw.chunk_forward: expected one of {', '.join(CHUNK_FORWARDS)}, got {name!r}")
    with _environment("DECAYFW_CHUNK_FORWARD", name):
        yield


@contextlib.contextmanager
def chunk_diagonal(name: str) -> Iterator[None]:
    """Chooses how the CUDA chunk path takes the 16×16 diagonal blocks of each chunk inside a ``with`` block.

    Every form takes a key column or value row whose gates decay by more than e^-40 over the block's 16
    tokens per pair of tokens in fp32. The others ("narrow"): ``"factored"`` (what ``"auto"``, the
    default, takes) scales their operands once per token by the decay to or from the block's first token
    and multiplies them in fp32 (46 exponentials per column and block instead of 208, with the same
    errors); ``"elementwise"`` takes them per pair too (the reference form); ``"tensor"`` multiplies
    them on tensor cores like the rest of the chunk: fewer instructions still, but the diagonal's scaled
    operands are rounded to the input type as the off-diagonal ones are, and where gates forget fast the
    diagonal carries most of the output (bf16, gates near σ = 0.5: errors against fp64 up to 3× in y and
    5-6× in the gate gradients). ``"chunk"`` is ``"tensor"``, except that a chunk whose gates decay by no
    more than e^-40 over all of its tokens, in every key column and value row, is taken whole: one
    tensor-core product over the chunk, no 16×16 blocks (about half the backward's shared-memory traffic,
    same precision as ``"tensor"``). fp16 inputs asked for ``"tensor"`` or ``"chunk"`` run factored (their
    range leaves no room for the scaled operands). Sets the ``DECAYFW_CHUNK_DIAGONAL`` environment variable, which the op
    reads at every call, and restores it.
    """
    if name not in CHUNK_DIAGONALS:
        raise ValueError(f"decayfw.chunk_diagonal: expected one of {', '.join(CHUNK_DIAGONALS)}, got {name!r}")
    with _environment("DECAYFW_CHUNK_DIAGONAL", name):
        yield


_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _validate(op: str, names, tensors, rank: int, state: Optional[torch.Tensor], state_name: str):
    """Checks ranks, shapes, dtypes and devices; raises ValueError naming the argument."""
    layout_k = "[B, T, H, M]" if rank == 4 else "[B, H, M]"
    layout_v = "[B, T, H, D]" if rank == 4 else "[B, H, D]"
    side = {"q": "M", "k": "M", "f": "M", "v": "D", "z": "D"}
    for name, t in zip(names, tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != rank:
            lay = layout_k if side[name] == "M" else layout_v
            raise ValueError(f"{op}: argument '{name}' must have rank {rank} {lay}, got shape {tuple(t.shape)}")
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{op}: argument '{name}' has dtype {t.dtype}; expected float32, float64, "
                             f"float16 or bfloat16")
    q, v = tensors[0], tensors[2]
    lead = tuple(q.shape[:-1])
    dims = {"M": q.shape[-1], "D": v.shape[-1]}
    for name, t in zip(names, tensors):
        want = lead + (dims[side[name]],)
        if tuple(t.shape) != want:
            lay = layout_k if side[name] == "M" else layout_v
            raise ValueError(f"{op}: argument '{name}' must have shape {lay} = {list(want)} "
                             f"(B, T, H from 'q', D from 'v'), got {list(t.shape)}")
        if t.dtype != q.dtype:
            raise ValueError(f"{op}: argument '{name}' has dtype {t.dtype} but 'q' has {q.dtype}; "
                             f"all inputs must share one dtype")
        if t.device != q.device:
            raise ValueError(f"{op}: argument '{name}' is on {t.device} but 'q' is on {q.device}")
    if q.device.type == "cuda" and _loader.HAS_EXTENSION and not _loader.BUILT_WITH_CUDA:
        raise ValueError(f"{op}: argument 'q' is a CUDA tensor but decayfw was built without CUDA; "
                         f"rebuild with -DDECAYFW_CUDA=ON against a CUDA LibTorch, or move the inputs to CPU")
    if q.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{op}: argument 'q' is on {q.device}; decayfw supports CPU and CUDA tensors")
    if state is not None:
        B, H = q.shape[0], q.shape[-2]
        want = (B, H, dims["D"], dims["M"])
        if tuple(state.shape) != want:
            raise ValueError(f"{op}: argument '{state_name}' must have shape [B, H, D, M] = {list(want)}, "
                             f"got {list(state.shape)}")
        if state.dtype != state_dtype_for(q.dtype):
            raise ValueError(f"{op}: argument '{state_name}' must be {state_dtype_for(q.dtype)} (the state is fp32 "
                             f"whatever the input dtype, fp64 for fp64 inputs), got {state.dtype}")
        if state.device != q.device:
            raise ValueError(f"{op}: argument '{state_name}' is on {state.device} but 'q' is on {q.device}")


def _needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous()


def decay_backward(inputs, chunk_states, dy, d_final_state, has_initial_state):
    """The gradients of the six inputs given the output gradients (either may be None), shared by
    both autograd registrations. ``chunk_states``: what ``decay_fwd_train`` kept, or None."""
    q, k, v, z, f, initial_state = inputs
    if dy is None:
        dy = torch.zeros_like(v)
    dy = _last_dim_contiguous(dy.to(v.dtype))
    if d_final_state is not None:
        d_final_state = d_final_state.contiguous()
    dq, dk, dv, dz, df, ds0 = torch.ops.decayfw.decay_bwd(q, k, v, z, f, initial_state, dy, d_final_state,
                                                          chunk_states)
    return dq, dk, dv, dz, df, (ds0 if has_initial_state else None)


class _DecayFastWeightsFunction(torch.autograd.Function):
    """Autograd for torch < 2.4 (and the fallback elsewhere): saves the inputs and, on the CUDA
    chunk path, the chunk-boundary states (T/C + 1 per sequence), never per-token states."""

    @staticmethod
    def forward(ctx, q, k, v, z, f, initial_state, save_chunk_states):
        if save_chunk_states:
            y, final_state, chunk_states = torch.ops.decayfw.decay_fwd_train(q, k, v, z, f, initial_state)
        else:
            (y, final_state), chunk_states = torch.ops.decayfw.decay_fwd(q, k, v, z, f, initial_state), None
        ctx.save_for_backward(q, k, v, z, f, initial_state, chunk_states)
        ctx.has_initial_state = initial_state is not None
        return y, final_state

    @staticmethod
    def backward(ctx, dy, d_final_state):
        *inputs, chunk_states = ctx.saved_tensors
        return decay_backward(inputs, chunk_states, dy, d_final_state, ctx.has_initial_state) + (None,)


def decay_fast_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    z: torch.Tensor,
    f: torch.Tensor,
    initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False,
    save_chunk_states: bool = True,
) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Decaying fast weights over a whole sequence.

    ``S_t = (σ(z_t) σ(f_t)ᵀ) ⊙ S_{t-1} + v_t k_tᵀ``, ``y_t = S_t q_t``, with ``S_0 = initial_state``
    (zeros when None).

    Args:
        q, k: queries and keys ``[B, T, H, M]`` (after any feature map).
        v: values ``[B, T, H, D]``.
        z, f: gate **logits** ``[B, T, H, D]`` and ``[B, T, H, M]``; σ is applied inside in fp32.
        initial_state: ``[B, H, D, M]`` fp32 (fp64 for fp64 inputs), or None.
        output_final_state: also return ``S_T`` (fp32), to carry into the next segment.
        save_chunk_states: when gradients are needed and the CUDA chunk path runs, keep the
            forward's chunk-boundary states for the backward (fp32, ``(T/C + 1)·D·M`` per sequence,
            ``C = torch.ops.decayfw.decay_chunk_size(...)``) instead of recomputing them, which
            saves the backward one serial pass over the sequence. False trades that time for the
            memory. No effect on CPU or without gradients; the gradients are the same either way.

    Returns:
        ``y [B, T, H, D]`` in the input dtype (with the strides of ``v``), and ``S_T`` if asked.
        Gradients flow to every input including ``initial_state``.
    """
    _validate("decay_fast_weights", ("q", "k", "v", "z", "f"), (q, k, v, z, f), 4, initial_state, "initial_state")
    q, k, v, z, f = (_last_dim_contiguous(t) for t in (q, k, v, z, f))
    if initial_state is not None:
        initial_state = initial_state.contiguous()
    if not _loader.HAS_EXTENSION:
        y, s = decay_fast_weights_reference(q, k, v, z, f, initial_state)
    elif _loader.NATIVE_AUTOGRAD:
        if save_chunk_states and _needs_grad(q, k, v, z, f, initial_state):
            y, s, _ = torch.ops.decayfw.decay_fwd_train(q, k, v, z, f, initial_state)
        else:
            y, s = torch.ops.decayfw.decay_fwd(q, k, v, z, f, initial_state)
    else:
        save = save_chunk_states and _needs_grad(q, k, v, z, f, initial_state)
        y, s = _DecayFastWeightsFunction.apply(q, k, v, z, f, initial_state, save)
    return (y, s) if output_final_state else y


def decay_step(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, z: torch.Tensor, f: torch.Tensor, state: torch.Tensor
) -> torch.Tensor:
    """One decoding step; ``state`` is updated **in place**.

    Args:
        q, k, f: ``[B, H, M]``; v, z: ``[B, H, D]`` (gate logits as in :func:`decay_fast_weights`).
        state: ``[B, H, D, M]`` fp32 (fp64 for fp64 inputs), contiguous.

    Returns:
        ``y [B, H, D]``. Not differentiable (use :func:`decay_fast_weights` with T = 1 for that).
    """
    _validate("decay_step", ("q", "k", "v", "z", "f"), (q, k, v, z, f), 3, state, "state")
    if not state.is_contiguous():
        raise ValueError("decay_step: argument 'state' must be contiguous (it is updated in place)")
    q, k, v, z, f = (_last_dim_contiguous(t) for t in (q, k, v, z, f))
    with torch.no_grad():
        if not _loader.HAS_EXTENSION:
            return decay_step_reference(q, k, v, z, f, state)
        return torch.ops.decayfw.decay_step(q, k, v, z, f, state)
