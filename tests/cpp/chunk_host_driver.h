// Runs the CUDA chunk programs (kernels/cuda/chunk/, through decay_chunk_program.h) on the CPU through HostCta, in
// the same order, with the same grids and the same workspace as the CUDA launcher
// (kernels/cuda/decay_chunk_kernels.cuh), so the CPU tests exercise the GPU path's code.
#pragma once

#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cta/host_cta.h"
#include "decay_chunk_program.h"

namespace decayfw::testing {

template <typename In, typename Cfg, bool kExactFp32>
class HostChunkRunner {
 public:
  using Cta = cta::HostCta<kExactFp32>;
  // allow_vector_loads = false forces the element-wise loads even where the inputs allow vectors.
  explicit HostChunkRunner(cta::Order order = cta::Order::Forward, bool allow_vector_loads = true)
      : allow_vector_loads_(allow_vector_loads) {
    cta_.order = order;
  }

  // a: sizes and the [B, T, H, X] views filled in; workspace pointers are set here.
  void forward(chunk::ChunkArgs& a) {
    prepare(a, false);
    run_state_pass(a);
    chunk::ChunkSmem<In, Cfg> probe(nullptr, chunk::ChunkCarve::Output);
    cta::HostSmem sm(probe.bytes);
    begin_launch("output_pass");
    for (int64_t n = 0; n < a.B * a.H; ++n)
      for (int64_t c = 0; c < a.chunks; ++c) {
        sm.poison();
        begin_cta();
        chunk::output_pass<Cta, In, Cfg>(cta_, a, n, c, sm.data());
        expect_no_copies_in_flight("output_pass");
      }
    end_launch();
  }

  // The fused forward (forward_pass), as the launcher runs it: keep_states = false leaves the
  // states unwritten (decay_fwd passes no workspace), and a later backward must then recompute them.
  void forward_fused(chunk::ChunkArgs& a, bool keep_states = true) {
    prepare(a, false);
    if (!keep_states) {
      states_.clear();
      a.states = nullptr;
      register_globals(a);
    }
    chunk::ForwardSmem<In, Cfg> probe(nullptr);
    cta::HostSmem sm(probe.bytes);
    begin_launch("forward_pass");
    for (int64_t n = 0; n < a.B * a.H; ++n)
      for (int64_t tile = 0; tile < a.tiles; ++tile) {
        sm.poison();
        begin_cta();
        chunk::forward_pass<Cta, In, Cfg>(cta_, a, n, tile, sm.data());
        expect_no_copies_in_flight("forward_pass");
      }
    end_launch();
  }

  // reuse_states: skip state_pass and read the states the last forward() left, as the launcher does
  // when it is given the forward's states (DecayBwdParams::chunk_states). grad_one_phase: grad_pass's one-phase
  // form (cuda::ChunkTuning::grad_one_phase).
  void backward(chunk::ChunkArgs& a, bool reuse_states = false, bool grad_one_phase = false) {
    prepare(a, true, reuse_states);
    if (!reuse_states) run_state_pass(a);
    {
      chunk::ScanSmem<In, Cfg> probe(nullptr, true);
      cta::HostSmem sm(probe.bytes);
      begin_launch("dstate_pass");
      for (int64_t n = 0; n < a.B * a.H; ++n)
        for (int64_t tile = 0; tile < a.tiles; ++tile) {
          sm.poison();
          begin_cta();
          chunk::dstate_pass<Cta, In, Cfg>(cta_, a, n, tile, sm.data());
          expect_no_copies_in_flight("dstate_pass");
        }
      end_launch();
    }
    chunk::ChunkSmem<In, Cfg> probe(nullptr, chunk::ChunkCarve::Grad);
    cta::HostSmem sm(probe.bytes);
    begin_launch("grad_pass");
    for (int64_t n = 0; n < a.B * a.H; ++n)
      for (int64_t c = 0; c < a.chunks; ++c) {
        sm.poison();
        begin_cta();
        if (grad_one_phase)
          chunk::grad_pass<Cta, In, Cfg, true>(cta_, a, n, c, sm.data());
        else
          chunk::grad_pass<Cta, In, Cfg>(cta_, a, n, c, sm.data());
        expect_no_copies_in_flight("grad_pass");
      }
    end_launch();
  }

