// common.h -- argument checks and layout helpers shared by the CPU kernels (csrc/cpu), the CUDA glue
// (csrc/cuda), the Triton glue (csrc/triton.cpp) and the Meta kernels (csrc/meta.cpp), so every backend
// rejects bad input with the same message.
//
// Checks and output shapes are written once, on symbolic sizes (sym_size, sym_sizes, at::empty_symint):
// the same functions then serve concrete tensors (a SymInt holding a plain integer costs what an int64_t
// does) and the Meta kernels that torch.compile traces with dynamic shapes.  Only the views a kernel runs
// on (Rows here, Matrix, LossProblem) read concrete sizes, strides and pointers.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

namespace pyops {

// PYOPS_NS is the operator namespace this translation unit registers into: `pyops` for the real
// extension, `pyops_sim` for the CUDA-on-CPU emulation extension (built from the same sources).
#if defined(PYOPS_SIM)
#define PYOPS_NS pyops_sim
#else
#define PYOPS_NS pyops
#endif
#define PYOPS_LIBRARY_IMPL_(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)
#define PYOPS_LIBRARY_IMPL(key, m) PYOPS_LIBRARY_IMPL_(PYOPS_NS, key, m)
#define PYOPS_LIBRARY_(ns, m) TORCH_LIBRARY(ns, m)
#define PYOPS_LIBRARY(m) PYOPS_LIBRARY_(PYOPS_NS, m)

inline bool is_half_type(at::ScalarType t) { return t == at::kHalf || t == at::kBFloat16; }

// `name` of `op` must be a floating tensor: float32/float64, plus float16/bfloat16 when `allow_half`.
inline void check_floating(const at::Tensor& t, const char* op, const char* name, bool allow_half) {
  const auto st = t.scalar_type();
  const bool ok = st == at::kFloat || st == at::kDouble || (allow_half && is_half_type(st));
  TORCH_CHECK(ok, op, ": expected ", name, " to be a floating-point tensor (",
              allow_half ? "float32, float64, float16 or bfloat16" : "float32 or float64 on this backend",
              "), got ", st);
}

// Every tensor in `ts` on the device of `ts[0]`.
inline void check_same_device(std::initializer_list<std::pair<const char*, const at::Tensor*>> ts, const char* op) {
  const auto& first = *ts.begin();
  for (const auto& [name, t] : ts)
    TORCH_CHECK(t->device() == first.second->device(), op, ": expected all tensors on one device, but ", first.first,
                " is on ", first.second->device(), " and ", name, " is on ", t->device());
}

inline void check_same_dtype(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn, const char* op) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": expected ", an, " and ", bn, " to have the same dtype, got ",
              a.scalar_type(), " and ", b.scalar_type());
}

// Wrap `dim` into [0, ndim) (a 0-d tensor counts as 1-d), or raise naming the valid range.
inline int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t n = std::max<int64_t>(ndim, 1);
  TORCH_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " is out of range for a ", ndim, "-D tensor (expected a dim in [",
              -n, ", ", n - 1, "])");
  return dim < 0 ? dim + n : dim;
}

// A tensor seen as a row-major [rows, cols] matrix whose reduction dim is last: `data` has unit
// stride along cols and row stride `ld`.  Made without a copy when the input already has that
// layout (contiguous with dim last, or a 2-D tensor with unit column stride), else by one
// movedim + contiguous.
struct Rows {
  at::Tensor data;
  int64_t rows = 0, cols = 0, ld = 0;
};

inline Rows as_rows(const at::Tensor& t, int64_t dim) {
  Rows r;
  if (t.dim() == 0) {
    r.data = t.reshape({1});
    r.rows = r.cols = r.ld = 1;
    return r;
  }
  r.cols = t.size(dim);
  r.rows = r.cols == 0 ? 0 : t.numel() / r.cols;
  if (t.dim() == 2 && dim == 1 && (t.stride(1) == 1 || r.cols <= 1)) {
    r.data = t;
    r.ld = t.size(0) > 1 ? t.stride(0) : r.cols;
    return r;
  }
  r.data = dim == t.dim() - 1 && t.is_contiguous() ? t : t.movedim(dim, -1).contiguous();
  r.ld = r.cols;
  return r;
}

// Output buffer for a row operation on `t` along `dim`: allocated [.., cols] with dim last and
// contiguous; `restore_layout` gives back the tensor with `t`'s dim order (the buffer itself when dim is
// last, else a permuted view of it; no copy).
inline at::Tensor empty_rows_like(const at::Tensor& t, int64_t dim) {
  if (t.dim() == 0) return at::empty({1}, t.options());
  std::vector<c10::SymInt> sizes(t.sym_sizes().begin(), t.sym_sizes().end());
  std::rotate(sizes.begin() + dim, sizes.begin() + dim + 1, sizes.end());  // dim last, the others in order
  return at::empty_symint(sizes, t.options());
}
inline at::Tensor restore_layout(const at::Tensor& out, const at::Tensor& like, int64_t dim) {
  if (like.dim() == 0) return out.reshape({});
  if (dim == like.dim() - 1) return out;  // already in order: no permuted view (a dispatched op, ~1 us a call)
  return out.movedim(-1, dim);
}

}  // namespace pyops
