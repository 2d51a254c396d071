// softmax.cuh -- softmax and log-softmax over the rows of a [rows, cols] matrix, forward and backward.
//
// Math, for one row x of length C:
//   m = max_j x_j,   s = sum_j exp(x_j - m)            (subtracting m keeps exp() in range)
//   softmax      y_j = exp(x_j - m) / s
//   log_softmax  y_j = x_j - m - log(s)
// Backward, with g = dL/dy:
//   softmax      dx_j = y_j * (g_j - sum_k g_k y_k)     (the Jacobian is diag(y) - y y^T)
//   log_softmax  dx_j = g_j - exp(y_j) * sum_k g_k      (d log_softmax / dx = I - 1 softmax^T)
//
// m and s come from one "online" pass over the row: every thread keeps a running pair (m, s) and,
// when a larger value arrives, rescales its sum: s <- s * exp(m_old - m_new) + 1.  Pairs from
// different threads merge the same way.  -inf entries add nothing; a row of only -inf ends with
// (m, s) = (-inf, 0), and the output formulas then give NaN, as PyTorch does.
//
// Who owns what:
//   warp per row  (cols <= 1024)  blockDim (32, 4): warp threadIdx.y owns one row, lane l reads
//                                 columns l*VEC, l*VEC + 32*VEC, ...; reductions are xor shuffles.
//   block per row (cols > 1024)   blockDim (128..1024, 1): the block owns one row; each warp reduces
//                                 with shuffles, then 32 partials go through shared memory.
// Both read the row twice (statistics, then output); the second read mostly hits L2.  Every access
// moves VEC = 16 / sizeof(T) elements (LDG.E.128) when pointers, row strides and cols allow, else 1.
// Grids are grid-stride over rows, so any row count launches.  Sizes and strides are int64.
// Accumulation: float for fp16/bf16/fp32 storage, double for fp64.
#pragma once
#include "common.cuh"

namespace pyops::cuda {

// Variant, vector width, grid and block: the row-reduction plan of common.cuh (row_plan), which
// cross_entropy.cuh uses too.  The one place that chooses -- for the real launch, the emulated launch
// and the tests alike.  `vec_ok`: all pointers 16-byte aligned and cols and every row stride a
// multiple of 16 / elem_size.
using SoftmaxVariant = RowVariant;
using SoftmaxPlan = RowPlan;
inline SoftmaxPlan softmax_plan(int64_t rows, int64_t cols, int elem_size, bool vec_ok) {
  return row_plan(rows, cols, elem_size, vec_ok);
}

// Raw-pointer entry points called by the glue (csrc/cuda/softmax.cpp).  ld* are row strides in
// elements.  Return nullptr on success, else the launch error.  `plan_out`, if given, receives the plan used.
template <class T>
const char* softmax_forward(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t rows, int64_t cols, bool log,
                            Stream stream, SoftmaxPlan* plan_out = nullptr);
template <class T>
const char* softmax_backward(const T* grad_y, int64_t ldg, const T* y, int64_t ldy, T* grad_x, int64_t ldgx,
                             int64_t rows, int64_t cols, bool log, Stream stream, SoftmaxPlan* plan_out = nullptr);

#if defined(PYOPS_DEVICE_CODE)

// Statistics pass over one row, [begin, cols) in steps of `step` (per-thread part only).
template <class T, int VEC>
__device__ __forceinline__ void row_online_stats(const T* xr, int64_t begin, int64_t step, int64_t cols,
                                                 acc_t<T>& m, acc_t<T>& s) {
  for (int64_t c = begin; c < cols; c += step) {
    const Vec<T, VEC> v = load_vec<T, VEC>(xr + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) online_add(m, s, to_acc(v.v[i]));
  }
}

// Output pass: y = exp(x - m) / s, or x - (m + log s).
template <class T, int VEC, bool LOG>
__device__ __forceinline__ void row_write_output(const T* xr, T* yr, int64_t begin, int64_t step, int64_t cols,
                                                 acc_t<T> m, acc_t<T> s) {
  using A = acc_t<T>;
  const A shift = LOG ? m + log_(s) : m;
  const A inv = A(1) / s;
  for (int64_t c = begin; c < cols; c += step) {
    const Vec<T, VEC> v = load_vec<T, VEC>(xr + c);
    Vec<T, VEC> o;
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const A d = to_acc(v.v[i]) - shift;
      o.v[i] = from_acc<T>(LOG ? d : exp_(d) * inv);
    }
    store_vec_global<T, VEC>(yr + c, o);
  }
}

