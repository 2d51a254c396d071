// cross_entropy.cuh -- the negative log-likelihood loss and the fused cross-entropy (log-softmax + NLL in
// one pass), forward and backward, with class-index targets, class weights, ignore_index and label smoothing.
//
// Layout.  The input is seen as [N, C, D]: N samples, C classes, D = d1*...*dk positions (D = 1 for an
// (N, C) input; N = 1 for a (C,) input).  Row r = n*D + j is one prediction: its C values sit at
//   x + n*ld_n + j*ld_d + c*ld_c          (ClassRows below; any strides, no copy of the input)
// and its class index at target[r] (int64, contiguous) -- exactly the order of an (N, d1, ..., dk) target.
//
// Math for row r, with logits x_c, target t, class weights w_c (all 1 without a weight), eps the label
// smoothing, and W = sum_c w_c:
//   lse       = log sum_c exp(x_c) = m + log s,   m = max_c x_c,  s = sum_c exp(x_c - m)
//   log p_c   = x_c - lse
//   nll_loss       loss_r = -w_t x_t                  (x is already a log-probability)
//   cross_entropy  loss_r = (1 - eps) w_t (lse - x_t) + (eps / C) sum_c w_c (lse - x_c)
//                  -- PyTorch's definition: the smoothing term weighs every class by its own w_c, not by w_t.
//   A row whose target is ignore_index has loss 0 and weight 0.
//   Reductions: none -> loss_r;  sum -> sum_r loss_r;  mean -> sum_r loss_r / sum_r w_t(r) over the
//   non-ignored rows (the same denominator for both terms); all rows ignored: 0 / 0 = NaN, as PyTorch.
//
// The smoothing sum needs no second pass: sum_c w_c (lse - x_c) = (lse - ref) W - sum_c w_c (x_c - ref)
// for any ref; ref = x_t keeps the subtracted terms small when all logits share a large offset (ref = 0
// when x_t is not finite or the row is ignored).
//
// Backward.  With g_r = dL/dloss_r (grad_output; divided by the total weight for mean):
//   d loss_r / d x_c = (1-eps) w_t (p_c - [c == t]) + (eps/C) (W p_c - w_c)
//                    = (a + b W) p_c - a [c == t] - b w_c,          a = (1-eps) w_t,  b = eps / C
//   without weights:  p_c - ((1-eps) [c == t] + eps/C)  =  softmax - one_hot_smoothed.
//   p_c = exp(x_c - lse), so the forward keeps lse (one double per row) and nothing of size N x C; the
//   backward reads x once and writes dx once.  lse is kept in double and split into hi + lo in the
//   accumulation type for the backward, so p_c = exp((x_c - hi) - lo) is as accurate as exp(x_c - m) / s
//   however large the logits (a float lse would be off by up to ulp(lse), a relative error of |lse| * 6e-8
//   in every p_c).  nll_loss: d loss_r / d x_c = -w_t [c == t].
//
// Who owns what:
//   cross-entropy, C <= 1024   warp per row, blockDim (32, 4); lane l reads columns l*VEC, l*VEC + 32*VEC, ...
//                              (max, sum) merge with shuffles (common.cuh online_*), as in softmax.cuh
//   cross-entropy, C > 1024    block per row (128..1024 threads); warps merge through shared memory
//   loss_reduce (mean, sum)    one block: sums the per-row (loss, weight) pairs of [2, rows] in a fixed tree
//                              order (deterministic; no atomics); writes the loss and the total weight
//   nll forward                one thread per row (a gather: reads 1 of the C values)
//   nll backward               one thread per VEC gradient elements, flat over [N, C, D]
// Accesses move VEC = 16 / sizeof(T) elements (LDG.E.128) when pointers, strides and C allow, else 1;
// grids are grid-stride, sizes and strides int64; accumulation in float (double for double).
//
// Target check: a target outside [0, C) that is not ignore_index stops the kernel through
// PYOPS_DEVICE_REQUIRE (common.cuh) -- one compare per row, no host synchronization.
#pragma once
#include "common.cuh"

