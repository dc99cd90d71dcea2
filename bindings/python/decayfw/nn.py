"""Layers: fast weights with the paper's update rules (decay and its baselines) and softmax attention
(full or local, the paper's other baselines).

Both share one interface so every comparison, benchmark and test can swap one for the other:

- ``forward(x, state=None, key_padding_mask=None) -> (out, new_state)`` over a whole sequence,
- ``step(x_t, state=None) -> (out_t, new_state)`` for one token,
- projections named ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` like fairseq's and
  ``torch.nn.MultiheadAttention``'s (after splitting ``in_proj``), so pre-trained weights load 1:1.

``x`` is ``[B, T, C]`` (``time_first=False``, default) or ``[T, B, C]`` (``time_first=True``,
fairseq's layout); time-first projections reach the op as transposed views, without copies.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import decay_fast_weights, decay_step
from .reference import state_dtype_for
from .rules import add_fast_weights, add_step, delta_fast_weights, delta_step, gated_fast_weights, gated_step

__all__ = ["FastWeights", "DecayFastWeights", "SoftmaxAttention", "uniform_gate_bias", "check_rule_options",
           "RULES", "NORMALIZATIONS", "FEATURE_MAPS"]

FEATURE_MAPS = ("none", "linear", "relu")
# A gate logit whose σ is exactly 1.0 in fp32 and fp64: padded positions carry the state unchanged.
_CARRY_LOGIT = 50.0


def uniform_gate_bias(width: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Uniform Gate Initialization (Gu et al., ICML 2020) of a gate bias of ``width`` channels.

    ``u ~ U[1/d, 1 − 1/d]``, ``b = −log(1/u − 1)``, so σ(b) = u and the initial memory times
    1/(1 − σ(b)) spread evenly from about 1 to about ``d`` tokens. For ``d`` ≤ 2 the interval is
    empty and u = 1/2 (b = 0).
    """
    if width <= 2:
        return torch.zeros(width)
    u = torch.rand(width, generator=generator, dtype=torch.float64) * (1 - 2 / width) + 1 / width
    return (-torch.log(1 / u - 1)).float()


class _Projections(nn.Module):
    """q/k/v/out projections shared by both layers (fairseq names)."""

    def __init__(self, embed_dim: int, num_heads: int, value_dim: Optional[int], bias: bool):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.value_dim = value_dim if value_dim is not None else self.head_dim
        if self.value_dim <= 0:
            raise ValueError(f"value_dim must be positive, got {self.value_dim}")
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, num_heads * self.value_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.value_dim, embed_dim, bias=bias)

    def _check_x(self, x: Tensor, name: str = "x", rank: int = 3):
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: argument '{name}' must be a Tensor")
        if x.dim() != rank or x.shape[-1] != self.embed_dim:
            want = "[B, T, C]" if rank == 3 else "[B, C]"
            raise ValueError(f"{type(self).__name__}: argument '{name}' must have shape {want} with "
                             f"C = embed_dim = {self.embed_dim}, got {list(x.shape)}")

    def _heads(self, t: Tensor, time_first: bool) -> Tensor:
        """``[B, T, H·X]`` (or ``[T, B, H·X]``) → ``[B, T, H, X]`` view (transposed if time-first)."""
        t = t.view(t.shape[0], t.shape[1], self.num_heads, -1)
        return t.transpose(0, 1) if time_first else t

    def copy_projections_from(self, q_proj: nn.Linear, k_proj: nn.Linear, v_proj: nn.Linear, out_proj: nn.Linear):
        """Copies weights (and biases) of pre-trained projections exactly."""
        with torch.no_grad():
            for mine, theirs, name in ((self.q_proj, q_proj, "q_proj"), (self.k_proj, k_proj, "k_proj"),
                                       (self.v_proj, v_proj, "v_proj"), (self.out_proj, out_proj, "out_proj")):
                if mine.weight.shape != theirs.weight.shape:
                    raise ValueError(f"init_from_attention: '{name}' has weight {list(theirs.weight.shape)}, "
                                     f"expected {list(mine.weight.shape)}")
                mine.weight.copy_(theirs.weight)
                if mine.bias is not None:
                    if theirs.bias is None:
                        mine.bias.zero_()
                    else:
                        mine.bias.copy_(theirs.bias)


