// cross_entropy.cpp -- CPU kernels of nll_loss and the fused cross_entropy, forward and backward.
// The math and the backward derivation are in kernels/cuda/cross_entropy.cuh; the formulas below are the
// same, restated for at::vec.
//
// Rows (predictions) are independent: at::parallel_for splits them over threads.  A row with unit class
// stride (every (N, C) and (C,) input) is vectorized (at::vec: 8 floats / 4 doubles per AVX2 instruction,
// exp from SLEEF):
//   forward   one streaming pass per row: every SIMD lane keeps a running (max, sum of exp), rescaled only
//             when its max moves, so one exp per element and each row read once; the lanes merge at the
//             end.  Label smoothing adds sum w_c (x_c - ref) and sum w_c in the same pass.
//             Kept per row: lse (8 bytes, a double: see cross_entropy.cuh); nothing of size N x C.
//   backward  one pass: dx = coef * exp((x - hi) - lo) - per_w * w_c (lse = hi + lo), then dx[t] -= at_t.  The
//             gradient is the one large fresh buffer: advise_huge_pages (csrc/cross_entropy.h) makes its
//             first touch cost 2 MiB page faults instead of 4 KiB ones.
// A row whose classes are strided (an (N, C, d1, ...) input) takes a scalar loop with the same math.
// mean/sum: per-row (loss, weight) pairs, then a serial sum in double on the calling thread, so the
// result does not depend on the thread count.
// Out-of-range targets raise IndexError (synchronously, from inside the row loop).
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "csrc/cross_entropy.h"

namespace pyops::cpu {
namespace {

using at::vec::Vectorized;

// Rows per parallel task: ~32K elements of work per task, so small problems run inline.
inline int64_t loss_row_grain(int64_t classes) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(classes, 1)); }

template <class T> struct RowTarget {
  int64_t t;   // -1 when ignored
  T w;         // w_t (1 without weight), 0 when ignored
};

template <class T>
inline RowTarget<T> read_target(const char* op, const int64_t* target, int64_t r, const T* w, int64_t classes,
                                int64_t ignore_index) {
  const int64_t t = target[r];
  if (t == ignore_index) return {-1, T(0)};
  check_target_index(op, t, classes, ignore_index);
  return {t, w ? w[t] : T(1)};
}

// Input rows: row r = n*D + j starts at x + n*ld_n + j*ld_d; class c is c*ld_c further.
template <class T> struct InputRows {
  const T* x;
  int64_t inner, ld_n, ld_d, ld_c;
  const T* row(int64_t r) const { return x + (inner == 1 ? r * ld_n : (r / inner) * ld_n + (r % inner) * ld_d); }
};

// ---- forward statistics of one row: (m, s) with lse = m + log s; with smoothing, d = sum_c w_c (x_c - ref).
// (W = sum_c w_c is the same for every row: computed once per call.)
template <class T> struct RowStats {
  T m = -std::numeric_limits<T>::infinity(), s = 0, d = 0;
};

// (m, s) += one value v: the rule of online_add in kernels/cuda/common.cuh -- a larger v rescales the sum,
// -inf adds nothing, NaN lands in the sum and propagates.  A host definition of its own, under its own name:
// common.cuh is device code (its exp_ is the device's, it needs the CUDA headers, which the CPU-only build
// lacks), and the CPU merges its vector lanes differently (row_stats_contiguous, below).
template <class T> inline void host_online_add(T& m, T& s, T v) {
  if (v > m) {
    s = s * std::exp(m - v) + T(1);
    m = v;
  } else if (v != -std::numeric_limits<T>::infinity()) {
    s += std::exp(v - m);
  }
}

// exp for the hot loops: float uses ATen's exp_u20 (polynomial, <= 20 ulp, several times cheaper than SLEEF's
// 1-ulp expf; ~1e-6 relative, inside the float32 tolerances), double the SLEEF exp.  exp_u20 clamps NaN and
// +inf arguments to finite values, so callers use it only where arguments are finite or -inf (-inf gives 0).
template <class T> inline Vectorized<T> fast_exp(const Vectorized<T>& v) { return v.exp_u20(); }