namespace pyops::cuda {

// The [rows, C] view of an [N, C, D] tensor: row r = n*D + j starts at n*ld_n + j*ld_d; class c is c*ld_c further.
struct ClassRows {
  int64_t rows = 0, classes = 0, inner = 1;  // N*D, C, D
  int64_t ld_n = 0, ld_d = 0, ld_c = 1;      // element strides of the N, D and C dims
};

// Where a loss goes.  reduction none: rows_out[r] per row.  mean/sum: per-row (loss, weight) pairs into
// partials [2, rows] (scratch), then one block reduces them into reduced[0] and total_weight[0..1].
template <class T> struct LossOutput {
  bool per_row = false;                // reduction none (the pointers of an empty tensor are null: not a flag)
  T* rows_out = nullptr;               // [rows], reduction none
  acc_t<T>* partials = nullptr;        // [2, rows], mean/sum
  T* reduced = nullptr;                // [], mean/sum
  acc_t<T>* total_weight = nullptr;    // [2], mean/sum: W_t = sum of w_t over the non-ignored rows, and 1 / W_t
                                       // (the backward's scale, so no row kernel divides)
  bool mean = false;
};

constexpr unsigned kLossFlatThreads = 256;  // block of the flat nll kernels

// The label-smoothing coefficients, computed once on the host: no division in the row kernels (a division
// is a call to a slow-path subroutine on the GPU, and the registers live across it would go to the stack).
template <class A> struct Smoothing {
  A keep = 1;    // 1 - eps: the weight of the NLL term
  A spread = 0;  // eps / C: the weight of each class in the uniform term
};
template <class A> inline Smoothing<A> smoothing_coefficients(double eps, int64_t classes) {
  return {A(1.0 - eps), A(classes > 0 ? eps / double(classes) : 0.0)};
}

// Variant, vector width, grid and block of the cross-entropy row kernels: the row-reduction plan of
// common.cuh (row_plan, as softmax.cuh) -- one function for the real launch, the emulated launch and the
// tests.  `vec_ok`: unit class stride, aligned pointers, C and row strides multiples of 16 / elem_size.
using CrossEntropyVariant = RowVariant;
using CrossEntropyPlan = RowPlan;
inline CrossEntropyPlan cross_entropy_plan(int64_t rows, int64_t classes, int elem_size, bool vec_ok) {
  return row_plan(rows, classes, elem_size, vec_ok);
}

// Raw-pointer entry points called by the glue (csrc/cuda/cross_entropy.cpp).  Return nullptr on
// success, else the launch error.  target: [rows] int64; weight: [C] or nullptr; lse: [rows] double.
template <class T>
const char* cross_entropy_forward(const T* x, ClassRows xl, const int64_t* target, const T* weight,
                                  int64_t ignore_index, double smoothing, LossOutput<T> out, double* lse,
                                  Stream stream, CrossEntropyPlan* plan_out = nullptr);
// grad: dL/dloss, [rows] with stride ld_grad (none) or [] (mean, sum: ld_grad 0); inv_total_weight: &total_weight[1]
// of the forward for mean, nullptr otherwise.  gx: [N, C, D] laid out as gl.
template <class T>
const char* cross_entropy_backward(const T* grad, int64_t ld_grad, const acc_t<T>* inv_total_weight, const T* x,
                                   ClassRows xl, const int64_t* target, const T* weight, int64_t ignore_index,
                                   double smoothing, const double* lse, T* gx, ClassRows gl, Stream stream,
                                   CrossEntropyPlan* plan_out = nullptr);
template <class T>
const char* nll_loss_forward(const T* x, ClassRows xl, const int64_t* target, const T* weight, int64_t ignore_index,
                             LossOutput<T> out, Stream stream);
// gx: contiguous [N, C, D] (rows = N*D).
template <class T>
const char* nll_loss_backward(const T* grad, int64_t ld_grad, const acc_t<T>* inv_total_weight, const int64_t* target,
                              const T* weight, int64_t ignore_index, T* gx, int64_t rows, int64_t classes,
                              int64_t inner, Stream stream, int* vec_out = nullptr);

#if defined(PYOPS_DEVICE_CODE)

__device__ __forceinline__ int64_t row_offset(const ClassRows& l, int64_t r) {
  return l.inner == 1 ? r * l.ld_n : (r / l.inner) * l.ld_n + (r % l.inner) * l.ld_d;
}

// VEC consecutive classes of one row: one vector access when VEC > 1 (then ld_c == 1), else one strided element.
template <class T, int VEC> __device__ __forceinline__ Vec<T, VEC> load_classes(const T* row, int64_t c, int64_t ld_c) {
  if constexpr (VEC == 1) return Vec<T, 1>{{row[c * ld_c]}};
  else return load_vec<T, VEC>(row + c);
}
template <class T, int VEC>
__device__ __forceinline__ void store_classes(T* row, int64_t c, int64_t ld_c, const Vec<T, VEC>& v) {
  if constexpr (VEC == 1) row[c * ld_c] = v.v[0];
  else store_vec_global<T, VEC>(row + c, v);
}

template <class A> struct RowTarget {
  int64_t t;   // class index (meaningful when valid)
  bool valid;  // t != ignore_index
  A w;         // w_t, 1 without a weight, 0 when ignored
};

template <class T>
__device__ __forceinline__ RowTarget<acc_t<T>> read_target(const int64_t* target, int64_t r, const T* weight,
                                                           int64_t classes, int64_t ignore_index) {
  using A = acc_t<T>;
  const int64_t t = target[r];
  const bool valid = t != ignore_index;
  PYOPS_DEVICE_REQUIRE(!valid || (t >= 0 && t < classes),
                       "nll_loss/cross_entropy: target out of bounds (expected a class index in [0, C) or "
                       "ignore_index)");
  return {t, valid, valid ? (weight ? to_acc(weight[t]) : A(1)) : A(0)};
}

// Per-thread part of one row's forward statistics: online (max, sum of exp) and, with SMOOTH,
// d = sum_c w_c (x_c - ref) and wsum = sum_c w_c.
template <class A> struct RowStats {
  A m, s, d, wsum;
};

template <class T, int VEC, bool SMOOTH>
__device__ __forceinline__ RowStats<acc_t<T>> row_stats(const T* xr, int64_t ld_c, const T* weight, int64_t begin,
                                                        int64_t step, int64_t classes, acc_t<T> ref) {
  using A = acc_t<T>;
  RowStats<A> st{neg_inf<A>(), A(0), A(0), A(0)};
  for (int64_t c = begin; c < classes; c += step) {
    const Vec<T, VEC> v = load_classes<T, VEC>(xr, c, ld_c);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      const A xi = to_acc(v.v[i]);
      online_add(st.m, st.s, xi);
      if constexpr (SMOOTH) {
        const A wi = weight ? to_acc(weight[c + i]) : A(1);  // weight: [C], contiguous
        st.d += wi * (xi - ref);
        st.wsum += wi;
      }
    }
  }
  return st;
}

