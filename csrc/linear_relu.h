// linear_relu.h -- the backend-independent half of linear / linear+ReLU: argument checks, the outputs and
// the [rows, cols] matrix view each backend's kernels run on, shared by csrc/cpu, csrc/cuda,
// csrc/triton.cpp and the Meta kernels (csrc/meta.cpp; checks and outputs take symbolic sizes, see
// csrc/common.h).
//
// Registered ops (schemas in csrc/ops.cpp); one layer costs one op each way:
//   linear_relu_fwd(input (*, K), weight (N, K), bias (N)?, relu) -> output (*, N)
//   linear_relu_bwd(grad_output (*, N), input, weight, output?, output_mask[3]) -> (grad_input, grad_weight, grad_bias)
// `output` given to the backward means "the forward applied ReLU": its positive entries are the mask.
// Gradients not asked for by output_mask come back as empty tensors of shape [0] (the schema has no
// optional returns); grad_weight has weight's strides when weight is dense (e.g. a transposed view).
//
// And the whole MLP (L layers: 0..L-2 linear+ReLU, L-1 plain linear, the classifier MLP):
//   mlp_fwd(input, weights[L], biases[L]) -> outputs[L]     outputs[i]: layer i's output
//   mlp_bwd(grad_output, input, weights[L], outputs[L-1], output_mask[1+2L]) -> grads[1+2L]
//                                                          (grad_input, grad_weight_0..L-1, grad_bias_0..L-1)
// They run each backend's own layer functions in a C++ loop (mlp_forward / mlp_backward below): one
// dispatched op and one autograd node each way for the whole network instead of one per layer.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/core/List.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "csrc/common.h"

