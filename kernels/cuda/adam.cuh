// adam.cuh -- Adam / AdamW: one step for every parameter of a (device, dtype) group in ONE launch.
//
// Math, per element, exactly in the order torch.optim.Adam (_single_tensor_adam) evaluates it, so
// results agree with PyTorch to within a few ulps (t = the step count after this step):
//   g  <- -grad if maximize else grad
//   Adam  (L2):        g <- g + wd * p                       (torch: grad.add(param, alpha=wd), one FMA)
//   AdamW (decoupled): p <- p * (1 - lr * wd)                (torch: param.mul_(1 - lr * wd))
//   m  <- lerp(m, g, 1 - beta1)                              (one FMA, two forms as in ATen's lerp)
//   v  <- v * beta2 + ((1 - beta2) * g) * g                  (torch: mul_, then addcmul_: one FMA)
//   amsgrad: vmax <- max(vmax, v), and vmax replaces v below (NaN propagates, like torch.maximum)
//   denom <- sqrt(v) / sqrt(1 - beta2^t) + eps               (eps added AFTER the bias correction)
//   p  <- p + (-(lr / (1 - beta1^t)) * m) / denom
// The per-tensor scalars (bias corrections, step size, decay) are computed in double from (t, lr),
// as torch.optim computes them in Python, and rounded once to the accumulation type.
//
// ONE update function, adam_update() below, is __host__ __device__ and templated on the "lane"
// type: the CUDA kernel runs it on scalars (float / double), the CPU kernel (csrc/cpu/adam.cpp) on
// at::vec::Vectorized<float/double> (8 / 4 elements per AVX2 instruction).  The CPU file includes
// only the math part of this header (PYOPS_ADAM_MATH_ONLY), which needs neither the CUDA headers
// nor a GPU; the arithmetic each lane type needs (fma, sqrt, max, neg) is the AdamMath<L> trait.
//
// Multi-tensor decomposition (the CUDA kernel):
//   * The launch gets a table of up to kAdamMaxTensors tensors BY VALUE in its kernel arguments
//     (AdamLaunch, <= 4 KB: the classic kernel-parameter limit; see docs/adam.md): pointers to
//     param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, numel, and the tensor's first tile.
//   * Every tensor is cut into tiles of kAdamThreads * VEC * kAdamIlp elements (4096 for fp32 /
//     fp16 / bf16, 2048 for fp64); the tiles of all tensors are numbered one after another.
//     Block b owns tiles b, b + gridDim, ... (grid-stride), so each block maps to (tensor, tile)
//     pairs; since its tiles increase, it finds the tensor by walking the table forward.
//   * Inside a tile, thread x owns kAdamIlp vectors of VEC elements: x*VEC, (x + blockDim)*VEC, ...
//     It issues all their loads (p, g, m, v[, vmax]) before computing, so kAdamIlp * VEC values
//     per array are in flight per thread, then stores.  VEC = 16 bytes of state (4 floats, 2
//     doubles): 16-byte loads/stores (LDG.E.128) when the tensor's pointers are aligned, scalar
//     loads for unaligned tensors and for the one partial vector at the end of each tensor.
//   * More than kAdamMaxTensors tensors: the glue launches once per kAdamMaxTensors (still one
//     pass over the data).
// Steps: non-capturable, torch.optim keeps `step` on the CPU; the glue increments it and puts the
// value in the table.  Capturable (CUDA graphs): `step` and `lr` stay on the device; the kernel
// reads step_old, uses t = step_old + 1, and the block that finishes the LAST tile of a tensor
// (a per-tensor arrival counter, atomicAdd after __threadfence) stores step_old + 1 and resets
// the counter to 0 -- so every block has read step_old before it changes, with no host sync and
// no second launch.
// Storage: fp16/bf16 params and grads, fp32 state (exp_avg, ...) and fp32 math: no master weights;
// the updated param is rounded back to its dtype.  fp64 params: fp64 state and math.
#pragma once