// Lane-wise online (max, sum of exp): add one vector.  A lane's sum is rescaled only when its max moves --
// rare after the first few vectors of a row -- so the common step is one exp per element.  Maxima start at
// the lowest finite value, not -inf, so exp(v - m) never sees -inf - -inf; a NaN makes its lane's max NaN,
// which reaches lse through the final merge.
template <class T> inline void online_add_vec(Vectorized<T>& m, Vectorized<T>& s, const Vectorized<T>& v) {
  using V = Vectorized<T>;
  const V mn = at::vec::maximum(m, v);
  if ((mn != m).zero_mask() != (1 << V::size()) - 1) {  // some lane's max moved (or is NaN)
    s = s * fast_exp(m - mn);
    m = mn;
  }
  s += fast_exp(v - m);
}

// One pass over a unit-stride row, two independent sets of lanes (2 x 8 floats): the row is read once,
// streaming, with the exps overlapping the loads.  Label smoothing adds sum w_c (x_c - ref).
template <class T, bool SMOOTH> RowStats<T> row_stats_contiguous(const T* x, const T* w, int64_t classes, T ref) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const V lowest(std::numeric_limits<T>::lowest()), vr(ref);
  V m0 = lowest, m1 = lowest, s0(0), s1(0), d(0);
  auto smooth = [&](const V& v, int64_t c) {  // v = x[c .. c+W) - ref
    d += w ? V::loadu(w + c) * v : v;
  };
  int64_t c = 0;
  for (; c + 2 * W <= classes; c += 2 * W) {
    const V a = V::loadu(x + c), b = V::loadu(x + c + W);
    online_add_vec(m0, s0, a);
    online_add_vec(m1, s1, b);
    if constexpr (SMOOTH) {
      smooth(a - vr, c);
      smooth(b - vr, c + W);
    }
  }
  for (; c < classes; c += W) {  // at most two more vectors, the last one partial
    const int64_t n = std::min(W, classes - c);
    const V raw = V::loadu(x + c, n);  // lanes past n are 0
    online_add_vec(m0, s0, n == W ? raw : V::set(V(-std::numeric_limits<T>::infinity()), raw, n));
    if constexpr (SMOOTH) {
      const V xs = V::set(V(0), raw - vr, n);
      d += w ? V::loadu(w + c, n) * xs : xs;
    }
  }
  // merge the lanes against the row max M: s = sum_lanes s_l exp(m_l - M).  Exact exp here (a few per row):
  // a NaN or +inf max then gives a NaN sum, so lse is NaN as in PyTorch; all -inf: M = lowest, s = 0, lse = -inf.
  auto vmax = [](const V& p, const V& q) { return at::vec::maximum(p, q); };
  auto vsum = [](const V& p, const V& q) { return p + q; };
  const V m = at::vec::maximum(m0, m1);
  RowStats<T> st;
  st.m = at::vec::vec_reduce_all(vmax, m);
  const V big_m(st.m);
  st.s = at::vec::vec_reduce_all(vsum, s0 * (m0 - big_m).exp() + s1 * (m1 - big_m).exp());
  if constexpr (SMOOTH) st.d = at::vec::vec_reduce_all(vsum, d);
  return st;
}

template <class T, bool SMOOTH> RowStats<T> row_stats_strided(const T* x, int64_t ld_c, const T* w, int64_t classes, T ref) {
  RowStats<T> st;
  for (int64_t c = 0; c < classes; ++c) {
    const T v = x[c * ld_c];
    host_online_add(st.m, st.s, v);
    if constexpr (SMOOTH) st.d += (w ? w[c] : T(1)) * (v - ref);
  }
  return st;
}

