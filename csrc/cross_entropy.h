// cross_entropy.h -- the backend-independent half of nll_loss and cross_entropy: argument checks (the
// same messages on every backend), the [N, C, D] view of the input, and the outputs.  Shared by csrc/cpu,
// csrc/cuda, csrc/triton.cpp and the Meta kernels (csrc/meta.cpp: checks and outputs take symbolic sizes,
// see csrc/common.h); the math is in kernels/cuda/cross_entropy.cuh.
//
// Registered ops (schemas in csrc/ops.cpp); reduction is at::Reduction's number: 0 none, 1 mean, 2 sum.
//   nll_loss_fwd       (input, target, weight?, reduction, ignore_index)                -> (loss, total_weight)
//   cross_entropy_fwd  (input, target, weight?, reduction, ignore_index, label_smoothing) -> (loss, lse, total_weight)
//   *_bwd              (grad_loss, input, target, weight?, [lse,] total_weight, ...)     -> grad_input
// loss: target's shape (none) or [] (mean, sum).  lse: [rows] float64 for every input dtype, the per-row
// log-sum-exp the fused backward needs -- the only thing kept between forward and backward besides the
// caller's own input (in double so that x - lse keeps its precision for large logits: cross_entropy.cuh).  total_weight: [2] = (W_t, 1 / W_t) with W_t the sum of w_t over the non-ignored
// rows (mean divides by it; the backward multiplies by the reciprocal the forward already computed, so no
// row kernel divides), or an empty [0] tensor for reduction none, which needs none.
#pragma once
#include <ATen/ops/empty.h>

#include <optional>
#include <tuple>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "csrc/common.h"