  const std::vector<float>& states() const { return states_; }
  const Cta& executor() const { return cta_; }

 private:
  void prepare(chunk::ChunkArgs& a, bool backward, bool reuse_states = false) {
    const int64_t N = a.B * a.H;
    a.chunks = (a.T + Cfg::C - 1) / Cfg::C;
    a.tiles = a.D / chunk::kRows;
    a.vector_loads = allow_vector_loads_ && chunk::inputs_allow_vector_loads(a, sizeof(In));  // as the launcher
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const size_t state_floats = static_cast<size_t>(N * (a.chunks + 1) * a.D * a.M);
    if (reuse_states) {
      if (states_.size() != state_floats) throw std::logic_error("HostChunkRunner: no forward states of these sizes to reuse");
    } else {
      states_.assign(state_floats, nan);
    }
    a.states = states_.data();
    if (backward) {
      dstates_.assign(static_cast<size_t>(N * a.chunks * a.D * a.M), Cta::template from_f<In>(nan));
      a.dstates = dstates_.data();  // in the operand type, as the launcher's workspace
    }
    register_globals(a);
  }

  // For a SmemTrace (smem_bank_report, smem_race_check): the kernel whose CTAs follow (one launch), each CTA, and
  // the launch's end.
  static void begin_launch(const char* kernel) {
    if (cta::SmemTrace* t = cta::SmemTrace::current()) t->begin_launch(kernel);
  }
  static void begin_cta() {
    if (cta::SmemTrace* t = cta::SmemTrace::current()) t->begin_cta();
  }
  static void end_launch() {
    if (cta::SmemTrace* t = cta::SmemTrace::current()) t->end_launch();
  }

  // The global buffers a launch may touch, for a SmemTrace's races between CTAs: every view and workspace of a.
  void register_globals(const chunk::ChunkArgs& a) const {
    cta::SmemTrace* t = cta::SmemTrace::current();
    if (!t) return;
    t->clear_globals();
    auto view = [&](const void* p, int64_t sb, int64_t st, int64_t sh, int64_t X) {
      if (p) t->add_global(p, size_t((a.B - 1) * sb + (a.T - 1) * st + (a.H - 1) * sh + X) * sizeof(In));
    };
    for (const chunk::SeqIn* x : {&a.q, &a.k, &a.f}) view(x->p, x->sb, x->st, x->sh, a.M);
    for (const chunk::SeqIn* x : {&a.v, &a.z, &a.dy}) view(x->p, x->sb, x->st, x->sh, a.D);
    for (const chunk::SeqOut* x : {&a.dq, &a.dk, &a.df}) view(x->p, x->sb, x->st, x->sh, a.M);
    for (const chunk::SeqOut* x : {&a.y, &a.dv, &a.dz}) view(x->p, x->sb, x->st, x->sh, a.D);
    const size_t state = size_t(a.B * a.H * a.D * a.M);
    for (const float* x : {a.s0, static_cast<const float*>(a.final_state), a.dsT, static_cast<const float*>(a.ds0)})
      if (x) t->add_global(x, state * sizeof(float));
    if (a.states) t->add_global(a.states, state * size_t(a.chunks + 1) * sizeof(float));
    if (a.dstates) t->add_global(a.dstates, state * size_t(a.chunks) * sizeof(In));
  }

  // A CTA that ends with copies in flight would leave them to land in the next CTA's shared memory.
  void expect_no_copies_in_flight(const char* program) const {
    if (cta_.copies_in_flight() != 0)
      throw std::logic_error(std::string(program) + " ended with asynchronous copies in flight");
  }

  void run_state_pass(chunk::ChunkArgs& a) {
    chunk::ScanSmem<In, Cfg> probe(nullptr, false);
    cta::HostSmem sm(probe.bytes);
    begin_launch("state_pass");
    for (int64_t n = 0; n < a.B * a.H; ++n)
      for (int64_t tile = 0; tile < a.tiles; ++tile) {
        sm.poison();
        begin_cta();
        chunk::state_pass<Cta, In, Cfg>(cta_, a, n, tile, sm.data());
        expect_no_copies_in_flight("state_pass");
      }
    end_launch();
  }

