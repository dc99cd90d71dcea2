// The gate recorder against the model itself: the recorded state norms equal the norms of the
// states the decay op leaves in the decoding state; gates are probabilities; implied attention maps
// are causal distributions; attention maps are the softmax weights; only the asked-for layers and
// heads are kept.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>

#include "engine_fixtures.h"
#include "model/load_model.h"
#include "observe/gate_recorder.h"

using namespace decayfw::engine;
using decayfw::testing::fixture;

namespace {

at::Tensor tokens(const LoadedModel& m) {
  std::vector<int64_t> ids = {Dictionary::kEos};
  for (int64_t id : m.dictionary.encode_line("a b c d e f g h i j k l m n o p")) ids.push_back(id);
  return at::tensor(ids, at::kLong).unsqueeze(0);
}

TEST(GateRecorder, DecayRecordsMatchTheOpsStates) {
  LoadedModel m = load_model(fixture("decay/checkpoint_last.pt"));
  const at::Tensor x = tokens(m);
  const int64_t T = x.size(1);
  GateRecorder rec({1}, {0, 2});
  DecodeState st = m.model->new_state(1);
  m.model->features(x, &st, &rec);
  ASSERT_EQ(rec.records().size(), 2u);  // layer 1, heads 0 and 2 only
  for (int64_t h : {0, 2}) {
    const HeadRecord& r = rec.records().at({1, h});
    EXPECT_EQ(r.sigma_z.sizes(), at::IntArrayRef({T, 8}));
    EXPECT_EQ(r.sigma_f.sizes(), at::IntArrayRef({T, 8}));
    EXPECT_TRUE((r.sigma_z > 0).all().item<bool>() && (r.sigma_z < 1).all().item<bool>());
    // the recorder's own recurrence ends where the op's does
    const double op_norm = st.fw_states[1][0][h].norm().item<double>();
    EXPECT_NEAR(r.state_norm[T - 1].item<double>(), op_norm, 1e-4 * (1 + op_norm));
    // implied attention: causal, rows are distributions
    EXPECT_EQ(r.map.sizes(), at::IntArrayRef({T, T}));
    EXPECT_TRUE(at::allclose(r.map.sum(1), at::ones({T}), 1e-5, 1e-5));
    EXPECT_EQ(r.map.triu(1).abs().sum().item<double>(), 0.0);
    // half-lives are positive token counts
    EXPECT_TRUE((half_life(r) > 0).all().item<bool>());
  }
}

// Blocks of 16 tokens from token 0; a block's span sums −log σ over its last 15 tokens (its first
// token's gate cancels in the kernels' differences); the last block is padded with gates of 1.
TEST(GateRecorder, PerElementBlockShareCountsBlocksPastTheBound) {
  // 40 tokens (blocks 0-15, 16-31, 32-39), 3 channels
  at::Tensor s = at::full({40, 3}, 0.99, at::kFloat);
  s.select(1, 0).narrow(0, 1, 15).fill_(std::exp(-3.0));   // block 0, channel 0: span 45 > 40
  s.select(1, 1).narrow(0, 0, 16).fill_(std::exp(-2.8));   // block 0, channel 1: span 42 (the first row does not count)
  s.select(1, 2).narrow(0, 16, 16).fill_(std::exp(-2.6));  // block 1, channel 2: span 39, under the bound
  s.select(1, 2).narrow(0, 33, 7).fill_(std::exp(-6.0));   // block 2 (partial), channel 2: span 42
  EXPECT_DOUBLE_EQ(per_element_block_share(s), 3.0 / 9.0);
  EXPECT_DOUBLE_EQ(per_element_block_share(s, 16, 44.0), 1.0 / 9.0);
  EXPECT_DOUBLE_EQ(per_element_block_share(at::full({100, 4}, 0.5, at::kFloat)), 0.0);  // span 15 ln 2 ≈ 10.4
  EXPECT_DOUBLE_EQ(per_element_block_share(at::Tensor()), 0.0);
}

// Chunks from token 0; a chunk's span sums −log σ over all its tokens (the kernels' sums start at the chunk's start
// state, which the first token's gate decays too); the last chunk is padded with gates of 1. A (chunk, row tile)
// pair is whole when every key channel and every row of the tile is within the bound.
TEST(GateRecorder, WholeChunkShareNeedsEveryKeyAndEveryRowOfTheTileNarrow) {
  // 100 tokens: chunks of 32 (0-31, 32-63, 64-95, 96-99); D = 5 rows in tiles of 4 (rows 0-3, row 4); M = 2
  at::Tensor z = at::full({100, 5}, 0.99, at::kFloat), f = at::full({100, 2}, 0.99, at::kFloat);
  z.select(1, 0).narrow(0, 0, 1).fill_(std::exp(-41.0));   // chunk 0, tile 0: 41 + 31·0.01 = 41.3 (its first token)
  f.select(1, 1).narrow(0, 32, 32).fill_(std::exp(-1.3));  // chunk 1, a key: 41.6, every tile
  z.select(1, 4).narrow(0, 64, 20).fill_(std::exp(-2.0));  // chunk 2, tile 1: 40 + 12·0.01 = 40.1
  z.select(1, 2).narrow(0, 96, 4).fill_(std::exp(-10.5));  // chunk 3 (partial), tile 0: 42
  EXPECT_DOUBLE_EQ(whole_chunk_share(z, f, 32, 4), 3.0 / 8.0);        // chunk 0 tile 1, chunk 2 tile 0, chunk 3 tile 1
  EXPECT_DOUBLE_EQ(whole_chunk_share(z, f, 32, 4, 41.5), 5.0 / 8.0);  // chunks 0 and 2 whole, chunk 3's tile 1
  EXPECT_DOUBLE_EQ(whole_chunk_share(z, f, 32, 8), 0.0);              // one tile: every chunk has a wide row or key
  EXPECT_DOUBLE_EQ(whole_chunk_share(z, f, 32, 8, 41.5), 2.0 / 4.0);  // chunks 0 and 2
  // σ = 1/2 everywhere (a zero logit, the middle of Uniform Gate Initialization): 64 ln 2 ≈ 44.4 over 64 tokens
  const at::Tensor half = at::full({128, 64}, 0.5, at::kFloat);
  EXPECT_DOUBLE_EQ(whole_chunk_share(half, half), 0.0);
  EXPECT_DOUBLE_EQ(whole_chunk_share(half, half, 32), 1.0);  // 22.2 over 32
  EXPECT_DOUBLE_EQ(whole_chunk_share(at::Tensor(), f), 0.0);
  EXPECT_THROW(whole_chunk_share(z, f.narrow(0, 0, 99)), c10::Error);
}

TEST(GateRecorder, AttentionMapsAreTheSoftmaxWeights) {
  LoadedModel m = load_model(fixture("base/checkpoint_last.pt"));
  const at::Tensor x = tokens(m);
  const int64_t T = x.size(1);
  GateRecorder rec({}, {1}, /*max_map_tokens=*/10);
  m.model->features(x, nullptr, &rec);
  ASSERT_EQ(rec.records().size(), 2u);  // both layers, head 1
  const HeadRecord& r = rec.records().at({0, 1});
  EXPECT_FALSE(r.sigma_z.defined());
  EXPECT_EQ(r.map.sizes(), at::IntArrayRef({10, 10}));  // bounded by max_map_tokens
  EXPECT_TRUE(at::allclose(r.map.sum(1), at::ones({10}), 1e-5, 1e-5));  // first rows see ≤ 10 keys
  EXPECT_EQ(r.map.triu(1).abs().sum().item<double>(), 0.0);
  (void)T;
}

}  // namespace
