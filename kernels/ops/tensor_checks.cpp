#include "tensor_checks.h"

#include <c10/util/Exception.h>


namespace decayfw::ops {
namespace {

// Plain string building (no iostreams): these strings cross into LibTorch's error machinery, and
// keeping them to std::string and std::to_string avoids depending on the iostream ABI of whichever
// libstdc++ the process loaded first.
std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

std::string expected_str(const Dims& d, char last, bool has_time) {
  const int64_t x = last == 'M' ? d.dim_k : d.dim_v;
  const std::string L(1, last);
  if (has_time) {
    return "[B, T, H, " + L + "] = [" + std::to_string(d.batch) + ", " + std::to_string(d.seqlen) + ", " +
           std::to_string(d.heads) + ", " + std::to_string(x) + "]";
  }
  return "[B, H, " + L + "] = [" + std::to_string(d.batch) + ", " + std::to_string(d.heads) + ", " +
         std::to_string(x) + "]";
}

}  // namespace

ScalarType to_scalar_type(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return ScalarType::Float32;
    case at::kDouble: return ScalarType::Float64;
    case at::kHalf: return ScalarType::Float16;
    case at::kBFloat16: return ScalarType::BFloat16;
    default: TORCH_CHECK(false, "decayfw: unsupported dtype ", t);
  }
}

at::ScalarType state_dtype_for(at::ScalarType input) { return input == at::kDouble ? at::kDouble : at::kFloat; }

Dims check_inputs(const char* op, const std::vector<NamedTensor>& inputs, bool has_time) {
  const int64_t rank = has_time ? 4 : 3;
  const char* layout_k = has_time ? "[B, T, H, M]" : "[B, H, M]";
  const char* layout_v = has_time ? "[B, T, H, D]" : "[B, H, D]";
  const at::Tensor* first = nullptr;
  for (const auto& in : inputs) {
    TORCH_CHECK(in.tensor.defined(), op, ": argument '", in.name, "' is undefined");
    TORCH_CHECK(in.tensor.dim() == rank, op, ": argument '", in.name, "' must have rank ", rank, " (",
                in.last == 'M' ? layout_k : layout_v, "), got shape ", shape_str(in.tensor.sizes()));
    const auto st = in.tensor.scalar_type();
    TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf || st == at::kBFloat16, op,
                ": argument '", in.name, "' has dtype ", st, "; expected float32, float64, float16 or bfloat16");
    if (first == nullptr) {
      first = &in.tensor;
      continue;
    }
    TORCH_CHECK(in.tensor.scalar_type() == first->scalar_type(), op, ": argument '", in.name, "' has dtype ",
                in.tensor.scalar_type(), " but '", inputs[0].name, "' has ", first->scalar_type(),
                "; all inputs must share one dtype");
    TORCH_CHECK(in.tensor.device() == first->device(), op, ": argument '", in.name, "' is on ",
                in.tensor.device(), " but '", inputs[0].name, "' is on ", first->device());
  }
  // Sizes come from q (key side) and v (value side); everything else must agree with them.
  const at::Tensor* qt = nullptr;
  const at::Tensor* vt = nullptr;
  for (const auto& in : inputs) {
    if (in.last == 'M' && qt == nullptr) qt = &in.tensor;
    if (in.last == 'D' && vt == nullptr) vt = &in.tensor;
  }
  Dims d;
  d.batch = qt->size(0);
  d.seqlen = has_time ? qt->size(1) : 1;
  d.heads = qt->size(has_time ? 2 : 1);
  d.dim_k = qt->size(rank - 1);
  d.dim_v = vt->size(rank - 1);
  for (const auto& in : inputs) {
    const auto& t = in.tensor;
    const int64_t x = in.last == 'M' ? d.dim_k : d.dim_v;
    bool ok = t.size(0) == d.batch && t.size(rank - 2) == d.heads && t.size(rank - 1) == x;
    if (has_time) ok = ok && t.size(1) == d.seqlen;
    TORCH_CHECK(ok, op, ": argument '", in.name, "' must have shape ", expected_str(d, in.last, has_time),
                " (B, T, H from '", inputs[0].name, "', D from 'v'), got ", shape_str(t.sizes()));
    TORCH_CHECK(t.numel() > 0, op, ": argument '", in.name, "' is empty (shape ", shape_str(t.sizes()),
                "); every dimension of ", in.last == 'M' ? layout_k : layout_v, " must be at least 1");
    TORCH_CHECK(t.stride(rank - 1) == 1, op, ": argument '", in.name,
                "' must be contiguous in its last dimension (stride 1), got strides ", shape_str(t.strides()),
                "; call .contiguous() or produce it from a linear projection");
  }
  return d;
}

