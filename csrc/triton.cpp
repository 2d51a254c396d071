// triton.cpp -- the C++ half of the Triton backend (namespace pyops_triton, schemas in csrc/ops.cpp).
//
// The Triton kernels themselves are registered from Python as the CPU (interpreter) and CUDA kernels of
// pyops_triton::<op>_fwd / <op>_bwd / adam_step (kernels/__init__.py, kernels/<op>.py).  Everything composed
// of those is the same C++ as on every other backend:
//   * the differentiable ops and mlp_train_step: csrc/autograd.cpp compiled again with PYOPS_NS =
//     pyops_triton (as setup.py compiles it again with PYOPS_SIM for pyops_sim);
//   * mlp_fwd / mlp_bwd: csrc/linear_relu.h's loop over the layers, each layer the Triton
//     linear_relu_fwd / linear_relu_bwd called through the dispatcher.
#include "csrc/common.h"
#undef PYOPS_NS
#define PYOPS_NS pyops_triton
#include "csrc/autograd.cpp"
#include "csrc/linear_relu.h"

namespace pyops {
namespace {

Tensor triton_layer_fwd(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias, bool relu) {
  static const auto op = find_op<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, bool)>(
      "pyops_triton::linear_relu_fwd");
  return op.call(input, weight, bias, relu);
}

std::tuple<Tensor, Tensor, Tensor> triton_layer_bwd(const Tensor& grad_output, const Tensor& input,
                                                    const Tensor& weight, const std::optional<Tensor>& output,
                                                    std::array<bool, 3> output_mask) {
  static const auto op = find_op<std::tuple<Tensor, Tensor, Tensor>(
      const Tensor&, const Tensor&, const Tensor&, const std::optional<Tensor>&, std::array<bool, 3>)>(
      "pyops_triton::linear_relu_bwd");
  return op.call(grad_output, input, weight, output, output_mask);
}

std::vector<Tensor> triton_mlp_fwd(const Tensor& input, at::TensorList weights,
                                   const c10::List<std::optional<Tensor>>& biases) {
  return mlp_forward(input, weights, biases, triton_layer_fwd);
}

std::vector<Tensor> triton_mlp_bwd(const Tensor& grad_output, const Tensor& input, at::TensorList weights,
                                   at::TensorList outputs, const c10::List<bool>& output_mask) {
  return mlp_backward(grad_output, input, weights, outputs, output_mask.vec(), triton_layer_bwd);
}

}  // namespace
}  // namespace pyops

TORCH_LIBRARY_IMPL(pyops_triton, CPU, m) {
  m.impl("mlp_fwd", &pyops::triton_mlp_fwd);
  m.impl("mlp_bwd", &pyops::triton_mlp_bwd);
}
TORCH_LIBRARY_IMPL(pyops_triton, CUDA, m) {
  m.impl("mlp_fwd", &pyops::triton_mlp_fwd);
  m.impl("mlp_bwd", &pyops::triton_mlp_bwd);
}