namespace pyops {

inline const char* linear_name(bool relu) { return relu ? "linear_relu" : "linear"; }
inline const char* linear_backward_name(bool relu) { return relu ? "linear_relu_backward" : "linear_backward"; }

// Forward arguments: dtypes, devices, shapes.  Every backend raises the same messages.
inline void check_linear_args(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                              const char* op, bool allow_half) {
  check_floating(input, op, "input", allow_half);
  check_same_dtype(input, "input", weight, "weight", op);
  if (bias) check_same_dtype(input, "input", *bias, "bias", op);
  if (bias) check_same_device({{"input", &input}, {"weight", &weight}, {"bias", &*bias}}, op);
  else check_same_device({{"input", &input}, {"weight", &weight}}, op);
  TORCH_CHECK(input.dim() >= 1, op, ": expected input of shape (*, in_features), got a 0-D tensor");
  TORCH_CHECK(weight.dim() == 2, op, ": expected weight to be 2-D (out_features, in_features), got ", weight.dim(),
              "-D");
  TORCH_CHECK(input.sym_size(-1) == weight.sym_size(1), op, ": input has ", input.sym_size(-1),
              " features (last dim of shape ", input.sym_sizes(), ") but weight expects in_features = ",
              weight.sym_size(1), " (weight shape ", weight.sym_sizes(), ")");
  if (bias)
    TORCH_CHECK(bias->dim() == 1 && bias->sym_size(0) == weight.sym_size(0), op,
                ": expected bias of shape [out_features] = [", weight.sym_size(0), "], got ", bias->sym_sizes());
}

// Output shape (*, N) of an input (*, K) and a weight (N, K).
inline std::vector<c10::SymInt> linear_out_shape(const at::Tensor& input, const at::Tensor& weight) {
  std::vector<c10::SymInt> s(input.sym_sizes().begin(), input.sym_sizes().end());
  s.back() = weight.sym_size(0);
  return s;
}

// Backward arguments: the forward's plus grad_output (and output) of shape (*, out_features).
// Returns the op's name for messages ("linear_relu_backward" when output is given, else "linear_backward").
inline const char* check_linear_backward_args(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight,
                                              const std::optional<at::Tensor>& output, bool allow_half) {
  const char* op = linear_backward_name(output.has_value());
  check_linear_args(input, weight, std::nullopt, op, allow_half);
  check_same_dtype(grad, "grad_output", input, "input", op);
  check_same_device({{"input", &input}, {"grad_output", &grad}}, op);
  const std::vector<c10::SymInt> shape = linear_out_shape(input, weight);
  TORCH_CHECK(grad.sym_sizes() == c10::SymIntArrayRef(shape), op, ": grad_output shape ", grad.sym_sizes(),
              " does not match the output shape ", c10::SymIntArrayRef(shape));
  if (output) {
    check_same_dtype(*output, "output", input, "input", op);
    check_same_device({{"input", &input}, {"output", &*output}}, op);
    TORCH_CHECK(output->sym_sizes() == grad.sym_sizes(), op, ": output shape ", output->sym_sizes(),
                " does not match grad_output shape ", grad.sym_sizes());
  }
  return op;
}

// The forward's output: contiguous (*, N) for an input (*, K) and a weight (N, K).
inline at::Tensor empty_linear_output(const at::Tensor& input, const at::Tensor& weight) {
  return at::empty_symint(linear_out_shape(input, weight), input.options());
}

// A tensor (*, cols) seen as a [rows, cols] matrix: element (r, c) at data + r * rs + c * cs.
// Made without a copy (and without dispatching any op) whenever the leading dims collapse into one
// stride -- every contiguous tensor, any 2-D tensor, transposed or sliced; else `hold` keeps a
// contiguous copy alive.
struct Matrix {
  at::Tensor hold;
  void* data = nullptr;
  int64_t rows = 0, cols = 0, rs = 0, cs = 0;
};

inline Matrix as_matrix(const at::Tensor& t) {
  Matrix m;
  const int64_t d = t.dim();
  m.cols = d == 0 ? 1 : t.size(d - 1);
  m.rows = 1;
  for (int64_t i = 0; i + 1 < d; ++i) m.rows *= t.size(i);
  m.cs = d == 0 ? 1 : t.stride(d - 1);
  // Leading dims collapse when each stride equals the next one's stride times its size (size-1 dims
  // do not matter); the row stride is then the innermost leading stride.
  bool collapses = true, first = true;
  int64_t expect = 0;
  m.rs = m.cols;  // rows <= 1: any value works
  for (int64_t i = d - 2; i >= 0; --i) {
    if (t.size(i) == 1) continue;
    if (first) {
      m.rs = t.stride(i);
      first = false;
    } else if (t.stride(i) != expect) {
      collapses = false;
      break;
    }
    expect = t.stride(i) * t.size(i);
  }
  if (collapses) {
    m.data = t.data_ptr();
  } else {
    m.hold = t.contiguous();
    m.data = m.hold.data_ptr();
    m.rs = m.cols;
    m.cs = 1;
  }
  return m;
}

// The gradient buffers of one backward call, in one place: grad_input with input's shape
// (contiguous), grad_weight with weight's strides when weight is dense (so AccumulateGrad need not copy
// it), grad_bias [N]; an empty [0] tensor for each gradient output_mask does not ask for.
struct LinearGrads {
  at::Tensor input, weight, bias;
};
inline LinearGrads linear_grads(const at::Tensor& input, const at::Tensor& weight, std::array<bool, 3> output_mask) {
  const auto empty = [&] { return at::empty({0}, input.options()); };
  return {output_mask[0] ? at::empty_symint(input.sym_sizes(), input.options()) : empty(),
          output_mask[1] ? at::empty_like(weight, at::MemoryFormat::Preserve) : empty(),
          output_mask[2] ? at::empty_symint({weight.sym_size(0)}, input.options()) : empty()};
}

// Meta: the layer's checks and outputs, no kernel (half types allowed: the device decides at run time).
inline at::Tensor linear_relu_forward_meta(const at::Tensor& input, const at::Tensor& weight,
                                           const std::optional<at::Tensor>& bias, bool relu) {
  check_linear_args(input, weight, bias, linear_name(relu), /*allow_half=*/true);
  return empty_linear_output(input, weight);
}
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_relu_backward_meta(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& output, std::array<bool, 3> output_mask) {
  check_linear_backward_args(grad_output, input, weight, output, /*allow_half=*/true);
  auto [gx, gw, gb] = linear_grads(input, weight, output_mask);
  return {gx, gw, gb};
}

// ---------------------------------------------------------------- whole MLP
// Checks of the list arguments; each layer's own shapes are checked by the layer function, which names
// the layer's op.  `outputs` are the hidden layers' outputs (the backward's ReLU masks and the next
// layers' inputs), `mask` the gradients asked for: [input, weight_0..L-1, bias_0..L-1].
inline void check_mlp_lists(const char* op, int64_t layers, int64_t biases, int64_t outputs = -1, int64_t mask = -1) {
  TORCH_CHECK_VALUE(layers >= 1, op, ": expected at least one weight, got none");
  TORCH_CHECK_VALUE(biases == layers, op, ": expected one bias (or None) per weight: ", layers, " weights, ", biases,
                    " biases");
  if (outputs >= 0)
    TORCH_CHECK_VALUE(outputs == layers - 1, op, ": expected the ", layers - 1,
                      " hidden outputs of the forward, got ", outputs);
  if (mask >= 0)
    TORCH_CHECK_VALUE(mask == 1 + 2 * layers, op, ": expected output_mask of length 1 + 2 * layers = ",
                      1 + 2 * layers, ", got ", mask);
}

// outputs[i] = relu?(outputs[i-1] W_i^T + b_i) (outputs[-1] = input), ReLU on every layer but the last.
// fwd(x, w, b, relu) is the backend's linear_relu_fwd.
template <class Fwd>
std::vector<at::Tensor> mlp_forward(const at::Tensor& input, at::TensorList weights,
                                    const c10::List<std::optional<at::Tensor>>& biases, Fwd&& fwd) {
  const int64_t L = int64_t(weights.size());
  check_mlp_lists("mlp", L, int64_t(biases.size()));
  std::vector<at::Tensor> out;
  out.reserve(size_t(L));
  for (int64_t i = 0; i < L; ++i) {
    const std::optional<at::Tensor> b = biases.get(size_t(i));
    const at::Tensor& x = i == 0 ? input : out.back();
    // the layer's own checks again, naming the layer ("mlp (layer 2): ..."); the backend's half support is its own
    check_linear_args(x, weights[size_t(i)], b, ("mlp (layer " + std::to_string(i) + ")").c_str(), /*allow_half=*/true);
    out.push_back(fwd(x, weights[size_t(i)], b, i + 1 < L));
  }
  return out;
}

// The layers' backward from the last to the first, each layer's grad_input the previous one's
// grad_output; bwd(g, x, w, y?, mask[3]) is the backend's linear_relu_bwd.  Returns 1 + 2L tensors,
// an empty [0] tensor where output_mask is false.  A bwd that takes a sixth argument, `g_is_scratch`, is
// told when g is a grad_input it returned for the layer above -- a tensor nobody else holds, which it may
// overwrite (the CPU backend masks it in place for the ReLU instead of writing a new tensor).
template <class Bwd>
std::vector<at::Tensor> mlp_backward(const at::Tensor& grad_output, const at::Tensor& input, at::TensorList weights,
                                     at::TensorList outputs, const std::vector<bool>& mask, Bwd&& bwd) {
  const int64_t L = int64_t(weights.size());
  check_mlp_lists("mlp_backward", L, L, int64_t(outputs.size()), int64_t(mask.size()));
  std::vector<at::Tensor> grads(size_t(1 + 2 * L));
  // lowest: the lowest layer asked for a gradient (-1: the input).  Layer i computes its grad_input only
  // when something below it needs it, and the layers below `lowest` do nothing.
  int64_t lowest = mask[0] ? -1 : L;
  for (int64_t i = 0; i < L && lowest == L; ++i)
    if (mask[size_t(1 + i)] || mask[size_t(1 + L + i)]) lowest = i;
  at::Tensor g = grad_output;
  for (int64_t i = L - 1; i >= 0 && i >= lowest; --i) {
    const bool need_x = lowest < i, need_w = mask[size_t(1 + i)], need_b = mask[size_t(1 + L + i)];
    const at::Tensor& x = i == 0 ? input : outputs[size_t(i - 1)];
    const std::optional<at::Tensor> y = i + 1 < L ? std::optional<at::Tensor>(outputs[size_t(i)]) : std::nullopt;
    const std::array<bool, 3> layer_mask{need_x, need_w, need_b};
    auto [gx, gw, gb] = [&] {
      if constexpr (std::is_invocable_v<Bwd&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const std::optional<at::Tensor>&, std::array<bool, 3>, bool>)
        return bwd(g, x, weights[size_t(i)], y, layer_mask, /*g_is_scratch=*/i + 1 < L);
      else
        return bwd(g, x, weights[size_t(i)], y, layer_mask);
    }();
    grads[size_t(1 + i)] = std::move(gw);
    grads[size_t(1 + L + i)] = std::move(gb);
    g = std::move(gx);
  }
  grads[0] = mask[0] ? g : at::empty({0}, grad_output.options());
  for (auto& t : grads)
    if (!t.defined()) t = at::empty({0}, grad_output.options());
  return grads;
}

}  // namespace pyops

