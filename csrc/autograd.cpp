// autograd.cpp -- the ops composed of the backend ops: the differentiable softmax, log_softmax, linear_relu,
// mlp, cross_entropy and nll_loss, each ONE C++ autograd node, and mlp_train_step, a whole training step with
// no autograd graph (at the end).
//
//   softmax(input, dim), log_softmax(input, dim)                              -> output
//   linear_relu(input, weight, bias?, relu)                                   -> output
//   mlp(input, weights[L], biases[L], log_softmax_dim?)                       -> output (its log_softmax over
//                                                                                 log_softmax_dim when given)
//   cross_entropy(input, target, weight?, reduction, ignore_index, label_smoothing) -> loss
//   nll_loss(input, target, weight?, reduction, ignore_index)                 -> loss
//
// Each is a CompositeImplicitAutograd kernel around a C++ autograd node -- written out for softmax,
// log_softmax, linear_relu and mlp (see "nodes written out" below), a torch::autograd::Function for the
// losses -- whose forward calls the
// backend op (<op>_fwd) and whose backward calls <op>_bwd, both through the dispatcher -- so one kernel
// serves every backend: the CPU and CUDA kernels (namespace pyops), the emulated CUDA kernels (compiled
// again with PYOPS_SIM: pyops_sim) and the Triton kernels (compiled again by csrc/triton.cpp with
// PYOPS_NS = pyops_triton).  The Python API calls these ops directly: the autograd node is C++
// (pyops::<Op>Backward, or torch's CppNode for a Function), so a training step pays no Python
// autograd.Function on either side -- at the MNIST sizes a Python node costs about what the kernels cost.
// What is saved: the output for softmax (the backward needs only y); input, weight and (ReLU) the output for
// linear_relu, never the pre-activation; the input, weights and hidden outputs for mlp (and, with
// log_softmax_dim, its output: the log-softmax's backward needs only that); the caller's logits, target, weight
// and the per-row lse for cross_entropy -- nothing of size N x C besides the caller's own input.
//
// The backwards run below autograd and without grad mode: a double backward through them fails loudly (the
// gradient does not require grad) instead of returning zeros.  The derivative for the class weights is not
// implemented, as in PyTorch.
//
// Under torch.compile these ops decompose (CompositeImplicitAutograd) into <op>_fwd / <op>_bwd, traced through
// their Meta kernels (csrc/meta.cpp).
#include <ATen/FuncTorchTLS.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "csrc/adam.h"
#include "csrc/common.h"
#include "csrc/train_step.h"

