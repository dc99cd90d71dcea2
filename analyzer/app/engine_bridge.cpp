// Torch side of the bridge (no Qt headers here).
#include "engine_bridge.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <mutex>

#include "model/device.h"
#include "model/load_model.h"
#include "observe/gate_recorder.h"
#include "run/decode_benchmark.h"
#include "run/generation.h"
#include "run/scoring.h"

namespace decayfw::app {

namespace eng = decayfw::engine;

struct EngineSession::Impl {
  eng::LoadedModel loaded;
  ModelSummary summary;
  mutable std::mutex mutex;  // one computation at a time per model (decode states are per call)
};

EngineSession::EngineSession() : impl_(std::make_unique<Impl>()) {}
EngineSession::~EngineSession() = default;

namespace {

void fill_summary(ModelSummary& m, const eng::LoadedModel& L, const std::string& checkpoint) {
  const auto& c = L.model->config();
  m.path = checkpoint;
  m.dictionary = L.dictionary_path;
  m.format = L.format;
  m.hparams_source = L.hparams_source;
  m.arch = c.arch;
  m.summary = c.summary();
  m.decay = c.decay;
  m.layers = c.layers;
  m.heads = c.heads;
  m.head_dim = c.head_dim();
  m.key_dim = c.decay ? c.key_dim() : 0;
  m.embed_dim = c.embed_dim;
  m.vocab = c.vocab_size;
  m.parameters = L.model->parameter_count();
  m.device = eng::device_name(L.model->device());
}

}  // namespace

std::shared_ptr<EngineSession> EngineSession::attention_twin() const {
  std::shared_ptr<EngineSession> s(new EngineSession());
  s->impl_->loaded = eng::load_model(impl_->summary.path, impl_->summary.dictionary, impl_->loaded.model->device(),
                                     /*as_attention=*/true);
  fill_summary(s->impl_->summary, s->impl_->loaded, impl_->summary.path);
  return s;
}

std::shared_ptr<EngineSession> EngineSession::open(const std::string& checkpoint, const std::string& dictionary,
                                                   const std::string& device) {
  const at::Device dev = eng::parse_device(device);  // first: an unusable device says so
  std::shared_ptr<EngineSession> s(new EngineSession());
  s->impl_->loaded = eng::load_model(checkpoint, dictionary, dev);
  fill_summary(s->impl_->summary, s->impl_->loaded, checkpoint);
  return s;
}

const ModelSummary& EngineSession::summary() const { return impl_->summary; }

std::vector<DeviceChoice> EngineSession::devices() {
  std::vector<DeviceChoice> out;
  for (const eng::DeviceInfo& d : eng::list_devices()) out.push_back({d.name, d.label, d.available, d.reason});
  return out;
}

std::string EngineSession::check_device(const std::string& device) {
  return eng::device_name(eng::parse_device(device));
}

void EngineSession::set_threads(int threads) { at::set_num_threads(threads); }

GenerationOutcome EngineSession::generate(const std::string& prompt, const GenerationSettings& s,
                                          const std::function<bool(const StreamedToken&)>& on_token,
                                          const std::atomic<bool>* cancel) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  eng::SamplingOptions o;
  o.max_new_tokens = s.max_new_tokens;
  o.sampling = s.sampling;
  o.temperature = s.temperature;
  o.top_k = s.top_k;
  o.top_p = s.top_p;
  o.seed = s.seed;
  const auto& L = impl_->loaded;
  eng::Tokenizer tok{&L.dictionary, nullptr};
  eng::GenerationResult r = eng::generate(*L.model, tok, prompt, o, [&](const eng::GeneratedToken& t) {
    StreamedToken st;
    st.index = t.index;
    st.piece = t.piece;
    st.probability = std::exp(t.logprob);
    st.seconds = t.seconds;
    st.eos = t.id == eng::Dictionary::kEos;
    return on_token ? on_token(st) : true;
  }, cancel);
  GenerationOutcome out;
  out.text = r.text;
  out.ids = r.new_ids;
  out.tokens_per_second = r.tokens_per_second();
  out.cancelled = r.cancelled;
  return out;
}