// mean/sum of the per-row (loss, weight) pairs, in double, into loss (input dtype) and total_weight.
template <class T> void reduce_rows(const std::vector<T>& part, int64_t rows, int64_t reduction, LossForward& o) {
  double loss = 0, w = 0;
  for (int64_t r = 0; r < rows; ++r) {
    loss += part[r];
    w += part[rows + r];
  }
  o.loss.data_ptr<T>()[0] = T(reduction == kReduceMean ? loss / w : loss);  // all rows ignored: 0 / 0 = NaN
  o.total_weight.data_ptr<T>()[0] = T(w);
  o.total_weight.data_ptr<T>()[1] = T(1) / T(w);
}

// Per-row loss into `rows_out` (reduction none) or `part` [2, rows].
template <class T> inline void store_row_loss(int64_t r, int64_t rows, T loss, T w, T* rows_out, std::vector<T>& part) {
  if (rows_out) {
    rows_out[r] = loss;
  } else {
    part[r] = loss;
    part[rows + r] = w;
  }
}

template <class T> T sum_weight(const T* w, int64_t classes) {
  double s = 0;
  for (int64_t c = 0; c < classes; ++c) s += w[c];
  return T(s);
}

// ---- small C: SIMD lanes across rows.  With C = 10 a row is 1.25 vectors, and per-row vector code spends its
// time in partial vectors and horizontal reductions.  Instead a group of L = Vectorized<T>::size() rows is
// transposed into a [C][L] buffer in L1 (scalar moves, any input strides) and every step is a full vector over
// L rows: a max pass, an exp-sum pass, one vector log.  Only when every lane's max is finite (else a NaN or
// +/-inf row: the per-row path); returns false then.
constexpr int64_t kLanesMaxC = 32;

template <class T>
void load_group(const InputRows<T>& in, int64_t classes, int64_t r0, int64_t n, T* buf) {
  constexpr int64_t L = Vectorized<T>::size();
  for (int64_t i = 0; i < L; ++i) {
    const T* xr = in.row(r0 + std::min(i, n - 1));  // lanes past n repeat the last row (results unused)
    for (int64_t c = 0; c < classes; ++c) buf[c * L + i] = xr[c * in.ld_c];
  }
}

template <class T> bool all_finite(const Vectorized<T>& v) {
  return (v - v).zero_mask() == (1 << Vectorized<T>::size()) - 1;  // x - x is 0 exactly when x is finite
}

template <class T, bool SMOOTH>
bool group_stats_lanes(const InputRows<T>& in, int64_t classes, const T* w, int64_t r0, int64_t n, const T* ref,
                       T* max, T* log_sum, T* d) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  alignas(64) T buf[kLanesMaxC * L];
  load_group(in, classes, r0, n, buf);
  V m(-std::numeric_limits<T>::infinity());
  for (int64_t c = 0; c < classes; ++c) m = at::vec::maximum(m, V::loadu(buf + c * L));
  if (!all_finite(m)) return false;
  V s(0);
  for (int64_t c = 0; c < classes; ++c) s += fast_exp(V::loadu(buf + c * L) - m);  // arguments <= 0 or -inf
  m.store(max);
  s.log().store(log_sum);
  if constexpr (SMOOTH) {
    const V vr = V::loadu(ref);
    V acc(0);
    for (int64_t c = 0; c < classes; ++c) acc += V(w ? w[c] : T(1)) * (V::loadu(buf + c * L) - vr);
    acc.store(d);
  }
  return true;
}

// What the cross-entropy kernels read besides the logits' values.
template <class T> struct LossInputs {
  InputRows<T> in;
  const int64_t* target;
  const T* w;  // nullptr: no weight
  int64_t C;
  T wsum;      // W = sum_c w_c (C without a weight), the same for every row
  LossInputs(const LossProblem& p, bool smooth)
      : in{p.input.data_ptr<T>(), p.D, p.ld_n, p.ld_d, p.ld_c},
        target(p.target.data_ptr<int64_t>()),
        w(p.weight.defined() ? p.weight.data_ptr<T>() : nullptr),
        C(p.C),
        wsum(smooth && w ? sum_weight(w, C) : T(C)) {}
};

