// adam.cpp -- CPU kernel of adam_step: one Adam/AdamW step for all tensors of a call in ONE
// parallel pass.
//
// The elements of all tensors are numbered one after another (tensor 0's, then tensor 1's, ...) and
// that flat range is cut into units of kAdamCpuUnit elements, which at::parallel_for splits among
// the threads in equal contiguous shares; each thread then runs the pieces of the tensors its share
// covers.  So 8 small tensors do not cost 8 parallel regions, one huge tensor still spreads over all
// threads, and every thread gets the same number of elements (within one unit), whatever the tensor
// sizes: the MLP's 200,704 + 42,058 elements split 121k / 121k, where a split by whole tensors or by
// 16K-element chunks of each tensor gave one thread 180k.  Each piece runs on
// at::vec::Vectorized<T> lanes (8 floats / 4 doubles per AVX2 instruction), the last partial vector
// with a masked load/store.  Per element: read p, g, m, v (and vmax), write p,
// m, v (and vmax) -- one pass, nothing else touched.
//
// The update is THE function of kernels/cuda/adam.cuh (adam_update), the same one the CUDA
// kernel runs per element: that header is included here without its device part
// (PYOPS_ADAM_MATH_ONLY), and AdamMath<Vectorized<T>> below gives it fma / sqrt / max / neg / div_by
// on SIMD vectors -- div_by, the division by the bias correction, through exact_div.h's FMAs in
// float32, since the square root and the divisions share the core's one divider (docs/adam.md).
// fp16/bf16 params are not supported on this backend (they run on cuda and triton).
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>

#if defined(CPU_CAPABILITY_AVX2)
#include "csrc/cpu/exact_div.h"
#endif

#include "csrc/adam.h"
#define PYOPS_ADAM_MATH_ONLY
#include "kernels/cuda/adam.cuh"

namespace pyops::cuda {
// The lane type of the CPU kernel: a SIMD vector of S.  at::vec::maximum propagates NaN like torch.maximum.
template <class S> struct AdamMath<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  static V fma(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
  static V sqrt(const V& a) { return a.sqrt(); }
  static V neg(const V& a) { return a.neg(); }
  static V max(const V& a, const V& b) { return at::vec::maximum(a, b); }
  static V div_by(const V& x, S b, S b_rcp) {
#if defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<S, float>) return V(pyops::cpu::div_by_scalar(x, b, b_rcp));
#endif
    (void)b_rcp;
    return x / V(b);
  }
};
}  // namespace pyops::cuda