// Thread 0 of the row's warp/block: lse, the row's loss, and where it goes.
template <class T, bool SMOOTH>
__device__ __forceinline__ void write_row_loss(int64_t row, int64_t rows, int64_t classes, const RowTarget<acc_t<T>>& tg,
                                               acc_t<T> xt, acc_t<T> ref, const RowStats<acc_t<T>>& st,
                                               Smoothing<acc_t<T>> sm, const LossOutput<T>& out, double* lse) {
  using A = acc_t<T>;
  // In double: lse - x for a logit near lse is then exact to the accumulation type, however large the logits
  // (in float, lse = m + log s would carry ulp(m) of error into every p_c and into the loss).
  const double l = double(st.m) + log_(double(st.s));
  lse[row] = l;
  A loss = 0;
  if (tg.valid) {
    loss = sm.keep * tg.w * A(l - double(xt));
    if constexpr (SMOOTH) loss += sm.spread * (A(l - double(ref)) * st.wsum - st.d);
  }
  if (out.per_row) {
    out.rows_out[row] = from_acc<T>(loss);
  } else {
    out.partials[row] = loss;
    out.partials[rows + row] = tg.w;
  }
}

// The target's logit (0 for an ignored row) and the shift of the smoothing sum.
template <class T>
__device__ __forceinline__ acc_t<T> target_logit(const T* xr, int64_t ld_c, const RowTarget<acc_t<T>>& tg) {
  return tg.valid ? to_acc(xr[tg.t * ld_c]) : acc_t<T>(0);
}
template <class A> __device__ __forceinline__ A smoothing_ref(A xt) { return isfinite(xt) ? xt : A(0); }