// The four ops of a backend, registered on library `m` from the backend's layer functions
// `linear_relu_fwd` / `linear_relu_bwd` in scope (csrc/cpu and csrc/cuda: the same lines); mlp_bwd's layers
// run `layer_bwd` (PYOPS_LINEAR_IMPLS: linear_relu_bwd; see mlp_backward for a layer_bwd with g_is_scratch).
#define PYOPS_LINEAR_IMPLS(m) PYOPS_LINEAR_IMPLS_WITH(m, linear_relu_bwd)
#define PYOPS_LINEAR_IMPLS_WITH(m, layer_bwd)                                                                 \
  m.impl("linear_relu_fwd", &linear_relu_fwd);                                                                \
  m.impl("linear_relu_bwd", &linear_relu_bwd);                                                                \
  m.impl("mlp_fwd", [](const at::Tensor& input, at::TensorList weights,                                       \
                       const c10::List<std::optional<at::Tensor>>& biases) {                                  \
    return ::pyops::mlp_forward(input, weights, biases, linear_relu_fwd);                                     \
  });                                                                                                         \
  m.impl("mlp_bwd", [](const at::Tensor& grad_output, const at::Tensor& input, at::TensorList weights,        \
                       at::TensorList outputs, const c10::List<bool>& output_mask) {                          \
    return ::pyops::mlp_backward(grad_output, input, weights, outputs, output_mask.vec(), layer_bwd);         \
  })
