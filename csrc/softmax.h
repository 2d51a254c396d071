// softmax.h -- the backend-independent half of the softmax family: argument checks, the output and the
// [rows, cols] view each backend's kernel runs on, shared by csrc/cpu, csrc/cuda, csrc/triton.cpp and the
// Meta kernels (csrc/meta.cpp; the checks and the output take symbolic sizes, see csrc/common.h).
#pragma once
#include "csrc/common.h"

namespace pyops {

inline const char* softmax_name(bool log) { return log ? "log_softmax" : "softmax"; }
inline const char* softmax_backward_name(bool log) { return log ? "log_softmax_backward" : "softmax_backward"; }

// Forward checks; returns dim wrapped into [0, x.dim()).
inline int64_t check_softmax(const at::Tensor& x, int64_t dim, bool log, bool allow_half) {
  const char* op = softmax_name(log);
  check_floating(x, op, "input", allow_half);
  return wrap_dim(dim, x.dim(), op);
}

// Backward checks: grad_output and output must agree in shape, dtype and device; returns the wrapped dim.
inline int64_t check_softmax_backward(const at::Tensor& grad, const at::Tensor& out, int64_t dim, bool log,
                                      bool allow_half) {
  const char* op = softmax_backward_name(log);
  check_floating(out, op, "output", allow_half);
  check_same_dtype(grad, "grad_output", out, "output", op);
  check_same_device({{"grad_output", &grad}, {"output", &out}}, op);
  TORCH_CHECK(grad.sym_sizes() == out.sym_sizes(), op, ": grad_output shape ", grad.sym_sizes(),
              " does not match output shape ", out.sym_sizes());
  return wrap_dim(dim, out.dim(), op);
}

// Forward: checks, views x as rows along dim, allocates the output, calls kernel(in_rows, out_rows_tensor)
// when there is anything to do, returns the output in x's layout.
template <class Kernel>
at::Tensor softmax_forward_rows(const at::Tensor& x, int64_t dim, bool log, bool allow_half, Kernel&& kernel) {
  dim = check_softmax(x, dim, log, allow_half);
  const Rows in = as_rows(x, dim);
  at::Tensor y = empty_rows_like(x, dim);  // contiguous: row stride in.cols
  if (in.rows > 0 && in.cols > 0) kernel(in, y);
  return restore_layout(y, x, dim);
}

// Backward: calls kernel(grad_rows, out_rows, grad_input) and returns grad_input in output's layout.
template <class Kernel>
at::Tensor softmax_backward_rows(const at::Tensor& grad, const at::Tensor& out, int64_t dim, bool log,
                                 bool allow_half, Kernel&& kernel) {
  dim = check_softmax_backward(grad, out, dim, log, allow_half);
  const Rows g = as_rows(grad, dim), y = as_rows(out, dim);
  at::Tensor gx = empty_rows_like(out, dim);
  if (y.rows > 0 && y.cols > 0) kernel(g, y, gx);
  return restore_layout(gx, out, dim);
}

// Meta: the same checks and output, no kernel (half types allowed: the device decides at run time).
inline at::Tensor softmax_forward_meta(const at::Tensor& x, int64_t dim, bool log) {
  dim = check_softmax(x, dim, log, /*allow_half=*/true);
  return restore_layout(empty_rows_like(x, dim), x, dim);
}
inline at::Tensor softmax_backward_meta(const at::Tensor& grad, const at::Tensor& out, int64_t dim, bool log) {
  dim = check_softmax_backward(grad, out, dim, log, /*allow_half=*/true);
  return restore_layout(empty_rows_like(out, dim), out, dim);
}

// The four registered ops of one backend, from its forward/backward implementations.
#define PYOPS_SOFTMAX_OPS(fwd_impl, bwd_impl)                                                                   \
  at::Tensor softmax_fwd(const at::Tensor& x, int64_t dim) { return fwd_impl(x, dim, false); }                 \
  at::Tensor log_softmax_fwd(const at::Tensor& x, int64_t dim) { return fwd_impl(x, dim, true); }              \
  at::Tensor softmax_bwd(const at::Tensor& g, const at::Tensor& y, int64_t dim) { return bwd_impl(g, y, dim, false); } \
  at::Tensor log_softmax_bwd(const at::Tensor& g, const at::Tensor& y, int64_t dim) { return bwd_impl(g, y, dim, true); }
#define PYOPS_SOFTMAX_REGISTER(m)              \
  m.impl("softmax_fwd", &softmax_fwd);         \
  m.impl("log_softmax_fwd", &log_softmax_fwd); \
  m.impl("softmax_bwd", &softmax_bwd);         \
  m.impl("log_softmax_bwd", &log_softmax_bwd)

}  // namespace pyops