// ---- forward, warp per row
// Launch bounds (threads, 1): with the thread count alone, ptxas budgets registers for several blocks per SM
// and spilled some variants (the double exp polynomial's constants, values live across the assert's call) to
// the stack; allowing one block per SM at least lets them keep everything in registers (<= 80 per thread;
// tests/test_build.py audits that no kernel has a stack frame or local memory).
template <class T, int VEC, bool SMOOTH>
__global__ void __launch_bounds__(128, 1)
cross_entropy_fwd_warp_kernel(const T* __restrict__ x, ClassRows xl,            // logits, [N, C, D] as xl
                     const int64_t* __restrict__ target,               // [rows]
                     const T* __restrict__ weight,                     // [C] or nullptr
                     int64_t ignore_index, Smoothing<acc_t<T>> sm,
                     LossOutput<T> out, double* __restrict__ lse) {  // lse: [rows]
  using A = acc_t<T>;
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = 32 * VEC;
  for (int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; row < xl.rows;
       row += int64_t(gridDim.x) * blockDim.y) {  // uniform across the warp: shuffles stay converged
    const T* xr = x + row_offset(xl, row);
    const RowTarget<A> tg = read_target(target, row, weight, xl.classes, ignore_index);
    const A xt = target_logit(xr, xl.ld_c, tg);  // every lane loads the same element: one broadcast
    const A ref = SMOOTH ? smoothing_ref(xt) : A(0);
    RowStats<A> st = row_stats<T, VEC, SMOOTH>(xr, xl.ld_c, weight, begin, step, xl.classes, ref);
    warp_online_merge(st.m, st.s);
    if constexpr (SMOOTH) {
      st.d = warp_sum(st.d);
      st.wsum = weight ? warp_sum(st.wsum) : A(xl.classes);
    }
    if (threadIdx.x == 0) write_row_loss<T, SMOOTH>(row, xl.rows, xl.classes, tg, xt, ref, st, sm, out, lse);
  }
}

// ---- forward, block per row
template <class T, int VEC, bool SMOOTH>
__global__ void __launch_bounds__(1024, 1)
cross_entropy_fwd_block_kernel(const T* __restrict__ x, ClassRows xl, const int64_t* __restrict__ target,
                      const T* __restrict__ weight, int64_t ignore_index, Smoothing<acc_t<T>> sm, LossOutput<T> out,
                      double* __restrict__ lse) {
  using A = acc_t<T>;
  __shared__ A part_m[32], part_s[32];  // one (max, sum) pair per warp; part_m doubles as block_sum scratch
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = int64_t(blockDim.x) * VEC;
  for (int64_t row = blockIdx.x; row < xl.rows; row += gridDim.x) {
    const T* xr = x + row_offset(xl, row);
    const RowTarget<A> tg = read_target(target, row, weight, xl.classes, ignore_index);
    const A xt = target_logit(xr, xl.ld_c, tg);
    const A ref = SMOOTH ? smoothing_ref(xt) : A(0);
    RowStats<A> st = row_stats<T, VEC, SMOOTH>(xr, xl.ld_c, weight, begin, step, xl.classes, ref);
    block_online_merge(st.m, st.s, part_m, part_s);
    if constexpr (SMOOTH) {
      st.d = block_sum(st.d, part_m);
      st.wsum = weight ? block_sum(st.wsum, part_m) : A(xl.classes);
    }
    if (threadIdx.x == 0) write_row_loss<T, SMOOTH>(row, xl.rows, xl.classes, tg, xt, ref, st, sm, out, lse);
  }
}

// ---- mean / sum: one block folds the per-row (loss, weight) pairs
template <class T>
// profile-exception loss_reduce_kernel unique: the forward writes per-row (loss, weight) partials and this
//   kernel re-reads them, for a deterministic fixed-order sum: +16 bytes per row, which the model leaves out
//   (measured at 64x10 float: 4672 bytes against 3588, 1.30x; at 16x2048: 1.002x)
__global__ void __launch_bounds__(1024, 1)
loss_reduce_kernel(const acc_t<T>* __restrict__ partials, int64_t rows,  // [2, rows]: losses, then weights
                   bool mean, T* __restrict__ reduced, acc_t<T>* __restrict__ total_weight) {  // total_weight: [2]
  using A = acc_t<T>;
  __shared__ A scratch[32];
  A loss = 0, w = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    loss += partials[r];
    w += partials[rows + r];
  }
  loss = block_sum(loss, scratch);
  w = block_sum(w, scratch);
  if (threadIdx.x == 0) {
    reduced[0] = from_acc<T>(mean ? loss / w : loss);  // all rows ignored: 0 / 0 = NaN, as PyTorch
    total_weight[0] = w;
    total_weight[1] = A(1) / w;
  }
}

// ---- backward: dx_c = g ((a + b W) p_c - a [c == t] - b w_c), one read of x, one write of dx per row
template <class A> struct RowGrad {
  A coef;     // g (a + b W): multiplies p_c
  A at_t;     // g a: subtracted at c == t
  A per_w;    // g b: times w_c (or 1), subtracted everywhere
  int64_t t;  // -1 for an ignored row
};