// Backward reduction: sum_k g_k (log_softmax) or sum_k g_k y_k (softmax), per-thread part.
template <class T, int VEC, bool LOG>
__device__ __forceinline__ acc_t<T> row_grad_dot(const T* gr, const T* yr, int64_t begin, int64_t step, int64_t cols) {
  acc_t<T> dot = 0;
  for (int64_t c = begin; c < cols; c += step) {
    const Vec<T, VEC> g = load_vec<T, VEC>(gr + c);
    const Vec<T, VEC> y = load_vec<T, VEC>(yr + c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) dot += LOG ? to_acc(g.v[i]) : to_acc(g.v[i]) * to_acc(y.v[i]);
  }
  return dot;
}

template <class T, int VEC, bool LOG>
__device__ __forceinline__ void row_write_grad(const T* gr, const T* yr, T* gxr, int64_t begin, int64_t step,
                                               int64_t cols, acc_t<T> dot) {
  using A = acc_t<T>;
  for (int64_t c = begin; c < cols; c += step) {
    const Vec<T, VEC> g = load_vec<T, VEC>(gr + c);
    const Vec<T, VEC> y = load_vec<T, VEC>(yr + c);
    Vec<T, VEC> o;
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const A gi = to_acc(g.v[i]), yi = to_acc(y.v[i]);
      o.v[i] = from_acc<T>(LOG ? gi - exp_(yi) * dot : yi * (gi - dot));
    }
    store_vec_global<T, VEC>(gxr + c, o);
  }
}

// ---- warp per row
template <class T, int VEC, bool LOG>
__global__ void __launch_bounds__(128)
softmax_fwd_warp_kernel(const T* __restrict__ x, int64_t ldx,  // x: [rows, cols], row stride ldx
                        T* __restrict__ y, int64_t ldy,        // y: [rows, cols], row stride ldy
                        int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = 32 * VEC;
  for (int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += int64_t(gridDim.x) * blockDim.y) {  // uniform across the warp: shuffles stay converged
    const T* xr = x + row * ldx;
    A m = neg_inf<A>(), s = 0;
    row_online_stats<T, VEC>(xr, begin, step, cols, m, s);
    warp_online_merge(m, s);
    row_write_output<T, VEC, LOG>(xr, y + row * ldy, begin, step, cols, m, s);
  }
}

template <class T, int VEC, bool LOG>
__global__ void __launch_bounds__(128)
softmax_bwd_warp_kernel(const T* __restrict__ grad_y, int64_t ldg,  // [rows, cols]
                        const T* __restrict__ y, int64_t ldy,       // forward output, [rows, cols]
                        T* __restrict__ grad_x, int64_t ldgx,       // [rows, cols]
                        int64_t rows, int64_t cols) {
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = 32 * VEC;
  for (int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += int64_t(gridDim.x) * blockDim.y) {
    const T* gr = grad_y + row * ldg;
    const T* yr = y + row * ldy;
    const acc_t<T> dot = warp_sum(row_grad_dot<T, VEC, LOG>(gr, yr, begin, step, cols));
    row_write_grad<T, VEC, LOG>(gr, yr, grad_x + row * ldgx, begin, step, cols, dot);
  }
}

// ---- block per row
// __launch_bounds__(1024, 1): with the thread count alone, ptxas for sm_90 budgets registers for two
// blocks per SM (32 per thread) and spills the double variants (24-32 bytes, `nvcc -Xptxas -v`); one
// 1024-thread block per SM allows 64 per thread, and no variant spills (tests/test_build.py audits this).
template <class T, int VEC, bool LOG>
__global__ void __launch_bounds__(1024, 1)
softmax_fwd_block_kernel(const T* __restrict__ x, int64_t ldx,  // [rows, cols]
                         T* __restrict__ y, int64_t ldy,        // [rows, cols]
                         int64_t rows, int64_t cols) {
  using A = acc_t<T>;
  __shared__ A part_m[32], part_s[32];  // one (max, sum) pair per warp
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = int64_t(blockDim.x) * VEC;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * ldx;
    A m = neg_inf<A>(), s = 0;
    row_online_stats<T, VEC>(xr, begin, step, cols, m, s);
    block_online_merge(m, s, part_m, part_s);
    row_write_output<T, VEC, LOG>(xr, y + row * ldy, begin, step, cols, m, s);
  }
}

template <class T, int VEC, bool LOG>
__global__ void __launch_bounds__(1024, 1)
softmax_bwd_block_kernel(const T* __restrict__ grad_y, int64_t ldg,  // [rows, cols]
                         const T* __restrict__ y, int64_t ldy,       // [rows, cols]
                         T* __restrict__ grad_x, int64_t ldgx,       // [rows, cols]
                         int64_t rows, int64_t cols) {
  __shared__ acc_t<T> scratch[32];
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = int64_t(blockDim.x) * VEC;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* gr = grad_y + row * ldg;
    const T* yr = y + row * ldy;
    const acc_t<T> dot = block_sum(row_grad_dot<T, VEC, LOG>(gr, yr, begin, step, cols), scratch);
    row_write_grad<T, VEC, LOG>(gr, yr, grad_x + row * ldgx, begin, step, cols, dot);
  }
}

