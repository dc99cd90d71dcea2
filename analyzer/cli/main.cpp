// decayfw: the command-line face of the C++ engine (no Python at run time).
//
//   decayfw inspect  CKPT            what a checkpoint holds: format, arch, shapes, parameters
//   decayfw generate CKPT --prompt   text, streamed token by token
//   decayfw score    CKPT --text F   per-token log-probabilities and perplexity (eval-lm style)
//   decayfw gates    CKPT --text F   σ(z), σ(f), ‖S_t‖, implied attention, half-lives per layer/head
//   decayfw bench    CKPT [--compare BASE]   decode latency and memory vs context (Figure 1)
//
// Human-readable output by default; --json for one JSON object per line (streamed), --csv FILE
// for tables. Progress goes to stderr.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "args.h"
#include "json.h"
#include "model/device.h"
#include "model/load_model.h"
#include "observe/gate_recorder.h"
#include "run/decode_benchmark.h"
#include "run/generation.h"
#include "run/scoring.h"
#include "text/tokenizer.h"

using namespace decayfw::engine;
using decayfw::cli::Args;
using decayfw::cli::JsonObject;
using decayfw::cli::Option;
using decayfw::cli::UsageError;

namespace {

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

const Option kDict{"dict", "FILE", "the model's dict.txt (default: found beside the checkpoint)", ""};
const Option kJson{"json", "", "machine-readable output: one JSON object per line", "", true};
const Option kThreads{"threads", "N", "CPU threads (0: all cores)", "0"};
// Decoding one token at batch 1 is a chain of small ops: on the 2-core project machine one thread
// is fastest (2.0 ms/token vs 3.5–8 ms with 2, docs/benchmarks.md), so generate and bench default to 1.
const Option kDecodeThreads{"threads", "N", "CPU threads (0: all cores; 1 is fastest for batch-1 decoding)", "1"};
const Option kDevice{"device", "DEV", "cpu, cuda or cuda:N (a LibTorch with CUDA and a visible GPU)", "cpu"};
const Option kBpe{"gpt2-bpe", "DIR", "GPT-2 BPE (DIR/encoder.json, DIR/vocab.bpe) for models trained with --bpe gpt2", ""};

Tokenizer make_tokenizer(const Args& a, const Dictionary& dict) {
  Tokenizer t{&dict, nullptr};
  if (a.given("gpt2-bpe")) {
    const std::string d = a.str("gpt2-bpe");
    t.bpe = std::make_shared<Gpt2Bpe>(Gpt2Bpe::load(d + "/encoder.json", d + "/vocab.bpe"));
  }
  return t;
}

void set_threads(const Args& a) {
  int64_t n = a.integer("threads");
  if (n <= 0) n = std::max(1u, std::thread::hardware_concurrency());
  at::set_num_threads(static_cast<int>(n));
}

at::Device device_of(const Args& a) {
  try {
    return parse_device(a.str("device"));
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("decayfw: --") + e.what());  // "--device 'cuda': this LibTorch has no CUDA …"
  }
}