void check_state(const char* op, const char* name, const at::Tensor& state, const Dims& d, const at::Tensor& like) {
  const std::vector<int64_t> want = {d.batch, d.heads, d.dim_v, d.dim_k};
  TORCH_CHECK(state.sizes() == at::IntArrayRef(want), op, ": argument '", name, "' must have shape [B, H, D, M] = ",
              shape_str(want), ", got ", shape_str(state.sizes()));
  const auto dt = state_dtype_for(like.scalar_type());
  TORCH_CHECK(state.scalar_type() == dt, op, ": argument '", name, "' must be ", dt, " (the state is ",
              dt == at::kDouble ? "fp64 for fp64 inputs" : "fp32 whatever the input dtype", "), got ",
              state.scalar_type());
  TORCH_CHECK(state.device() == like.device(), op, ": argument '", name, "' is on ", state.device(),
              " but the inputs are on ", like.device());
  TORCH_CHECK(state.is_contiguous(), op, ": argument '", name, "' must be contiguous");
}

const at::Tensor* chunk_states_or_null(const char* op, const c10::optional<at::Tensor>& states, const Dims& d,
                                       int64_t chunk, const at::Tensor& like) {
  if (!given(states) || states->numel() == 0) return nullptr;
  const at::Tensor& s = *states;
  const char* from = " (pass the chunk_states that decay_fwd_train returned for these inputs, or None)";
  TORCH_CHECK(s.dim() == 5 && s.size(0) == d.batch && s.size(1) == d.heads && s.size(3) == d.dim_v &&
                  s.size(4) == d.dim_k,
              op, ": argument 'chunk_states' must have shape [B, H, chunks + 1, D, M] = [", d.batch, ", ", d.heads,
              ", chunks + 1, ", d.dim_v, ", ", d.dim_k, "], got ", shape_str(s.sizes()), from);
  TORCH_CHECK(s.scalar_type() == at::kFloat, op, ": argument 'chunk_states' must be float32, got ", s.scalar_type(),
              from);
  TORCH_CHECK(s.device() == like.device(), op, ": argument 'chunk_states' is on ", s.device(),
              " but the inputs are on ", like.device());
  TORCH_CHECK(s.is_contiguous(), op, ": argument 'chunk_states' must be contiguous", from);
  if (chunk == 0) return nullptr;
  const int64_t slots = (d.seqlen + chunk - 1) / chunk + 1;
  TORCH_CHECK(s.size(2) == slots, op, ": argument 'chunk_states' holds ", s.size(2),
              " chunk-boundary states, but the chunk path splits T = ", d.seqlen, " into chunks of ", chunk,
              " tokens and needs ", slots, from);
  return &s;
}

void check_head_scalar(const char* op, const char* name, const at::Tensor& t, const Dims& d, bool has_time,
                       const at::Tensor& like) {
  TORCH_CHECK(t.defined(), op, ": argument '", name, "' is undefined");
  const std::vector<int64_t> want =
      has_time ? std::vector<int64_t>{d.batch, d.seqlen, d.heads} : std::vector<int64_t>{d.batch, d.heads};
  TORCH_CHECK(t.sizes() == at::IntArrayRef(want), op, ": argument '", name, "' must have shape ",
              has_time ? "[B, T, H] = " : "[B, H] = ", shape_str(want), " (one logit per head and step), got ",
              shape_str(t.sizes()));
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), op, ": argument '", name, "' has dtype ", t.scalar_type(),
              " but 'q' has ", like.scalar_type(), "; all inputs must share one dtype");
  TORCH_CHECK(t.device() == like.device(), op, ": argument '", name, "' is on ", t.device(), " but 'q' is on ",
              like.device());
}

void check_device(const char* op, const at::Tensor& t, c10::DeviceType device) {
  TORCH_CHECK(t.device().type() == device, op, ": the ", c10::DeviceTypeName(device), " kernel got a tensor on ",
              t.device());
}

at::Tensor new_state(const Dims& d, const at::Tensor& like) {
  return at::empty({d.batch, d.heads, d.dim_v, d.dim_k}, like.options().dtype(state_dtype_for(like.scalar_type())));
}

ConstSeqRef const_ref(const at::Tensor& t, bool has_time) {
  ConstSeqRef r;
  r.data = t.data_ptr();
  r.stride_b = t.stride(0);
  r.stride_t = has_time ? t.stride(1) : 0;
  r.stride_h = t.stride(has_time ? 2 : 1);
  return r;
}

SeqRef mut_ref(at::Tensor& t, bool has_time) {
  SeqRef r;
  r.data = t.data_ptr();
  r.stride_b = t.stride(0);
  r.stride_t = has_time ? t.stride(1) : 0;
  r.stride_h = t.stride(has_time ? 2 : 1);
  return r;
}

}  // namespace decayfw::ops