template <class T>
__device__ __forceinline__ RowGrad<acc_t<T>> row_grad(const T* grad, int64_t ld_grad, acc_t<T> inv_total,
                                                      const RowTarget<acc_t<T>>& tg, Smoothing<acc_t<T>> sm,
                                                      acc_t<T> wsum, int64_t row) {
  using A = acc_t<T>;
  // an ignored row gets exactly 0, even when the mean's total weight is 0 (inv_total = inf)
  const A g = tg.valid ? to_acc(grad[row * ld_grad]) * inv_total : A(0);
  const A a = sm.keep * tg.w, b = sm.spread;
  return {g * (a + b * wsum), g * a, g * b, tg.valid ? tg.t : int64_t(-1)};
}

template <class T, int VEC, bool SMOOTH>
__device__ __forceinline__ void row_write_grad(const T* xr, int64_t ld_c, T* gxr, int64_t gld_c, const T* weight,
                                               int64_t begin, int64_t step, int64_t classes, double lse,
                                               const RowGrad<acc_t<T>>& rg) {
  using A = acc_t<T>;
  // lse split into hi + lo in the accumulation type: x - hi is exact for the logits that matter (those
  // within a factor 2 of lse), so (x - hi) - lo keeps p_c as accurate as exp(x - m) / s.  An infinite lse
  // gives lo = NaN: the row's gradient is NaN, as PyTorch's.
  const A hi = A(lse), lo = A(lse - double(hi));
  for (int64_t c = begin; c < classes; c += step) {
    const Vec<T, VEC> v = load_classes<T, VEC>(xr, c, ld_c);
    Vec<T, VEC> o;
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      A d = rg.coef * exp_((to_acc(v.v[i]) - hi) - lo);
      if (c + i == rg.t) d -= rg.at_t;
      if constexpr (SMOOTH) d -= rg.per_w * (weight ? to_acc(weight[c + i]) : A(1));
      o.v[i] = from_acc<T>(d);
    }
    store_classes<T, VEC>(gxr, c, gld_c, o);
  }
}

template <class T>
__device__ __forceinline__ acc_t<T> weight_partial_sum(const T* weight, int64_t begin, int64_t step, int64_t classes) {
  acc_t<T> s = 0;
  for (int64_t c = begin; c < classes; c += step) s += to_acc(weight[c]);
  return s;
}

template <class T, int VEC, bool SMOOTH>
__global__ void __launch_bounds__(128, 1)
cross_entropy_bwd_warp_kernel(const T* __restrict__ grad, int64_t ld_grad,   // dL/dloss: [rows] or [] (ld_grad 0)
                     const acc_t<T>* __restrict__ inv_total_weight,  // 1 / W_t for mean, else nullptr
                     const T* __restrict__ x, ClassRows xl,         // logits, [N, C, D]
                     const int64_t* __restrict__ target, const T* __restrict__ weight, int64_t ignore_index,
                     Smoothing<acc_t<T>> sm, const double* __restrict__ lse,  // lse: [rows], from the forward
                     T* __restrict__ gx, ClassRows gl) {                     // dL/dx, [N, C, D] as gl
  using A = acc_t<T>;
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = 32 * VEC;
  const A inv_total = inv_total_weight ? inv_total_weight[0] : A(1);
  // W = sum_c w_c: the same for every row, so once per warp (C without a weight)
  const A wsum = SMOOTH && weight ? warp_sum(weight_partial_sum(weight, threadIdx.x, 32, xl.classes)) : A(xl.classes);
  for (int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; row < xl.rows;
       row += int64_t(gridDim.x) * blockDim.y) {
    const RowTarget<A> tg = read_target(target, row, weight, xl.classes, ignore_index);
    const RowGrad<A> rg = row_grad(grad, ld_grad, inv_total, tg, sm, wsum, row);
    row_write_grad<T, VEC, SMOOTH>(x + row_offset(xl, row), xl.ld_c, gx + row_offset(gl, row), gl.ld_c, weight, begin,
                                   step, xl.classes, lse[row], rg);
  }
}