std::string read_text_arg(const Args& a) {
  if (a.given("text")) {
    std::ifstream in(a.str("text"));
    if (!in) throw UsageError("decayfw: cannot open --text file '" + a.str("text") + "'");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (a.given("string")) return a.str("string");
  throw UsageError("decayfw: give the text with --text FILE or --string TEXT");
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
  return buf;
}

// -- inspect ----------------------------------------------------------------------------------------

int cmd_inspect(const std::vector<std::string>& argv) {
  Args a("inspect", "What a fairseq checkpoint holds: file format, hyper-parameters, the model the engine builds "
                    "from it (arch, layers, heads, D, M, parameters) and, with --tensors, every tensor.",
         {kDict, kJson, kDevice, {"tensors", "", "list every tensor of the state dict", "", true}}, {"CHECKPOINT"});
  a.parse(argv);
  if (a.help()) return std::cout << a.usage(), 0;
  const at::Device dev = device_of(a);
  const Checkpoint ck = read_checkpoint(a.positional(0));
  LoadedModel m = load_model(ck, a.str("dict"), dev);  // the file is read once
  const LmConfig& c = m.model->config();
  if (a.flag("json")) {
    JsonObject o;
    o.add("checkpoint", ck.path).add("format", ck.format).add("hparams_source", ck.hparams_source)
        .add("arch", c.arch).add("decay", c.decay).add("layers", c.layers).add("embed_dim", c.embed_dim)
        .add("heads", c.heads).add("head_dim", c.head_dim()).add("ffn_dim", c.ffn_dim).add("vocab", c.vocab_size)
        .add("parameters", m.model->parameter_count()).add("tensors", static_cast<int64_t>(ck.model.size()))
        .add("storage_bytes", ck.storage_bytes).add("dictionary", m.dictionary_path).add("summary", c.summary())
        .add("device", device_name(m.model->device()));
    if (c.decay) o.add("D", c.head_dim()).add("M", c.key_dim()).add("feature_map", c.feature_map());
    std::cout << o.str() << "\n";
  } else {
    std::cout << "checkpoint   " << ck.path << " (" << ck.format << " format, " << ck.num_storages << " storages, "
              << mib(ck.storage_bytes) << ")\n"
              << "hparams      from " << ck.hparams_source << "\n"
              << "model        " << c.summary() << "\n"
              << "parameters   " << m.model->parameter_count() << " (on " << device_name(m.model->device()) << ")\n"
              << "dictionary   " << m.dictionary_path << " (" << m.dictionary.size() << " symbols)\n";
  }
  if (a.flag("tensors")) {
    for (const auto& kv : ck.model) {
      std::string shape;
      for (auto s : kv.second.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(s);
      if (a.flag("json")) {
        std::cout << JsonObject().add("tensor", kv.first).add("shape", "[" + shape + "]")
                         .add("dtype", std::string(c10::toString(kv.second.scalar_type()))).str() << "\n";
      } else {
        std::cout << "  " << kv.first << " [" << shape << "] " << kv.second.scalar_type() << "\n";
      }
    }
  }
  return 0;
}

// -- generate ---------------------------------------------------------------------------------------

int cmd_generate(const std::vector<std::string>& argv) {
  Args a("generate", "Continue a prompt, streaming tokens as they are produced. Greedy (fairseq's --beam 1) "
                     "unless --sample; Ctrl-C stops cleanly.",
         {kDict, kJson, kDecodeThreads, kDevice, kBpe, {"prompt", "TEXT", "the text to continue (space-separated tokens)", ""},
          {"max-tokens", "N", "new tokens at most", "50"}, {"sample", "", "sample instead of greedy", "", true},
          {"temperature", "T", "sampling temperature", "1.0"}, {"top-k", "K", "sample among the K best (0: all)", "0"},
          {"top-p", "P", "nucleus sampling mass", "1.0"}, {"seed", "S", "sampling seed", "1"},
          {"no-stop", "", "do not stop at </s>", "", true}},
         {"CHECKPOINT"});
  a.parse(argv);
  if (a.help()) return std::cout << a.usage(), 0;
  set_threads(a);
  LoadedModel m = load_model(a.positional(0), a.str("dict"), device_of(a));
  SamplingOptions o;
  o.max_new_tokens = a.integer("max-tokens");
  o.sampling = a.flag("sample");
  o.temperature = a.real("temperature");
  o.top_k = a.integer("top-k");
  o.top_p = a.real("top-p");
  o.seed = static_cast<uint64_t>(a.integer("seed"));
  o.stop_at_eos = !a.flag("no-stop");
  const bool json = a.flag("json");
  if (!json) std::cout << a.str("prompt") << std::flush;
  const Tokenizer tokenizer = make_tokenizer(a, m.dictionary);
  GenerationResult r = generate(*m.model, tokenizer, a.str("prompt"), o, [&](const GeneratedToken& t) {
    if (json) {
      std::cout << JsonObject().add("index", t.index).add("id", t.id).add("token", t.word).add("logprob", t.logprob)
                       .add("seconds", t.seconds).str() << std::endl;
    } else if (t.id != Dictionary::kEos) {
      std::cout << t.piece << std::flush;
    }
    return true;
  }, &g_interrupted);
  if (json) {
    std::cout << JsonObject().add("text", r.text).add("new_tokens", static_cast<int64_t>(r.new_ids.size()))
                     .add("tokens_per_s", r.tokens_per_second()).add("stopped_at_eos", r.stopped_at_eos)
                     .add("cancelled", r.cancelled).add("device", device_name(m.model->device())).str() << "\n";
  } else {
    std::cout << "\n";
    std::fprintf(stderr, "%zu tokens, %.1f tokens/s on %s%s\n", r.new_ids.size(), r.tokens_per_second(),
                 device_name(m.model->device()).c_str(), r.cancelled ? " (stopped)" : "");
  }
  return 0;
}

// -- score ------------------------------------------------------------------------------------------

int cmd_score(const std::vector<std::string>& argv) {
  Args a("score", "Per-token log-probabilities and perplexity of a text, as fairseq-eval-lm computes them "
                  "(blocks of --tokens-per-sample, optional --context-window), or --streaming with the decay "
                  "state carried across blocks.",
         {kDict, kJson, kThreads, kDevice, kBpe, {"text", "FILE", "the text (one line per paragraph, space-separated tokens)", ""},
          {"string", "TEXT", "the text itself instead of --text", ""},
          {"tokens-per-sample", "N", "block size", "512"}, {"context-window", "C", "earlier tokens each block sees", "0"},
          {"streaming", "", "carry the decay state across blocks", "", true},
          {"max-tokens", "N", "score only the first N tokens (0: all)", "0"},
          {"csv", "FILE", "write index,token,logprob per token", ""}},
         {"CHECKPOINT"});
  a.parse(argv);
  if (a.help()) return std::cout << a.usage(), 0;
  set_threads(a);
  LoadedModel m = load_model(a.positional(0), a.str("dict"), device_of(a));
  const auto ids = make_tokenizer(a, m.dictionary).encode_text(read_text_arg(a));
  ScoringOptions o;
  o.tokens_per_sample = a.integer("tokens-per-sample");
  o.context_window = a.integer("context-window");
  o.streaming = a.flag("streaming");
  o.max_tokens = a.integer("max-tokens");
  const ScoreResult r = score_tokens(*m.model, ids, o, [&](int64_t done, int64_t total) {
    std::fprintf(stderr, "\rscored %lld / %lld tokens", static_cast<long long>(done), static_cast<long long>(total));
    return true;
  }, &g_interrupted);
  std::fprintf(stderr, "\n");
  if (a.given("csv")) {
    std::ofstream out(a.str("csv"));
    if (!out) throw UsageError("decayfw score: cannot write --csv file '" + a.str("csv") + "'");
    out << "index,token,logprob\n";
    for (size_t i = 0; i < r.logprobs.size(); ++i) {
      out << i << "," << m.dictionary.word(r.targets[i]) << "," << r.logprobs[i] << "\n";
    }
  }
  const double loss2 = r.mean_nll() / std::log(2.0);
  if (a.flag("json")) {
    std::cout << JsonObject().add("tokens", static_cast<int64_t>(r.logprobs.size())).add("loss_base2", loss2)
                     .add("perplexity", r.perplexity()).add("seconds", r.seconds).add("cancelled", r.cancelled).str()
              << "\n";
  } else {
    std::printf("%zu tokens, loss (base 2) %.4f, perplexity %.2f, %.1f s%s\n", r.logprobs.size(), loss2,
                r.perplexity(), r.seconds, r.cancelled ? " (stopped early)" : "");
  }
  return 0;
}

// -- gates ------------------------------------------------------------------------------------------

// Tokens per chunk of the CUDA chunk kernels' 16-bit configurations for a key width M (kernels/cuda/
// decay_chunk_configs.h): what decides which chunks the chunk form takes whole.
int64_t cuda_chunk_tokens(int64_t M) {
  return M <= 64 ? 64 : 32;
}

int cmd_gates(const std::vector<std::string>& argv) {
  Args a("gates",
         "For a text, per layer and head: mean σ(z), σ(f), the state norm over time, the median memory "
         "half-life of the state elements, the share of 16-token blocks per channel whose gates decay "
         "by more than e^-40 (the CUDA chunk kernels take those diagonal blocks per element, the rest "
         "on tensor cores), the share of (chunk, 64-row tile) pairs in which no gate decays by more than "
         "e^-40 over the chunk (the chunk form takes those whole, the rest per 16-token sub-chunk) and where the "
         "implied attention (decay) or the attention (softmax) puts its "
         "weight. --csv writes the per-token series.",
         {kDict,
          kJson,
          kThreads,
          kDevice,
          kBpe,
          {"text", "FILE", "the text", ""},
          {"string", "TEXT", "the text itself", ""},
          {"layers", "L,L", "layers to record (default: all)", ""},
          {"heads", "H,H", "heads to record (default: all)", ""},
          {"max-tokens", "N", "first N tokens of the text", "512"},
          {"csv", "FILE", "layer,head,token,word,mean_sigma_z,mean_sigma_f,state_norm per token", ""}},
         {"CHECKPOINT"});
  a.parse(argv);
  if (a.help()) return std::cout << a.usage(), 0;
  set_threads(a);
  LoadedModel m = load_model(a.positional(0), a.str("dict"), device_of(a));
  auto ids = make_tokenizer(a, m.dictionary).encode_text(read_text_arg(a));
  ids.insert(ids.begin(), Dictionary::kEos);
  if (static_cast<int64_t>(ids.size()) > a.integer("max-tokens")) ids.resize(static_cast<size_t>(a.integer("max-tokens")));
  const auto lv = a.int_list("layers"), hv = a.int_list("heads");
  for (int64_t l : lv) {
    if (l < 0 || l >= m.model->config().layers) throw UsageError("decayfw gates: --layers " + std::to_string(l) + " out of range");
  }
  for (int64_t h : hv) {
    if (h < 0 || h >= m.model->config().heads) throw UsageError("decayfw gates: --heads " + std::to_string(h) + " out of range");
  }
  GateRecorder rec(std::set<int64_t>(lv.begin(), lv.end()), std::set<int64_t>(hv.begin(), hv.end()));
  m.model->features(at::tensor(ids, at::kLong).unsqueeze(0), nullptr, &rec);
  std::ofstream csv;
  if (a.given("csv")) {
    csv.open(a.str("csv"));
    if (!csv) throw UsageError("decayfw gates: cannot write --csv file '" + a.str("csv") + "'");
    csv << "layer,head,token,word,mean_sigma_z,mean_sigma_f,state_norm\n";
  }
  for (const auto& [key, r] : rec.records()) {
    const auto [layer, head] = key;
    JsonObject o;
    o.add("layer", layer).add("head", head);
    // The decay head's figures, computed once for the JSON and the text line.
    double mean_z = 0, mean_f = 0, median_half_life = 0, final_norm = 0, wide_z = 0, wide_f = 0, whole = 0;
    if (r.sigma_z.defined()) {
      mean_z = r.sigma_z.mean().item<double>(), mean_f = r.sigma_f.mean().item<double>();
      median_half_life = half_life(r).flatten().median().item<double>();
      final_norm = r.state_norm[-1].item<double>();
      wide_z = per_element_block_share(r.sigma_z), wide_f = per_element_block_share(r.sigma_f);
      whole = whole_chunk_share(r.sigma_z, r.sigma_f, cuda_chunk_tokens(r.sigma_f.size(1)));
      o.add("mean_sigma_z", mean_z)
          .add("mean_sigma_f", mean_f)
          .add("median_half_life_tokens", median_half_life)
          .add("final_state_norm", final_norm)
          .add("per_element_blocks_z", wide_z)
          .add("per_element_blocks_f", wide_f)
          .add("whole_chunks", whole);
      if (csv) {
        for (int64_t t = 0; t < r.sigma_z.size(0); ++t) {
          csv << layer << "," << head << "," << t << "," << m.dictionary.word(ids[t]) << ","
              << r.sigma_z[t].mean().item<double>() << "," << r.sigma_f[t].mean().item<double>() << ","
              << r.state_norm[t].item<double>() << "\n";
        }
      }
    }
    if (r.map.defined() && r.map.size(0) > 0) {
      // how far back the weight of the last token's row reaches: mean distance t − j under the map
      const int64_t t = r.map.size(0) - 1;
      at::Tensor dist = at::arange(t, -1, -1, at::kFloat);
      o.add("last_token_mean_lookback", (r.map[t] * dist).sum().item<double>());
    }
    if (a.flag("json")) {
      std::cout << o.str() << "\n";
    } else if (r.sigma_z.defined()) {
      std::printf(
          "layer %lld head %lld: mean σ(z) %.3f, mean σ(f) %.3f, median half-life %.1f tokens, ‖S_T‖ %.2f, "
          "per-element diagonal blocks z %.1f%% f %.1f%%, whole chunks %.1f%%\n",
          static_cast<long long>(layer), static_cast<long long>(head), mean_z, mean_f, median_half_life, final_norm,
          100 * wide_z, 100 * wide_f, 100 * whole);
    } else {
      std::printf("layer %lld head %lld: attention\n", static_cast<long long>(layer), static_cast<long long>(head));
    }
  }
  return 0;
}

// -- bench ------------------------------------------------------------------------------------------

int cmd_bench(const std::vector<std::string>& argv) {
  Args a("bench", "Per-token decode latency and memory against context length (the paper's Figure 1) for a model, "
                  "or for it and --compare (its attention base) side by side, points printed as measured.",
         {kDict, kJson, kDecodeThreads, kDevice, {"compare", "CKPT", "a second checkpoint measured alongside", ""},
          {"compare-dict", "FILE", "the second checkpoint's dict.txt", ""},
          {"contexts", "L,L", "context lengths", "128,256,512,1024,2048,3072"},
          {"steps", "N", "timed decode steps per point (median reported)", "32"},
          {"warmup", "N", "untimed steps first", "4"}, {"csv", "FILE", "write the table", ""}},
         {"CHECKPOINT"});
  a.parse(argv);
  if (a.help()) return std::cout << a.usage(), 0;
  set_threads(a);
  const at::Device dev = device_of(a);
  LoadedModel m = load_model(a.positional(0), a.str("dict"), dev);
  std::vector<BenchModel> models = {{m.model->config().decay ? "decay" : "attention", m.model.get()}};
  LoadedModel other;
  if (a.given("compare")) {
    other = load_model(a.str("compare"), a.str("compare-dict"), dev);
    std::string label = other.model->config().decay ? "decay" : "attention";
    if (label == models[0].label) label += "-2";
    models.push_back({label, other.model.get()});
  }
  BenchOptions o;
  o.contexts = a.int_list("contexts");
  o.steps = a.integer("steps");
  o.warmup = a.integer("warmup");
  std::ofstream csv;
  if (a.given("csv")) {
    csv.open(a.str("csv"));
    if (!csv) throw UsageError("decayfw bench: cannot write --csv file '" + a.str("csv") + "'");
    csv << "model,device,context,ms_per_token,tokens_per_s,state_bytes,peak_rss_bytes\n";
  }
  if (!a.flag("json")) {
    std::printf("device %s, threads %d; %s\n%-10s %8s %12s %12s %14s %12s\n", device_name(dev).c_str(),
                at::get_num_threads(), m.model->config().summary().c_str(), "model", "context", "ms/token", "tokens/s", "state", "peak RSS");
  }
  benchmark_decode(models, o, [&](const BenchPoint& p) {
    if (a.flag("json")) {
      std::cout << JsonObject().add("model", p.model).add("device", p.device).add("context", p.context)
                       .add("ms_per_token", p.ms_per_token)
                       .add("tokens_per_s", p.tokens_per_s).add("state_bytes", p.state_bytes)
                       .add("peak_rss_bytes", p.peak_rss_bytes).str() << std::endl;
    } else {
      std::printf("%-10s %8lld %12.3f %12.1f %14s %12s\n", p.model.c_str(), static_cast<long long>(p.context),
                  p.ms_per_token, p.tokens_per_s, mib(p.state_bytes).c_str(), mib(p.peak_rss_bytes).c_str());
      std::fflush(stdout);
    }
    if (csv) {
      csv << p.model << "," << p.device << "," << p.context << "," << p.ms_per_token << "," << p.tokens_per_s << "," << p.state_bytes << ","
          << p.peak_rss_bytes << "\n";
    }
    return true;
  }, &g_interrupted);
  return 0;
}

const char* kUsage =
    "usage: decayfw COMMAND [options]   (decayfw COMMAND --help for each)\n\n"
    "Run fairseq language models — softmax attention and decaying fast weights — natively in C++.\n\n"
    "commands:\n"
    "  inspect   what a checkpoint holds and the model the engine builds from it\n"
    "  generate  continue a prompt (greedy or sampled), streaming tokens\n"
    "  score     per-token log-probabilities and perplexity of a text\n"
    "  gates     gates, state norms, half-lives and implied attention per layer and head\n"
    "  bench     decode latency and memory against context length, optionally vs a second model\n";

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, on_sigint);
  if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::cout << kUsage;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  try {
    if (cmd == "inspect") return cmd_inspect(rest);
    if (cmd == "generate") return cmd_generate(rest);
    if (cmd == "score") return cmd_score(rest);
    if (cmd == "gates") return cmd_gates(rest);
    if (cmd == "bench") return cmd_bench(rest);
    std::cerr << "decayfw: unknown command '" << cmd << "'\n\n" << kUsage;
    return 2;
  } catch (const UsageError& e) {
    std::cerr << e.what() << "\n";
    return 2;
  } catch (const c10::Error& e) {
    std::cerr << "decayfw " << cmd << ": " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "decayfw " << cmd << ": " << e.what() << "\n";
    return 1;
  }
}