namespace pyops::cpu {
namespace {

using at::vec::Vectorized;
using cuda::AdamCoeffs;

constexpr int64_t kAdamCpuUnit = 1024;     // elements per parallel work unit (4 KB per fp32 array)
constexpr int64_t kAdamCpuSerial = 32768;  // fewer elements in all: one thread (a parallel region costs more)

template <class T> struct AdamPtrs {
  T *p, *g, *m, *v, *vm;  // vm: nullptr without amsgrad
  int64_t n;
};

#if defined(CPU_CAPABILITY_AVX2)
// ---- exp_avg decaying towards 0 (docs/adam.md, "CPU: subnormal state in long runs")
// A parameter whose gradient is exactly 0 (a dead ReLU unit's weights) keeps its exp_avg m decaying by beta1.
// On the way down, the update's product ns m' (ns = -lr / (1 - beta1^t)) falls below 2^-126 once
// |m'| < 2^-126 / |ns|, and a few dozen steps later m itself goes subnormal, where it stays; every multiply with
// a subnormal operand or result takes a microcode assist (measured: 3 % subnormal m made the step 4x slower; m
// on its way down, 2.4 % of the elements one epoch in, 1.4x).  Call a lane idle when g = +-0 and 0 < |m| < Z,
// Z = 2^-125 / |ns| (|ns| clamped to [2^-26, 1], rounded up; so Z > 2^-126 and every subnormal m is below
// it, and so is every m whose m' >= m / 2 makes a subnormal product).  For idle lanes the update is computed
// exactly without subnormal arithmetic:
//   * m' = fma(w, g - m, m) = RN(m - w m) (the lerp's first form, w = 1 - beta1 < 0.5; g - m = -m exactly):
//     for normal m that one FMA (fnmadd(w, m, m)); for subnormal m, |m| = k 2^-149 with the integer k < 2^23
//     its bits, so |m'| = RN_int(k - w k) 2^-149: one FMA computes k - w k + 2^23, which lies in [2^23, 2^24)
//     where floats are the integers -- so its one rounding is the round-to-nearest-even to an integer;
//     k' >= 1 since w < 0.5, and m' has m's sign.  k' as bits is the subnormal m'.  |m'| <= |m| < Z.
//   * v' and the denominator do not depend on m: the lanes run the ordinary update with m = 0, which also
//     gives p' = p (AdamW: p (1 - lr wd)) plus a zero step.
//   * The true step RN(RN(ns m') / den) is below half an ulp of p' -- so p' + step rounds to p' -- when
//     |p'| den > |ns| Z 2^27 + 2^-123 =: thr (|RN(ns m')| <= |ns| Z (1 + 2^-24) + 2^-150, two factors of 2
//     of margin) and |p'| >= 2^-50 (a subnormal step is then far below half an ulp).  A vector where some
//     idle lane fails that runs the ordinary update on its original values, subnormals and all.
//   * A vector whose 8 lanes are all idle (a dead unit's row) skips the step's arithmetic: its denominator is
//     at least eps (v' >= 0 finite, eps > 0, sqrt(1 - beta2^t) > 0), so |p| >= max(2^-50, thr / eps)
//     proves p' = p without computing the denominator; p is not even stored.  Only m' and v' (and vmax')
//     are written, v' by adam_update itself (its unused results compile away).
// Lanes with a small m and a nonzero gradient run the ordinary update.  Not for Adam's L2 weight decay (it
// makes g nonzero) nor beta1 < 0.5 (the lerp's other form).  tests/test_adam.py compares with the emulated
// CUDA kernel bit for bit.

// the float bits without the sign
inline __m256i magnitude(__m256i bits) { return _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)); }
// |x| lanewise (the sign bit cleared)
inline __m256 abs_lanes(__m256 x) { return _mm256_castsi256_ps(magnitude(_mm256_castps_si256(x))); }
// lanes with 0 < |x| < the float whose bits are below (all bits set).  Integer compares: no assist
inline __m256i small_lanes(__m256i bits, __m256i below) {
  const __m256i mag = magnitude(bits);
  return _mm256_and_si256(_mm256_cmpgt_epi32(below, mag), _mm256_cmpgt_epi32(mag, _mm256_setzero_si256()));
}
// The small-m test: least <- min(least, |x|'s bits - 1) over 8 floats, unsigned (0 -> 0xffffffff, never the
// min): 4 instructions a vector; then one compare for all: some 0 < |x| < the float whose bits are below?
inline __m256i least_of(__m256i least, const float* x) {
  const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  return _mm256_min_epu32(least, _mm256_sub_epi32(magnitude(bits), _mm256_set1_epi32(1)));
}
inline bool any_below(__m256i least, __m256i below) {
  const __m256i limit = _mm256_sub_epi32(below, _mm256_set1_epi32(2));  // least <= below - 2: |x| < below
  return _mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_min_epu32(least, limit), least)) != 0;
}
// any of the n floats at x (n a multiple of 8) with 0 < |x| < the float whose bits are below?
inline bool has_small(const float* x, int64_t n, __m256i below) {
  __m256i least = _mm256_set1_epi32(-1);
  for (int64_t j = 0; j < n; j += 8) least = least_of(least, x + j);
  return any_below(least, below);
}
// idle lanes: g = +-0 and 0 < |m| < Z (all bits set)
inline __m256 idle_lanes(__m256 m, __m256 g, __m256i below_z) {
  const __m256i zero_g = _mm256_cmpeq_epi32(magnitude(_mm256_castps_si256(g)), _mm256_setzero_si256());
  return _mm256_castsi256_ps(_mm256_and_si256(small_lanes(_mm256_castps_si256(m), below_z), zero_g));
}
// RN(m - w m) for the idle lanes' m (see above), without subnormal arithmetic; other lanes: unused
inline __m256 idle_exp_avg(__m256 m, float w) {
  const __m256i bits = _mm256_castps_si256(m);
  const __m256i sub = small_lanes(bits, _mm256_set1_epi32(0x00800000));
  const __m256 k = _mm256_cvtepi32_ps(magnitude(bits));  // exact for subnormal m: < 2^23
  const __m256 two23 = _mm256_set1_ps(0x1p23f);
  const __m256 shifted = _mm256_fnmadd_ps(_mm256_set1_ps(w), k, _mm256_add_ps(k, two23));  // 2^23 + RN_int(k - w k)
  const __m256i k_new = _mm256_cvtps_epi32(_mm256_sub_ps(shifted, two23));                 // exact integers
  const __m256 m_sub = _mm256_castsi256_ps(_mm256_or_si256(k_new, _mm256_and_si256(bits, _mm256_set1_epi32(INT32_MIN))));
  const __m256 normal = _mm256_andnot_ps(_mm256_castsi256_ps(sub), m);  // subnormal lanes 0 here: no assist
  const __m256 m_normal = _mm256_fnmadd_ps(_mm256_set1_ps(w), normal, normal);
  return _mm256_blendv_ps(m_normal, m_sub, _mm256_castsi256_ps(sub));
}
// Per tensor: Z (as bits), thr and the whole-vector shortcut's least |p| (+inf: no shortcut), all rounded so
// that the proofs above hold for the floats used
struct IdleBounds {
  int32_t z_bits;
  float threshold, p_floor;
};
inline IdleBounds idle_bounds(float neg_step_size, float eps, float bc2_sqrt, bool decay) {
  const double ns = std::fabs(double(neg_step_size));
  const double clamped = ns >= 0x1p-26 ? std::min(ns, 1.0) : 0x1p-26;  // NaN: 2^-26
  const float z = std::nextafter(float(0x1p-125 / clamped), INFINITY);
  IdleBounds b;
  std::memcpy(&b.z_bits, &z, sizeof z);
  b.threshold = std::nextafter(float(ns * double(z) * 0x1p27 + 0x1p-123), INFINITY);  // NaN stays NaN: never met
  b.p_floor = INFINITY;
  if (!decay && eps > 0 && bc2_sqrt > 0 && std::isfinite(b.threshold)) {
    const float q = std::nextafter(float(double(b.threshold) / double(eps)), INFINITY);
    if (std::isfinite(q)) b.p_floor = std::max(q, 0x1p-50f);
  }
  return b;
}
// lanes with 0 <= x < +inf (NaN fails)
inline __m256 finite_nonnegative(__m256 x) {
  return _mm256_and_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ),
                       _mm256_cmp_ps(x, _mm256_set1_ps(INFINITY), _CMP_LT_OQ));
}
// every idle lane's true step rounds away against p (p, den: the update's results for those lanes)
inline bool param_unchanged_by(__m256 idle, __m256 p, __m256 den, float threshold) {
  const __m256 ap = abs_lanes(p);
  const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(_mm256_mul_ps(ap, den), _mm256_set1_ps(threshold), _CMP_GT_OQ),
                                  _mm256_cmp_ps(ap, _mm256_set1_ps(0x1p-50f), _CMP_GE_OQ));
  const int need = _mm256_movemask_ps(idle);
  return (_mm256_movemask_ps(ok) & need) == need;
}
#endif