#if defined(PYOPS_ADAM_MATH_ONLY)
// csrc/cpu/adam.cpp: the math part alone, compiled by the host compiler without the CUDA headers.
#include <cstdint>
#ifndef __host__
#define __host__
#endif
#ifndef __device__
#define __device__
#endif
#else
#include "common.cuh"
#endif
#include <math.h>

#include "adam_hparams.h"

namespace pyops::cuda {

// ----------------------------------------------------------------------------- the update math
// AdamHyper, the hyperparameters of one call (one param group): adam_hparams.h.

// Per-tensor scalars of one step, in the accumulation type A.
template <class A> struct AdamCoeffs {
  A neg_step_size;  // -lr / (1 - beta1^t)
  A bc2_sqrt;       // sqrt(1 - beta2^t)
  A bc2_rcp;        // for div_by: 0 (divide); the CPU kernel sets 1 / bc2_sqrt where exact_div.h applies
  A decay;          // 1 - lr * wd              (AdamW)
  A weight_decay;   // wd                       (Adam, L2)
  A w, one_minus_w; // lerp weight 1 - beta1, and 1 - w computed in A (as ATen's lerp does)
  bool w_small;     // |w| < 0.5: lerp's first form
  A beta2, one_minus_beta2, eps;
};

// The scalars for step count t (already incremented) and learning rate lr, in double, exactly as
// torch.optim's Python code computes them (bias_correction2 ** 0.5 is pow(., 0.5) there).
template <class A>
__host__ __device__ inline AdamCoeffs<A> adam_coeffs(const AdamHyper& h, double t, double lr) {
  AdamCoeffs<A> c;
  const double bc1 = 1.0 - pow(h.beta1, t);
  const double bc2 = 1.0 - pow(h.beta2, t);
  c.neg_step_size = A(-(lr / bc1));
  c.bc2_sqrt = A(pow(bc2, 0.5));
  c.bc2_rcp = A(0);
  c.decay = A(1.0 - lr * h.weight_decay);
  c.weight_decay = A(h.weight_decay);
  c.w = A(1.0 - h.beta1);
  c.one_minus_w = A(1) - c.w;
  c.w_small = (c.w < A(0) ? -c.w : c.w) < A(0.5);
  c.beta2 = A(h.beta2);
  c.one_minus_beta2 = A(1.0 - h.beta2);
  c.eps = A(h.eps);
  return c;
}

// What adam_update needs from a lane type L.  Scalars here; csrc/cpu/adam.cpp adds
// at::vec::Vectorized<S>.  max propagates NaN like torch.maximum.  div_by(x, b, b_rcp) is x / b, correctly
// rounded, for a scalar b and its reciprocal b_rcp (0 if not computed): a plain division here; the CPU lanes compute it with a
// multiply and FMAs instead (csrc/cpu/exact_div.h: a division is the slowest instruction of the update there).
template <class L> struct AdamMath;
template <> struct AdamMath<float> {
  __host__ __device__ static float fma(float a, float b, float c) { return fmaf(a, b, c); }
  __host__ __device__ static float sqrt(float a) { return sqrtf(a); }
  __host__ __device__ static float neg(float a) { return -a; }
  __host__ __device__ static float max(float a, float b) { return (a != a || a > b) ? a : b; }
  __host__ __device__ static float div_by(float x, float b, float) { return x / b; }
};
template <> struct AdamMath<double> {
  __host__ __device__ static double fma(double a, double b, double c) { return ::fma(a, b, c); }
  __host__ __device__ static double sqrt(double a) { return ::sqrt(a); }
  __host__ __device__ static double neg(double a) { return -a; }
  __host__ __device__ static double max(double a, double b) { return (a != a || a > b) ? a : b; }
  __host__ __device__ static double div_by(double x, double b, double) { return x / b; }
};

// One Adam/AdamW step of one lane: an element (CUDA) or a SIMD vector of elements (CPU).
// p, m, v, vmax are updated in place; vmax is touched only with amsgrad; denom_out, if given, receives the
// denominator (the CPU kernel's idle-lane path checks the step against it).  The CPU kernel calls it from two
// loops, where GCC stopped inlining it: always inlined there.
#if defined(PYOPS_ADAM_MATH_ONLY)
#define PYOPS_ADAM_INLINE inline __attribute__((always_inline))
#else
#define PYOPS_ADAM_INLINE inline
#endif
template <class L, class A>
__host__ __device__ PYOPS_ADAM_INLINE void adam_update(L& p, L g, L& m, L& v, L& vmax, const AdamCoeffs<A>& c,
                                                       const AdamHyper& h, L* denom_out = nullptr) {
  using M = AdamMath<L>;
  if (h.maximize) g = M::neg(g);
  if (h.weight_decay != 0) {
    if (h.decoupled_weight_decay) p = p * L(c.decay);
    else g = M::fma(p, L(c.weight_decay), g);
  }
  const L d = g - m;  // lerp(m, g, w): m + w*(g - m) for small w, else g - (g - m)*(1 - w)
  m = c.w_small ? M::fma(L(c.w), d, m) : M::fma(M::neg(d), L(c.one_minus_w), g);
  v = M::fma(L(c.one_minus_beta2) * g, g, v * L(c.beta2));
  L vv = v;
  if (h.amsgrad) {
    vmax = M::max(vmax, v);
    vv = vmax;
  }
  const L denom = M::div_by(M::sqrt(vv), c.bc2_sqrt, c.bc2_rcp) + L(c.eps);
  p = p + (L(c.neg_step_size) * m) / denom;
  if (denom_out) *denom_out = denom;
}

#if !defined(PYOPS_ADAM_MATH_ONLY)
// ----------------------------------------------------------------------------- the multi-tensor launch
constexpr int kAdamThreads = 256;     // threads per block
constexpr int kAdamIlp = 4;           // vectors in flight per thread and array
constexpr int kAdamMaxTensors = 54;   // table entries per launch (kernel arguments <= 4 KB)
constexpr int64_t kAdamMaxGrid = 8192;  // grid-stride beyond this many blocks

// Elements per vector (16 bytes of state) and per tile, for accumulation-type size acc_size.
inline int adam_vec(int acc_size) { return 16 / acc_size; }
inline int64_t adam_tile_elems(int acc_size) { return int64_t(kAdamThreads) * adam_vec(acc_size) * kAdamIlp; }
// Tiles of a tensor: at least one, so that in capturable mode even an empty tensor's step advances.
inline int64_t adam_tiles(int64_t numel, int acc_size) {
  return std::max<int64_t>(1, ceil_div(numel, adam_tile_elems(acc_size)));
}

// One parameter and its state (all [numel], dense, the same strides).
template <class T> struct AdamTensor {
  T* param;
  const T* grad;
  acc_t<T>* exp_avg;
  acc_t<T>* exp_avg_sq;
  acc_t<T>* max_exp_avg_sq;  // nullptr without amsgrad
  int64_t numel;
  int64_t first_tile;  // tiles of the tensors before this one in the table
  double step;         // non-capturable: the step count t, already incremented by the host
  void* step_ptr;      // capturable: the step tensor on the device (float32 or float64), t - 1
};

// The kernel's only argument, passed by value.
template <class T> struct AdamLaunch {
  AdamTensor<T> tensors[kAdamMaxTensors];
  AdamHyper hyper;
  const void* lr_ptr = nullptr;  // lr tensor on the device (float32 or float64), else hyper.lr
  int* counters = nullptr;       // capturable: one arrival counter per table entry, 0 between launches
  int64_t total_tiles = 0;
  int n_tensors = 0;
  bool capturable = false;
  bool lr_f64 = false, step_f64 = false;  // dtypes behind lr_ptr / step_ptr
};

static_assert(sizeof(AdamLaunch<double>) <= 4096, "AdamLaunch must fit the 4 KB kernel-parameter limit");

struct AdamPlan {
  int vec;
  int64_t tile;  // elements per tile
  LaunchConfig cfg;
};

// The one place that picks grid and block, for the real launch, the emulated launch and the tests.
inline AdamPlan adam_plan(int64_t total_tiles, int acc_size) {
  AdamPlan p{};
  p.vec = adam_vec(acc_size);
  p.tile = adam_tile_elems(acc_size);
  p.cfg.block = dim3(kAdamThreads);
  p.cfg.grid = dim3(unsigned(std::min<int64_t>(std::max<int64_t>(total_tiles, 1), kAdamMaxGrid)));
  return p;
}

// Raw entry point called by the glue (csrc/cuda/adam.cpp) once per table.  Returns nullptr on
// success, else the launch error.
template <class T> const char* adam_step(const AdamLaunch<T>& args, Stream stream, AdamPlan* plan_out = nullptr);

#if defined(PYOPS_DEVICE_CODE)

// Loads VEC consecutive elements starting at i (of n) into lanes, in the accumulation type:
// one vector access when allowed and fully in range, else element by element (zeros past n).
template <class T, int VEC>
__device__ __forceinline__ void adam_load(const T* ptr, int64_t i, int64_t n, bool vec_ok, acc_t<T> (&out)[VEC]) {
  if (vec_ok && i + VEC <= n) {
    const Vec<T, VEC> x = load_vec<T, VEC>(ptr + i);
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = to_acc(x.v[j]);
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) out[j] = i + j < n ? to_acc(ptr[i + j]) : acc_t<T>(0);
  }
}

