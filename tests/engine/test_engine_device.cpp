// The engine's devices: names and refusals (what `--device` and the analyzer's Device box go
// through), CPU runs that say where they ran, and — where this LibTorch has CUDA and a GPU is
// visible — the same models on CUDA equal to the CPU and to fairseq (skipped otherwise, with the
// reason).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>

#include "engine_fixtures.h"
#include "model/device.h"
#include "model/load_model.h"
#include "observe/gate_recorder.h"
#include "run/decode_benchmark.h"
#include "run/generation.h"
#include "run/scoring.h"

using namespace decayfw::engine;
using decayfw::testing::fixture;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string refusal(const std::string& device) {
  try {
    parse_device(device);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Device, NamesParseAndUnknownOnesAreRefused) {
  EXPECT_EQ(parse_device("cpu"), at::Device(at::kCPU));
  EXPECT_EQ(device_name(at::kCPU), "cpu");
  EXPECT_EQ(device_name(at::Device(at::kCUDA, 1)), "cuda:1");
  EXPECT_TRUE(contains(refusal("tpu"), "expected cpu, cuda or cuda:N")) << refusal("tpu");
  EXPECT_TRUE(contains(refusal("cuda:x"), "cuda:N with N a GPU index")) << refusal("cuda:x");
  EXPECT_TRUE(contains(refusal("cuda:"), "cuda:N with N a GPU index"));
  EXPECT_TRUE(contains(refusal(""), "expected cpu"));
}

TEST(Device, CudaIsOfferedExactlyWhenItCanBeUsed) {
  const auto devices = list_devices();
  ASSERT_GE(devices.size(), 2u);
  EXPECT_EQ(devices[0].name, "cpu");
  EXPECT_TRUE(devices[0].available);
  const int64_t gpus = cuda_device_count();
  if (gpus == 0) {
    // one unavailable entry that says why, and every CUDA name refused with the same reason
    ASSERT_EQ(devices.size(), 2u);
    EXPECT_EQ(devices[1].name, "cuda");
    EXPECT_FALSE(devices[1].available);
    EXPECT_EQ(devices[1].reason, cuda_unavailable_reason());
    EXPECT_FALSE(devices[1].reason.empty());
#ifndef DECAYFW_WITH_CUDA
    if (!torch_built_with_cuda()) {
      EXPECT_TRUE(contains(devices[1].reason, "this LibTorch has no CUDA")) << devices[1].reason;
    }
#endif
    for (const char* name : {"cuda", "cuda:0", "cuda:1"}) {
      EXPECT_TRUE(contains(refusal(name), cuda_unavailable_reason())) << name << ": " << refusal(name);
      EXPECT_TRUE(contains(refusal(name), "use cpu")) << refusal(name);
    }
  } else {
    ASSERT_EQ(static_cast<int64_t>(devices.size()), 1 + gpus);
    for (int64_t i = 0; i < gpus; ++i) {
      EXPECT_EQ(devices[i + 1].name, "cuda:" + std::to_string(i));
      EXPECT_TRUE(devices[i + 1].available);
    }
    EXPECT_EQ(parse_device("cuda"), at::Device(at::kCUDA, 0));
    EXPECT_TRUE(contains(refusal("cuda:" + std::to_string(gpus)), "visible")) << refusal("cuda:" + std::to_string(gpus));
  }
}

TEST(Device, CpuRunsSayWhereTheyRanAndSynchronizeIsANoOp) {
  EXPECT_NO_THROW(synchronize(at::kCPU));
  EXPECT_NO_THROW(check_op_on_device("decay_fwd", at::kCPU));
  LoadedModel m = load_model(fixture("decay/checkpoint_last.pt"));
  EXPECT_EQ(m.model->device(), at::Device(at::kCPU));
  BenchOptions o;
  o.contexts = {4, 8};
  o.steps = 2;
  o.warmup = 0;
  const auto points = benchmark_decode({{"decay", m.model.get()}}, o);
  ASSERT_EQ(points.size(), 2u);
  for (const auto& p : points) {
    EXPECT_EQ(p.device, "cpu");
    EXPECT_GT(p.ms_per_token, 0);
  }
}

#ifndef DECAYFW_WITH_CUDA
// The decayfw ops were built without CUDA kernels: a decay model is refused on CUDA with a message
// that says so, before any weight is copied (not a dispatcher error at the first token).
TEST(Device, DecayModelOnABackendWithoutTheOpIsRefusedClearly) {
  try {
    check_op_on_device("decay_fwd", at::Device(at::kCUDA, 0));
    ADD_FAILURE() << "no refusal";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "has no kernel for it in this build")) << e.what();
    EXPECT_TRUE(contains(e.what(), "decay_fwd")) << e.what();
  }
  try {
    load_model(fixture("decay/checkpoint_last.pt"), "", at::Device(at::kCUDA, 0));
    ADD_FAILURE() << "a decay model was built on CUDA without CUDA kernels";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "has no kernel")) << e.what();
  }
}
#endif

// -- on a GPU --------------------------------------------------------------------------------------

#define SKIP_WITHOUT_CUDA()                                               \
  do {                                                                    \
    if (cuda_device_count() == 0) {                                       \
      GTEST_SKIP() << "no CUDA here: " << cuda_unavailable_reason();      \
    }                                                                     \
  } while (false)

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

std::string checkpoint_of(const std::string& name) {
  return name + (name.find("legacy") != std::string::npos ? "/checkpoint_legacy.pt" : "/checkpoint_last.pt");
}