// The ordinary loop of the idle path's caller (adam_range<..., kIdle = false> with a Lookahead): it updates
// blocks of kAdamBlock floats from `begin`, whose first block has no small m, and tests each next block's m
// while it updates the current one -- the test's loads and integer instructions fill slots the divider leaves
// idle -- until a block has a small m or no whole vector is left; `stop` is where it stopped.  Testing each
// block on its own before its update, in one loop with the idle path, took 27 % longer on a Zen 3 (step() on
// a fresh model's state, 205 against 162 us; docs/adam.md).
constexpr int64_t kAdamBlock = 16 * 8;  // 16 AVX2 vectors
std::atomic<int64_t> idle_blocks{0};     // adam_idle_blocks(): one add per adam_range call
struct Lookahead {
  int32_t below_bits;  // in: Z's bits
  int64_t stop;        // out
};

// [begin, end) of one tensor, SIMD lanes of Vectorized<T>::size(); the tail with partial loads.
// The flags are template arguments (kFlags: amsgrad, maximize, weight decay, decoupled, the lerp's form):
// adam_update's tests on them then fold away, where runtime flags left ~10 tests and branches in each
// iteration of a loop whose every instruction counts once the divider is relieved.  Pointers and scalars are
// copied into locals first: the compiler then knows the stores to p, m, v cannot change them.
template <class T, bool kAmsgrad, bool kMaximize, bool kDecay, bool kDecoupled, bool kWSmall, bool kIdle>
__attribute__((noinline)) void adam_range(const AdamPtrs<T>& t, int64_t begin, int64_t end,
                                          const AdamCoeffs<T>& coeffs, const AdamHyper& hyper,
                                          Lookahead* ahead = nullptr) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  AdamCoeffs<T> c = coeffs;
  c.w_small = kWSmall;
  AdamHyper h = hyper;
  h.amsgrad = kAmsgrad;
  h.maximize = kMaximize;
  h.decoupled_weight_decay = kDecoupled;
  if (!kDecay) h.weight_decay = 0;
  T* __restrict__ pp = t.p;
  const T* __restrict__ gp = t.g;
  T* __restrict__ mp = t.m;
  T* __restrict__ vp = t.v;
  T* __restrict__ vmp = t.vm;
  // one vector of lanes at i; cnt < W only for the last, partial vector of the range
  auto lanes = [&](int64_t i, int cnt) {
    V p = V::loadu(pp + i, cnt), g = V::loadu(gp + i, cnt), m = V::loadu(mp + i, cnt), v = V::loadu(vp + i, cnt);
    V vm = kAmsgrad ? V::loadu(vmp + i, cnt) : V(T(0));
    cuda::adam_update<V, T>(p, g, m, v, vm, c, h);
    p.store(pp + i, cnt);
    m.store(mp + i, cnt);
    v.store(vp + i, cnt);
    if (kAmsgrad) vm.store(vmp + i, cnt);
  };
  int64_t i = begin;