// ---- launch functions
template <class T, int VEC, bool LOG>
void softmax_forward_launch(const SoftmaxPlan& p, const T* x, int64_t ldx, T* y, int64_t ldy, int64_t rows,
                            int64_t cols, Stream stream) {
  if (p.variant == SoftmaxVariant::WarpPerRow)
    PYOPS_LAUNCH(p.cfg, stream, softmax_fwd_warp_kernel<T, VEC, LOG>)(x, ldx, y, ldy, rows, cols);
  else
    PYOPS_LAUNCH(p.cfg, stream, softmax_fwd_block_kernel<T, VEC, LOG>)(x, ldx, y, ldy, rows, cols);
}

template <class T>
const char* softmax_forward(const T* x, int64_t ldx, T* y, int64_t ldy, int64_t rows, int64_t cols, bool log,
                            Stream stream, SoftmaxPlan* plan_out) {
  constexpr int V = 16 / sizeof(T);
  const bool vec_ok = aligned16(x) && aligned16(y) && cols % V == 0 && ldx % V == 0 && ldy % V == 0;
  const SoftmaxPlan p = softmax_plan(rows, cols, sizeof(T), vec_ok);
  if (plan_out) *plan_out = p;
  if (p.vec == V) {
    if (log) softmax_forward_launch<T, V, true>(p, x, ldx, y, ldy, rows, cols, stream);
    else softmax_forward_launch<T, V, false>(p, x, ldx, y, ldy, rows, cols, stream);
  } else {
    if (log) softmax_forward_launch<T, 1, true>(p, x, ldx, y, ldy, rows, cols, stream);
    else softmax_forward_launch<T, 1, false>(p, x, ldx, y, ldy, rows, cols, stream);
  }
  return launch_status();
}

template <class T, int VEC, bool LOG>
void softmax_backward_launch(const SoftmaxPlan& p, const T* g, int64_t ldg, const T* y, int64_t ldy, T* gx,
                             int64_t ldgx, int64_t rows, int64_t cols, Stream stream) {
  if (p.variant == SoftmaxVariant::WarpPerRow)
    PYOPS_LAUNCH(p.cfg, stream, softmax_bwd_warp_kernel<T, VEC, LOG>)(g, ldg, y, ldy, gx, ldgx, rows, cols);
  else
    PYOPS_LAUNCH(p.cfg, stream, softmax_bwd_block_kernel<T, VEC, LOG>)(g, ldg, y, ldy, gx, ldgx, rows, cols);
}

template <class T>
const char* softmax_backward(const T* grad_y, int64_t ldg, const T* y, int64_t ldy, T* grad_x, int64_t ldgx,
                             int64_t rows, int64_t cols, bool log, Stream stream, SoftmaxPlan* plan_out) {
  constexpr int V = 16 / sizeof(T);
  const bool vec_ok = aligned16(grad_y) && aligned16(y) && aligned16(grad_x) && cols % V == 0 && ldg % V == 0 &&
                      ldy % V == 0 && ldgx % V == 0;
  const SoftmaxPlan p = softmax_plan(rows, cols, sizeof(T), vec_ok);
  if (plan_out) *plan_out = p;
  if (p.vec == V) {
    if (log) softmax_backward_launch<T, V, true>(p, grad_y, ldg, y, ldy, grad_x, ldgx, rows, cols, stream);
    else softmax_backward_launch<T, V, false>(p, grad_y, ldg, y, ldy, grad_x, ldgx, rows, cols, stream);
  } else {
    if (log) softmax_backward_launch<T, 1, true>(p, grad_y, ldg, y, ldy, grad_x, ldgx, rows, cols, stream);
    else softmax_backward_launch<T, 1, false>(p, grad_y, ldg, y, ldy, grad_x, ldgx, rows, cols, stream);
  }
  return launch_status();
}

#if defined(PYOPS_INSTANTIATE)
#define PYOPS_SOFTMAX_INSTANTIATE(T)                                                                         \
  template const char* softmax_forward<T>(const T*, int64_t, T*, int64_t, int64_t, int64_t, bool, Stream,    \
                                          SoftmaxPlan*);                                                     \
  template const char* softmax_backward<T>(const T*, int64_t, const T*, int64_t, T*, int64_t, int64_t, int64_t, \
                                           bool, Stream, SoftmaxPlan*);
PYOPS_FOR_EACH_FLOAT(PYOPS_SOFTMAX_INSTANTIATE)
#endif

#endif  // PYOPS_DEVICE_CODE

}  // namespace pyops::cuda
