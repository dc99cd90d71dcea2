from .decay_attention import FairseqDecayFastWeights, FairseqFastWeights
from .local_attention import FairseqLocalAttention
from .decay_decoder_layer import DecayTransformerDecoderLayer
from .growing_positions import GrowingSinusoidalPositionalEmbedding, use_growing_positions
from .streaming import carry_state, decay_layers

__all__ = ["FairseqFastWeights", "FairseqDecayFastWeights", "FairseqLocalAttention", "DecayTransformerDecoderLayer", "carry_state", "decay_layers",
           "GrowingSinusoidalPositionalEmbedding", "use_growing_positions"]