#if defined(CPU_CAPABILITY_AVX2)
  // the end of the block of whole vectors that starts at `at` (kAdamBlock floats, fewer at the range's end)
  [[maybe_unused]] auto block_end = [end](int64_t at) { return at + std::min(kAdamBlock, (end - at) / W * W); };
  // Vectors with idle lanes (above): exact, without subnormal arithmetic
  if constexpr (kIdle && std::is_same_v<T, float> && kWSmall && !(kDecay && !kDecoupled)) {
    const IdleBounds b = idle_bounds(c.neg_step_size, c.eps, c.bc2_sqrt, kDecay);
    const __m256i below_z = _mm256_set1_epi32(b.z_bits);
    // Blocks of 16 vectors: a block without a small m (one test over all of it) runs the ordinary loop,
    // adam_range<..., kIdle = false>, which tests the blocks ahead as it goes (Lookahead) and returns at the
    // first with a small m.  Testing only the first (and last) vector of a block missed the idle lanes that
    // dead columns scatter over fc2 and fc3, and the ordinary update then took the assists.
    int64_t idle = 0;  // blocks through the path below
    bool small = has_small(mp + i, block_end(i) - i, below_z);  // the first block
    for (; i + W <= end;) {
      if (!small) [[likely]] {
        Lookahead ahead{b.z_bits, i};
        adam_range<T, kAmsgrad, kMaximize, kDecay, kDecoupled, kWSmall, false>(t, i, end, coeffs, hyper, &ahead);
        i = ahead.stop;
        small = true;  // or no whole vector is left
        continue;
      }
      const int64_t stop = block_end(i), next = block_end(stop);  // this block [i, stop), the next [stop, next)
      ++idle;
      // Every vector of such a block takes the path below, idle lanes or not: a test per vector was a branch
      // the CPU mispredicted often where dead columns scatter idle lanes over most vectors (fc2, fc3).
      for (; i < stop; i += W) {
        V p = V::loadu(pp + i), g = V::loadu(gp + i), m = V::loadu(mp + i), v = V::loadu(vp + i);
        V vm = kAmsgrad ? V::loadu(vmp + i) : V(T(0));
        const __m256 idle = idle_lanes(m, g, below_z);
        const int idle_bits = _mm256_movemask_ps(idle);
        if (idle_bits == 0xFF && b.p_floor < INFINITY) {  // a whole idle vector: m', v' (vmax'), p kept
          V p_unused = p, m_unused = V(T(0)), v_new = v, vm_new = vm;
          cuda::adam_update<V, T>(p_unused, g, m_unused, v_new, vm_new, c, h);
          const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(abs_lanes(p), _mm256_set1_ps(b.p_floor), _CMP_GE_OQ),
                                          finite_nonnegative(kAmsgrad ? vm_new : v_new));
          if (_mm256_movemask_ps(ok) == 0xFF) {
            V(idle_exp_avg(m, c.w)).store(mp + i);
            v_new.store(vp + i);
            if (kAmsgrad) vm_new.store(vmp + i);
            continue;
          }
        }
        const __m256 m_idle = idle_exp_avg(m, c.w);
        m = _mm256_blendv_ps(m, _mm256_setzero_ps(), idle);  // 0 there: no small m reaches the FMAs
        V den;
        cuda::adam_update<V, T>(p, g, m, v, vm, c, h, &den);
        if (param_unchanged_by(idle, p, den, b.threshold)) [[likely]] {  // true without idle lanes
          p.store(pp + i);
          V(_mm256_blendv_ps(m, m_idle, idle)).store(mp + i);
          v.store(vp + i);
          if (kAmsgrad) vm.store(vmp + i);
          continue;
        }
        lanes(i, W);  // the ordinary update on the original values (nothing was stored)
      }
      small = has_small(mp + stop, next - stop, below_z);
    }
    if (idle) idle_blocks.fetch_add(idle, std::memory_order_relaxed);
  }
  if constexpr (!kIdle && std::is_same_v<T, float>) {
    if (ahead != nullptr) {  // the ordinary loop over clean blocks, each testing the next (Lookahead)
      const __m256i below_z = _mm256_set1_epi32(ahead->below_bits);
      for (;;) {
        const int64_t stop = block_end(i), ahead_n = block_end(stop) - stop;  // the next block's floats
        __m256i least = _mm256_set1_epi32(-1);
        for (int64_t j = 0; j < ahead_n; i += W, j += W) {
          lanes(i, W);
          least = least_of(least, mp + stop + j);
        }
        for (; i < stop; i += W) lanes(i, W);
        if (ahead_n == 0 || any_below(least, below_z)) break;
      }
      ahead->stop = i;
      return;  // whole vectors only: the caller updates the tail
    }
  }