template <class T, bool SMOOTH>
void cross_entropy_forward_kernel(const LossProblem& p, int64_t ignore_index, T eps, T* rows_out,
                                  std::vector<T>& part, double* lse) {
  constexpr int64_t L = Vectorized<T>::size();
  const LossInputs<T> li(p, SMOOTH);
  const auto& [in, target, w, C, wsum] = li;
  at::parallel_for(0, p.rows, loss_row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t r0 = begin; r0 < end; r0 += L) {  // groups of L rows
      const int64_t n = std::min(L, end - r0);
      RowTarget<T> tg[L];
      alignas(64) T xt[L], ref[L], mx[L], ls[L], d[L];
      for (int64_t i = 0; i < L; ++i) {
        if (i < n) {
          tg[i] = read_target("cross_entropy", target, r0 + i, w, C, ignore_index);
          xt[i] = tg[i].t >= 0 ? in.row(r0 + i)[tg[i].t * p.ld_c] : T(0);
        } else {
          xt[i] = 0;
        }
        ref[i] = std::isfinite(xt[i]) ? xt[i] : T(0);  // shift of the smoothing sum (cross_entropy.cuh)
      }
      if (C > kLanesMaxC || !group_stats_lanes<T, SMOOTH>(in, C, w, r0, n, ref, mx, ls, d)) {
        for (int64_t i = 0; i < n; ++i) {
          const T* xr = in.row(r0 + i);
          const RowStats<T> st = p.ld_c == 1 ? row_stats_contiguous<T, SMOOTH>(xr, w, C, ref[i])
                                             : row_stats_strided<T, SMOOTH>(xr, p.ld_c, w, C, ref[i]);
          mx[i] = st.m;
          ls[i] = std::log(st.s);
          d[i] = st.d;
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        // lse in double (cross_entropy.cuh): lse - x_t is then exact to T however large the logits
        const double l = double(mx[i]) + double(ls[i]);
        lse[r0 + i] = l;
        T loss = 0;
        if (tg[i].t >= 0) {
          loss = (T(1) - eps) * tg[i].w * T(l - double(xt[i]));
          if constexpr (SMOOTH) loss += eps / T(C) * (T(l - double(ref[i])) * wsum - d[i]);
        }
        store_row_loss(r0 + i, p.rows, loss, tg[i].w, rows_out, part);
      }
    }
  });
}

// ---- backward of one row: dx_c = coef * exp(x_c - lse) - per_w * w_c, then dx_t -= at_t
template <class T> struct RowGrad {
  T coef, at_t, per_w;
  int64_t t;  // -1: ignored
};

// The forward's double lse as hi + lo in T: (x - hi) - lo is x - lse to T's precision for every logit that
// matters (x - hi is exact within a factor 2 of hi), so p_c = exp(x_c - lse) is as accurate as exp(x_c - m) / s.
// An infinite lse (a row of -inf only, or holding +inf) gives lo = NaN: the row's gradient is NaN, as PyTorch's.
template <class T> struct SplitLse {
  T hi, lo;
};
template <class T> SplitLse<T> split_lse(double lse) { return {T(lse), T(lse - double(T(lse)))}; }

