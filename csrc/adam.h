// adam.h -- the backend-independent half of adam_step (one Adam/AdamW step over lists of tensors):
// the hyperparameters read from the op's `hparams` list (declared in kernels/cuda/adam_hparams.h), the
// argument checks every backend runs (csrc/cpu/adam.cpp, csrc/cuda/adam.cpp, csrc/triton.cpp) and the op's
// Meta kernel (csrc/meta.cpp) is made of, and the host side of `step` for the
// non-capturable mode.  The update math is in kernels/cuda/adam.cuh.  The checks read symbolic sizes
// (sym_sizes, sym_numel): the same code checks concrete tensors and torch.compile's fake ones.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>
#include <type_traits>
#include <vector>

#include "csrc/common.h"
#include "kernels/cuda/adam_hparams.h"

namespace pyops {

constexpr const char* kAdamOp = "adam_step";
using cuda::AdamHyper;

// The C++ type of the adam_step op (schema in csrc/ops.cpp), for its kernels and for mlp_train_step's call.
using AdamStepSig = void(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                         at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                         const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& counters,
                         bool capturable, at::ArrayRef<double> hparams);

// A value of the hparams list as a field's type: a flag must be 0 or 1.
template <class T> T adam_hparam_value(double x, const char* name);
template <> inline double adam_hparam_value<double>(double x, const char*) { return x; }
template <> inline bool adam_hparam_value<bool>(double x, const char* name) {
  TORCH_CHECK(x == 0 || x == 1, kAdamOp, ": ", name, " is a flag and must be 0 or 1, got ", x);
  return x == 1;
}

// The op's `hparams` list (one value per line of kernels/cuda/adam_hparams.h, in its order) as an AdamHyper,
// each value checked against its rule.
inline AdamHyper parse_adam_hparams(at::ArrayRef<double> values) {
  TORCH_CHECK(values.size() == size_t(cuda::kAdamNumHparams), kAdamOp, ": expected ", cuda::kAdamNumHparams,
              " hyperparameters in hparams (", cuda::kAdamHparamNames, "in this order), got ", values.size());
  AdamHyper h;
  size_t i = 0;
#define PYOPS_ADAM_PARSE(type, name, default_value, key, valid, rule)                              \
  {                                                                                               \
    const type v = adam_hparam_value<type>(values[i++], #name);                                   \
    TORCH_CHECK(valid, kAdamOp, ": " #name " must be " rule ", got ", v);                          \
    h.name = v;                                                                                   \
  }
  PYOPS_ADAM_HPARAMS(PYOPS_ADAM_PARSE)
#undef PYOPS_ADAM_PARSE
  return h;
}

// The arguments of one adam_step call (schema in csrc/ops.cpp), the hyperparameters parsed and checked.
struct AdamArgs {
  AdamArgs(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
           at::TensorList max_exp_avg_sqs, at::TensorList steps, const std::optional<at::Tensor>& lr_tensor,
           const std::optional<at::Tensor>& counters, bool capturable, at::ArrayRef<double> hparams)
      : params(params), grads(grads), exp_avgs(exp_avgs), exp_avg_sqs(exp_avg_sqs),
        max_exp_avg_sqs(max_exp_avg_sqs), steps(steps), lr_tensor(lr_tensor), counters(counters),
        capturable(capturable), h(parse_adam_hparams(hparams)) {}
  at::TensorList params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps;
  const std::optional<at::Tensor>& lr_tensor;
  const std::optional<at::Tensor>& counters;
  bool capturable;
  AdamHyper h;
};

// exp_avg & co. of an fp16/bf16 param are float32 (fp32 state, see kernels/cuda/adam.cuh).
inline at::ScalarType adam_state_dtype(at::ScalarType param) { return is_half_type(param) ? at::kFloat : param; }

// Names like "exp_avgs[3]" are built only when a check fails (TORCH_CHECK evaluates its message
// lazily): these checks run at every optimizer step, for every tensor.
inline void check_adam_state(const at::Tensor& s, const char* list, size_t i, const at::Tensor& p) {
  TORCH_CHECK(s.defined(), kAdamOp, ": ", list, "[", i, "] is undefined");
  TORCH_CHECK(s.scalar_type() == adam_state_dtype(p.scalar_type()), kAdamOp, ": expected ", list, "[", i,
              "] to have dtype ", adam_state_dtype(p.scalar_type()), " (the state dtype of a ", p.scalar_type(),
              " param), got ", s.scalar_type());
  TORCH_CHECK(s.device() == p.device(), kAdamOp, ": expected ", list, "[", i, "] on the device of params[", i, "] (",
              p.device(), "), got ", s.device());
  TORCH_CHECK(s.sym_sizes() == p.sym_sizes(), kAdamOp, ": ", list, "[", i, "] has shape ", s.sym_sizes(),
              " but params[", i, "] has shape ", p.sym_sizes());
  TORCH_CHECK(s.sym_strides() == p.sym_strides(), kAdamOp, ": expected ", list, "[", i, "] to have the strides of params[",
              i, "] (", p.sym_strides(), "), got ", s.sym_strides(),
              " (the kernels walk all tensors of a param as one flat array)");
}

inline void check_scalar_tensor(const at::Tensor& t, const char* list, size_t i) {
  TORCH_CHECK(t.sym_numel() == 1, kAdamOp, ": expected ", list, "[", i, "] to have one element, got ", t.sym_numel());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, kAdamOp, ": expected ", list, "[", i,
              "] to be float32 or float64, got ", t.scalar_type());
}

// Every check of adam_step that does not depend on the backend.  `allow_half`: fp16/bf16 params.  `meta`: the
// Meta kernel's, whose tensors all say they are on the meta device -- where the steps live is not checked.
inline void check_adam(const AdamArgs& a, bool allow_half, bool meta = false) {
  const size_t n = a.params.size();
  auto check_len = [&](at::TensorList l, const char* what, size_t want) {
    TORCH_CHECK(l.size() == want, kAdamOp, ": expected ", want, " ", what, " (one per param), got ", l.size());
  };
  check_len(a.grads, "grads", n);
  check_len(a.exp_avgs, "exp_avgs", n);
  check_len(a.exp_avg_sqs, "exp_avg_sqs", n);
  check_len(a.steps, "state_steps", n);
  if (a.h.amsgrad) check_len(a.max_exp_avg_sqs, "max_exp_avg_sqs with amsgrad=True", n);
  else TORCH_CHECK(a.max_exp_avg_sqs.empty(), kAdamOp, ": max_exp_avg_sqs must be empty when amsgrad=False, got ",
                   a.max_exp_avg_sqs.size(), " tensors");
  if (n == 0) return;
  const at::Tensor& p0 = a.params[0];
  for (size_t i = 0; i < n; ++i) {
    const at::Tensor& p = a.params[i];
    const at::Tensor& g = a.grads[i];
    TORCH_CHECK(p.defined(), kAdamOp, ": params[", i, "] is undefined");
    const auto st = p.scalar_type();
    TORCH_CHECK(!p.is_complex(), kAdamOp, ": complex params[", i, "] (", st,
                ") is not supported; view complex parameters as real (torch.view_as_real)");
    TORCH_CHECK(st == at::kFloat || st == at::kDouble || (allow_half && is_half_type(st)), kAdamOp,
                ": expected params[", i, "] to be a floating-point tensor (",
                allow_half ? "float32, float64, float16 or bfloat16" : "float32 or float64 on this backend", "), got ",
                st);
    TORCH_CHECK(st == p0.scalar_type(), kAdamOp, ": expected every param of one call to have one dtype (",
                p0.scalar_type(), ", from params[0]), params[", i, "] is ", st);
    TORCH_CHECK(p.device() == p0.device(), kAdamOp, ": expected all params on one device, but params[0] is on ",
                p0.device(), " and params[", i, "] is on ", p.device());
    TORCH_CHECK(p.is_non_overlapping_and_dense(), kAdamOp, ": params[", i,
                "] must be dense and non-overlapping (got strides ", p.sym_strides(), " for shape ", p.sym_sizes(), ")");
    TORCH_CHECK(g.defined(), kAdamOp, ": grads[", i, "] is undefined (leave params without a gradient out)");
    TORCH_CHECK(!g.is_sparse(), kAdamOp, ": grads[", i, "] is sparse; Adam does not support sparse gradients, "
                "please consider SparseAdam instead");
    TORCH_CHECK(g.scalar_type() == st, kAdamOp, ": expected grads[", i, "] to have the dtype of params[", i, "] (", st,
                "), got ", g.scalar_type());
    TORCH_CHECK(g.device() == p.device(), kAdamOp, ": expected grads[", i, "] on the device of params[", i, "] (",
                p.device(), "), got ", g.device());
    TORCH_CHECK(g.sym_sizes() == p.sym_sizes(), kAdamOp, ": grads[", i, "] has shape ", g.sym_sizes(), " but params[",
                i, "] has shape ", p.sym_sizes());
    TORCH_CHECK(g.sym_strides() == p.sym_strides(), kAdamOp, ": expected grads[", i, "] to have the strides of params[",
                i, "] (", p.sym_strides(), "), got ", g.sym_strides());
    check_adam_state(a.exp_avgs[i], "exp_avgs", i, p);
    check_adam_state(a.exp_avg_sqs[i], "exp_avg_sqs", i, p);
    if (a.h.amsgrad) check_adam_state(a.max_exp_avg_sqs[i], "max_exp_avg_sqs", i, p);
    const at::Tensor& s = a.steps[i];
    check_scalar_tensor(s, "state_steps", i);
    if (a.capturable) {
      TORCH_CHECK(s.device() == p.device(), kAdamOp, ": capturable=True keeps steps on the params' device; state_steps[",
                  i, "] is on ", s.device(), ", params[", i, "] on ", p.device());
      TORCH_CHECK(s.scalar_type() == a.steps[0].scalar_type(), kAdamOp,
                  ": capturable=True expects all state_steps to have one dtype, got ", a.steps[0].scalar_type(),
                  " and ", s.scalar_type());
    } else if (!meta) {
      TORCH_CHECK(s.is_cpu(), kAdamOp, ": capturable=False keeps steps on the CPU (as torch.optim does); state_steps[",
                  i, "] is on ", s.device(), " (pass capturable=True for steps on the device)");
    }
  }
  if (a.lr_tensor) {
    TORCH_CHECK(a.lr_tensor->sym_numel() == 1 && (a.lr_tensor->scalar_type() == at::kFloat ||
                                              a.lr_tensor->scalar_type() == at::kDouble),
                kAdamOp, ": expected the lr tensor to be a one-element float32 or float64 tensor, got ",
                a.lr_tensor->sym_numel(), " elements of ", a.lr_tensor->scalar_type());
    TORCH_CHECK(a.lr_tensor->is_cpu() || a.lr_tensor->device() == p0.device(), kAdamOp,
                ": expected the lr tensor on the CPU or on the params' device (", p0.device(), "), got ",
                a.lr_tensor->device());
  }
}

// capturable=True on a GPU backend (CUDA, Triton): the per-param arrival counters with which the kernel advances
// the steps.  (The CPU kernel advances them on the host.)
inline void check_adam_counters(const AdamArgs& a) {
  if (!a.capturable || a.params.empty()) return;
  const size_t n = a.params.size();
  const at::Tensor& p0 = a.params[0];
  const std::optional<at::Tensor>& c = a.counters;
  TORCH_CHECK(c.has_value() && c->scalar_type() == at::kInt && c->device() == p0.device() && c->is_contiguous() &&
                  c->sym_numel() >= int64_t(n),
              kAdamOp, ": capturable=True needs `counters`: a contiguous int32 tensor of ", n,
              " zeros on the params' device (", p0.device(), "), one per param (pyops.optim keeps one per group)");
}

// The Meta kernel (torch.compile, opcheck): the checks, nothing to allocate -- the op mutates its arguments.
inline void adam_step_meta(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                           at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                           const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& counters,
                           bool capturable, at::ArrayRef<double> hparams) {
  check_adam(AdamArgs(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters,
                      capturable, hparams),
             /*allow_half=*/true, /*meta=*/true);
}

inline double read_scalar(const at::Tensor& t) {  // a one-element float32/float64 CPU tensor
  return t.scalar_type() == at::kDouble ? *t.const_data_ptr<double>() : double(*t.const_data_ptr<float>());
}

// Non-capturable mode: `step += 1` on the CPU step tensors (as torch.optim does before the update,
// in the tensor's dtype), and their new values.
inline std::vector<double> adam_advance_host_steps(at::TensorList steps) {
  std::vector<double> t(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    const at::Tensor& s = steps[i];
    if (s.scalar_type() == at::kDouble) t[i] = *s.data_ptr<double>() += 1.0;
    else t[i] = *s.data_ptr<float>() += 1.0f;
  }
  return t;
}

namespace cpu {
// Blocks of 16 float32 AVX2 vectors that the CPU kernel has sent through its idle-lane path (csrc/cpu/adam.cpp)
// since the process started: what tests/test_adam.py checks the path's block tests against (its results are
// the ordinary update's bits either way).  0 in a build without the AVX2 CPU kernels.
int64_t adam_idle_blocks();
}  // namespace cpu

}  // namespace pyops