template <class T, int VEC>
__device__ __forceinline__ void adam_store(T* ptr, int64_t i, int64_t n, bool vec_ok, const acc_t<T> (&in)[VEC]) {
  // (n - i >= VEC rather than adam_load's i + VEC <= n: recomputed here, not a predicate kept across the
  // update, which ptxas spilled to the stack (float, 128 registers) once these became single STG.E.128)
  if (vec_ok && n - i >= VEC) {
    Vec<T, VEC> x;
#pragma unroll
    for (int j = 0; j < VEC; ++j) x.v[j] = from_acc<T>(in[j]);
    store_vec_global<T, VEC>(ptr + i, x);
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      if (i + j < n) ptr[i + j] = from_acc<T>(in[j]);
  }
}

// One tile [base, base + tile) of one tensor: all loads, then the math, then all stores.
template <class T, int VEC>
__device__ __forceinline__ void adam_tile(const AdamTensor<T>& e, int64_t base, bool vec_ok,
                                          const AdamCoeffs<acc_t<T>>& c, const AdamHyper& h) {
  using A = acc_t<T>;
  const int64_t n = e.numel;
  A p[kAdamIlp][VEC], g[kAdamIlp][VEC], m[kAdamIlp][VEC], v[kAdamIlp][VEC], vm[kAdamIlp][VEC];
#pragma unroll
  for (int k = 0; k < kAdamIlp; ++k) {
    const int64_t i = base + (int64_t(k) * kAdamThreads + threadIdx.x) * VEC;
    adam_load<T, VEC>(e.param, i, n, vec_ok, p[k]);
    adam_load<T, VEC>(e.grad, i, n, vec_ok, g[k]);
    adam_load<A, VEC>(e.exp_avg, i, n, vec_ok, m[k]);
    adam_load<A, VEC>(e.exp_avg_sq, i, n, vec_ok, v[k]);
    if (h.amsgrad) adam_load<A, VEC>(e.max_exp_avg_sq, i, n, vec_ok, vm[k]);
    else
#pragma unroll
      for (int j = 0; j < VEC; ++j) vm[k][j] = A(0);
  }
#pragma unroll
  for (int k = 0; k < kAdamIlp; ++k)
#pragma unroll
    for (int j = 0; j < VEC; ++j) adam_update<A, A>(p[k][j], g[k][j], m[k][j], v[k][j], vm[k][j], c, h);
#pragma unroll
  for (int k = 0; k < kAdamIlp; ++k) {
    const int64_t i = base + (int64_t(k) * kAdamThreads + threadIdx.x) * VEC;
    adam_store<T, VEC>(e.param, i, n, vec_ok, p[k]);
    adam_store<A, VEC>(e.exp_avg, i, n, vec_ok, m[k]);
    adam_store<A, VEC>(e.exp_avg_sq, i, n, vec_ok, v[k]);
    if (h.amsgrad) adam_store<A, VEC>(e.max_exp_avg_sq, i, n, vec_ok, vm[k]);
  }
}

