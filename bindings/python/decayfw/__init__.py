"""decayfw: decaying fast weights (Mao, EMNLP 2022) for PyTorch.

- :mod:`decayfw.ops` — ``decay_fast_weights`` (whole sequence, autograd) and ``decay_step`` (decoding)
- :mod:`decayfw.rules` — the paper's baselines: ``add_/gated_/delta_fast_weights`` and their steps
- :mod:`decayfw.nn` — ``FastWeights`` (any rule, feature map, normalisation), ``DecayFastWeights``
  (the paper's layer) and ``SoftmaxAttention`` (full or local attention baselines)
- :mod:`decayfw.reference` — readable pure-PyTorch references of every rule

The native ops are also reachable as ``torch.ops.decayfw.*`` (and from C++ through the dispatcher).
"""
import os as _os

import torch as _torch

from . import _loader
from ._loader import BUILT_WITH_CUDA, HAS_EXTENSION
from .ops import chunk_diagonal, chunk_forward, cuda_path, decay_fast_weights, decay_step
from .rules import add_fast_weights, add_step, delta_fast_weights, delta_step, gated_fast_weights, gated_step

__version__ = "0.1.0"

__all__ = ["decay_fast_weights", "decay_step", "cuda_path", "chunk_forward", "chunk_diagonal", "add_fast_weights", "add_step", "gated_fast_weights", "gated_step",
           "delta_fast_weights", "delta_step", "HAS_EXTENSION", "BUILT_WITH_CUDA", "set_default_threads",
           "__version__"]


def set_default_threads() -> int:
    """Use every core for torch's intra-op pool unless the user chose a number.

    Debian's torch starts with one thread. When ``OMP_NUM_THREADS`` is not set and torch runs one
    thread, this sets it to ``os.cpu_count()``. Called on import unless ``DECAYFW_KEEP_THREADS`` is
    set. Returns the thread count in effect.
    """
    if "OMP_NUM_THREADS" not in _os.environ and _torch.get_num_threads() == 1 and (_os.cpu_count() or 1) > 1:
        _torch.set_num_threads(_os.cpu_count())
    return _torch.get_num_threads()


if not _os.environ.get("DECAYFW_KEEP_THREADS"):
    set_default_threads()

from . import nn  # noqa: E402  (after the ops it builds on)
