"""What fairseq's decoder layer and sequence generator expect of a self-attention module's
incremental state, shared by the fast-weight and local-attention layers: one buffer (a dict of
batch-first tensors) per module under "attn_state", read and written through ``_get_input_buffer``
/ ``_set_input_buffer``, and reordered with the surviving hypotheses in beam search."""
from typing import Dict, Optional

import torch
from torch import Tensor


class SelfAttentionBuffer:
    """Mixin for a module decorated with fairseq's ``with_incremental_state``."""

    def _get_input_buffer(self, incremental_state) -> Dict[str, Optional[Tensor]]:
        result = self.get_incremental_state(incremental_state, "attn_state")
        return result if result is not None else {}

    def _set_input_buffer(self, incremental_state, buffer: Dict[str, Optional[Tensor]]):
        return self.set_incremental_state(incremental_state, "attn_state", buffer)

    @torch.jit.export
    def reorder_incremental_state(self, incremental_state, new_order: Tensor):
        """Beam search and shrinking batches: select the states of the surviving hypotheses."""
        buf = self._get_input_buffer(incremental_state)
        if buf:
            for k, v in list(buf.items()):
                if v is not None:
                    buf[k] = v.index_select(0, new_order)
            incremental_state = self._set_input_buffer(incremental_state, buf)
        return incremental_state

    def set_beam_size(self, beam_size: int):
        pass