class OnCuda : public ::testing::TestWithParam<std::string> {};

TEST_P(OnCuda, ForwardDecodeGenerationScoringGatesAndBenchEqualTheCpu) {
  SKIP_WITHOUT_CUDA();
#ifndef DECAYFW_WITH_CUDA
  if (GetParam().find("decay") != std::string::npos) GTEST_SKIP() << "the decayfw ops were built without CUDA kernels";
#endif
  const at::Device gpu(at::kCUDA, 0);
  LoadedModel cpu = load_model(fixture(checkpoint_of(GetParam())), fixture("dict.txt"));
  LoadedModel cuda = load_model(fixture(checkpoint_of(GetParam())), fixture("dict.txt"), gpu);
  ASSERT_EQ(cuda.model->device(), gpu);
  const auto f = read_torch_file(fixture("expected_" + GetParam() + ".pt"));
  const at::Tensor tokens = f.root->get("tokens")->data, lprobs = f.root->get("lprobs")->data;
  // whole sequence (CPU-made tokens go to the device) and token by token, against fairseq and the CPU
  const at::Tensor full = cuda.model->log_probs(cuda.model->features(tokens));
  EXPECT_TRUE(full.is_cuda());
  EXPECT_LT(max_diff(full, lprobs), 1e-4);
  EXPECT_LT(max_diff(full, cpu.model->log_probs(cpu.model->features(tokens))), 1e-4);
  DecodeState st = cuda.model->new_state(tokens.size(0));
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < tokens.size(1); ++t) steps.push_back(cuda.model->log_probs(cuda.model->step(tokens.select(1, t), st)));
  EXPECT_LT(max_diff(at::stack(steps, 1), f.root->get("lprobs_inc")->data), 1e-4);
  DecodeState cpu_st = cpu.model->new_state(tokens.size(0));
  for (int64_t t = 0; t < tokens.size(1); ++t) cpu.model->step(tokens.select(1, t), cpu_st);
  EXPECT_EQ(st.bytes(), cpu_st.bytes());
  // greedy generation: fairseq's text; sampling runs and repeats with its seed
  SamplingOptions g;
  g.max_new_tokens = 8;
  const auto want = generate(*cpu.model, cpu.dictionary, "a b c d", g);
  const auto got = generate(*cuda.model, cuda.dictionary, "a b c d", g);
  EXPECT_EQ(got.new_ids, want.new_ids);
  EXPECT_GT(got.tokens_per_second(), 0);
  g.sampling = true;
  g.top_k = 5;
  g.top_p = 0.9;
  g.seed = 3;
  EXPECT_EQ(generate(*cuda.model, cuda.dictionary, "a b", g).new_ids, generate(*cuda.model, cuda.dictionary, "a b", g).new_ids);
  // scoring (gather on the device, values read on the host)
  const auto stream = cpu.dictionary.encode_file(fixture("test.txt"));
  ScoringOptions so;
  so.tokens_per_sample = 64;
  so.max_tokens = 300;
  const auto sc = score_tokens(*cpu.model, stream, so), sg = score_tokens(*cuda.model, stream, so);
  ASSERT_EQ(sg.logprobs.size(), sc.logprobs.size());
  for (size_t i = 0; i < sc.logprobs.size(); ++i) EXPECT_NEAR(sg.logprobs[i], sc.logprobs[i], 1e-4) << i;
  // gates and maps: CPU records whatever the device
  GateRecorder rc({1}, {0}), rg({1}, {0});
  const at::Tensor text = tokens.narrow(0, 0, 1);
  cpu.model->features(text, nullptr, &rc);
  cuda.model->features(text, nullptr, &rg);
  const HeadRecord& a = rc.records().at({1, 0});
  const HeadRecord& b = rg.records().at({1, 0});
  ASSERT_TRUE(b.map.defined());
  EXPECT_TRUE(b.map.device().is_cpu());
  EXPECT_LT(max_diff(a.map, b.map), 1e-4);
  if (a.sigma_z.defined()) {
    EXPECT_LT(max_diff(a.sigma_z, b.sigma_z), 1e-5);
    EXPECT_LT(max_diff(a.state_norm, b.state_norm), 1e-3 * (1 + a.state_norm.abs().max().item<double>()));
    EXPECT_LT(max_diff(half_life(a).clamp_max(1e6), half_life(b).clamp_max(1e6)), 1e-2);
  }
  // the decode benchmark: synchronised steps, the device reported
  BenchOptions bo;
  bo.contexts = {8, 64};
  bo.steps = 3;
  bo.warmup = 1;
  const auto points = benchmark_decode({{"m", cuda.model.get()}}, bo);
  ASSERT_EQ(points.size(), 2u);
  for (const auto& p : points) {
    EXPECT_EQ(p.device, "cuda:0");
    EXPECT_GT(p.ms_per_token, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, OnCuda,
                         ::testing::Values("base", "decay", "legacy", "adaptive_base", "adaptive_decay"));

TEST(OnCuda, AttentionTwinAndDeviceIndexOutOfRange) {
  SKIP_WITHOUT_CUDA();
  LoadedModel twin = load_model(fixture("decay/checkpoint_last.pt"), "", at::Device(at::kCUDA, 0), /*as_attention=*/true);
  EXPECT_FALSE(twin.model->config().decay);
  EXPECT_TRUE(twin.model->device().is_cuda());
  EXPECT_THROW(parse_device("cuda:" + std::to_string(cuda_device_count())), std::invalid_argument);
}

}  // namespace