#endif
  for (; i + W <= end; i += W) lanes(i, W);
  if (i < end) lanes(i, int(end - i));
}

// f(std::bool_constant<b>{}...) for the runtime bools b... (one instantiation of f per combination).
template <class F, class... Done> void with_bool_constants(F&& f, std::tuple<Done...>) { f(Done{}...); }
template <class F, class... Done, class... Rest>
void with_bool_constants(F&& f, std::tuple<Done...>, bool first, Rest... rest) {
  if (first) with_bool_constants(f, std::tuple<Done..., std::true_type>{}, rest...);
  else with_bool_constants(f, std::tuple<Done..., std::false_type>{}, rest...);
}

template <class T> void adam_cpu_kernel(const AdamArgs& a, const AdamHyper& h, const std::vector<double>& steps, double lr) {
  const size_t n = a.params.size();
  std::vector<AdamPtrs<T>> ts(n);
  std::vector<AdamCoeffs<T>> cs(n);
  std::vector<int64_t> start(n + 1, 0);  // tensor i owns the flat elements [start[i], start[i + 1])
  for (size_t i = 0; i < n; ++i) {
    auto ptr = [](const at::Tensor& x) { return static_cast<T*>(const_cast<void*>(x.const_data_ptr())); };
    ts[i] = {ptr(a.params[i]), ptr(a.grads[i]), ptr(a.exp_avgs[i]), ptr(a.exp_avg_sqs[i]),
             h.amsgrad ? ptr(a.max_exp_avg_sqs[i]) : nullptr, a.params[i].numel()};
    cs[i] = cuda::adam_coeffs<T>(h, steps[i], lr);
#if defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<T, float>) cs[i].bc2_rcp = div_by_scalar_rcp(cs[i].bc2_sqrt);  // 0: divide
#endif
    start[i + 1] = start[i] + ts[i].n;
  }
  const int64_t total = start[n];
  const int64_t units = (total + kAdamCpuUnit - 1) / kAdamCpuUnit;
  // at::parallel_for runs [begin, end) on the calling thread when it is shorter than the grain
  const int64_t grain = total < kAdamCpuSerial ? units + 1 : 1;
  // the lerp's form depends on beta1 alone: the same for every tensor of the call
  with_bool_constants([&](auto amsgrad, auto maximize, auto decay, auto decoupled, auto w_small) {
    at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
      const int64_t lo = begin * kAdamCpuUnit, hi = std::min(end * kAdamCpuUnit, total);
      // the last tensor starting at or before lo, then every tensor that starts before hi
      size_t ti = size_t(std::upper_bound(start.begin(), start.end(), lo) - start.begin()) - 1;
      for (; ti < n && start[ti] < hi; ++ti) {
        const int64_t b = std::max(lo, start[ti]) - start[ti], e = std::min(hi, start[ti + 1]) - start[ti];
        if (b < e)  // empty tensors own no elements
          adam_range<T, decltype(amsgrad)::value, decltype(maximize)::value, decltype(decay)::value,
                     decltype(decoupled)::value, decltype(w_small)::value, true>(ts[ti], b, e, cs[ti], h);
      }
    });
  }, std::tuple<>{}, h.amsgrad, h.maximize, h.weight_decay != 0, h.decoupled_weight_decay, cs[0].w_small);
}