def _split_mha(mha: nn.MultiheadAttention):
    """q/k/v/out Linear modules equivalent to a ``torch.nn.MultiheadAttention`` (packed in_proj)."""
    E = mha.embed_dim
    if not mha._qkv_same_embed_dim:
        raise ValueError("init_from_attention: MultiheadAttention with kdim/vdim != embed_dim is not supported")
    lins = []
    for i in range(3):
        lin = nn.Linear(E, E, bias=mha.in_proj_bias is not None)
        with torch.no_grad():
            lin.weight.copy_(mha.in_proj_weight[i * E:(i + 1) * E])
            if mha.in_proj_bias is not None:
                lin.bias.copy_(mha.in_proj_bias[i * E:(i + 1) * E])
        lins.append(lin)
    return lins[0], lins[1], lins[2], mha.out_proj


RULES = ("decay", "gated", "add", "delta")
NORMALIZATIONS = ("none", "attention", "sum")
# The delta rule's write strength starts at σ(−5) ≈ 0.0067 (the paper: g_t initialised ≈ 0.007).
DELTA_BETA_BIAS = -5.0
# Footnote 4 of the paper: the additive rule without a feature map needs W_v ÷ 512 to start stable.
ADD_VALUE_SCALE = 1.0 / 512


def check_rule_options(rule: str, feature_map: str, normalization: str, key_dim: int, head_dim: int,
                       flag_prefix: str = "") -> None:
    """Rejects combinations that are not a rule of the paper, with a message naming the options.

    ``flag_prefix`` is ``"--fw-"`` when the options came from the fairseq command line, so the
    message names the flags the user typed.
    """
    def opt(name):
        return f"{flag_prefix}{name.replace('_', '-')}" if flag_prefix else name
    if rule not in RULES:
        raise ValueError(f"{opt('rule')} must be one of {', '.join(RULES)}, got {rule!r}")
    if feature_map not in FEATURE_MAPS:
        raise ValueError(f"{opt('feature_map')} must be one of {', '.join(FEATURE_MAPS)}, got {feature_map!r}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"{opt('normalization')} must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
    if feature_map == "none" and key_dim != head_dim:
        raise ValueError(f"{opt('feature_map')} none (identity) needs {opt('key_dim')} equal to the head dimension "
                         f"({head_dim}), got {key_dim}; use {opt('feature_map')} linear or relu to project to m")
    if normalization == "attention" and rule == "delta":
        raise ValueError(f"{opt('normalization')} attention is not defined for the delta rule: its normalisation is "
                         f"'sum' (Schlag et al. 2021: q and k divided by the sum of their features)")
    if normalization == "sum" and rule != "delta":
        raise ValueError(f"{opt('normalization')} sum is the delta rule's (Schlag et al. 2021); the {rule} rule "
                         f"normalises with 'attention' (a normaliser z_t beside the state) or 'none'")
    if normalization != "none" and feature_map != "relu":
        raise ValueError(f"{opt('normalization')} {normalization} needs a positive feature map "
                         f"({opt('feature_map')} relu): with signed features the normaliser can be zero or negative")


class FastWeights(_Projections):
    """A fast-weight layer with any of the paper's update rules, as a drop-in for self-attention.

    Per head: ``q = φ(W_q x)·s``, ``k = φ(W_k x)``, ``v = W_v x``, then one of

    - ``decay`` (Eq. 7, the paper's): ``S_t = (σ(z_t)σ(f_t)ᵀ) ⊙ S_{t-1} + v_t k_tᵀ`` with
      ``z = W_z x + b_z`` (width D) and ``f = W_f x + b_f`` (width M);
    - ``gated`` (Eq. 5, Peng et al. 2021): ``S_t = g_t S_{t-1} + (1 − g_t) v_t k_tᵀ``,
      ``g_t = σ(w_g·x + b_g)`` one scalar per head;
    - ``add`` (Eq. 3, Katharopoulos et al. 2020): ``S_t = S_{t-1} + v_t k_tᵀ``;
    - ``delta`` (Eq. 6, Schlag et al. 2021): ``S_t = S_{t-1} + β_t (v_t − S_{t-1}k_t) k_tᵀ``,
      ``β_t = σ(w_β·x + b_β)`` one scalar per head, b_β = −5 (σ ≈ 0.007);

    and ``y_t = S_t q_t``, ``out = W_o y``.

    Args:
        embed_dim: model dimension C.
        num_heads: H; head_dim = C / H.
        rule: one of ``decay``, ``gated``, ``add``, ``delta``.
        key_dim: M, the state's key dimension (paper's m). Default head_dim.
        value_dim: D per head. Default head_dim.
        feature_map: φ shared by q and k. ``"none"``: identity (requires key_dim == head_dim);
            ``"linear"``: a learned per-head projection head_dim → M (what the paper calls "no
            feature map" when m ≠ head_dim); ``"relu"``: ``ReLU(W_φ x + b_φ)`` (Kasai et al. 2021).
            Default: ``"none"`` when key_dim == head_dim, else ``"linear"``.
        normalization: ``"none"``; ``"attention"`` (add, gated, decay; needs relu): a normaliser
            ``z_t`` that follows the state's recurrence on a value of ones, ``y_t = S_t q_t / z_tᵀq_t``
            (for decay, z_t decays with the column gate only: ``z_t = σ(f_t) ⊙ z_{t-1} + k_t``);
            ``"sum"`` (delta; needs relu): ``q, k ← φ(·)/Σφ(·)``.
        value_scale: factor on W_v and b_v applied by :meth:`init_from_attention` (besides decay's
            own 1 − σ(b_z)); default 1/512 for the additive rule without a ReLU feature map (the
            paper's footnote 4), else 1.
        bias: biases on q/k/v/out.
        scale_queries: multiply q by head_dim^-0.5 as softmax attention does.
        time_first: inputs are ``[T, B, C]`` (fairseq) instead of ``[B, T, C]``.
        eps: floor of the denominators of both normalisations.
        save_chunk_states: decay rule, training on the CUDA chunk path: keep the forward's
            chunk-boundary states for the backward (fp32, ``(T/C + 1)·D·M`` per sequence and head)
            instead of recomputing them; False trades one serial pass of the backward for that
            memory. The gradients are the same either way. An attribute, so it can be switched
            on a built model.
    """

    def __init__(self, embed_dim: int, num_heads: int, rule: str = "decay", key_dim: Optional[int] = None,
                 value_dim: Optional[int] = None, feature_map: Optional[str] = None, normalization: str = "none",
                 value_scale: Optional[float] = None, bias: bool = True, scale_queries: bool = True,
                 time_first: bool = False, eps: float = 1e-6, save_chunk_states: bool = True):
        super().__init__(embed_dim, num_heads, value_dim, bias)
        self.save_chunk_states = bool(save_chunk_states)
        self.key_dim = key_dim if key_dim is not None else self.head_dim
        if self.key_dim <= 0:
            raise ValueError(f"key_dim (m) must be positive, got {self.key_dim}")
        if feature_map is None:
            feature_map = "none" if self.key_dim == self.head_dim else "linear"
        check_rule_options(rule, feature_map, normalization, self.key_dim, self.head_dim)
        self.rule = rule
        self.feature_map = feature_map
        self.normalization = normalization
        self.eps = eps
        if value_scale is None:
            value_scale = ADD_VALUE_SCALE if rule == "add" and feature_map != "relu" else 1.0
        if not value_scale > 0:
            raise ValueError(f"value_scale must be positive, got {value_scale}")
        self.value_scale = float(value_scale)
        self.scaling = self.head_dim ** -0.5 if scale_queries else 1.0
        self.time_first = time_first
        H, D, M = num_heads, self.value_dim, self.key_dim
        if feature_map != "none":
            self.phi_weight = nn.Parameter(torch.empty(H, M, self.head_dim))
            self.phi_bias = nn.Parameter(torch.zeros(H, M))
        else:
            self.register_parameter("phi_weight", None)
            self.register_parameter("phi_bias", None)
        # Gate parameters by rule (absent ones stay None so state dicts hold only what a rule uses).
        self.gate_z = nn.Linear(embed_dim, H * D) if rule == "decay" else None
        self.gate_f = nn.Linear(embed_dim, H * M) if rule == "decay" else None
        self.gate_g = nn.Linear(embed_dim, H) if rule == "gated" else None
        self.gate_beta = nn.Linear(embed_dim, H) if rule == "delta" else None
        self.reset_feature_map()
        self.reset_gates()

    @property
    def state_rows(self) -> int:
        """Rows of the state: D, plus the normaliser's row under attention normalisation."""
        return self.value_dim + (1 if self.normalization == "attention" else 0)

    # -- initialisation -------------------------------------------------------------------------------

    def reset_feature_map(self):
        """φ's projection: Xavier-uniform per head (fan_in head_dim, fan_out M), zero bias."""
        if self.phi_weight is not None:
            bound = math.sqrt(6.0 / (self.head_dim + self.key_dim))
            with torch.no_grad():
                self.phi_weight.uniform_(-bound, bound)
                self.phi_bias.zero_()

    def reset_gates(self, generator: Optional[torch.Generator] = None):
        """Gate weights small (N(0, 0.02²)); biases: decay's by Uniform Gate Initialization per head
        and channel, the gated rule's by UGI across heads (spread over D), delta's β at σ(−5)."""
        H, D, M = self.num_heads, self.value_dim, self.key_dim
        with torch.no_grad():
            for lin in (self.gate_z, self.gate_f, self.gate_g, self.gate_beta):
                if lin is not None:
                    lin.weight.normal_(0.0, 0.02, generator=generator)
            if self.rule == "decay":
                self.gate_z.bias.copy_(torch.cat([uniform_gate_bias(D, generator) for _ in range(H)]))
                self.gate_f.bias.copy_(torch.cat([uniform_gate_bias(M, generator) for _ in range(H)]))
            elif self.rule == "gated":
                # one gate per head, its σ drawn from UGI's interval for width D
                u = torch.rand(H, generator=generator, dtype=torch.float64) * (1 - 2 / max(D, 3)) + 1 / max(D, 3)
                self.gate_g.bias.copy_((-torch.log(1 / u - 1)).float())
            elif self.rule == "delta":
                self.gate_beta.bias.fill_(DELTA_BETA_BIAS)

    def value_rescale(self) -> Tensor:
        """The factor per value channel (``[H·D]``) that :meth:`init_from_attention` applies to W_v:
        ``1 − σ(b_z)`` for decay (times ``value_scale``), ``value_scale`` for the other rules."""
        ref = self.v_proj.weight
        scale = torch.full((self.num_heads * self.value_dim,), self.value_scale, dtype=torch.float32,
                           device=ref.device)
        if self.rule == "decay":
            scale = scale * (1.0 - torch.sigmoid(self.gate_z.bias.detach().float()))
        return scale

    def init_from_attention(self, q_proj: nn.Module, k_proj: Optional[nn.Linear] = None,
                            v_proj: Optional[nn.Linear] = None, out_proj: Optional[nn.Linear] = None,
                            generator: Optional[torch.Generator] = None) -> "FastWeights":
        """Swap-then-finetune initialisation from a pre-trained softmax-attention layer.

        1. copies q/k/v/out projections exactly (pass a ``torch.nn.MultiheadAttention`` alone, or
           four ``nn.Linear``: fairseq's ``q_proj, k_proj, v_proj, out_proj``);
        2. draws the gate biases (:meth:`reset_gates`);
        3. rescales W_v and b_v row-wise by :meth:`value_rescale`: for decay ``1 − σ(b_z)``, so each
           state row starts as an exponential moving average with unit gain (its fixed point is v,
           not v/(1 − a)), keeping the output on the scale of attention's convex combinations.
        """
        if isinstance(q_proj, nn.MultiheadAttention):
            q_proj, k_proj, v_proj, out_proj = _split_mha(q_proj)
        if k_proj is None or v_proj is None or out_proj is None:
            raise ValueError("init_from_attention: pass a MultiheadAttention or all of q_proj, k_proj, v_proj, out_proj")
        self.copy_projections_from(q_proj, k_proj, v_proj, out_proj)
        self.reset_gates(generator)
        self.rescale_values()
        return self

    def rescale_values(self):
        """W_v ← diag(r) W_v and b_v ← r ⊙ b_v with r = :meth:`value_rescale`."""
        with torch.no_grad():
            scale = self.value_rescale().to(self.v_proj.weight.dtype)
            self.v_proj.weight.mul_(scale.unsqueeze(1))
            if self.v_proj.bias is not None:
                self.v_proj.bias.mul_(scale)

    # -- computation ----------------------------------------------------------------------------------

    def _phi(self, t: Tensor) -> Tensor:
        """Feature map on ``[B, T, H, head_dim]`` (or ``[B, H, head_dim]``) → ``[..., H, M]``, then the
        delta rule's sum normalisation when asked."""
        if self.phi_weight is not None:
            t = torch.einsum("...hd,hmd->...hm", t, self.phi_weight.to(t.dtype)) + self.phi_bias.to(t.dtype)
            if self.feature_map == "relu":
                t = F.relu(t)
        if self.normalization == "sum":
            t = t / (t.sum(-1, keepdim=True) + self.eps)
        return t

    def zero_state(self, batch_size: int, device=None, dtype=torch.float32) -> Tensor:
        """A zero state ``[B, H, rows, M]`` (rows = D, + 1 under attention normalisation; fp32, fp64
        when the layer runs in fp64)."""
        return torch.zeros(batch_size, self.num_heads, self.state_rows, self.key_dim, device=device,
                           dtype=state_dtype_for(dtype))

    def _inputs(self, x: Tensor, time_first: bool):
        """q, k, v ``[B, T, H, X]`` and the rule's gate logits (a tuple: (z, f), (g,), (beta,) or ())."""
        q = self._heads(self.q_proj(x) * self.scaling, time_first)
        k = self._heads(self.k_proj(x), time_first)
        v = self._heads(self.v_proj(x), time_first)
        if self.rule == "decay":
            gates = (self._heads(self.gate_z(x), time_first), self._heads(self.gate_f(x), time_first))
        elif self.rule == "gated":
            gates = (self._heads(self.gate_g(x), time_first)[..., 0],)
        elif self.rule == "delta":
            gates = (self._heads(self.gate_beta(x), time_first)[..., 0],)
        else:
            gates = ()
        return self._phi(q), self._phi(k), v, gates

    def _with_normaliser(self, v: Tensor, gates):
        """Attention normalisation: a value channel of ones (its state row is the normaliser z_t)."""
        if self.normalization != "attention":
            return v, gates
        v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        if self.rule == "decay":  # the normaliser row has no row gate: σ(_CARRY_LOGIT) = 1
            z, f = gates
            gates = (torch.cat([z, torch.full_like(z[..., :1], _CARRY_LOGIT)], dim=-1), f)
        return v, gates

    def _normalise(self, y: Tensor) -> Tensor:
        if self.normalization != "attention":
            return y
        return y[..., :-1] / y[..., -1:].clamp_min(self.eps)

    def _run(self, q, k, v, gates, state, step: bool):
        if step:
            fn = {"decay": decay_step, "gated": gated_step, "add": add_step, "delta": delta_step}[self.rule]
            return fn(q, k, v, *gates, state), state
        if self.rule == "decay":
            return decay_fast_weights(q, k, v, *gates, initial_state=state, output_final_state=True,
                                      save_chunk_states=self.save_chunk_states)
        fn = {"gated": gated_fast_weights, "add": add_fast_weights, "delta": delta_fast_weights}[self.rule]
        return fn(q, k, v, *gates, initial_state=state, output_final_state=True)

    def forward(self, x: Tensor, state: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Whole sequence.

        Args:
            x: ``[B, T, C]`` (``[T, B, C]`` when ``time_first``).
            state: ``[B, H, rows, M]`` from a previous segment, or None for zeros.
            key_padding_mask: ``[B, T]`` bool, True at padding. Padded positions neither write to
                the state nor change it (their gates keep it exactly), so padding never changes it.

        Returns:
            ``(out, new_state)``: out like x; new_state ``[B, H, rows, M]`` fp32 to carry on.
        """
        self._check_x(x)
        tf = self.time_first
        B = x.shape[1] if tf else x.shape[0]
        T = x.shape[0] if tf else x.shape[1]
        q, k, v, gates = self._inputs(x, tf)
        v, gates = self._with_normaliser(v, gates)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (B, T):
                raise ValueError(f"{type(self).__name__}: argument 'key_padding_mask' must have shape [B, T] = "
                                 f"{[B, T]}, got {list(key_padding_mask.shape)}")
            pad = key_padding_mask.to(device=x.device, dtype=torch.bool)[:, :, None]  # [B, T, 1]
            k = k.masked_fill(pad[..., None], 0.0)
            v = v.masked_fill(pad[..., None], 0.0)
            # keep-everything gates: σ(+50) = 1 for decay and gated; β = σ(−50) = 0 for delta
            if self.rule == "decay":
                gates = tuple(g.masked_fill(pad[..., None], _CARRY_LOGIT) for g in gates)
            elif self.rule == "gated":
                gates = (gates[0].masked_fill(pad, _CARRY_LOGIT),)
            elif self.rule == "delta":
                gates = (gates[0].masked_fill(pad, -_CARRY_LOGIT),)
        # Under autocast the projections may come out in different dtypes; the ops take one dtype
        # for their inputs and keep the state in fp32 whatever it is.
        dtype = v.dtype
        q, k = q.to(dtype), k.to(dtype)
        gates = tuple(g.to(dtype) for g in gates)
        if state is not None:
            state = state.to(state_dtype_for(dtype))
        y, new_state = self._run(q, k, v, gates, state, step=False)
        y = self._normalise(y)
        # y has v's strides: [B, T, H, D] (a transposed view of a contiguous [T, B, H, D] when time-first).
        y = (y.transpose(0, 1) if tf else y).reshape(T if tf else B, B if tf else T, -1)
        return self.out_proj(y), new_state

    def step(self, x_t: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """One token: ``x_t [B, C]``; ``state [B, H, rows, M]`` is updated **in place** (zeros if None).

        O(1) in the context length. With autograd enabled it runs the differentiable whole-sequence
        op on T = 1 and returns a new state instead.
        """
        self._check_x(x_t, "x_t", rank=2)
        B = x_t.shape[0]
        q, k, v, gates = self._inputs(x_t.unsqueeze(1), time_first=False)
        v, gates = self._with_normaliser(v, gates)
        dtype = v.dtype
        q, k = q.to(dtype), k.to(dtype)
        gates = tuple(g.to(dtype) for g in gates)
        if state is None:
            state = self.zero_state(B, x_t.device, dtype)
        if torch.is_grad_enabled() and (x_t.requires_grad or any(p.requires_grad for p in self.parameters())):
            y, state = self._run(q, k, v, gates, state, step=False)
            return self.out_proj(self._normalise(y).reshape(B, -1)), state
        y, state = self._run(q[:, 0], k[:, 0], v[:, 0], tuple(g[:, 0] for g in gates), state, step=True)
        return self.out_proj(self._normalise(y).reshape(B, -1)), state

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, rule={self.rule!r}, "
                f"key_dim={self.key_dim}, value_dim={self.value_dim}, feature_map={self.feature_map!r}, "
                f"normalization={self.normalization!r}, time_first={self.time_first}"
                + ("" if self.save_chunk_states or self.rule != "decay" else ", save_chunk_states=False"))


class DecayFastWeights(FastWeights):
    """Decaying fast weights (Mao 2022, Eqs. 7–8): :class:`FastWeights` with ``rule="decay"``.

    ``S_t = (σ(z_t)σ(f_t)ᵀ) ⊙ S_{t-1} + v_t k_tᵀ``, ``y_t = S_t q_t``; gate biases by Uniform Gate
    Initialization; :meth:`init_from_attention` rescales W_v by 1 − σ(b_z).
    """

    def __init__(self, embed_dim: int, num_heads: int, key_dim: Optional[int] = None,
                 value_dim: Optional[int] = None, feature_map: Optional[str] = None, bias: bool = True,
                 scale_queries: bool = True, time_first: bool = False, normalization: str = "none",
                 save_chunk_states: bool = True):
        super().__init__(embed_dim, num_heads, rule="decay", key_dim=key_dim, value_dim=value_dim,
                         feature_map=feature_map, normalization=normalization, bias=bias,
                         scale_queries=scale_queries, time_first=time_first, save_chunk_states=save_chunk_states)


class SoftmaxAttention(_Projections):
    """Causal softmax attention with the same interface as :class:`DecayFastWeights`.

    The "state" is the KV cache ``(keys, values)``, each ``[B, H, T, head_dim]``: it grows by one
    token per :meth:`step`, which is exactly the O(T) cost per token that decay avoids.

    With ``window=W`` it is **local** attention (the paper's Table 2 baseline): token t attends to
    tokens t − W + 1 … t only, and the cache keeps the last W − 1 tokens, so a step is O(W).
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, time_first: bool = False,
                 window: Optional[int] = None):
        super().__init__(embed_dim, num_heads, None, bias)
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 (tokens a query sees, itself included), got {window}")
        self.scaling = self.head_dim ** -0.5
        self.time_first = time_first
        self.window = window

    def _trim(self, cache):
        """The part of a cache later tokens can still see: the last W − 1 tokens under a window."""
        if self.window is None:
            return cache
        keep = self.window - 1
        return tuple(c[:, :, max(0, c.shape[2] - keep):] if keep > 0 else c[:, :, :0] for c in cache)

    def init_from_attention(self, q_proj, k_proj=None, v_proj=None, out_proj=None) -> "SoftmaxAttention":
        if isinstance(q_proj, nn.MultiheadAttention):
            q_proj, k_proj, v_proj, out_proj = _split_mha(q_proj)
        self.copy_projections_from(q_proj, k_proj, v_proj, out_proj)
        return self

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
        # q [B, H, Tq, hd], k/v [B, H, Tk, hd]; mask [.., Tq, Tk] bool, True = may attend
        scores = torch.matmul(q * self.scaling, k.transpose(-1, -2))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        # softmax in at least fp32 (16-bit scores would lose the small weights); fp64 stays fp64
        low = scores.dtype in (torch.float16, torch.bfloat16)
        return torch.matmul(torch.softmax(scores.float() if low else scores, dim=-1).to(v.dtype), v)

    def forward(self, x: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """Whole sequence; ``state`` is a KV cache from a previous segment. Returns (out, new cache)."""
        self._check_x(x)
        tf = self.time_first
        B = x.shape[1] if tf else x.shape[0]
        T = x.shape[0] if tf else x.shape[1]
        q, k, v = (self._heads(p(x), tf).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        if state is not None:
            k = torch.cat([state[0], k], dim=2)
            v = torch.cat([state[1], v], dim=2)
        P = k.shape[2] - T
        mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(P)
        if self.window is not None:
            mask = mask.triu(P - self.window + 1)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (B, T):
                raise ValueError(f"SoftmaxAttention: argument 'key_padding_mask' must have shape [B, T] = {[B, T]}, "
                                 f"got {list(key_padding_mask.shape)}")
            keep = torch.cat([torch.ones(B, P, dtype=torch.bool, device=x.device), ~key_padding_mask.bool()], dim=1)
            mask = mask[None, None] & keep[:, None, None, :]
            # a padded query may see nothing at all; let it see itself to stay finite
            own = torch.zeros(T, P + T, dtype=torch.bool, device=x.device)
            own[torch.arange(T), P + torch.arange(T)] = True
            mask = mask | own[None, None]
        y = self._attend(q, k, v, mask).transpose(1, 2)  # [B, T, H, hd]
        y = (y.transpose(0, 1) if tf else y).reshape(T if tf else B, B if tf else T, -1)
        return self.out_proj(y), self._trim((k, v))

    def step(self, x_t: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None):
        """One token against the cache; returns ``(out_t, (keys, values))`` with the token appended."""
        self._check_x(x_t, "x_t", rank=2)
        B = x_t.shape[0]
        q, k, v = (p(x_t).view(B, self.num_heads, 1, -1) for p in (self.q_proj, self.k_proj, self.v_proj))
        if state is not None:
            k = torch.cat([state[0], k], dim=2)
            v = torch.cat([state[1], v], dim=2)
        y = self._attend(q, k, v, None).reshape(B, -1)
        return self.out_proj(y), self._trim((k, v))
