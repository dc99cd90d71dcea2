"""The fast-weight layer (any rule; decay by default) with fairseq's self-attention calling convention.

It is :class:`decayfw.nn.FastWeights` (time-first, so fairseq's ``T×B×C`` tensors reach the op
without copies) plus what fairseq's decoder layer, incremental decoding and checkpoint loading expect
of a ``MultiheadAttention``:

- ``forward(query, key, value, key_padding_mask, incremental_state, need_weights, static_kv,
  attn_mask, ...) -> (out, None)``; ``attn_mask`` is ignored (the recurrence is causal);
- the recurrent state lives in ``incremental_state`` as ``{"fw_state": [B, H, rows, M] fp32}``, batch
  first, so ``reorder_incremental_state`` (beam search, shrinking batches) is an ``index_select``;
- ``upgrade_state_dict_named`` turns a softmax-attention checkpoint's keys into this layer's:
  splits legacy ``in_proj_weight``, fills the gate and feature-map parameters the base lacks with
  their fresh initialisation and rescales W_v, b_v by the layer's ``value_rescale()`` (1 − σ(b_z)
  for decay, 1/512 for the additive rule without feature map) — swap-then-finetune. A one-element
  buffer ``fw_marker`` that attention checkpoints lack tells a swap from a resumed fast-weight model
  even for rules with no parameters of their own.
"""
import logging
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from fairseq.incremental_decoding_utils import with_incremental_state

from decayfw.nn import FastWeights

from .attention_buffer import SelfAttentionBuffer

logger = logging.getLogger(__name__)

STATE_KEY = "fw_state"
MARKER = "fw_marker"
# Parameters a softmax-attention checkpoint does not have; filled by upgrade_state_dict_named.
_FW_ONLY = ("gate_z.weight", "gate_z.bias", "gate_f.weight", "gate_f.bias", "gate_g.weight", "gate_g.bias",
            "gate_beta.weight", "gate_beta.bias", "phi_weight", "phi_bias", MARKER)


def split_legacy_in_proj(state_dict: Dict[str, Tensor], prefix: str):
    """Legacy fairseq attention kept q/k/v packed in one matrix; split it into fairseq's current keys."""
    if prefix + "in_proj_weight" in state_dict:
        w = state_dict.pop(prefix + "in_proj_weight")
        E = w.shape[0] // 3
        for i, part in enumerate(("q_proj", "k_proj", "v_proj")):
            state_dict[f"{prefix}{part}.weight"] = w[i * E:(i + 1) * E]
        if prefix + "in_proj_bias" in state_dict:
            b = state_dict.pop(prefix + "in_proj_bias")
            for i, part in enumerate(("q_proj", "k_proj", "v_proj")):
                state_dict[f"{prefix}{part}.bias"] = b[i * E:(i + 1) * E]


@with_incremental_state
class FairseqFastWeights(SelfAttentionBuffer, FastWeights):
    def __init__(self, embed_dim: int, num_heads: int, rule: str = "decay", key_dim: Optional[int] = None,
                 feature_map: Optional[str] = None, normalization: str = "none",
                 value_scale: Optional[float] = None, rescale_values: bool = True, scale_queries: bool = True,
                 save_chunk_states: bool = True):
        super().__init__(embed_dim, num_heads, rule=rule, key_dim=key_dim, feature_map=feature_map,
                         normalization=normalization, value_scale=value_scale, scale_queries=scale_queries,
                         time_first=True, save_chunk_states=save_chunk_states)
        self.register_buffer(MARKER, torch.ones(1))
        self.rescale_on_swap = rescale_values
        self.self_attention = True
        # Streaming evaluation (modules/streaming.py): carry the final state of one full-sequence
        # call into the next instead of starting from zeros.
        self.carry_state = False
        self.carried_state: Optional[Tensor] = None

    # -- fairseq's MultiheadAttention interface -----------------------------------------------------

    def forward(self, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
                need_weights: bool = True, static_kv: bool = False, attn_mask: Optional[Tensor] = None,
                before_softmax: bool = False, need_head_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        if static_kv or before_softmax:
            raise ValueError("fast weights are self-attention only (static_kv/before_softmax unsupported)")
        if key is not None and (key.shape != query.shape or key.data_ptr() != query.data_ptr()):
            raise ValueError("fast weights are self-attention only: key must be the query")
        if incremental_state is None:
            if not self.carry_state:
                out, _ = super().forward(query, key_padding_mask=key_padding_mask)
                return out, None
            out, state = super().forward(query, self.carried_state, key_padding_mask=key_padding_mask)
            self.carried_state = state.detach()
            return out, None
        buf = self._get_input_buffer(incremental_state)
        state = buf.get(STATE_KEY)
        if query.shape[0] == 1 and key_padding_mask is None and not torch.is_grad_enabled():
            out, state = self.step(query[0], state)  # O(1): in place on the state
            out = out.unsqueeze(0)
        else:
            out, state = super().forward(query, state, key_padding_mask=key_padding_mask)
        buf[STATE_KEY] = state
        self._set_input_buffer(incremental_state, buf)
        return out, None

    # -- checkpoints --------------------------------------------------------------------------------

    def upgrade_state_dict_named(self, state_dict: Dict[str, Tensor], name: str):
        prefix = name + "." if name else ""
        split_legacy_in_proj(state_dict, prefix)
        own = self.state_dict()
        missing = [k for k in _FW_ONLY if k in own and prefix + k not in state_dict]
        if not missing:
            return
        # A swap from attention: the marker is missing and so is every parameter of the rule's own
        # (a fast-weight checkpoint written before the marker existed has its gates).
        is_swap = MARKER in missing and all(k in missing for k in _FW_ONLY if k in own)
        for k in missing:
            state_dict[prefix + k] = own[k].detach().clone()
        scale = self.value_rescale().cpu()  # from the gate biases just filled in (own == filled)
        rescaled = is_swap and self.rescale_on_swap and not bool((scale == 1).all())
        if rescaled and prefix + "v_proj.weight" in state_dict:
            w = state_dict[prefix + "v_proj.weight"]
            if w.shape[0] == scale.shape[0]:  # a real shape mismatch is left for strict loading to report
                state_dict[prefix + "v_proj.weight"] = w * scale.to(w.dtype).unsqueeze(1)
                if prefix + "v_proj.bias" in state_dict:
                    b = state_dict[prefix + "v_proj.bias"]
                    state_dict[prefix + "v_proj.bias"] = b * scale.to(b.dtype)
        logger.info("%s: initialised %s (absent from the checkpoint%s)%s", name or "self_attn", ", ".join(missing),
                    ": swap from softmax attention" if is_swap else "",
                    "; W_v rescaled (%s rule)" % self.rule if rescaled else "")


# The name the decay model has always used; the class runs any rule.
FairseqDecayFastWeights = FairseqFastWeights