  Cta cta_;
  bool allow_vector_loads_;
  std::vector<float> states_;
  std::vector<In> dstates_;
};

// One sequence (B = H = 1) of random inputs in the operand type, gate logits N(gate_mean, 1) (2: σ ≈ 0.88, no
// wide column), with its outputs and gradients: what a tool or test needs to run the programs once.
template <typename In>
struct RandomSequence {
  int64_t T, D, M, H;  // H heads of one batch row, [1, T, H, X] (the views' head stride is X, their time stride H·X)
  std::vector<In> q, k, f, v, z, dy, y, dq, dk, df, dv, dz;
  std::vector<float> final_state, ds0;

  RandomSequence(int64_t T_, int64_t D_, int64_t M_, uint64_t seed, float gate_mean = 2.0f, int64_t H_ = 1)
      : T(T_), D(D_), M(M_), H(H_) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    auto make = [&](int64_t count, float mean) {
      std::vector<In> x(static_cast<size_t>(count));
      for (In& e : x) e = cta::HostCta<>::template from_f<In>(mean + n01(rng));
      return x;
    };
    q = make(T * H * M, 0.0f), k = make(T * H * M, 0.0f), f = make(T * H * M, gate_mean);
    v = make(T * H * D, 0.0f), z = make(T * H * D, gate_mean), dy = make(T * H * D, 0.0f);
    y.resize(v.size()), dq.resize(q.size()), dk.resize(q.size()), df.resize(q.size()), dv.resize(v.size()),
        dz.resize(v.size());
    final_state.resize(static_cast<size_t>(H * D * M)), ds0.resize(final_state.size());
  }
  // Gate logits as a freshly swapped model has them: each head's channels take a bias of Uniform Gate
  // Initialization (decayfw.nn.uniform_gate_bias: σ(b) = u, u ~ U[1/X, 1 − 1/X] over the X = D row or M key
  // channels, so memory times spread from about 1 token to about X), plus N(0, 1) a token for the input's part.
  // The fast channels (u near 1/X: log σ ≈ −4 a token) span more than wide_span_bound over a 16-token
  // sub-chunk, and nearly every channel with u < 0.53 spans more than it over a 64-token chunk: no chunk is taken
  // whole. What the benchmark's N(2, 1) gates never show.
  void use_uniform_gate_init(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> n01(0.0f, 1.0f);
    auto fill = [&](std::vector<In>& x, int64_t X) {
      std::uniform_real_distribution<double> u01(0.0, 1.0);
      std::vector<float> bias(static_cast<size_t>(H * X), 0.0f);
      if (X > 2)
        for (float& b : bias) {
          const double u = u01(rng) * (1.0 - 2.0 / X) + 1.0 / X;
          b = static_cast<float>(-std::log(1.0 / u - 1.0));
        }
      for (size_t e = 0; e < x.size(); ++e)
        x[e] = cta::HostCta<>::template from_f<In>(bias[e % bias.size()] + n01(rng));
    };
    fill(z, D), fill(f, M);
  }
  // The forward's arguments (outputs y and the final state); backward_args adds the gradients.
  chunk::ChunkArgs forward_args(chunk::DiagonalForm diagonal) {
    chunk::ChunkArgs a;
    a.B = 1, a.T = T, a.H = H, a.D = D, a.M = M, a.diagonal = diagonal;
    a.q = in(q, M), a.k = in(k, M), a.f = in(f, M), a.v = in(v, D), a.z = in(z, D), a.dy = in(dy, D);
    a.y = out(y, D), a.final_state = final_state.data();
    return a;
  }
  chunk::ChunkArgs backward_args(chunk::DiagonalForm diagonal) {
    chunk::ChunkArgs b = forward_args(diagonal);
    b.y = {}, b.final_state = nullptr;
    b.dq = out(dq, M), b.dk = out(dk, M), b.df = out(df, M), b.dv = out(dv, D), b.dz = out(dz, D), b.ds0 = ds0.data();
    return b;
  }

 private:
  chunk::SeqIn in(const std::vector<In>& x, int64_t X) const { return {x.data(), T * H * X, H * X, X}; }
  chunk::SeqOut out(std::vector<In>& x, int64_t X) { return {x.data(), T * H * X, H * X, X}; }
};

}  // namespace decayfw::testing
