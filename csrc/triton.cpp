// triton.cpp -- the C++ half of the Triton backend (namespace pyops_triton, schemas in csrc/ops.cpp).
//
// Every pyops_triton op is registered here, as on every other backend, so the Triton kernels get the same
// checks, views and output allocation (csrc/<op>.h) as the CPU and CUDA kernels.  Where those call a C++
// kernel, these call the op's Python launcher in pyops/kernels/<op>.py (launch() below: the GIL taken around
// the call; the module, and triton with it, imported at its first use).  The launchers take the views and
// the outputs made here and only launch.  The CPU key runs the kernels in Triton's interpreter
// (TRITON_INTERPRET=1), the CUDA key on the GPU.  Composed of those, as on every backend:
//   * the differentiable ops and mlp_train_step: csrc/autograd.cpp compiled again with PYOPS_NS =
//     pyops_triton (as setup.py compiles it again with PYOPS_SIM for pyops_sim);
//   * mlp_fwd / mlp_bwd: csrc/linear_relu.h's loop over the layers below.
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/utils/pybind.h>

#include <map>
#include <string>

#include "csrc/common.h"
#undef PYOPS_NS
#define PYOPS_NS pyops_triton
#include "csrc/autograd.cpp"
#include "csrc/adam.h"
#include "csrc/cross_entropy.h"
#include "csrc/linear_relu.h"
#include "csrc/softmax.h"

