// The analyzer's only window onto the engine. Plain C++ types in, plain C++ types out: no LibTorch
// header is seen by a Qt translation unit (Qt's `slots`/`signals` macros break torch headers), and
// the UI never computes — every number it shows comes from here, computed off the UI thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace decayfw::app {

struct ModelSummary {
  std::string path, dictionary, format, hparams_source, arch, summary;
  std::string device;  // where the model lives: "cpu", "cuda:0"
  bool decay = false;
  int64_t layers = 0, heads = 0, head_dim = 0, key_dim = 0, embed_dim = 0, vocab = 0, parameters = 0;
};

struct GenerationSettings {
  int64_t max_new_tokens = 40;
  bool sampling = false;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 1;
};

struct StreamedToken {
  int64_t index = 0;
  std::string piece;     // text as shown (leading space included)
  double probability = 0;
  double seconds = 0;
  bool eos = false;
};

struct GenerationOutcome {
  std::string text;
  std::vector<int64_t> ids;
  double tokens_per_second = 0;
  bool cancelled = false;
};

// One head's recordings for a text (decay: gates, norms, implied attention; attention: its map).
struct HeadView {
  int64_t layer = 0, head = 0, T = 0, D = 0, M = 0;
  bool decay = false;
  std::vector<std::string> tokens;   // T words
  std::vector<float> sigma_z;        // T × D
  std::vector<float> sigma_f;        // T × M
  std::vector<float> state_norm;     // T
  std::vector<float> half_life;      // D × M, tokens (inf where the gate is 1)
  std::vector<float> map;            // Tm × Tm (row t: weights over j ≤ t)
  int64_t map_tokens = 0;
  std::vector<float> retention;      // Tm × Tm: row j, column t ≥ j: mean over the state of Π_{s=j+1..t} G_s

  // The D × M gate G_t = σ(z_t) σ(f_t)ᵀ at token t (row-major).
  std::vector<float> gate_matrix(int64_t t) const;
};

struct TokenLosses {
  std::vector<std::string> tokens;
  std::vector<float> loss;  // −log p per token (nats)
  double perplexity = 0;
};

// A device the engine can run on (or, unavailable, why not): what the device choice offers.
struct DeviceChoice {
  std::string name;     // "cpu", "cuda:0", … — what open() takes ("cuda" for the unavailable entry)
  std::string label;    // "CPU", "CUDA:0"
  bool available = false;
  std::string reason;   // why not, when !available (e.g. "this LibTorch has no CUDA …")
};

struct BenchSample {
  std::string model, device;
  int64_t context = 0;
  double ms_per_token = 0, tokens_per_s = 0;
  int64_t state_bytes = 0, peak_rss_bytes = 0;
};

class EngineSession {
 public:
  // Loads a checkpoint (dict.txt beside it when `dictionary` is empty) onto `device` ("cpu",
  // "cuda", "cuda:N"). Throws std::exception with the engine's message (file, tensor,
  // hyper-parameter, device) on failure.
  static std::shared_ptr<EngineSession> open(const std::string& checkpoint, const std::string& dictionary = "",
                                             const std::string& device = "cpu");
  // CPU, then every visible GPU; without CUDA one unavailable "cuda" entry saying why.
  static std::vector<DeviceChoice> devices();
  // The canonical name of `device` ("cuda" → "cuda:0"); throws std::invalid_argument saying why it
  // cannot be used here.
  static std::string check_device(const std::string& device);
  // A softmax-attention model of the same shape built from this decay checkpoint's weights, on the
  // same device, to race against when no attention base is loaded (speed and memory only).
  std::shared_ptr<EngineSession> attention_twin() const;
  ~EngineSession();

  const ModelSummary& summary() const;

  GenerationOutcome generate(const std::string& prompt, const GenerationSettings& s,
                             const std::function<bool(const StreamedToken&)>& on_token,
                             const std::atomic<bool>* cancel) const;
  HeadView head_view(const std::string& text, int64_t layer, int64_t head, int64_t max_tokens = 256) const;
  TokenLosses token_losses(const std::string& text, int64_t max_tokens = 2048) const;
  // Interleaves this session's model and `other`'s (may be null) at every context length.
  static std::vector<BenchSample> bench(const std::vector<std::shared_ptr<EngineSession>>& sessions,
                                        const std::vector<int64_t>& contexts, int64_t steps,
                                        const std::function<bool(const BenchSample&)>& on_sample,
                                        const std::atomic<bool>* cancel);
  static void set_threads(int threads);

 private:
  EngineSession();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace decayfw::app
