// cross_entropy.cpp -- PyTorch glue of the CUDA nll_loss and fused cross_entropy: checks, allocation, dtype
// dispatch, current stream.  Kernels, plan and math: kernels/cuda/cross_entropy.cuh.  Compiled twice (see
// glue.h): pyops:: ops for CUDA tensors and pyops_sim:: ops run by the CUDA-on-CPU emulator.
//
// Out-of-range targets are caught inside the kernels (PYOPS_DEVICE_REQUIRE): on a GPU that is a device-side
// assert, reported asynchronously by the next synchronizing call -- the host never waits on the targets.
#include "csrc/cross_entropy.h"
#include "csrc/cuda/glue.h"
#include "kernels/cuda/cross_entropy.cuh"

namespace pyops::cuda {
namespace {

ClassRows input_rows(const LossProblem& p) { return {p.rows, p.C, p.D, p.ld_n, p.ld_d, p.ld_c}; }
ClassRows contiguous_rows(const LossProblem& p) { return {p.rows, p.C, p.D, p.C * p.D, 1, p.D}; }

template <class T> const T* weight_ptr(const LossProblem& p) {
  return p.weight.defined() ? ptr<const T>(p.weight) : nullptr;
}

template <class T> LossOutput<T> loss_output(const LossForward& o, int64_t reduction) {
  LossOutput<T> out;
  if (reduction == kReduceNone) {
    out.per_row = true;
    out.rows_out = ptr<T>(o.loss);
  } else {
    out.partials = ptr<acc_t<T>>(o.partials);
    out.reduced = ptr<T>(o.loss);
    out.total_weight = ptr<acc_t<T>>(o.total_weight);
    out.mean = reduction == kReduceMean;
  }
  return out;
}

// 1 / W_t (total_weight[1]) for mean, nullptr otherwise
template <class T> const acc_t<T>* inverse_total_weight(const at::Tensor& total_weight, int64_t reduction) {
  return reduction == kReduceMean ? ptr<const acc_t<T>>(total_weight) + 1 : nullptr;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_entropy_fwd(const at::Tensor& input, const at::Tensor& target,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 int64_t reduction, int64_t ignore_index,
                                                                 double label_smoothing) {
  const char* op = "cross_entropy";
  check_device(input, op, "input");
  const LossProblem p = loss_problem(op, input, target, weight, reduction, /*allow_half=*/true);
  check_label_smoothing(op, label_smoothing);
  DeviceGuard guard(input);
  LossForward o = loss_forward_outputs(p, reduction, /*with_lse=*/true, /*with_partials=*/true);
  dispatch_float(input.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    check_launch(cross_entropy_forward<T>(ptr<const T>(p.input), input_rows(p), p.target.data_ptr<int64_t>(),
                                          weight_ptr<T>(p), ignore_index, label_smoothing, loss_output<T>(o, reduction),
                                          ptr<double>(o.lse), current_stream(input)),
                 op);
  });
  return {o.loss, o.lse, o.total_weight};
}

at::Tensor cross_entropy_bwd(const at::Tensor& grad_loss, const at::Tensor& input, const at::Tensor& target,
                             const std::optional<at::Tensor>& weight, const at::Tensor& lse,
                             const at::Tensor& total_weight, int64_t reduction, int64_t ignore_index,
                             double label_smoothing) {
  const char* op = "cross_entropy_backward";
  check_device(input, op, "input");
  check_label_smoothing(op, label_smoothing);
  DeviceGuard guard(input);
  const LossBackward b = loss_backward_setup(op, grad_loss, input, target, weight, total_weight, reduction, true);
  const LossProblem& p = b.p;
  check_lse(op, p, lse);
  dispatch_float(input.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    check_launch(cross_entropy_backward<T>(ptr<const T>(b.grad), b.ld_grad,
                                           inverse_total_weight<T>(total_weight, reduction), ptr<const T>(p.input),
                                           input_rows(p), p.target.data_ptr<int64_t>(), weight_ptr<T>(p),
                                           ignore_index, label_smoothing, ptr<const double>(lse),
                                           ptr<T>(b.grad_input), contiguous_rows(p), current_stream(input)),
                 op);
  });
  return b.grad_input;
}

std::tuple<at::Tensor, at::Tensor> nll_loss_fwd(const at::Tensor& input, const at::Tensor& target,
                                                const std::optional<at::Tensor>& weight, int64_t reduction,
                                                int64_t ignore_index) {
  const char* op = "nll_loss";
  check_device(input, op, "input");
  const LossProblem p = loss_problem(op, input, target, weight, reduction, /*allow_half=*/true);
  DeviceGuard guard(input);
  LossForward o = loss_forward_outputs(p, reduction, /*with_lse=*/false, /*with_partials=*/true);
  dispatch_float(input.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    check_launch(nll_loss_forward<T>(ptr<const T>(p.input), input_rows(p), p.target.data_ptr<int64_t>(),
                                     weight_ptr<T>(p), ignore_index, loss_output<T>(o, reduction),
                                     current_stream(input)),
                 op);
  });
  return {o.loss, o.total_weight};
}

at::Tensor nll_loss_bwd(const at::Tensor& grad_loss, const at::Tensor& input, const at::Tensor& target,
                        const std::optional<at::Tensor>& weight, const at::Tensor& total_weight, int64_t reduction,
                        int64_t ignore_index) {
  const char* op = "nll_loss_backward";
  check_device(input, op, "input");
  DeviceGuard guard(input);
  const LossBackward b = loss_backward_setup(op, grad_loss, input, target, weight, total_weight, reduction, true);
  const LossProblem& p = b.p;
  dispatch_float(input.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    check_launch(nll_loss_backward<T>(ptr<const T>(b.grad), b.ld_grad, inverse_total_weight<T>(total_weight, reduction),
                                      p.target.data_ptr<int64_t>(), weight_ptr<T>(p), ignore_index,
                                      ptr<T>(b.grad_input), p.rows, p.C, p.D, current_stream(input)),
                 op);
  });
  return b.grad_input;
}

}  // namespace

PYOPS_LIBRARY_IMPL(PYOPS_CUDA_KEY, m) {
  m.impl("nll_loss_fwd", &nll_loss_fwd);
  m.impl("nll_loss_bwd", &nll_loss_bwd);
  m.impl("cross_entropy_fwd", &cross_entropy_fwd);
  m.impl("cross_entropy_bwd", &cross_entropy_bwd);
}

}  // namespace pyops::cuda