namespace pyops::triton {
namespace {

namespace py = pybind11;

// Calls pyops.kernels.<module>.<fn>(args...) with the GIL held (the arguments are C++ values: tensors,
// numbers, std::optional for None, converted under the GIL).  A Python exception propagates as itself.
template <class... Args> void launch(const char* module, const char* fn, const Args&... args) {
  py::gil_scoped_acquire gil;
  try {
    static auto* launchers = new std::map<std::string, py::object>();  // kept for the process's life
    auto& f = (*launchers)[std::string(module) + "." + fn];
    if (!f) f = py::module_::import((std::string("pyops.kernels.") + module).c_str()).attr(fn);
    f(args...);
  } catch (py::error_already_set& e) {
    e.restore();
    python_error err;
    err.persist();  // the error travels with the exception (to the autograd engine's threads too)
    throw err;
  }
}

std::optional<at::Tensor> or_none(const at::Tensor& t, bool use = true) {
  return use && t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// ---------------------------------------------------------------- softmax family
at::Tensor matrix(const Rows& r) { return r.data.as_strided({r.rows, r.cols}, {r.ld, 1}); }  // [rows, cols]

at::Tensor softmax_fwd_impl(const at::Tensor& x, int64_t dim, bool log) {
  return softmax_forward_rows(x, dim, log, /*allow_half=*/true, [&](const Rows& in, at::Tensor& y) {
    launch("softmax", "softmax_forward", matrix(in), y.view({in.rows, in.cols}), log);
  });
}

at::Tensor softmax_bwd_impl(const at::Tensor& grad, const at::Tensor& out, int64_t dim, bool log) {
  return softmax_backward_rows(grad, out, dim, log, /*allow_half=*/true,
                               [&](const Rows& g, const Rows& y, at::Tensor& gx) {
                                 launch("softmax", "softmax_backward", matrix(g), matrix(y),
                                        gx.view({y.rows, y.cols}), log);
                               });
}

PYOPS_SOFTMAX_OPS(softmax_fwd_impl, softmax_bwd_impl)

// ---------------------------------------------------------------- linear family
at::Tensor as_2d(const at::Tensor& t, int64_t rows) { return t.dim() == 2 ? t : t.reshape({rows, t.size(-1)}); }
int64_t leading_rows(const at::Tensor& t) {  // the rows of a (*, cols) tensor
  int64_t rows = 1;
  for (int64_t i = 0; i + 1 < t.dim(); ++i) rows *= t.size(i);
  return rows;
}

at::Tensor linear_relu_fwd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           bool relu) {
  check_linear_args(input, weight, bias, linear_name(relu), /*allow_half=*/true);
  at::Tensor y = empty_linear_output(input, weight);
  if (y.numel() > 0) {
    const int64_t rows = leading_rows(input);
    launch("linear_relu", "linear_forward", as_2d(input, rows), weight, or_none(bias.value_or(at::Tensor())),
           as_2d(y, rows), relu);
  }
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_relu_bwd(const at::Tensor& grad_output, const at::Tensor& input,
                                                               const at::Tensor& weight,
                                                               const std::optional<at::Tensor>& output,
                                                               std::array<bool, 3> output_mask) {
  check_linear_backward_args(grad_output, input, weight, output, /*allow_half=*/true);
  auto [gx, gw, gb] = linear_grads(input, weight, output_mask);
  const int64_t rows = leading_rows(input);
  at::Tensor g = as_2d(grad_output, rows), y = output ? as_2d(*output, rows) : at::Tensor();
  if (y.defined() && y.strides() != g.strides()) g = g.contiguous(), y = y.contiguous();  // mask read at g's offsets
  launch("linear_relu", "linear_backward", g, as_2d(input, rows), weight, or_none(y),
         or_none(output_mask[0] ? gx.view({rows, input.size(-1)}) : at::Tensor()), or_none(gw, output_mask[1]),
         or_none(gb, output_mask[2]));
  return {gx, gw, gb};
}

// ---------------------------------------------------------------- nll_loss, cross_entropy
std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t> layout(const LossProblem& p) {
  return {p.rows, p.C, p.D, p.ld_n, p.ld_d, p.ld_c};
}

// The interpreter runs no tl.device_assert: CPU targets are checked here (no device sync involved); CUDA
// tensors: the kernels' device asserts.
void check_targets_on_host(const char* op, const LossProblem& p, int64_t ignore_index) {
  if (!p.target.is_cpu()) return;
  const int64_t* t = p.target.data_ptr<int64_t>();
  for (int64_t r = 0; r < p.rows; ++r) check_target_index(op, t[r], p.C, ignore_index);
}

LossProblem triton_loss_problem(const char* op, const at::Tensor& input, const at::Tensor& target,
                                const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index) {
  LossProblem p = loss_problem(op, input, target, weight, reduction, /*allow_half=*/true);
  check_targets_on_host(op, p, ignore_index);
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_entropy_fwd(const at::Tensor& input, const at::Tensor& target,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 int64_t reduction, int64_t ignore_index,
                                                                 double label_smoothing) {
  const char* op = "cross_entropy";
  check_label_smoothing(op, label_smoothing);
  const LossProblem p = triton_loss_problem(op, input, target, weight, reduction, ignore_index);
  const LossForward o = loss_forward_outputs(p, reduction, /*with_lse=*/true, /*with_partials=*/true);
  launch("cross_entropy", "cross_entropy_forward", p.input, layout(p), p.target, or_none(p.weight), ignore_index,
         label_smoothing, o.loss, or_none(o.partials), o.lse, o.total_weight, reduction == kReduceMean);
  return {o.loss, o.lse, o.total_weight};
}

at::Tensor cross_entropy_bwd(const at::Tensor& grad_loss, const at::Tensor& input, const at::Tensor& target,
                             const std::optional<at::Tensor>& weight, const at::Tensor& lse,
                             const at::Tensor& total_weight, int64_t reduction, int64_t ignore_index,
                             double label_smoothing) {
  const char* op = "cross_entropy_backward";
  check_label_smoothing(op, label_smoothing);
  LossBackward b = loss_backward_setup(op, grad_loss, input, target, weight, total_weight, reduction, true);
  check_lse(op, b.p, lse);
  check_targets_on_host(op, b.p, ignore_index);
  launch("cross_entropy", "cross_entropy_backward", b.grad, b.ld_grad, total_weight, b.p.input, layout(b.p),
         b.p.target, or_none(b.p.weight), ignore_index, label_smoothing, lse, b.grad_input,
         reduction == kReduceMean);
  return b.grad_input;
}

std::tuple<at::Tensor, at::Tensor> nll_loss_fwd(const at::Tensor& input, const at::Tensor& target,
                                                const std::optional<at::Tensor>& weight, int64_t reduction,
                                                int64_t ignore_index) {
  const LossProblem p = triton_loss_problem("nll_loss", input, target, weight, reduction, ignore_index);
  const LossForward o = loss_forward_outputs(p, reduction, /*with_lse=*/false, /*with_partials=*/true);
  launch("cross_entropy", "nll_loss_forward", p.input, layout(p), p.target, or_none(p.weight), ignore_index, o.loss,
         or_none(o.partials), o.total_weight, reduction == kReduceMean);
  return {o.loss, o.total_weight};
}

at::Tensor nll_loss_bwd(const at::Tensor& grad_loss, const at::Tensor& input, const at::Tensor& target,
                        const std::optional<at::Tensor>& weight, const at::Tensor& total_weight, int64_t reduction,
                        int64_t ignore_index) {
  const char* op = "nll_loss_backward";
  LossBackward b = loss_backward_setup(op, grad_loss, input, target, weight, total_weight, reduction, true);
  check_targets_on_host(op, b.p, ignore_index);
  launch("cross_entropy", "nll_loss_backward", b.grad, b.ld_grad, total_weight, layout(b.p), b.p.target,
         or_none(b.p.weight), ignore_index, b.grad_input, reduction == kReduceMean);
  return b.grad_input;
}

// ---------------------------------------------------------------- adam_step
// csrc/adam.h's checks, then kernels/adam.py's launcher with the hyperparameters by name (a dict).
void adam_step_triton(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                      at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                      const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& counters,
                      bool capturable, at::ArrayRef<double> hparams) {
  const AdamArgs a(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters,
                   capturable, hparams);
  check_adam(a, /*allow_half=*/true);
  check_adam_counters(a);
  if (params.empty()) return;
  py::gil_scoped_acquire gil;  // (held around launch(), which takes it again, so that h lives under it)
  py::dict h;
#define PYOPS_ADAM_ITEM(type, name, default_value, key, valid, rule) h[#name] = a.h.name;
  PYOPS_ADAM_HPARAMS(PYOPS_ADAM_ITEM)
#undef PYOPS_ADAM_ITEM
  launch("adam", "launch", params.vec(), grads.vec(), exp_avgs.vec(), exp_avg_sqs.vec(), max_exp_avg_sqs.vec(),
         state_steps.vec(), lr_tensor, counters, capturable, h);
}
static_assert(std::is_same_v<decltype(adam_step_triton), AdamStepSig>);

void register_triton(torch::Library& m) {
  PYOPS_SOFTMAX_REGISTER(m);
  PYOPS_LINEAR_IMPLS(m);
  m.impl("cross_entropy_fwd", &cross_entropy_fwd);
  m.impl("cross_entropy_bwd", &cross_entropy_bwd);
  m.impl("nll_loss_fwd", &nll_loss_fwd);
  m.impl("nll_loss_bwd", &nll_loss_bwd);
  m.impl("adam_step", &adam_step_triton);
}

}  // namespace
}  // namespace pyops::triton

TORCH_LIBRARY_IMPL(pyops_triton, CPU, m) { pyops::triton::register_triton(m); }
TORCH_LIBRARY_IMPL(pyops_triton, CUDA, m) { pyops::triton::register_triton(m); }
// A sparse gradient sends adam_step to the sparse keys: registered there so that its checks answer ("Adam does not
// support sparse gradients") instead of the dispatcher's "could not run", as on the C++ backends.
TORCH_LIBRARY_IMPL(pyops_triton, SparseCPU, m) { m.impl("adam_step", &pyops::triton::adam_step_triton); }
TORCH_LIBRARY_IMPL(pyops_triton, SparseCUDA, m) { m.impl("adam_step", &pyops::triton::adam_step_triton); }