template <class T, int VEC, bool SMOOTH>
__global__ void __launch_bounds__(1024, 1)
cross_entropy_bwd_block_kernel(const T* __restrict__ grad, int64_t ld_grad, const acc_t<T>* __restrict__ inv_total_weight,
                      const T* __restrict__ x, ClassRows xl, const int64_t* __restrict__ target,
                      const T* __restrict__ weight, int64_t ignore_index, Smoothing<acc_t<T>> sm,
                      const double* __restrict__ lse, T* __restrict__ gx, ClassRows gl) {
  using A = acc_t<T>;
  __shared__ A scratch[32];
  const int64_t begin = int64_t(threadIdx.x) * VEC, step = int64_t(blockDim.x) * VEC;
  const A inv_total = inv_total_weight ? inv_total_weight[0] : A(1);
  const A wsum = SMOOTH && weight ? block_sum(weight_partial_sum(weight, threadIdx.x, blockDim.x, xl.classes), scratch)
                                  : A(xl.classes);
  for (int64_t row = blockIdx.x; row < xl.rows; row += gridDim.x) {
    const RowTarget<A> tg = read_target(target, row, weight, xl.classes, ignore_index);
    const RowGrad<A> rg = row_grad(grad, ld_grad, inv_total, tg, sm, wsum, row);
    row_write_grad<T, VEC, SMOOTH>(x + row_offset(xl, row), xl.ld_c, gx + row_offset(gl, row), gl.ld_c, weight, begin,
                                   step, xl.classes, lse[row], rg);
  }
}

// ---- nll_loss forward: one thread per row gathers x[r, t]
// profile-exception nll_loss_fwd_kernel sectors: a gather -- each lane reads one element of its own row, one
//   32-byte sector for 4 bytes (measured at 64x10 float: 59 sectors for 2 requests, ideal 8)
// profile-exception nll_loss_fwd_kernel unique: the same gather -- a sector per row against the model's one
//   element per row (measured at 64x10 float: 3488 bytes against 772, 4.5x)
template <class T>
__global__ void __launch_bounds__(kLossFlatThreads, 1)
nll_loss_fwd_kernel(const T* __restrict__ x, ClassRows xl,  // log-probabilities, [N, C, D]
               const int64_t* __restrict__ target, const T* __restrict__ weight, int64_t ignore_index,
               LossOutput<T> out) {
  using A = acc_t<T>;
  for (int64_t row = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; row < xl.rows;
       row += int64_t(gridDim.x) * blockDim.x) {
    const RowTarget<A> tg = read_target(target, row, weight, xl.classes, ignore_index);
    const A loss = tg.valid ? -tg.w * to_acc(x[row_offset(xl, row) + tg.t * xl.ld_c]) : A(0);
    if (out.per_row) {
      out.rows_out[row] = from_acc<T>(loss);
    } else {
      out.partials[row] = loss;
      out.partials[xl.rows + row] = tg.w;
    }
  }
}

// ---- nll_loss backward: every element of dx written once, -g w_t at the target, 0 elsewhere.
// profile-exception nll_loss_bwd_kernel sectors: each lane reads the 8-byte target of its own row; a warp's
//   few rows' targets straddle a sector boundary (measured at 64x10 float: 32 sectors for 20 requests, ideal 20)
// Flat over contiguous [N, C, D]: element e = (n*C + c)*D + j belongs to row n*D + j.  VEC > 1 only when
// D == 1 and C % VEC == 0, so a vector never straddles two rows.
template <class T, int VEC>
__global__ void __launch_bounds__(kLossFlatThreads, 1)
nll_loss_bwd_kernel(const T* __restrict__ grad, int64_t ld_grad, const acc_t<T>* __restrict__ inv_total_weight,
               const int64_t* __restrict__ target, const T* __restrict__ weight, int64_t ignore_index,
               T* __restrict__ gx, int64_t rows, int64_t classes, int64_t inner) {  // gx: [N, C, D]
  using A = acc_t<T>;
  const A inv_total = inv_total_weight ? inv_total_weight[0] : A(1);
  const int64_t nvec = rows * classes / VEC;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < nvec; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = i * VEC;
    int64_t row, c;
    if (inner == 1) {
      row = e / classes;
      c = e - row * classes;
    } else {
      const int64_t q = e / inner, j = e - q * inner;  // q = n*C + c
      const int64_t n = q / classes;
      c = q - n * classes;
      row = n * inner + j;
    }
    const RowTarget<A> tg = read_target(target, row, weight, classes, ignore_index);
    const A v = tg.valid ? -to_acc(grad[row * ld_grad]) * inv_total * tg.w : A(0);
    Vec<T, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; ++k) o.v[k] = from_acc<T>(tg.valid && c + k == tg.t ? v : A(0));
    store_vec_global<T, VEC>(gx + e, o);
  }
}

// ---- launch functions
inline LaunchConfig reduce_config(int64_t rows) {
  LaunchConfig cfg;
  cfg.block = dim3(std::min(1024u, std::max(32u, next_pow2(uint64_t(std::max<int64_t>(rows, 1))))));
  return cfg;
}
inline LaunchConfig flat_config(int64_t n) {
  LaunchConfig cfg;
  cfg.block = dim3(kLossFlatThreads);
  cfg.grid = dim3(unsigned(std::min<int64_t>(std::max<int64_t>(ceil_div(n, kLossFlatThreads), 1), kMaxGrid)));
  return cfg;
}

