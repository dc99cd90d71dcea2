"""Streaming: carry every decay layer's state from one forward call to the next.

Inside ``with carry_state(model):`` a model processes a long text block after block, each block
starting from the state the previous one ended with: unbounded context at O(1) memory. (Positions
restart in every block, as in training; the state is what carries the context.)
"""
import contextlib

from .decay_attention import FairseqFastWeights


def decay_layers(model):
    return [m for m in model.modules() if isinstance(m, FairseqFastWeights)]


@contextlib.contextmanager
def carry_state(model):
    layers = decay_layers(model)
    if not layers:
        raise ValueError("carry_state: the model has no fast-weight layers (is it a decay_transformer_lm with a "
                         "fast-weight --fw-rule? local attention carries no state)")
    for m in layers:
        m.carry_state, m.carried_state = True, None
    try:
        yield layers
    finally:
        for m in layers:
            m.carry_state, m.carried_state = False, None