template <class T, bool SMOOTH>
void row_grad_contiguous(const T* x, const T* w, T* gx, int64_t classes, SplitLse<T> lse, const RowGrad<T>& g) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const V vh(lse.hi), vlo(lse.lo), vc(g.coef), vpw(g.per_w);
  const bool fast = std::isfinite(lse.hi);  // then x - lse is finite or -inf (else +inf/NaN logits: exact exp)
  auto one = [&](int64_t c, int64_t n) {  // n == W: full vector
    const V z = ((n == W ? V::loadu(x + c) : V::loadu(x + c, n)) - vh) - vlo;
    V d = vc * (fast ? fast_exp(z) : z.exp());
    if constexpr (SMOOTH) d = d - vpw * (w ? (n == W ? V::loadu(w + c) : V::loadu(w + c, n)) : V(1));
    if (n == W) d.store(gx + c);
    else d.store(gx + c, n);
  };
  int64_t c = 0;
  for (; c + 2 * W <= classes; c += 2 * W) {
    one(c, W);
    one(c + W, W);
  }
  for (; c + W <= classes; c += W) one(c, W);
  if (c < classes) one(c, classes - c);
  if (g.t >= 0) gx[g.t] -= g.at_t;
}

template <class T, bool SMOOTH>
void row_grad_strided(const T* x, int64_t ld_c, const T* w, T* gx, int64_t gld_c, int64_t classes,
                      SplitLse<T> lse, const RowGrad<T>& g) {
  for (int64_t c = 0; c < classes; ++c) {
    T d = g.coef * std::exp((x[c * ld_c] - lse.hi) - lse.lo);
    if (c == g.t) d -= g.at_t;
    if constexpr (SMOOTH) d -= g.per_w * (w ? w[c] : T(1));
    gx[c * gld_c] = d;
  }
}

// Small C, lanes across rows (see group_stats_lanes): dx for L rows per vector step, written back through the
// [C][L] buffer.  Needs every lane's lse finite (else false: the per-row path).
template <class T, bool SMOOTH>
bool group_grad_lanes(const InputRows<T>& in, int64_t classes, const T* w, int64_t r0, int64_t n, const T* lse_hi,
                      const T* lse_lo, const RowGrad<T>* rg, T* gx, const InputRows<T>& out) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  const V vh = V::loadu(lse_hi), vlo = V::loadu(lse_lo);
  if (!all_finite(vh)) return false;
  alignas(64) T buf[kLanesMaxC * L], coef[L], at_t[L], per_w[L], t[L];
  for (int64_t i = 0; i < L; ++i) {
    const RowGrad<T>& g = rg[std::min(i, n - 1)];
    coef[i] = g.coef;
    at_t[i] = g.at_t;
    per_w[i] = g.per_w;
    t[i] = T(g.t);  // a class index < 32: exact in any float type; -1 when ignored
  }
  load_group(in, classes, r0, n, buf);
  const V vc = V::loadu(coef), vat = V::loadu(at_t), vpw = V::loadu(per_w), vt = V::loadu(t);
  for (int64_t c = 0; c < classes; ++c) {
    V d = vc * fast_exp((V::loadu(buf + c * L) - vh) - vlo) - V::blendv(V(0), vat, vt == V(T(c)));
    if constexpr (SMOOTH) d = d - vpw * V(w ? w[c] : T(1));
    d.store(buf + c * L);
  }
  for (int64_t i = 0; i < n; ++i) {
    T* gxr = gx + (out.row(r0 + i) - out.x);
    for (int64_t c = 0; c < classes; ++c) gxr[c * out.ld_c] = buf[c * L + i];
  }
  return true;
}