namespace pyops {
namespace {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

#define PYOPS_QUALIFIED(name) C10_STRINGIZE(PYOPS_NS) "::" name

template <class Sig>
c10::TypedOperatorHandle<Sig> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

// The backend op runs below autograd (no autograd-fallback kernel on the way) and, in a backward, without
// recording anything (once differentiable).
struct BelowAutograd {
  at::AutoDispatchBelowADInplaceOrView below;
  at::NoGradGuard no_grad;
};

std::optional<Tensor> opt(const Tensor& t) { return t.defined() ? std::optional<Tensor>(t) : std::nullopt; }

// ---------------------------------------------------------------- nodes written out
// softmax, log_softmax, linear_relu and mlp -- the ops a fused model runs at every layer of every step -- have
// their nodes written out as PyTorch's own nodes are (a torch::autograd::Node subclass with SavedVariables),
// not as a torch::autograd::Function: a Function's CppNode does bookkeeping at every call that these nodes have
// no use for (an input info with its sizes per tensor, the saved_data map of IValues, its output checks).  The
// same forward and backward through mlp's node took 14 us less per call on a Zen 3 core (docs/dropin.md).  What
// a Function gives is kept: grad mode and requires_grad decide whether a node is made (wants_node), the saved
// tensors are SavedVariables (version checks, saved-tensor hooks, "backward through the graph a second time"
// once released), a backward holds the node's mutex, an undefined incoming gradient gives undefined gradients,
// and a forward-mode tangent or a functorch transform is refused.  The losses keep their Functions.

// A new node of type T as the graph holds nodes: c10::intrusive_ptr from the PyTorch release whose Node is an
// intrusive_ptr_target on, std::shared_ptr (freed by torch's deleteNode, found by argument-dependent lookup)
// before it.
template <class T> auto new_node() {
  if constexpr (std::is_base_of_v<c10::intrusive_ptr_target, T>) {
    return c10::make_intrusive<T>();
  } else {
    return std::shared_ptr<T>(new T(), [](T* n) { deleteNode(n); });
  }
}

// The node itself as the graph holds it (what SavedVariable::unpack needs for an output of the node).
template <class T> auto self_ptr(T* node) {
  if constexpr (requires { node->getptr(); }) {
    return node->getptr();
  } else {
    return node->shared_from_this();
  }
}

// Whether a call of `op` on `inputs` (its differentiable arguments that exist) records a node: grad mode on and
// an input that requires grad.  Refuses what a torch::autograd::Function refuses, before any kernel runs.
bool wants_node(at::ArrayRef<Tensor> inputs, const char* op) {
  if (const auto& functorch_tls = at::functorch::functorchTLSAccessor())
    functorch_tls->checkSupportsCppAutogradFunction();  // as a torch::autograd::Function: a clear error
  bool requires_grad = false;
  for (const Tensor& t : inputs) {
    TORCH_CHECK(!torch::autograd::isFwGradDefined(t), op, ": forward-mode automatic differentiation is not "
                "implemented (an input has a tangent)");
    requires_grad = requires_grad || t.requires_grad();
  }
  return requires_grad && at::GradMode::is_enabled();
}

// A node of type T for `output`, its edges to `inputs` (as given to wants_node).  Save `output` in it after this.
template <class T> auto attach_node(at::ArrayRef<Tensor> inputs, const Tensor& output) {
  auto node = new_node<T>();
  node->set_next_edges(torch::autograd::collect_next_edges(inputs));
  torch::autograd::set_history(output, node);
  return node;
}

// ---------------------------------------------------------------- softmax, log_softmax
template <bool Log>
struct SoftmaxBackward : torch::autograd::Node {
  int64_t dim = 0;
  torch::autograd::SavedVariable output;  // the backward needs only y

  std::string name() const override { return Log ? "pyops::LogSoftmaxBackward" : "pyops::SoftmaxBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    output.reset_data();
  }

  variable_list apply(variable_list&& grad_outputs) override {
    static const auto bwd = find_op<Tensor(const Tensor&, const Tensor&, int64_t)>(
        Log ? PYOPS_QUALIFIED("log_softmax_bwd") : PYOPS_QUALIFIED("softmax_bwd"));
    std::lock_guard<std::mutex> lock(mutex_);  // a graph kept with retain_graph may run backward from two threads
    if (!grad_outputs[0].defined() || !task_should_compute_output(0)) return {Tensor()};
    const Tensor y = output.unpack(self_ptr(this));
    BelowAutograd guard;
    return {bwd.call(grad_outputs[0], y, dim)};
  }
};

template <bool Log> Tensor softmax_op(const Tensor& input, int64_t dim) {
  static const auto fwd = find_op<Tensor(const Tensor&, int64_t)>(
      Log ? PYOPS_QUALIFIED("log_softmax_fwd") : PYOPS_QUALIFIED("softmax_fwd"));
  const bool graph = wants_node({input}, Log ? "log_softmax" : "softmax");
  Tensor output;
  {
    BelowAutograd guard;
    output = fwd.call(input, dim);
  }
  if (!graph) return output;
  auto node = attach_node<SoftmaxBackward<Log>>({input}, output);
  node->dim = dim;
  node->output = torch::autograd::SavedVariable(output, true);
  return output;
}

Tensor softmax(const Tensor& input, int64_t dim) { return softmax_op<false>(input, dim); }
Tensor log_softmax(const Tensor& input, int64_t dim) { return softmax_op<true>(input, dim); }

// ---------------------------------------------------------------- linear_relu
struct LinearReluBackward : torch::autograd::Node {
  bool has_bias = false, relu = false;
  torch::autograd::SavedVariable input, weight, output;  // output: the ReLU mask (its sign), when relu