namespace pyops {

enum LossReduction : int64_t { kReduceNone = 0, kReduceMean = 1, kReduceSum = 2 };

// The input seen as [N, C, D] (D = d1*...*dk, 1 for (N, C); N = 1 for (C,)): row r = n*D + j.
struct LossProblem {
  at::Tensor input;   // the caller's tensor, or a view of it; a copy only when d1..dk cannot be merged into one dim
  at::Tensor target;  // int64, contiguous, rows elements
  at::Tensor weight;  // contiguous [C], or undefined
  int64_t N = 0, C = 0, D = 1, rows = 0;
  int64_t ld_n = 0, ld_d = 0, ld_c = 1;  // element strides of input along N, D, C
};

inline at::ScalarType loss_acc_type(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// The arguments every loss op takes; returns C, the number of classes.
inline c10::SymInt check_loss_args(const char* op, const at::Tensor& input, const at::Tensor& target,
                                   const std::optional<at::Tensor>& weight, int64_t reduction, bool allow_half) {
  check_floating(input, op, "input", allow_half);
  TORCH_CHECK_VALUE(input.dim() >= 1, op, ": expected input of shape (C), (N, C) or (N, C, d1, ...), got a 0-D tensor");
  const auto tt = target.scalar_type();
  TORCH_CHECK_TYPE(tt == at::kLong, op, ": expected target to hold class indices of dtype int64 (torch.long), got ",
                   tt, at::isFloatingType(tt) ? " (class-probability targets are not supported)" : "");
  TORCH_CHECK_VALUE(reduction >= kReduceNone && reduction <= kReduceSum, op, ": reduction ", reduction,
                    " is not one of 0 (none), 1 (mean), 2 (sum)");
  // target: input's shape without the class dim (dim 1, or dim 0 of a (C,) input)
  std::vector<c10::SymInt> want(input.sym_sizes().begin(), input.sym_sizes().end());
  want.erase(want.begin() + (input.dim() == 1 ? 0 : 1));
  TORCH_CHECK_VALUE(target.sym_sizes() == c10::SymIntArrayRef(want), op, ": expected target of shape ",
                    c10::SymIntArrayRef(want), " for input of shape ", input.sym_sizes(),
                    " (input (C) takes a 0-D target, (N, C) takes (N), (N, C, d1, ...) takes (N, d1, ...)), got ",
                    target.sym_sizes());
  check_same_device({{"input", &input}, {"target", &target}}, op);
  c10::SymInt C = input.sym_size(input.dim() == 1 ? 0 : 1);
  if (weight.has_value() && weight->defined()) {
    const at::Tensor& w = *weight;
    TORCH_CHECK_VALUE(w.dim() == 1 && w.sym_size(0) == C, op, ": expected weight to have one entry per class, shape [",
                      C, "], got ", w.sym_sizes());
    TORCH_CHECK_TYPE(w.scalar_type() == input.scalar_type(), op, ": expected weight to have input's dtype ",
                     input.scalar_type(), ", got ", w.scalar_type());
    check_same_device({{"input", &input}, {"weight", &w}}, op);
  }
  return C;
}

// The checked problem with its concrete layout, as the kernels take it.
inline LossProblem loss_problem(const char* op, const at::Tensor& input, const at::Tensor& target,
                                const std::optional<at::Tensor>& weight, int64_t reduction, bool allow_half) {
  check_loss_args(op, input, target, weight, reduction, allow_half);
  LossProblem p;
  p.C = input.size(input.dim() == 1 ? 0 : 1);
  if (weight.has_value() && weight->defined()) p.weight = weight->contiguous();
  p.target = target.contiguous();
  if (input.dim() == 1) {
    p.input = input;
    p.N = 1;
    p.ld_c = input.stride(0);
  } else {
    p.input = input.dim() == 2 ? input : input.flatten(2);  // [N, C, D]: a view whenever d1..dk merge
    p.N = input.size(0);
    p.ld_n = p.input.stride(0);
    p.ld_c = p.input.stride(1);
    if (input.dim() > 2) {
      p.D = p.input.size(2);
      p.ld_d = p.input.stride(2);
    }
  }
  p.rows = p.N * p.D;
  return p;
}

inline void check_label_smoothing(const char* op, double label_smoothing) {
  TORCH_CHECK_VALUE(label_smoothing >= 0.0 && label_smoothing <= 1.0, op,
                    ": label_smoothing must be between 0.0 and 1.0, got ", label_smoothing);
}

// Forward outputs.  partials: [2, rows] per-row (loss, weight) scratch for mean/sum, when the backend wants one.
struct LossForward {
  at::Tensor loss, total_weight, lse, partials;
};

inline LossForward loss_forward_outputs(const at::Tensor& input, const at::Tensor& target, int64_t reduction,
                                        bool with_lse, bool with_partials) {
  const auto acc = input.options().dtype(loss_acc_type(input));
  const c10::SymInt rows = target.sym_numel();
  LossForward o;
  if (reduction == kReduceNone) {
    o.loss = at::empty_symint(target.sym_sizes(), input.options());
    o.total_weight = at::empty({0}, acc);
  } else {
    o.loss = at::empty({}, input.options());
    o.total_weight = at::empty({2}, acc);
    if (with_partials) o.partials = at::empty_symint({2, rows}, acc);
  }
  if (with_lse) o.lse = at::empty_symint({rows}, input.options().dtype(at::kDouble));
  return o;
}
inline LossForward loss_forward_outputs(const LossProblem& p, int64_t reduction, bool with_lse, bool with_partials) {
  return loss_forward_outputs(p.input, p.target, reduction, with_lse, with_partials);
}

// Backward: what the forward produced, and grad_loss's shape.
inline void check_loss_grad(const char* op, const at::Tensor& input, const at::Tensor& target,
                            const at::Tensor& grad_loss, const at::Tensor& total_weight, int64_t reduction) {
  check_same_dtype(grad_loss, "grad_loss", input, "input", op);
  check_same_device({{"input", &input}, {"grad_loss", &grad_loss}, {"total_weight", &total_weight}}, op);
  if (reduction == kReduceMean) {
    TORCH_CHECK_VALUE(total_weight.dim() == 1 && total_weight.sym_size(0) == 2 &&
                          total_weight.scalar_type() == loss_acc_type(input) && total_weight.is_contiguous(),
                      op, ": expected total_weight to be the contiguous ", loss_acc_type(input),
                      " tensor of shape [2] the forward returned, got ", total_weight.scalar_type(), " of shape ",
                      total_weight.sym_sizes());
  }
  if (reduction == kReduceNone) {
    TORCH_CHECK_VALUE(grad_loss.sym_sizes() == target.sym_sizes(), op, ": expected grad_loss of shape ",
                      target.sym_sizes(), " (reduction none), got ", grad_loss.sym_sizes());
  } else {
    TORCH_CHECK_VALUE(grad_loss.dim() == 0, op, ": expected a 0-D grad_loss (reduction mean/sum), got shape ",
                      grad_loss.sym_sizes());
  }
}

// Backward: checks what the forward produced; returns grad_loss as [rows] (reduction none; ld_grad its
// stride) or as it is ([], ld_grad 0).
inline at::Tensor loss_grad_rows(const char* op, const LossProblem& p, const at::Tensor& grad_loss,
                                 const at::Tensor& total_weight, int64_t reduction, int64_t& ld_grad) {
  check_loss_grad(op, p.input, p.target, grad_loss, total_weight, reduction);
  if (reduction == kReduceNone) {
    at::Tensor g = grad_loss.reshape({-1});  // a view unless grad_loss is an odd-strided N-D tensor
    ld_grad = g.numel() > 1 ? g.stride(0) : 1;
    return g;
  }
  ld_grad = 0;
  return grad_loss;
}

inline void check_lse(const char* op, const at::Tensor& input, const at::Tensor& target, const at::Tensor& lse) {
  const c10::SymInt rows = target.sym_numel();
  TORCH_CHECK_VALUE(lse.dim() == 1 && lse.sym_size(0) == rows && lse.scalar_type() == at::kDouble &&
                        lse.is_contiguous(),
                    op, ": expected lse to be the contiguous float64 tensor of shape [", rows,
                    "] the forward returned, got ", lse.scalar_type(), " of shape ", lse.sym_sizes());
  check_same_device({{"input", &input}, {"lse", &lse}}, op);
}
inline void check_lse(const char* op, const LossProblem& p, const at::Tensor& lse) {
  check_lse(op, p.input, p.target, lse);
}

// A target index t of a row: a class in [0, C) or ignore_index (every backend's message; the CUDA and Triton
// kernels on a GPU assert it on the device instead).
inline void check_target_index(const char* op, int64_t t, int64_t classes, int64_t ignore_index) {
  TORCH_CHECK_INDEX(t == ignore_index || (t >= 0 && t < classes), op, ": Target ", t,
                    " is out of bounds: expected a class index in [0, ", classes, ") or ignore_index (", ignore_index,
                    ")");
}

// A fresh multi-megabyte CPU buffer about to be written in full: ask Linux for transparent huge pages before
// the first write.  Every first touch of a 4 KiB page is a page fault (measured on the development VM: ~5 us
// each, ~190 ms for a 1024 x 32000 float gradient -- more than the kernel); with 2 MiB pages there are 512x
// fewer.  Advice only: nothing changes where THP is disabled, and a failure is harmless.  (Stock PyTorch gets
// the same for all its allocations with THP_MEM_ALLOC_ENABLE=1.)
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!t.is_cpu()) return;
  const size_t n = t.nbytes();
  if (n < (size_t(4) << 20)) return;
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data_ptr()) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(t.data_ptr()) + n) & ~(page - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

// The gradient: contiguous in input's shape.
inline at::Tensor loss_grad_input(const at::Tensor& input) {
  at::Tensor gx = at::empty_symint(input.sym_sizes(), input.options());
  advise_huge_pages(gx);
  return gx;
}

// What every backward op starts with: the checked problem, grad_loss as rows (loss_grad_rows) and the gradient.
struct LossBackward {
  LossProblem p;
  at::Tensor grad;      // [rows] with stride ld_grad (none) or [] (ld_grad 0)
  int64_t ld_grad = 0;
  at::Tensor grad_input;
};

inline LossBackward loss_backward_setup(const char* op, const at::Tensor& grad_loss, const at::Tensor& input,
                                        const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                        const at::Tensor& total_weight, int64_t reduction, bool allow_half) {
  LossBackward b;
  b.p = loss_problem(op, input, target, weight, reduction, allow_half);
  b.grad = loss_grad_rows(op, b.p, grad_loss, total_weight, reduction, b.ld_grad);
  b.grad_input = loss_grad_input(input);
  return b;
}

// ---- Meta: the same checks and outputs, no kernel (half types allowed: the device decides at run time)
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_entropy_forward_meta(
    const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight, int64_t reduction,
    int64_t ignore_index, double label_smoothing) {
  check_loss_args("cross_entropy", input, target, weight, reduction, /*allow_half=*/true);
  check_label_smoothing("cross_entropy", label_smoothing);
  const LossForward o = loss_forward_outputs(input, target, reduction, /*with_lse=*/true, /*with_partials=*/false);
  return {o.loss, o.lse, o.total_weight};
}
inline std::tuple<at::Tensor, at::Tensor> nll_loss_forward_meta(const at::Tensor& input, const at::Tensor& target,
                                                                const std::optional<at::Tensor>& weight,
                                                                int64_t reduction, int64_t ignore_index) {
  check_loss_args("nll_loss", input, target, weight, reduction, /*allow_half=*/true);
  const LossForward o = loss_forward_outputs(input, target, reduction, /*with_lse=*/false, /*with_partials=*/false);
  return {o.loss, o.total_weight};
}
inline at::Tensor cross_entropy_backward_meta(const at::Tensor& grad_loss, const at::Tensor& input,
                                              const at::Tensor& target, const std::optional<at::Tensor>& weight,
                                              const at::Tensor& lse, const at::Tensor& total_weight, int64_t reduction,
                                              int64_t ignore_index, double label_smoothing) {
  const char* op = "cross_entropy_backward";
  check_label_smoothing(op, label_smoothing);
  check_loss_args(op, input, target, weight, reduction, /*allow_half=*/true);
  check_loss_grad(op, input, target, grad_loss, total_weight, reduction);
  check_lse(op, input, target, lse);
  return loss_grad_input(input);
}
inline at::Tensor nll_loss_backward_meta(const at::Tensor& grad_loss, const at::Tensor& input, const at::Tensor& target,
                                         const std::optional<at::Tensor>& weight, const at::Tensor& total_weight,
                                         int64_t reduction, int64_t ignore_index) {
  const char* op = "nll_loss_backward";
  check_loss_args(op, input, target, weight, reduction, /*allow_half=*/true);
  check_loss_grad(op, input, target, grad_loss, total_weight, reduction);
  return loss_grad_input(input);
}

}  // namespace pyops