template <class T>
__global__ void __launch_bounds__(kAdamThreads) adam_multi_tensor_kernel(const AdamLaunch<T> args) {
  using A = acc_t<T>;
  constexpr int VEC = 16 / sizeof(A);
  constexpr int64_t TILE = int64_t(kAdamThreads) * VEC * kAdamIlp;
  const AdamHyper& h = args.hyper;
  const double lr = args.lr_ptr == nullptr ? h.lr
                    : args.lr_f64          ? *static_cast<const double*>(args.lr_ptr)
                                           : double(*static_cast<const float*>(args.lr_ptr));
  int ti = 0, cur = -1;
  double t = 0;  // this step's count for tensor cur
  bool vec_ok = false;
  AdamCoeffs<A> c{};
  for (int64_t tile = blockIdx.x; tile < args.total_tiles; tile += gridDim.x) {
    while (ti + 1 < args.n_tensors && tile >= args.tensors[ti + 1].first_tile) ++ti;
    const AdamTensor<T>& e = args.tensors[ti];
    if (ti != cur) {  // a new tensor for this block: its scalars and whether 16-byte accesses are legal
      cur = ti;
      if (args.capturable)
        t = (args.step_f64 ? *static_cast<const double*>(e.step_ptr) : double(*static_cast<const float*>(e.step_ptr))) + 1;
      else
        t = e.step;
      c = adam_coeffs<A>(h, t, lr);
      vec_ok = aligned_to(e.param, VEC * sizeof(T)) && aligned_to(e.grad, VEC * sizeof(T)) &&
               aligned_to(e.exp_avg, 16) && aligned_to(e.exp_avg_sq, 16) &&
               (!h.amsgrad || aligned_to(e.max_exp_avg_sq, 16));
    }
    adam_tile<T, VEC>(e, (tile - e.first_tile) * TILE, vec_ok, c, h);
    if (args.capturable) {
      // Arrival: once every tile of tensor ti is done (hence every block that works on ti has read
      // its step), the last block to arrive advances the step and resets the counter.
      __syncthreads();  // all threads of this block are past their read of the step
      if (threadIdx.x == 0) {
        const int64_t last = ti + 1 < args.n_tensors ? args.tensors[ti + 1].first_tile : args.total_tiles;
        __threadfence();
        if (atomicAdd(args.counters + ti, 1) == int(last - e.first_tile) - 1) {
          if (args.step_f64) *static_cast<double*>(e.step_ptr) = t;
          else *static_cast<float*>(e.step_ptr) = float(t);
          atomicExch(args.counters + ti, 0);
        }
      }
    }
  }
}

template <class T> const char* adam_step(const AdamLaunch<T>& args, Stream stream, AdamPlan* plan_out) {
  const AdamPlan p = adam_plan(args.total_tiles, sizeof(acc_t<T>));
  if (plan_out) *plan_out = p;
  PYOPS_LAUNCH(p.cfg, stream, adam_multi_tensor_kernel<T>)(args);
  return launch_status();
}

#if defined(PYOPS_INSTANTIATE)
#define PYOPS_ADAM_INSTANTIATE(T) template const char* adam_step<T>(const AdamLaunch<T>&, Stream, AdamPlan*);
PYOPS_FOR_EACH_FLOAT(PYOPS_ADAM_INSTANTIATE)
#endif

#endif  // PYOPS_DEVICE_CODE
#endif  // !PYOPS_ADAM_MATH_ONLY

}  // namespace pyops::cuda
