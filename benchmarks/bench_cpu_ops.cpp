// CPU benchmark of the decay-rule op (Google Benchmark): forward, forward+backward and the decode
// step, against (a) a naive per-token loop of ATen ops (autograd for its backward) and (b) causal
// softmax attention (for decode: one query against a KV cache). Run through
// benchmarks/run_cpu_benchmarks.sh, which turns the JSON into the table in docs/benchmarks.md.
//
// Sizes: one sequence of H = 8 heads (N = B·H = 8), D = 128, M ∈ {32, 64}, T = 128 … 8192, so
// "tokens/s" counts tokens of that 8-head layer. Decode is measured over a sweep of N so the state
// leaves the caches, and reports the bytes of state touched per second (read + write, fp32) and
// that rate as a fraction of this machine's measured memory bandwidth (copy, measured at start-up).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "op_handles.h"

namespace dt = decayfw::testing;

namespace {

constexpr int64_t kHeads = 8;
constexpr int64_t kDimV = 128;
double g_copy_bandwidth = 0;  // bytes/s, measured in main()

struct Layer {
  at::Tensor q, k, v, z, f;
};

Layer make_layer(int64_t B, int64_t T, int64_t M, bool requires_grad = false) {
  at::manual_seed(0);
  Layer l;
  l.q = at::randn({B, T, kHeads, M}) / std::sqrt(double(M));
  l.k = at::randn({B, T, kHeads, M}) / std::sqrt(double(M));
  l.v = at::randn({B, T, kHeads, kDimV});
  l.z = at::randn({B, T, kHeads, kDimV}) + 2;
  l.f = at::randn({B, T, kHeads, M}) + 2;
  if (requires_grad)
    for (at::Tensor* t : {&l.q, &l.k, &l.v, &l.z, &l.f}) t->set_requires_grad(true);
  return l;
}

void set_token_rate(benchmark::State& state, int64_t T) {
  state.counters["tokens/s"] = benchmark::Counter(double(T), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["T"] = double(T);
}

// ------------------------------------------------------------------------------------------------
// the op

void BM_Decay_Forward(benchmark::State& state) {
  const int64_t T = state.range(0), M = state.range(1);
  Layer l = make_layer(1, T, M);
  for (auto _ : state) {
    auto out = dt::decay_fwd(l.q, l.k, l.v, l.z, l.f);
    benchmark::DoNotOptimize(std::get<0>(out).data_ptr());
  }
  set_token_rate(state, T);
}

void BM_Decay_ForwardBackward(benchmark::State& state) {
  const int64_t T = state.range(0), M = state.range(1);
  Layer l = make_layer(1, T, M);
  const at::Tensor dy = at::randn({1, T, kHeads, kDimV});
  for (auto _ : state) {
    auto out = dt::decay_fwd(l.q, l.k, l.v, l.z, l.f);
    auto g = dt::decay_bwd(l.q, l.k, l.v, l.z, l.f, c10::nullopt, dy, c10::nullopt);
    benchmark::DoNotOptimize(std::get<0>(g).data_ptr());
  }
  set_token_rate(state, T);
}

// ------------------------------------------------------------------------------------------------
// (a) the naive per-token loop: what one writes in PyTorch without a kernel

std::pair<at::Tensor, at::Tensor> naive_loop(const Layer& l) {
  const int64_t B = l.q.size(0), T = l.q.size(1), M = l.q.size(3);
  at::Tensor S = at::zeros({B, kHeads, kDimV, M});
  const at::Tensor a = at::sigmoid(l.z), b = at::sigmoid(l.f);
  std::vector<at::Tensor> ys;
  ys.reserve(T);
  for (int64_t t = 0; t < T; ++t) {
    const at::Tensor gate = a.select(1, t).unsqueeze(-1) * b.select(1, t).unsqueeze(-2);
    S = gate * S + l.v.select(1, t).unsqueeze(-1) * l.k.select(1, t).unsqueeze(-2);
    ys.push_back(at::matmul(S, l.q.select(1, t).unsqueeze(-1)).squeeze(-1));
  }
  return {at::stack(ys, 1), S};
}

void BM_NaiveLoop_Forward(benchmark::State& state) {
  const int64_t T = state.range(0), M = state.range(1);
  Layer l = make_layer(1, T, M);
  at::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(naive_loop(l).first.data_ptr());
  set_token_rate(state, T);
}

void BM_NaiveLoop_ForwardBackward(benchmark::State& state) {
  const int64_t T = state.range(0), M = state.range(1);
  Layer l = make_layer(1, T, M, true);
  const at::Tensor dy = at::randn({1, T, kHeads, kDimV});
  for (auto _ : state) {
    auto y = naive_loop(l).first;
    y.backward(dy);
    benchmark::DoNotOptimize(l.q.grad().data_ptr());
  }
  set_token_rate(state, T);
}

// ------------------------------------------------------------------------------------------------
// (b) causal softmax attention at the same N, D and T (M plays no role; q, k have D = 128)

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  // q, k, v: [B, H, T, D]
  const int64_t T = q.size(2);
  const at::Tensor scores = at::matmul(q, k.transpose(-1, -2)) / std::sqrt(double(q.size(-1)));
  const at::Tensor mask = at::ones({T, T}, at::kBool).triu(1);
  return at::matmul(at::softmax(scores.masked_fill(mask, -std::numeric_limits<float>::infinity()), -1), v);
}

void BM_Attention_Forward(benchmark::State& state) {
  const int64_t T = state.range(0);
  at::manual_seed(0);
  const at::Tensor q = at::randn({1, kHeads, T, kDimV}), k = at::randn_like(q), v = at::randn_like(q);
  at::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(causal_attention(q, k, v).data_ptr());
  set_token_rate(state, T);
}

void BM_Attention_ForwardBackward(benchmark::State& state) {
  const int64_t T = state.range(0);
  at::manual_seed(0);
  const at::Tensor q = at::randn({1, kHeads, T, kDimV}).set_requires_grad(true);
  const at::Tensor k = at::randn({1, kHeads, T, kDimV}).set_requires_grad(true);
  const at::Tensor v = at::randn({1, kHeads, T, kDimV}).set_requires_grad(true);
  const at::Tensor dy = at::randn({1, kHeads, T, kDimV});
  for (auto _ : state) {
    causal_attention(q, k, v).backward(dy);
    benchmark::DoNotOptimize(q.grad().data_ptr());
  }
  set_token_rate(state, T);
}

// ------------------------------------------------------------------------------------------------
// decode: one token for N sequences

void BM_Decay_DecodeStep(benchmark::State& state) {
  const int64_t N = state.range(0), M = state.range(1);
  const int64_t B = N / kHeads;
  at::manual_seed(0);
  const at::Tensor q = at::randn({B, kHeads, M}) / std::sqrt(double(M)), k = at::randn({B, kHeads, M}) / 8,
                   f = at::randn({B, kHeads, M}) + 2;
  const at::Tensor v = at::randn({B, kHeads, kDimV}), z = at::randn({B, kHeads, kDimV}) + 2;
  at::Tensor S = at::zeros({B, kHeads, kDimV, M});
  for (auto _ : state) benchmark::DoNotOptimize(dt::decay_step(q, k, v, z, f, S).data_ptr());
  const double bytes = double(N) * kDimV * M * 4 * 2;  // state read + written, fp32
  state.counters["state_bytes"] = double(N) * kDimV * M * 4;
  state.counters["bytes/s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens/s"] = benchmark::Counter(double(B), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["copy_bw"] = g_copy_bandwidth;
}

void BM_Attention_DecodeStep(benchmark::State& state) {
  // One query per sequence against a KV cache of length T (batch 1, 8 heads, D = 128).
  const int64_t T = state.range(0);
  at::manual_seed(0);
  const at::Tensor q = at::randn({1, kHeads, 1, kDimV});
  const at::Tensor K = at::randn({1, kHeads, T, kDimV}), V = at::randn({1, kHeads, T, kDimV});
  at::NoGradGuard no_grad;
  for (auto _ : state) {
    const at::Tensor p = at::softmax(at::matmul(q, K.transpose(-1, -2)) / std::sqrt(double(kDimV)), -1);
    benchmark::DoNotOptimize(at::matmul(p, V).data_ptr());
  }
  state.counters["tokens/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["T"] = double(T);
}

void BM_DecayLayer_DecodeStep(benchmark::State& state) {
  // The same single sequence as BM_Attention_DecodeStep: batch 1, 8 heads; cost independent of T.
  const int64_t M = state.range(1);
  at::manual_seed(0);
  const at::Tensor q = at::randn({1, kHeads, M}), k = at::randn({1, kHeads, M}) / 8, f = at::randn({1, kHeads, M}) + 2;
  const at::Tensor v = at::randn({1, kHeads, kDimV}), z = at::randn({1, kHeads, kDimV}) + 2;
  at::Tensor S = at::zeros({1, kHeads, kDimV, M});
  for (auto _ : state) benchmark::DoNotOptimize(dt::decay_step(q, k, v, z, f, S).data_ptr());
  state.counters["tokens/s"] = benchmark::Counter(1.0, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["T"] = double(state.range(0));
}

void SeqArgs(benchmark::internal::Benchmark* b, int64_t max_t) {
  for (int64_t M : {32, 64})
    for (int64_t T = 128; T <= max_t; T *= 4) b->Args({T, M});
}

double measure_copy_bandwidth() {
  // Large enough to leave every cache level; best of several copies, counting read + write.
  const size_t n = size_t(256) << 20;
  std::vector<char> src(n, 1), dst(n, 0);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    at::parallel_for(0, int64_t(n), int64_t(n) / 64, [&](int64_t b, int64_t e) {
      std::memcpy(dst.data() + b, src.data() + b, size_t(e - b));
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * double(n) / s);
  }
  benchmark::DoNotOptimize(dst.data());
  return best;
}

}  // namespace

BENCHMARK(BM_Decay_Forward)->Apply([](auto* b) { SeqArgs(b, 8192); })->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decay_ForwardBackward)->Apply([](auto* b) { SeqArgs(b, 8192); })->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NaiveLoop_Forward)->Apply([](auto* b) { SeqArgs(b, 8192); })->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NaiveLoop_ForwardBackward)->Apply([](auto* b) { SeqArgs(b, 2048); })->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Attention_Forward)->Apply([](auto* b) { SeqArgs(b, 8192); })->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Attention_ForwardBackward)->Apply([](auto* b) { SeqArgs(b, 8192); })->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decay_DecodeStep)
    ->ArgsProduct({{8, 64, 512, 2048, 8192}, {32, 64}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Attention_DecodeStep)->RangeMultiplier(2)->Range(16, 8192)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecayLayer_DecodeStep)->ArgsProduct({{16}, {32, 64}})->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  // Debian's LibTorch starts with one thread; measure with every core.
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  g_copy_bandwidth = measure_copy_bandwidth();
  benchmark::AddCustomContext("copy_bandwidth_GBps", std::to_string(g_copy_bandwidth / 1e9));
  benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