HeadView EngineSession::head_view(const std::string& text, int64_t layer, int64_t head, int64_t max_tokens) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto& L = impl_->loaded;
  const auto& c = L.model->config();
  if (layer < 0 || layer >= c.layers || head < 0 || head >= c.heads) {
    throw std::invalid_argument("layer " + std::to_string(layer) + " head " + std::to_string(head) +
                                " is outside the model (" + std::to_string(c.layers) + " layers, " +
                                std::to_string(c.heads) + " heads)");
  }
  std::vector<int64_t> ids = {eng::Dictionary::kEos};
  for (int64_t id : L.dictionary.encode_line(text)) ids.push_back(id);
  if (static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
  eng::GateRecorder rec({layer}, {head}, max_tokens);
  L.model->features(at::tensor(ids, at::kLong).unsqueeze(0), nullptr, &rec);  // records come back on the CPU
  const eng::HeadRecord& r = rec.records().at({layer, head});
  HeadView v;
  v.layer = layer;
  v.head = head;
  v.T = static_cast<int64_t>(ids.size());
  v.decay = c.decay;
  for (int64_t id : ids) v.tokens.push_back(L.dictionary.word(id));
  auto copy = [](const at::Tensor& t) {
    at::Tensor c = t.to(at::kCPU, at::kFloat).contiguous();
    return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  };
  if (r.sigma_z.defined()) {
    v.D = r.sigma_z.size(1);
    v.M = r.sigma_f.size(1);
    v.sigma_z = copy(r.sigma_z);
    v.sigma_f = copy(r.sigma_f);
    v.state_norm = copy(r.state_norm);
    v.half_life = copy(eng::half_life(r));
  }
  if (r.map.defined()) {
    v.map = copy(r.map);
    v.map_tokens = r.map.size(0);
  }
  if (r.sigma_z.defined()) {
    // retention of token j's write at t: mean_{d,m} Π_{s=j+1..t} σ(z_s)_d σ(f_s)_m, which separates
    // into mean_d(Π σ(z)) · mean_m(Π σ(f)); cumulative log gates make every product a difference.
    const int64_t Tm = v.map_tokens > 0 ? v.map_tokens : v.T;
    at::Tensor LA = at::log(r.sigma_z.narrow(0, 0, Tm).to(at::kDouble)).cumsum(0);  // [Tm, D]
    at::Tensor LB = at::log(r.sigma_f.narrow(0, 0, Tm).to(at::kDouble)).cumsum(0);  // [Tm, M]
    at::Tensor A = (LA.unsqueeze(0) - LA.unsqueeze(1)).exp().mean(2);  // [j, t] = mean_d exp(LA_t − LA_j)
    at::Tensor B = (LB.unsqueeze(0) - LB.unsqueeze(1)).exp().mean(2);
    v.retention = copy((A * B).triu(0));
  }
  return v;
}

std::vector<float> HeadView::gate_matrix(int64_t t) const {
  std::vector<float> g(static_cast<size_t>(D * M));
  if (t < 0 || t >= T || sigma_z.empty()) return g;
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t m = 0; m < M; ++m) g[static_cast<size_t>(d * M + m)] = sigma_z[t * D + d] * sigma_f[t * M + m];
  }
  return g;
}

TokenLosses EngineSession::token_losses(const std::string& text, int64_t max_tokens) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const auto& L = impl_->loaded;
  const std::vector<int64_t> ids = eng::Tokenizer{&L.dictionary, nullptr}.encode_text(text);
  eng::ScoringOptions o;
  o.tokens_per_sample = std::max<int64_t>(1, std::min<int64_t>(max_tokens, 512));
  o.max_tokens = max_tokens;
  const eng::ScoreResult r = eng::score_tokens(*L.model, ids, o);
  TokenLosses t;
  for (size_t i = 0; i < r.logprobs.size(); ++i) {
    t.tokens.push_back(L.dictionary.word(r.targets[i]));
    t.loss.push_back(-r.logprobs[i]);
  }
  t.perplexity = r.perplexity();
  return t;
}

std::vector<BenchSample> EngineSession::bench(const std::vector<std::shared_ptr<EngineSession>>& sessions,
                                              const std::vector<int64_t>& contexts, int64_t steps,
                                              const std::function<bool(const BenchSample&)>& on_sample,
                                              const std::atomic<bool>* cancel) {
  std::vector<eng::BenchModel> models;
  std::vector<std::unique_lock<std::mutex>> locks;
  std::string device;
  for (const auto& s : sessions) {
    if (!s) continue;
    if (!device.empty() && s->summary().device != device) {
      throw std::invalid_argument("bench: the models are on different devices (" + device + ", " + s->summary().device +
                                  "); reopen them on one device");
    }
    device = s->summary().device;
    locks.emplace_back(s->impl_->mutex);
    std::string label = s->summary().decay ? "decay" : "attention";
    for (const auto& m : models) {
      if (m.label == label) label += " (2)";
    }
    models.push_back({label, s->impl_->loaded.model.get()});
  }
  eng::BenchOptions o;
  o.contexts = contexts;
  o.steps = steps;
  o.warmup = 2;
  std::vector<BenchSample> out;
  eng::benchmark_decode(models, o, [&](const eng::BenchPoint& p) {
    BenchSample b{p.model, p.device, p.context, p.ms_per_token, p.tokens_per_s, p.state_bytes, p.peak_rss_bytes};
    out.push_back(b);
    return on_sample ? on_sample(b) : true;
  }, cancel);
  return out;
}

}  // namespace decayfw::app