template <class T, bool SMOOTH>
void cross_entropy_backward_kernel(const LossProblem& p, const T* grad, int64_t ld_grad, T inv_total,
                                   int64_t ignore_index, T eps, const double* lse, T* gx) {
  constexpr int64_t L = Vectorized<T>::size();
  const LossInputs<T> li(p, SMOOTH);
  const auto& [in, target, w, C, wsum] = li;
  const InputRows<T> out{gx, p.D, p.C * p.D, 1, p.D};  // gx: contiguous [N, C, D]
  at::parallel_for(0, p.rows, loss_row_grain(C), [&](int64_t begin, int64_t end) {
    for (int64_t r0 = begin; r0 < end; r0 += L) {  // groups of L rows
      const int64_t n = std::min(L, end - r0);
      RowGrad<T> rg[L];
      for (int64_t i = 0; i < n; ++i) {
        const RowTarget<T> tg = read_target("cross_entropy_backward", target, r0 + i, w, C, ignore_index);
        // an ignored row gets exactly 0, even when the mean's total weight is 0 (inv_total = inf)
        const T g = tg.t >= 0 ? grad[(r0 + i) * ld_grad] * inv_total : T(0);
        const T a = (T(1) - eps) * tg.w, b = eps / T(C);
        rg[i] = {g * (a + b * wsum), g * a, g * b, tg.t};
      }
      alignas(64) T hi[L], lo[L];  // the group's lse, split (lanes past n repeat the last row)
      for (int64_t i = 0; i < L; ++i) {
        const SplitLse<T> l = split_lse<T>(lse[r0 + std::min(i, n - 1)]);
        hi[i] = l.hi;
        lo[i] = l.lo;
      }
      if (C <= kLanesMaxC && group_grad_lanes<T, SMOOTH>(in, C, w, r0, n, hi, lo, rg, gx, out)) continue;
      for (int64_t i = 0; i < n; ++i) {
        T* gxr = gx + (out.row(r0 + i) - out.x);
        const SplitLse<T> l{hi[i], lo[i]};
        if (p.ld_c == 1 && p.D == 1) row_grad_contiguous<T, SMOOTH>(in.row(r0 + i), w, gxr, C, l, rg[i]);
        else row_grad_strided<T, SMOOTH>(in.row(r0 + i), p.ld_c, w, gxr, p.D, C, l, rg[i]);
      }
    }
  });
}

template <class F> void dispatch_cpu_float(at::ScalarType st, F&& f) {
  if (st == at::kDouble) f(double{});
  else f(float{});  // dtype was checked: float32 or float64
}

template <class T> T inverse_total_weight(const at::Tensor& total_weight, int64_t reduction) {
  return reduction == kReduceMean ? total_weight.data_ptr<T>()[1] : T(1);  // (W_t, 1 / W_t) from the forward
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cross_entropy_fwd(const at::Tensor& input, const at::Tensor& target,
                                                                 const std::optional<at::Tensor>& weight,
                                                                 int64_t reduction, int64_t ignore_index,
                                                                 double label_smoothing) {
  const char* op = "cross_entropy";
  const LossProblem p = loss_problem(op, input, target, weight, reduction, /*allow_half=*/false);
  check_label_smoothing(op, label_smoothing);
  LossForward o = loss_forward_outputs(p, reduction, /*with_lse=*/true, /*with_partials=*/false);
  dispatch_cpu_float(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    std::vector<T> part(reduction == kReduceNone ? 0 : 2 * p.rows);
    T* rows_out = reduction == kReduceNone ? o.loss.data_ptr<T>() : nullptr;
    auto run = label_smoothing != 0.0 ? cross_entropy_forward_kernel<T, true> : cross_entropy_forward_kernel<T, false>;
    run(p, ignore_index, T(label_smoothing), rows_out, part, o.lse.data_ptr<double>());
    if (reduction != kReduceNone) reduce_rows(part, p.rows, reduction, o);
  });
  return {o.loss, o.lse, o.total_weight};
}

at::Tensor cross_entropy_bwd(const at::Tensor& grad_loss, const at::Tensor& input, const at::Tensor& target,
                             const std::optional<at::Tensor>& weight, const at::Tensor& lse,
                             const at::Tensor& total_weight, int64_t reduction, int64_t ignore_index,
                             double label_smoothing) {
  const char* op = "cross_entropy_backward";
  check_label_smoothing(op, label_smoothing);
  const LossBackward b = loss_backward_setup(op, grad_loss, input, target, weight, total_weight, reduction, false);
  check_lse(op, b.p, lse);
  dispatch_cpu_float(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    auto run = label_smoothing != 0.0 ? cross_entropy_backward_kernel<T, true> : cross_entropy_backward_kernel<T, false>;
    run(b.p, b.grad.data_ptr<T>(), b.ld_grad, inverse_total_weight<T>(total_weight, reduction), ignore_index,
        T(label_smoothing), lse.data_ptr<double>(), b.grad_input.data_ptr<T>());
  });
  return b.grad_input;
}

