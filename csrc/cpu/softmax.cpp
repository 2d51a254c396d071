// softmax.cpp -- CPU kernels of softmax / log-softmax, forward and backward.
// Rows are independent: at::parallel_for splits them over threads; inside a row every pass is an
// at::vec::Vectorized loop (8 floats / 4 doubles per AVX2 instruction), exp/log from SLEEF.
// Per row: max (1 read), then
//   softmax      y = exp(x - max) and its sum in one pass (1 read, 1 write), then y *= 1/sum (1 r+w)
//   log_softmax  sum of exp(x - max) (1 read), then y = x - max - log(sum) (1 read, 1 write)
// The math is derived in kernels/cuda/softmax.cuh.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cmath>

#include "csrc/softmax.h"

namespace pyops::cpu {
namespace {

using at::vec::Vectorized;

// Rows per parallel task: enough work (~32K elements) per task to amortize the scheduling.
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

template <class T, bool LOG>
void softmax_rows_kernel(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t rows, int64_t cols) {
  using V = Vectorized<T>;
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * ldx;
      T* yr = y + r * ldy;
      const T m = at::vec::reduce_all<T>([](const V& a, const V& b) { return at::vec::maximum(a, b); }, xr, cols);
      if constexpr (LOG) {
        const T s = at::vec::map_reduce_all<T>([m](const V& v) { return (v - V(m)).exp(); },
                                               [](const V& a, const V& b) { return a + b; }, xr, cols);
        const T shift = m + std::log(s);
        at::vec::map([shift](const V& v) { return v - V(shift); }, yr, xr, cols);
      } else {
        at::vec::map([m](const V& v) { return (v - V(m)).exp(); }, yr, xr, cols);
        const T s = at::vec::reduce_all<T>([](const V& a, const V& b) { return a + b; }, yr, cols);
        const T inv = T(1) / s;
        at::vec::map([inv](const V& v) { return v * V(inv); }, yr, yr, cols);
      }
    }
  });
}

template <class T, bool LOG>
void softmax_backward_rows_kernel(const T* g, int64_t ldg, const T* y, int64_t ldy, T* gx, int64_t ldgx, int64_t rows,
                           int64_t cols) {
  using V = Vectorized<T>;
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* gr = g + r * ldg;
      const T* yr = y + r * ldy;
      T* gxr = gx + r * ldgx;
      if constexpr (LOG) {  // dx = g - exp(y) * sum(g)
        const T sum = at::vec::reduce_all<T>([](const V& a, const V& b) { return a + b; }, gr, cols);
        at::vec::map2([sum](const V& gv, const V& yv) { return gv - yv.exp() * V(sum); }, gxr, gr, yr, cols);
      } else {  // dx = y * (g - sum(g * y))
        const T dot = at::vec::map2_reduce_all<T>([](const V& gv, const V& yv) { return gv * yv; },
                                                  [](const V& a, const V& b) { return a + b; }, gr, yr, cols);
        at::vec::map2([dot](const V& gv, const V& yv) { return yv * (gv - V(dot)); }, gxr, gr, yr, cols);
      }
    }
  });
}

template <class F> void dispatch_cpu_float(at::ScalarType st, F&& f) {
  if (st == at::kDouble) f(double{});
  else f(float{});  // dtype was checked: float32 or float64
}

at::Tensor softmax_fwd_impl(const at::Tensor& x, int64_t dim, bool log) {
  return softmax_forward_rows(x, dim, log, /*allow_half=*/false, [&](const Rows& in, at::Tensor& y) {
    dispatch_cpu_float(x.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      auto run = log ? softmax_rows_kernel<T, true> : softmax_rows_kernel<T, false>;
      run(static_cast<const T*>(in.data.data_ptr()), in.ld, static_cast<T*>(y.data_ptr()), in.cols, in.rows, in.cols);
    });
  });
}

at::Tensor softmax_bwd_impl(const at::Tensor& grad, const at::Tensor& out, int64_t dim, bool log) {
  return softmax_backward_rows(grad, out, dim, log, /*allow_half=*/false,
                               [&](const Rows& g, const Rows& y, at::Tensor& gx) {
    dispatch_cpu_float(out.scalar_type(), [&](auto tag) {
      using T = decltype(tag);
      auto run = log ? softmax_backward_rows_kernel<T, true> : softmax_backward_rows_kernel<T, false>;
      run(static_cast<const T*>(g.data.data_ptr()), g.ld, static_cast<const T*>(y.data.data_ptr()), y.ld,
          static_cast<T*>(gx.data_ptr()), y.cols, y.rows, y.cols);
    });
  });
}

PYOPS_SOFTMAX_OPS(softmax_fwd_impl, softmax_bwd_impl)

}  // namespace

TORCH_LIBRARY_IMPL(pyops, CPU, m) { PYOPS_SOFTMAX_REGISTER(m); }

}  // namespace pyops::cpu