template <class T> void launch_loss_reduce(const LossOutput<T>& out, int64_t rows, Stream stream) {
  PYOPS_LAUNCH(reduce_config(rows), stream, loss_reduce_kernel<T>)(out.partials, rows, out.mean, out.reduced,
                                                                   out.total_weight);
}

template <class T, int VEC, bool SMOOTH>
void cross_entropy_forward_launch(const CrossEntropyPlan& p, const T* x, ClassRows xl, const int64_t* target, const T* weight,
                         int64_t ignore_index, Smoothing<acc_t<T>> sm, const LossOutput<T>& out, double* lse,
                         Stream stream) {
  if (p.variant == CrossEntropyVariant::WarpPerRow)
    PYOPS_LAUNCH(p.cfg, stream, cross_entropy_fwd_warp_kernel<T, VEC, SMOOTH>)(x, xl, target, weight, ignore_index, sm,
                                                                      out, lse);
  else
    PYOPS_LAUNCH(p.cfg, stream, cross_entropy_fwd_block_kernel<T, VEC, SMOOTH>)(x, xl, target, weight, ignore_index, sm,
                                                                       out, lse);
}

// Vector accesses along the classes of every row: unit class stride, 16-byte aligned rows, whole vectors.
template <class T> bool classes_vectorizable(const T* base, const ClassRows& l) {
  constexpr int V = 16 / sizeof(T);
  return aligned16(base) && l.ld_c == 1 && l.classes % V == 0 && l.ld_n % V == 0 && (l.inner == 1 || l.ld_d % V == 0);
}

template <class T>
const char* cross_entropy_forward(const T* x, ClassRows xl, const int64_t* target, const T* weight,
                                  int64_t ignore_index, double smoothing, LossOutput<T> out, double* lse,
                                  Stream stream, CrossEntropyPlan* plan_out) {
  constexpr int V = 16 / sizeof(T);
  const bool smooth = smoothing != 0.0;
  // the smoothing sum reads weight[c .. c+VEC) element by element: no alignment needed
  const CrossEntropyPlan p = cross_entropy_plan(xl.rows, xl.classes, sizeof(T), classes_vectorizable(x, xl));
  if (plan_out) *plan_out = p;
  const Smoothing<acc_t<T>> eps = smoothing_coefficients<acc_t<T>>(smoothing, xl.classes);
  if (xl.rows > 0) {
    if (p.vec == V) {
      if (smooth) cross_entropy_forward_launch<T, V, true>(p, x, xl, target, weight, ignore_index, eps, out, lse, stream);
      else cross_entropy_forward_launch<T, V, false>(p, x, xl, target, weight, ignore_index, eps, out, lse, stream);
    } else {
      if (smooth) cross_entropy_forward_launch<T, 1, true>(p, x, xl, target, weight, ignore_index, eps, out, lse, stream);
      else cross_entropy_forward_launch<T, 1, false>(p, x, xl, target, weight, ignore_index, eps, out, lse, stream);
    }
  }
  if (!out.per_row) launch_loss_reduce(out, xl.rows, stream);  // also for rows == 0: writes 0 (sum) or NaN (mean)
  return launch_status();
}

template <class T, int VEC, bool SMOOTH>
void cross_entropy_backward_launch(const CrossEntropyPlan& p, const T* grad, int64_t ld_grad, const acc_t<T>* inv_total, const T* x,
                          ClassRows xl, const int64_t* target, const T* weight, int64_t ignore_index,
                          Smoothing<acc_t<T>> sm, const double* lse, T* gx, ClassRows gl, Stream stream) {
  if (p.variant == CrossEntropyVariant::WarpPerRow)
    PYOPS_LAUNCH(p.cfg, stream, cross_entropy_bwd_warp_kernel<T, VEC, SMOOTH>)(grad, ld_grad, inv_total, x, xl, target,
                                                                      weight, ignore_index, sm, lse, gx, gl);
  else
    PYOPS_LAUNCH(p.cfg, stream, cross_entropy_bwd_block_kernel<T, VEC, SMOOTH>)(grad, ld_grad, inv_total, x, xl, target,
                                                                       weight, ignore_index, sm, lse, gx, gl);
}

