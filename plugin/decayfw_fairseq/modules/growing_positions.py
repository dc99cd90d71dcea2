"""fairseq's sinusoidal position table, grown by doubling.

fairseq's ``SinusoidalPositionalEmbedding`` rebuilds its whole table one row longer at every
decoding step once a sequence passes the table's initial size (max positions + 2), which makes each
generated token cost O(T·C) — exactly what a recurrent model is meant to avoid. Growing by doubling
gives identical positions at O(1) amortised cost. The table is not saved in checkpoints, so
swapping the module changes nothing on disk.
"""
from fairseq.modules import SinusoidalPositionalEmbedding


class GrowingSinusoidalPositionalEmbedding(SinusoidalPositionalEmbedding):
    def forward(self, input, incremental_state=None, timestep=None, positions=None):
        need = self.padding_idx + 1 + input.size(1)
        if need > self.weights.size(0):
            self.weights = self.get_embedding(max(need, 2 * self.weights.size(0)), self.embedding_dim,
                                              self.padding_idx).to(self.weights)
        return super().forward(input, incremental_state, timestep, positions)


def use_growing_positions(decoder) -> bool:
    """Replaces a decoder's plain sinusoidal positions by the growing table; True if it did."""
    pe = getattr(decoder, "embed_positions", None)
    if type(pe) is not SinusoidalPositionalEmbedding:
        return False
    grown = GrowingSinusoidalPositionalEmbedding(pe.embedding_dim, pe.padding_idx, init_size=pe.weights.size(0))
    grown.max_positions = pe.max_positions
    decoder.embed_positions = grown
    return True