  std::string name() const override { return "pyops::LinearReluBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    input.reset_data();
    weight.reset_data();
    output.reset_data();
  }

  variable_list apply(variable_list&& grad_outputs) override {
    static const auto bwd = find_op<std::tuple<Tensor, Tensor, Tensor>(
        const Tensor&, const Tensor&, const Tensor&, const std::optional<Tensor>&, std::array<bool, 3>)>(
        PYOPS_QUALIFIED("linear_relu_bwd"));
    std::lock_guard<std::mutex> lock(mutex_);
    if (!grad_outputs[0].defined()) return variable_list(num_outputs());
    // the edges: input, weight, then bias when given
    const std::array<bool, 3> mask{task_should_compute_output(0), task_should_compute_output(1),
                                   has_bias && task_should_compute_output(2)};
    const Tensor x = input.unpack(), w = weight.unpack();
    const std::optional<Tensor> y = relu ? std::optional<Tensor>(output.unpack(self_ptr(this))) : std::nullopt;
    Tensor gx, gw, gb;
    {
      BelowAutograd guard;
      std::tie(gx, gw, gb) = bwd.call(grad_outputs[0], x, w, y, mask);
    }
    variable_list out{mask[0] ? std::move(gx) : Tensor(), mask[1] ? std::move(gw) : Tensor()};
    if (has_bias) out.push_back(mask[2] ? std::move(gb) : Tensor());
    return out;
  }
};

Tensor linear_relu(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& bias, bool relu) {
  static const auto fwd = find_op<Tensor(const Tensor&, const Tensor&, const std::optional<Tensor>&, bool)>(
      PYOPS_QUALIFIED("linear_relu_fwd"));
  const bool has_bias = bias.has_value() && bias->defined();
  const std::vector<Tensor> inputs = has_bias ? std::vector<Tensor>{input, weight, *bias}
                                              : std::vector<Tensor>{input, weight};
  const bool graph = wants_node(inputs, "linear_relu");
  Tensor output;
  {
    BelowAutograd guard;
    output = fwd.call(input, weight, bias, relu);
  }
  if (!graph) return output;
  auto node = attach_node<LinearReluBackward>(inputs, output);
  node->has_bias = has_bias;
  node->relu = relu;
  node->input = torch::autograd::SavedVariable(input, false);
  node->weight = torch::autograd::SavedVariable(weight, false);
  if (relu) node->output = torch::autograd::SavedVariable(output, true);
  return output;
}

// ---------------------------------------------------------------- mlp
// With log_softmax_dim, the network's log-softmax is computed in the same node (log_softmax_fwd / _bwd, the
// kernels of log_softmax above): a classifier's forward is one autograd node, not two.
struct MLPBackward : torch::autograd::Node {
  std::vector<bool> with_bias;          // layer i has a bias (an edge after the weights')
  std::optional<int64_t> log_softmax_dim;
  torch::autograd::SavedVariable input;
  std::vector<torch::autograd::SavedVariable> weights, hidden;  // hidden: the layers' outputs but the last
  torch::autograd::SavedVariable output;  // the log-softmax, when log_softmax_dim

  std::string name() const override { return "pyops::MLPBackward"; }

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    input.reset_data();
    output.reset_data();
    for (auto& v : weights) v.reset_data();
    for (auto& v : hidden) v.reset_data();
  }