void adam_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                   at::TensorList max_exp_avg_sqs, at::TensorList state_steps, const std::optional<at::Tensor>& lr_tensor,
                   const std::optional<at::Tensor>& counters, bool capturable, at::ArrayRef<double> hparams) {
  const AdamArgs a(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters,
                   capturable, hparams);
  check_adam(a, /*allow_half=*/false);
  if (params.empty()) return;
  TORCH_CHECK(params[0].is_cpu(), kAdamOp, ": the CPU kernel got params on ", params[0].device());
  // On the CPU, "the device" is the host: steps and lr are read and advanced here in both modes.
  const std::vector<double> steps = adam_advance_host_steps(state_steps);
  AdamHyper h = a.h;
  if (lr_tensor) h.lr = read_scalar(*lr_tensor);
  if (params[0].scalar_type() == at::kDouble) adam_cpu_kernel<double>(a, h, steps, h.lr);
  else adam_cpu_kernel<float>(a, h, steps, h.lr);
}
static_assert(std::is_same_v<decltype(adam_step_cpu), AdamStepSig>);

}  // namespace

TORCH_LIBRARY_IMPL(pyops, CPU, m) { m.impl("adam_step", &adam_step_cpu); }
// A sparse gradient sends the call to the SparseCPU key: registered so that the checks answer with
// "Adam does not support sparse gradients" instead of the dispatcher's "could not run".
TORCH_LIBRARY_IMPL(pyops, SparseCPU, m) { m.impl("adam_step", &adam_step_cpu); }

int64_t adam_idle_blocks() { return idle_blocks.load(std::memory_order_relaxed); }

}  // namespace pyops::cpu
