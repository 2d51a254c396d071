// linear_relu.h -- the backend-independent half of linear / linear+ReLU: argument checks and the
// [rows, cols] matrix view each backend's kernels run on, shared by csrc/cpu and csrc/cuda.
//
// Registered ops (schemas in csrc/ops.cpp); one layer costs one op each way:
//   linear_relu_fwd(input (*, K), weight (N, K), bias (N)?, relu) -> output (*, N)
//   linear_relu_bwd(grad_output (*, N), input, weight, output?, output_mask[3]) -> (grad_input, grad_weight, grad_bias)
// `output` given to the backward means "the forward applied ReLU": its positive entries are the mask.
// Gradients not asked for by output_mask come back as empty tensors of shape [0] (the schema has no
// optional returns); grad_weight has weight's strides when weight is dense (e.g. a transposed view).
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <array>
#include <optional>
#include <vector>

#include "csrc/common.h"

namespace pyops {

inline const char* linear_name(bool relu) { return relu ? "linear_relu" : "linear"; }
inline const char* linear_backward_name(bool relu) { return relu ? "linear_relu_backward" : "linear_backward"; }

// Forward arguments: dtypes, devices, shapes.  Every backend raises the same messages (the Python
// twin is pyops/linear_relu.py: check_linear_args).
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
  TORCH_CHECK(input.size(-1) == weight.size(1), op, ": input has ", input.size(-1), " features (last dim of shape ",
              input.sizes(), ") but weight expects in_features = ", weight.size(1), " (weight shape ", weight.sizes(),
              ")");
  if (bias)
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op,
                ": expected bias of shape [out_features] = [", weight.size(0), "], got ", bias->sizes());
}

// Backward arguments: the forward's plus grad_output (and output) of shape (*, out_features).
// Returns the op's name for messages ("linear_relu_backward" when output is given, else "linear_backward").
inline const char* check_linear_backward_args(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight,
                                              const std::optional<at::Tensor>& output, bool allow_half) {
  const char* op = linear_backward_name(output.has_value());
  check_linear_args(input, weight, std::nullopt, op, allow_half);
  check_same_dtype(grad, "grad_output", input, "input", op);
  check_same_device({{"input", &input}, {"grad_output", &grad}}, op);
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end());
  shape.back() = weight.size(0);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(shape), op, ": grad_output shape ", grad.sizes(),
              " does not match the output shape ", at::IntArrayRef(shape));
  if (output) {
    check_same_dtype(*output, "output", input, "input", op);
    check_same_device({{"input", &input}, {"output", &*output}}, op);
    TORCH_CHECK(output->sizes() == grad.sizes(), op, ": output shape ", output->sizes(),
                " does not match grad_output shape ", grad.sizes());
  }
  return op;
}

// Output shape (*, N) of an input (*, K).
inline std::vector<int64_t> linear_out_shape(const at::Tensor& input, int64_t n) {
  std::vector<int64_t> s(input.sizes().begin(), input.sizes().end());
  s.back() = n;
  return s;
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
  return {output_mask[0] ? at::empty(input.sizes(), input.options()) : empty(),
          output_mask[1] ? at::empty_like(weight, at::MemoryFormat::Preserve) : empty(),
          output_mask[2] ? at::empty({weight.size(0)}, input.options()) : empty()};
}

}  // namespace pyops