  variable_list apply(variable_list&& grad_outputs) override {
    static const auto bwd = find_op<std::vector<Tensor>(const Tensor&, const Tensor&, at::TensorList, at::TensorList,
                                                        const c10::List<bool>&)>(PYOPS_QUALIFIED("mlp_bwd"));
    static const auto log_softmax_bwd =
        find_op<Tensor(const Tensor&, const Tensor&, int64_t)>(PYOPS_QUALIFIED("log_softmax_bwd"));
    std::lock_guard<std::mutex> lock(mutex_);  // a graph kept with retain_graph may run backward from two threads
    const size_t L = with_bias.size();
    if (!grad_outputs[0].defined()) return variable_list(num_outputs());  // no gradient in: none out
    // the op's mask: input, weights, biases (one per layer); the node's edges: input, weights, existing biases
    c10::List<bool> mask;
    mask.reserve(1 + 2 * L);
    for (size_t i = 0; i < 1 + L; ++i) mask.push_back(task_should_compute_output(i));
    for (size_t i = 0, edge = 1 + L; i < L; ++i) mask.push_back(with_bias[i] && task_should_compute_output(edge++));
    std::vector<Tensor> w, h;
    w.reserve(L);
    h.reserve(hidden.size());
    for (auto& v : weights) w.push_back(v.unpack());
    for (auto& v : hidden) h.push_back(v.unpack());
    const Tensor x = input.unpack();
    std::vector<Tensor> grads;
    {
      BelowAutograd guard;
      const Tensor grad = log_softmax_dim
                              ? log_softmax_bwd.call(grad_outputs[0], output.unpack(self_ptr(this)), *log_softmax_dim)
                              : grad_outputs[0];
      grads = bwd.call(grad, x, w, h, mask);
    }
    variable_list out;  // one per edge: input, weights, existing biases
    out.reserve(1 + 2 * L);
    for (size_t i = 0; i < 1 + 2 * L; ++i)
      if (i <= L || with_bias[i - 1 - L]) out.push_back(mask.get(i) ? std::move(grads[i]) : Tensor());
    return out;
  }
};

Tensor mlp(const Tensor& input, at::TensorList weights, const c10::List<std::optional<Tensor>>& biases,
           std::optional<int64_t> log_softmax_dim) {
  static const auto fwd =
      find_op<std::vector<Tensor>(const Tensor&, at::TensorList, const c10::List<std::optional<Tensor>>&)>(
          PYOPS_QUALIFIED("mlp_fwd"));
  static const auto lsm_fwd = find_op<Tensor(const Tensor&, int64_t)>(PYOPS_QUALIFIED("log_softmax_fwd"));
  const size_t L = weights.size();
  // the node's inputs (its edges): input, weights, the biases that exist
  std::vector<Tensor> inputs;
  inputs.reserve(1 + 2 * L);
  inputs.push_back(input);
  inputs.insert(inputs.end(), weights.begin(), weights.end());
  std::vector<bool> with_bias(biases.size());
  c10::List<std::optional<Tensor>> b;  // mlp_fwd's biases: an undefined one as none
  b.reserve(biases.size());
  for (size_t i = 0; i < biases.size(); ++i) {
    const std::optional<Tensor> bias = biases.get(i);
    with_bias[i] = bias.has_value() && bias->defined();
    b.push_back(with_bias[i] ? bias : std::nullopt);
    if (with_bias[i]) inputs.push_back(*bias);
  }
  const bool graph = wants_node(inputs, "mlp");
  std::vector<Tensor> outs;
  Tensor output;
  {
    BelowAutograd guard;
    outs = fwd.call(input, weights, b);
    output = log_softmax_dim ? lsm_fwd.call(outs.back(), *log_softmax_dim) : outs.back();
  }
  if (!graph) return output;
  auto node = attach_node<MLPBackward>(inputs, output);
  node->with_bias = std::move(with_bias);
  node->log_softmax_dim = log_softmax_dim;
  node->input = torch::autograd::SavedVariable(input, false);
  node->weights.reserve(L);
  for (const Tensor& w : weights) node->weights.emplace_back(w, false);
  node->hidden.reserve(outs.size() - 1);
  for (size_t i = 0; i + 1 < outs.size(); ++i) node->hidden.emplace_back(outs[i], false);
  if (log_softmax_dim) node->output = torch::autograd::SavedVariable(output, true);
  return output;
}

// ---------------------------------------------------------------- cross_entropy, nll_loss
void check_no_weight_grad(AutogradContext* ctx, bool has_weight, const char* op) {
  // the edges: input, target, then weight when given
  TORCH_CHECK(!(has_weight && ctx->needs_input_grad(2)), op,
              ": the derivative for 'weight' is not implemented (as in PyTorch)");
}

struct CrossEntropyFunction : torch::autograd::Function<CrossEntropyFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& input, const Tensor& target,
                        const std::optional<Tensor>& weight, int64_t reduction, int64_t ignore_index,
                        double label_smoothing) {
    static const auto fwd = find_op<std::tuple<Tensor, Tensor, Tensor>(
        const Tensor&, const Tensor&, const std::optional<Tensor>&, int64_t, int64_t, double)>(
        PYOPS_QUALIFIED("cross_entropy_fwd"));
    Tensor loss, lse, total_weight;
    {
      BelowAutograd guard;
      std::tie(loss, lse, total_weight) = fwd.call(input, target, weight, reduction, ignore_index, label_smoothing);
    }
    ctx->save_for_backward({input, target, weight.value_or(Tensor()), lse, total_weight});
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["label_smoothing"] = label_smoothing;
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto bwd =
        find_op<Tensor(const Tensor&, const Tensor&, const Tensor&, const std::optional<Tensor>&, const Tensor&,
                       const Tensor&, int64_t, int64_t, double)>(PYOPS_QUALIFIED("cross_entropy_bwd"));
    const variable_list s = ctx->get_saved_variables();
    check_no_weight_grad(ctx, s[2].defined(), "cross_entropy");
    Tensor grad_input;
    if (ctx->needs_input_grad(0)) {
      BelowAutograd guard;
      grad_input = bwd.call(grad_outputs[0], s[0], s[1], opt(s[2]), s[3], s[4], ctx->saved_data["reduction"].toInt(),
                            ctx->saved_data["ignore_index"].toInt(), ctx->saved_data["label_smoothing"].toDouble());
    }
    return {grad_input, Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

struct NLLLossFunction : torch::autograd::Function<NLLLossFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& input, const Tensor& target,
                        const std::optional<Tensor>& weight, int64_t reduction, int64_t ignore_index) {
    static const auto fwd = find_op<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&,
                                                               const std::optional<Tensor>&, int64_t, int64_t)>(
        PYOPS_QUALIFIED("nll_loss_fwd"));
    Tensor loss, total_weight;
    {
      BelowAutograd guard;
      std::tie(loss, total_weight) = fwd.call(input, target, weight, reduction, ignore_index);
    }
    ctx->save_for_backward({input, target, weight.value_or(Tensor()), total_weight});
    ctx->saved_data["reduction"] = reduction;
    ctx->saved_data["ignore_index"] = ignore_index;
    return loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    static const auto bwd = find_op<Tensor(const Tensor&, const Tensor&, const Tensor&, const std::optional<Tensor>&,
                                           const Tensor&, int64_t, int64_t)>(PYOPS_QUALIFIED("nll_loss_bwd"));
    const variable_list s = ctx->get_saved_variables();
    check_no_weight_grad(ctx, s[2].defined(), "nll_loss");
    Tensor grad_input;
    if (ctx->needs_input_grad(0)) {
      BelowAutograd guard;
      grad_input = bwd.call(grad_outputs[0], s[0], s[1], opt(s[2]), s[3], ctx->saved_data["reduction"].toInt(),
                            ctx->saved_data["ignore_index"].toInt());
    }
    return {grad_input, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

Tensor cross_entropy(const Tensor& input, const Tensor& target, const std::optional<Tensor>& weight,
                     int64_t reduction, int64_t ignore_index, double label_smoothing) {
  return CrossEntropyFunction::apply(input, target, weight, reduction, ignore_index, label_smoothing);
}

Tensor nll_loss(const Tensor& input, const Tensor& target, const std::optional<Tensor>& weight, int64_t reduction,
                int64_t ignore_index) {
  return NLLLossFunction::apply(input, target, weight, reduction, ignore_index);
}

// ---------------------------------------------------------------- mlp_train_step
// One whole training step of an MLP classifier, with no autograd graph at all: the same backend ops that a
// `loss.backward(); optimizer.step()` step runs, in the same order with the same arguments, called one after
// the other from here -- so the result is that step's, bit for bit, without the autograd engine (its nodes,
// the gradient accumulation into .grad, the graph's bookkeeping) and the Python between the ops.  At the
// MNIST sizes those cost more than the loss and the update themselves (docs/train_step.md).
//   mlp_fwd -> [cross_entropy_fwd -> cross_entropy_bwd | log_softmax_fwd -> nll_loss_fwd -> nll_loss_bwd ->
//   log_softmax_bwd] -> mlp_bwd (no grad_input) -> adam_step (weights, then the existing biases)
// The gradient of the loss is ones_like(loss), as loss.backward() seeds it.  Returns the loss.
Tensor mlp_train_step(const Tensor& input, const Tensor& target, at::TensorList weights, at::TensorList biases,
                      const c10::List<bool>& with_bias, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                      at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                      const std::optional<Tensor>& lr_tensor, const std::optional<Tensor>& counters,
                      bool capturable, at::ArrayRef<double> hparams, bool log_softmax_nll,
                      const std::optional<Tensor>& weight, int64_t reduction, int64_t ignore_index,
                      double label_smoothing) {
  constexpr const char* op = "mlp_train_step";
  using OptT = const std::optional<Tensor>&;
  static const auto mlp_fwd = find_op<std::vector<Tensor>(const Tensor&, at::TensorList,
                                                          const c10::List<std::optional<Tensor>>&)>(
      PYOPS_QUALIFIED("mlp_fwd"));
  static const auto mlp_bwd = find_op<std::vector<Tensor>(const Tensor&, const Tensor&, at::TensorList,
                                                          at::TensorList, const c10::List<bool>&)>(
      PYOPS_QUALIFIED("mlp_bwd"));
  static const auto ce_fwd = find_op<std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, OptT, int64_t,
                                                                        int64_t, double)>(
      PYOPS_QUALIFIED("cross_entropy_fwd"));
  static const auto ce_bwd = find_op<Tensor(const Tensor&, const Tensor&, const Tensor&, OptT, const Tensor&,
                                            const Tensor&, int64_t, int64_t, double)>(
      PYOPS_QUALIFIED("cross_entropy_bwd"));
  static const auto lsm_fwd = find_op<Tensor(const Tensor&, int64_t)>(PYOPS_QUALIFIED("log_softmax_fwd"));
  static const auto lsm_bwd =
      find_op<Tensor(const Tensor&, const Tensor&, int64_t)>(PYOPS_QUALIFIED("log_softmax_bwd"));
  static const auto nll_fwd = find_op<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, OptT, int64_t,
                                                                 int64_t)>(PYOPS_QUALIFIED("nll_loss_fwd"));
  static const auto nll_bwd = find_op<Tensor(const Tensor&, const Tensor&, const Tensor&, OptT, const Tensor&,
                                             int64_t, int64_t)>(PYOPS_QUALIFIED("nll_loss_bwd"));
  static const auto adam = find_op<AdamStepSig>(PYOPS_QUALIFIED("adam_step"));

  const size_t L = weights.size();
  TORCH_CHECK(L > 0, op, ": expected a non-empty list of weights");
  TORCH_CHECK(with_bias.size() == L, op, ": expected with_bias to have one entry per layer (", L, "), got ",
              with_bias.size());
  size_t n_bias = 0;
  for (const bool has : with_bias) n_bias += has;
  TORCH_CHECK(biases.size() == n_bias, op, ": with_bias names ", n_bias, " biases, got ", biases.size());
  TORCH_CHECK(input.dim() == 2, op, ": expected input of shape (batch, in_features), got ", input.sym_sizes());
  TORCH_CHECK(target.dim() == 1 && target.sym_size(0) == input.sym_size(0), op, ": expected target of shape (",
              input.sym_size(0), ",) (one class index per row of input), got ", target.sym_sizes());
  TORCH_CHECK(reduction == 1 || reduction == 2, op,
              ": expected reduction mean (1) or sum (2) -- a training step needs a scalar loss -- got ", reduction);

  BelowAutograd guard;
  c10::List<std::optional<Tensor>> b;
  b.reserve(L);
  for (size_t i = 0, j = 0; i < L; ++i) b.push_back(with_bias.get(i) ? std::optional<Tensor>(biases[j++]) : std::nullopt);
  const std::vector<Tensor> outs = mlp_fwd.call(input, weights, b);
  const Tensor& logits = outs.back();
  Tensor loss, grad_logits;
  if (!log_softmax_nll) {
    Tensor lse, total_weight;
    std::tie(loss, lse, total_weight) = ce_fwd.call(logits, target, weight, reduction, ignore_index, label_smoothing);
    grad_logits = ce_bwd.call(at::ones_like(loss), logits, target, weight, lse, total_weight, reduction,
                              ignore_index, label_smoothing);
  } else {
    TORCH_CHECK(label_smoothing == 0.0, op, ": label_smoothing applies to cross-entropy, not to log_softmax + nll");
    const Tensor log_probs = lsm_fwd.call(logits, 1);
    Tensor total_weight;
    std::tie(loss, total_weight) = nll_fwd.call(log_probs, target, weight, reduction, ignore_index);
    const Tensor grad_log_probs =
        nll_bwd.call(at::ones_like(loss), log_probs, target, weight, total_weight, reduction, ignore_index);
    grad_logits = lsm_bwd.call(grad_log_probs, log_probs, 1);
  }
  c10::List<bool> mask;  // input, weights, biases: no gradient for the input
  mask.reserve(1 + 2 * L);
  mask.push_back(false);
  for (size_t i = 0; i < L; ++i) mask.push_back(true);
  for (const bool has : with_bias) mask.push_back(has);
  const at::TensorList hidden = at::TensorList(outs).slice(0, L - 1);
  const std::vector<Tensor> grads = mlp_bwd.call(grad_logits, input, weights, hidden, mask);
  std::vector<Tensor> params(weights.begin(), weights.end()), param_grads(grads.begin() + 1, grads.begin() + 1 + L);
  params.insert(params.end(), biases.begin(), biases.end());
  for (size_t i = 0; i < L; ++i)
    if (with_bias.get(i)) param_grads.push_back(grads[1 + L + i]);
  adam.call(params, param_grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters, capturable,
            hparams);
  return loss;
}

static_assert(std::is_same_v<decltype(mlp_train_step), MlpTrainStepSig>,
              "csrc/train_step.h's MlpTrainStepSig must be the type of the mlp_train_step kernel");

}  // namespace

PYOPS_LIBRARY_IMPL(CompositeImplicitAutograd, m) {
  m.impl("softmax", &softmax);
  m.impl("log_softmax", &log_softmax);
  m.impl("linear_relu", &linear_relu);
  m.impl("mlp", &mlp);
  m.impl("cross_entropy", &cross_entropy);
  m.impl("nll_loss", &nll_loss);
  m.impl("mlp_train_step", &mlp_train_step);
}

}  // namespace pyops