template <class T>
const char* cross_entropy_backward(const T* grad, int64_t ld_grad, const acc_t<T>* inv_total_weight, const T* x,
                                   ClassRows xl, const int64_t* target, const T* weight, int64_t ignore_index,
                                   double smoothing, const double* lse, T* gx, ClassRows gl, Stream stream,
                                   CrossEntropyPlan* plan_out) {
  constexpr int V = 16 / sizeof(T);
  const bool smooth = smoothing != 0.0;
  const CrossEntropyPlan p = cross_entropy_plan(xl.rows, xl.classes, sizeof(T), classes_vectorizable(x, xl) && classes_vectorizable(gx, gl));
  if (plan_out) *plan_out = p;
  if (xl.rows == 0 || xl.classes == 0) return nullptr;
  const Smoothing<acc_t<T>> eps = smoothing_coefficients<acc_t<T>>(smoothing, xl.classes);
  if (p.vec == V) {
    if (smooth)
      cross_entropy_backward_launch<T, V, true>(p, grad, ld_grad, inv_total_weight, x, xl, target, weight,
                                                ignore_index, eps, lse, gx, gl, stream);
    else
      cross_entropy_backward_launch<T, V, false>(p, grad, ld_grad, inv_total_weight, x, xl, target, weight,
                                                 ignore_index, eps, lse, gx, gl, stream);
  } else {
    if (smooth)
      cross_entropy_backward_launch<T, 1, true>(p, grad, ld_grad, inv_total_weight, x, xl, target, weight,
                                                ignore_index, eps, lse, gx, gl, stream);
    else
      cross_entropy_backward_launch<T, 1, false>(p, grad, ld_grad, inv_total_weight, x, xl, target, weight,
                                                 ignore_index, eps, lse, gx, gl, stream);
  }
  return launch_status();
}

template <class T>
const char* nll_loss_forward(const T* x, ClassRows xl, const int64_t* target, const T* weight, int64_t ignore_index,
                             LossOutput<T> out, Stream stream) {
  if (xl.rows > 0)
    PYOPS_LAUNCH(flat_config(xl.rows), stream, nll_loss_fwd_kernel<T>)(x, xl, target, weight, ignore_index, out);
  if (!out.per_row) launch_loss_reduce(out, xl.rows, stream);
  return launch_status();
}

template <class T>
const char* nll_loss_backward(const T* grad, int64_t ld_grad, const acc_t<T>* inv_total_weight, const int64_t* target,
                              const T* weight, int64_t ignore_index, T* gx, int64_t rows, int64_t classes,
                              int64_t inner, Stream stream, int* vec_out) {
  constexpr int V = 16 / sizeof(T);
  const bool vec = inner == 1 && classes % V == 0 && aligned16(gx);
  if (vec_out) *vec_out = vec ? V : 1;
  const int64_t n = rows * classes;
  if (n == 0) return nullptr;
  if (vec)
    PYOPS_LAUNCH(flat_config(n / V), stream, nll_loss_bwd_kernel<T, V>)(grad, ld_grad, inv_total_weight, target, weight,
                                                                  ignore_index, gx, rows, classes, inner);
  else
    PYOPS_LAUNCH(flat_config(n), stream, nll_loss_bwd_kernel<T, 1>)(grad, ld_grad, inv_total_weight, target, weight,
                                                              ignore_index, gx, rows, classes, inner);
  return launch_status();
}

#if defined(PYOPS_INSTANTIATE)
#define PYOPS_LOSS_INSTANTIATE(T)                                                                                   \
  template const char* cross_entropy_forward<T>(const T*, ClassRows, const int64_t*, const T*, int64_t, double,    \
                                                LossOutput<T>, double*, Stream, CrossEntropyPlan*);                         \
  template const char* cross_entropy_backward<T>(const T*, int64_t, const acc_t<T>*, const T*, ClassRows,          \
                                                 const int64_t*, const T*, int64_t, double, const double*, T*,     \
                                                 ClassRows, Stream, CrossEntropyPlan*);                                     \
  template const char* nll_loss_forward<T>(const T*, ClassRows, const int64_t*, const T*, int64_t, LossOutput<T>,  \
                                           Stream);                                                                 \
  template const char* nll_loss_backward<T>(const T*, int64_t, const acc_t<T>*, const int64_t*, const T*, int64_t, \
                                            T*, int64_t, int64_t, int64_t, Stream, int*);
PYOPS_FOR_EACH_FLOAT(PYOPS_LOSS_INSTANTIATE)
#endif

#endif  // PYOPS_DEVICE_CODE

}  // namespace pyops::cuda