// ---- nll_loss: the forward gathers one value per row; the backward writes -g w_t at the target, 0 elsewhere
std::tuple<at::Tensor, at::Tensor> nll_loss_fwd(const at::Tensor& input, const at::Tensor& target,
                                                const std::optional<at::Tensor>& weight, int64_t reduction,
                                                int64_t ignore_index) {
  const char* op = "nll_loss";
  const LossProblem p = loss_problem(op, input, target, weight, reduction, /*allow_half=*/false);
  LossForward o = loss_forward_outputs(p, reduction, /*with_lse=*/false, /*with_partials=*/false);
  dispatch_cpu_float(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const InputRows<T> in{p.input.data_ptr<T>(), p.D, p.ld_n, p.ld_d, p.ld_c};
    const int64_t* tgt = p.target.data_ptr<int64_t>();
    const T* w = p.weight.defined() ? p.weight.data_ptr<T>() : nullptr;
    std::vector<T> part(reduction == kReduceNone ? 0 : 2 * p.rows);
    T* rows_out = reduction == kReduceNone ? o.loss.data_ptr<T>() : nullptr;
    at::parallel_for(0, p.rows, 32768, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const RowTarget<T> tg = read_target(op, tgt, r, w, p.C, ignore_index);
        store_row_loss(r, p.rows, tg.t >= 0 ? -tg.w * in.row(r)[tg.t * p.ld_c] : T(0), tg.w, rows_out, part);
      }
    });
    if (reduction != kReduceNone) reduce_rows(part, p.rows, reduction, o);
  });
  return {o.loss, o.total_weight};
}

at::Tensor nll_loss_bwd(const at::Tensor& grad_loss, const at::Tensor& input, const at::Tensor& target,
                        const std::optional<at::Tensor>& weight, const at::Tensor& total_weight, int64_t reduction,
                        int64_t ignore_index) {
  const char* op = "nll_loss_backward";
  const LossBackward b = loss_backward_setup(op, grad_loss, input, target, weight, total_weight, reduction, false);
  const LossProblem& p = b.p;
  const int64_t ld_grad = b.ld_grad;
  dispatch_cpu_float(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* grad = b.grad.data_ptr<T>();
    const T inv_total = inverse_total_weight<T>(total_weight, reduction);
    const int64_t* tgt = p.target.data_ptr<int64_t>();
    const T* w = p.weight.defined() ? p.weight.data_ptr<T>() : nullptr;
    T* out = b.grad_input.data_ptr<T>();
    const int64_t CD = p.C * p.D;
    at::parallel_for(0, p.N, loss_row_grain(CD), [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {  // sample n: the block [C, D] of gx
        T* gn = out + n * CD;
        std::fill(gn, gn + CD, T(0));
        for (int64_t j = 0; j < p.D; ++j) {
          const int64_t r = n * p.D + j;
          const RowTarget<T> tg = read_target(op, tgt, r, w, p.C, ignore_index);
          if (tg.t >= 0) gn[tg.t * p.D + j] = -grad[r * ld_grad] * inv_total * tg.w;
        }
      }
    });
  });
  return b.grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyops, CPU, m) {
  m.impl("nll_loss_fwd", &nll_loss_fwd);
  m.impl("nll_loss_bwd", &nll_loss_bwd);
  m.impl("cross_entropy_fwd", &cross_entropy_fwd);
  m.impl("cross_entropy_bwd", &cross_entropy_bwd);
}

}  // namespace pyops::cpu
