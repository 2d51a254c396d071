// test_cross_entropy.cpp -- kernels/cuda/cross_entropy.cuh on the emulator, through cross_entropy_forward /
// cross_entropy_backward / nll_loss_forward / nll_loss_backward (the launch functions csrc/cuda/cross_entropy.cpp
// calls; they run cross_entropy_plan and PYOPS_LAUNCH), against double-precision references.
//
// Every kernel: the fused cross-entropy forward and backward, warp per row and block per row, vectorized and
// scalar, with and without label smoothing; loss_reduce_kernel (mean, sum); nll_loss forward and backward
// (vectorized and scalar).  Every layout the glue passes: (N, C) inputs (padded rows, misaligned pointers,
// transposed: class stride != 1), a (C,) input, (N, C, D) inputs with an inner dim (contiguous: class stride D;
// channels-last: unit class stride, vectorizable), an empty batch.  float, double, __half, __nv_bfloat16;
// class weights absent / present; ignore_index on some rows (a negative index, and a valid class index) and on
// every row; reductions none / mean / sum.  The forward's lse and total_weight (W_t, 1/W_t) feed the backward,
// as in the glue.  Finally the device-side target check (PYOPS_DEVICE_REQUIRE in read_target).
#include <limits>
#include <stdexcept>

#include "harness.h"
#include "kernels/cuda/cross_entropy.cuh"

namespace {
using namespace harness;
using pyops::cuda::ClassRows;
using pyops::cuda::CrossEntropyPlan;
using pyops::cuda::CrossEntropyVariant;
using pyops::cuda::LossOutput;
template <class T> using acc = pyops::cuda::acc_t<T>;

enum class Reduction { None, Mean, Sum };
const char* reduction_name(Reduction r) { return r == Reduction::None ? "none" : r == Reduction::Mean ? "mean" : "sum"; }

// An input seen as [N, C, D] and where its elements sit (csrc/cross_entropy.h loss_problem: a (C,) input is
// N = 1 with ld_n 0; an (N, C) input has D = 1).
struct Shape {
  const char* name;
  int64_t N, C, D;
  int64_t ld_n, ld_d, ld_c;  // element strides of the input
  int offset;                // elements before the data: 1 misaligns every pointer
  bool grad_like_input;      // cross-entropy gradient in the input's layout (padding, offset); else contiguous
                             // [N, C, D] as the glue allocates it
  int64_t ld_grad;           // stride of grad_loss for reduction none
  int64_t ignore_index;
  CrossEntropyVariant variant;
  bool fwd_vec, bwd_vec;  // the cross-entropy plan must choose vector accesses
};

ClassRows input_rows(const Shape& s) { return {s.N * s.D, s.C, s.D, s.ld_n, s.ld_d, s.ld_c}; }
ClassRows contiguous_rows(const Shape& s) { return {s.N * s.D, s.C, s.D, s.C * s.D, 1, s.D}; }

// Element (row r = n*D + j, class c) of a tensor laid out as l.
int64_t element(const ClassRows& l, int64_t r, int64_t c) {
  return (r / l.inner) * l.ld_n + (r % l.inner) * l.ld_d + c * l.ld_c;
}
// Elements the layout spans (strides are non-negative: the last row's last class is the farthest).
int64_t span(const ClassRows& l) { return l.rows && l.classes ? element(l, l.rows - 1, l.classes - 1) + 1 : 0; }

// An [N, C, D] tensor in a Matrix of exactly the elements its layout spans (ASan sees any access past them);
// every element the layout does not name keeps Matrix's sentinel.
template <class T> struct Strided {
  ClassRows l;
  Matrix<T> m;
  Strided(const ClassRows& layout, int offset) : l(layout), m(1, span(layout), span(layout), offset) {}
  T* data() { return m.data(); }
  const T* data() const { return m.data(); }
  double get(int64_t r, int64_t c) const { return to_double(m.data()[element(l, r, c)]); }
  void set(int64_t r, int64_t c, double v) { m.data()[element(l, r, c)] = from_double<T>(v); }
  Matrix<T> as_rows() const {  // [rows, C] copy, so expect_close names (row, class)
    Matrix<T> out(l.rows, l.classes, l.classes);
    for (int64_t r = 0; r < l.rows; ++r)
      for (int64_t c = 0; c < l.classes; ++c) out.at(r, c) = m.data()[element(l, r, c)];
    return out;
  }
  bool outside_intact() const {  // nothing written between the layout's elements
    std::vector<char> named(size_t(span(l)), 0);
    for (int64_t r = 0; r < l.rows; ++r)
      for (int64_t c = 0; c < l.classes; ++c) named[size_t(element(l, r, c))] = 1;
    const T s = Matrix<T>::sentinel();
    for (size_t i = 0; i < named.size(); ++i)
      if (!named[i] && std::memcmp(&m.data()[i], &s, sizeof(T))) return false;
    return true;
  }
};

// Logits / log-probabilities, class weights and targets of one case.
template <class T> struct Inputs {
  Shape s;
  ClassRows xl;
  Strided<T> x;
  bool weighted;
  Matrix<T> weight;  // [C]
  std::vector<int64_t> target;
  const T* weight_ptr() const { return weighted ? weight.data() : nullptr; }
  double w(int64_t c) const { return weighted ? weight.get(0, c) : 1.0; }
};

// x ~ N(0, 2), every fifth row shifted by +40 (all its logits share a large offset: the smoothing sum's
// reference shift); targets uniform in [0, C), rows r % 3 == 1 set to ignore_index (or every row).
template <class T> Inputs<T> make_inputs(std::mt19937_64& rng, const Shape& s, bool weighted, bool all_ignored) {
  Inputs<T> in{s, input_rows(s), Strided<T>(input_rows(s), s.offset), weighted, Matrix<T>(1, s.C, s.C), {}};
  std::normal_distribution<double> n(0.0, 2.0);
  std::uniform_real_distribution<double> u(0.25, 2.0);
  std::uniform_int_distribution<int64_t> cls(0, std::max<int64_t>(s.C - 1, 0));
  for (int64_t r = 0; r < in.xl.rows; ++r)
    for (int64_t c = 0; c < s.C; ++c) in.x.set(r, c, n(rng) + (r % 5 == 2 ? 40.0 : 0.0));
  in.weight.fill([&](int64_t, int64_t) { return u(rng); });
  in.target.resize(size_t(in.xl.rows));
  for (int64_t r = 0; r < in.xl.rows; ++r) in.target[size_t(r)] = all_ignored || r % 3 == 1 ? s.ignore_index : cls(rng);
  return in;
}

// Per-row reference, in double, from the values as stored.
// The kernels keep lse in double, so the rows shifted by +40 here get the dtype's own tolerance like the others
// (a float lse was off by up to |lse| * epsilon(float), ~5e-6 in every loss and p_c of those rows).
struct Ref {
  std::vector<double> lse, loss, w;  // w: w_t, 0 for an ignored row
  std::vector<char> valid;
  double total = 0, wt = 0;  // sum of the losses, W_t
  double reduced(Reduction r) const { return r == Reduction::Mean ? total / wt : total; }  // 0 / 0 = NaN
};

// cross_entropy: loss = (1 - eps) w_t (lse - x_t) + (eps / C) sum_c w_c (lse - x_c)   (PyTorch's definition)
// nll_loss:      loss = -w_t x_t
template <class T> Ref reference(const Inputs<T>& in, bool nll, double eps) {
  const int64_t rows = in.xl.rows, C = in.s.C;
  Ref ref;
  ref.lse.resize(size_t(rows));
  ref.loss.resize(size_t(rows));
  ref.w.resize(size_t(rows));
  ref.valid.resize(size_t(rows));
  double W = 0;
  for (int64_t c = 0; c < C; ++c) W += in.w(c);
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, in.x.get(r, c));
    for (int64_t c = 0; c < C; ++c) s += std::exp(in.x.get(r, c) - m);
    const double lse = m + std::log(s);
    ref.lse[size_t(r)] = lse;
    const int64_t t = in.target[size_t(r)];
    if (t == in.s.ignore_index) continue;  // loss 0, weight 0
    const double wt = in.w(t);
    double loss;
    if (nll) {
      loss = -wt * in.x.get(r, t);
    } else {
      double spread = 0;
      for (int64_t c = 0; c < C; ++c) spread += in.w(c) * (lse - in.x.get(r, c));
      loss = (1 - eps) * wt * (lse - in.x.get(r, t)) + eps / double(C) * spread;
    }
    ref.valid[size_t(r)] = 1;
    ref.loss[size_t(r)] = loss;
    ref.w[size_t(r)] = wt;
    ref.total += loss;
    ref.wt += wt;
  }
  return ref;
}

// float sums over >= 1000 elements: docs/testing.md ("Tolerances") allows rtol 1e-4 for such reductions.
template <class T> double rtol_for(int64_t n) { return std::is_same_v<T, float> && n >= 1000 ? 1e-4 : Dtype<T>::rtol; }

// The forward's outputs, as the glue allocates them (csrc/cross_entropy.h loss_forward_outputs).
template <class T> struct LossBuffers {
  using A = acc<T>;
  Matrix<T> rows_out;    // [rows], none
  Matrix<A> partials;    // [2, rows], mean / sum
  Matrix<T> reduced;     // [], mean / sum
  Matrix<A> total_weight;  // [2], mean / sum
  explicit LossBuffers(int64_t rows) : rows_out(rows, 1, 1), partials(2, rows, rows), reduced(1, 1, 1), total_weight(1, 2, 2) {}
  LossOutput<T> output(Reduction red) {
    LossOutput<T> o;
    if (red == Reduction::None) {
      o.per_row = true;
      o.rows_out = rows_out.data();
    } else {
      o.partials = partials.data();
      o.reduced = reduced.data();
      o.total_weight = total_weight.data();
      o.mean = red == Reduction::Mean;
    }
    return o;
  }
  // 1 / W_t of the forward for mean (what the glue passes the backward), nullptr otherwise
  const A* inv_total_weight(Reduction red) const { return red == Reduction::Mean ? total_weight.data() + 1 : nullptr; }
};

// classes: the length of each row's sum (1 for nll_loss's gather); the reduction sums over the rows.
template <class T> void check_loss(LossBuffers<T>& b, const Ref& ref, Reduction red, int64_t classes) {
  using A = acc<T>;
  if (red == Reduction::None) {
    expect_close("loss (reduction none)", b.rows_out, ref.loss, rtol_for<T>(classes), Dtype<T>::atol);
    return;
  }
  const int64_t rows = int64_t(ref.loss.size());
  Matrix<A> losses(rows, 1, 1), weights(rows, 1, 1);  // the two rows of partials [2, rows]
  for (int64_t r = 0; r < rows; ++r) {
    losses.at(r, 0) = b.partials.at(0, r);
    weights.at(r, 0) = b.partials.at(1, r);
  }
  expect_close("partials[0] (per-row loss)", losses, ref.loss, rtol_for<A>(classes), Dtype<A>::atol);
  expect_close("partials[1] (per-row weight)", weights, ref.w, Dtype<A>::rtol, Dtype<A>::atol);
  expect_close(std::string("loss (reduction ") + reduction_name(red) + ")", b.reduced, {ref.reduced(red)},
               rtol_for<T>(std::max(classes, rows)), Dtype<T>::atol);
  expect_close("total_weight (W_t, 1/W_t)", b.total_weight, {ref.wt, 1.0 / ref.wt}, rtol_for<A>(rows), Dtype<A>::atol);
}

// grad_loss: [rows] with stride ld_grad (none) or [] (mean, sum: ld_grad 0), as loss_grad_rows passes it.
template <class T> struct GradLoss {
  Matrix<T> g;
  int64_t ld;
  GradLoss(std::mt19937_64& rng, int64_t rows, Reduction red, int64_t ld_grad)
      : g(red == Reduction::None ? rows : 1, 1, red == Reduction::None ? ld_grad : 1),
        ld(red == Reduction::None ? ld_grad : 0) {
    std::normal_distribution<double> n(0.0, 1.0);
    std::uniform_real_distribution<double> u(0.5, 1.5);
    g.fill([&](int64_t, int64_t) { return red == Reduction::None ? n(rng) : u(rng); });
  }
  double at(int64_t r) const { return g.get(ld ? r : 0, 0); }
};

void expect_launched(const std::string& kernel, long before, long times) {
  const long n = launches(kernel) - before;
  expect(n == times, kernel + " launched " + std::to_string(n) + " times, expected " + std::to_string(times));
}

std::string row_kernel(bool backward, CrossEntropyVariant v) {
  return std::string("cross_entropy_") + (backward ? "bwd" : "fwd") +
         (v == CrossEntropyVariant::WarpPerRow ? "_warp" : "_block") + "_kernel";
}

void expect_plan(const CrossEntropyPlan& p, CrossEntropyVariant variant, bool vec, int vec_width, const char* pass) {
  expect(p.variant == variant, std::string(pass) + ": plan chose the " +
                                   (p.variant == CrossEntropyVariant::WarpPerRow ? "warp" : "block") + "-per-row variant");
  expect(p.vec == (vec ? vec_width : 1), std::string(pass) + ": plan chose vector width " + std::to_string(p.vec));
}

// Rows with ignore_index: exactly 0 everywhere in the gradient (also for mean with W_t = 0, where 1/W_t = inf).
template <class T> void expect_ignored_rows_zero(const Matrix<T>& gx, const Ref& ref) {
  for (int64_t r = 0; r < gx.rows(); ++r)
    if (!ref.valid[size_t(r)])
      for (int64_t c = 0; c < gx.cols(); ++c)
        if (gx.get(r, c) != 0.0) {
          fail("grad_input of ignored row " + std::to_string(r) + " is " + std::to_string(gx.get(r, c)) + " at class " +
               std::to_string(c) + ", expected 0");
          return;
        }
}

// ---- fused cross-entropy: forward (lse, loss), then backward from the forward's lse and total_weight
template <class T>
void cross_entropy_case(const std::string& name, const Shape& s, bool weighted, Reduction red, double eps,
                        bool all_ignored) {
  using A = acc<T>;
  constexpr int V = 16 / sizeof(T);
  auto rng = rng_for(name);
  const Inputs<T> in = make_inputs<T>(rng, s, weighted, all_ignored);
  const Ref ref = reference(in, false, eps);
  const int64_t rows = in.xl.rows, C = s.C;

  LossBuffers<T> out(rows);
  Matrix<double> lse(rows, 1, 1);
  const std::string kf = row_kernel(false, s.variant), kb = row_kernel(true, s.variant), kr = "loss_reduce_kernel";
  long f0 = launches(kf), r0 = launches(kr);
  CrossEntropyPlan plan{};
  const char* err = pyops::cuda::cross_entropy_forward<T>(in.x.data(), in.xl, in.target.data(), in.weight_ptr(),
                                                          s.ignore_index, eps, out.output(red), lse.data(), nullptr, &plan);
  expect(err == nullptr, std::string("forward launch status: ") + (err ? err : ""));
  if (rows > 0) expect_plan(plan, s.variant, s.fwd_vec, V, "forward");
  expect_launched(kf, f0, rows > 0 ? 1 : 0);
  expect_launched(kr, r0, red == Reduction::None ? 0 : 1);
  expect_close("lse", lse, ref.lse, rtol_for<A>(C), Dtype<A>::atol);
  check_loss(out, ref, red, C);

  // dx_c = g_r scale ((1 - eps) w_t (p_c - [c == t]) + (eps / C)(W p_c - w_c)),  p_c = exp(x_c - lse),
  // scale = 1 / W_t for mean; 0 for an ignored row.
  const GradLoss<T> g(rng, rows, red, s.ld_grad);
  const ClassRows gl = s.grad_like_input ? in.xl : contiguous_rows(s);
  Strided<T> gx(gl, s.grad_like_input ? s.offset : 0);
  double W = 0;
  for (int64_t c = 0; c < C; ++c) W += in.w(c);
  std::vector<double> want(size_t(rows * C), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    if (!ref.valid[size_t(r)]) continue;
    const double gr = g.at(r) * (red == Reduction::Mean ? 1.0 / ref.wt : 1.0), wt = ref.w[size_t(r)];
    const int64_t t = in.target[size_t(r)];
    for (int64_t c = 0; c < C; ++c) {
      const double p = std::exp(in.x.get(r, c) - ref.lse[size_t(r)]);
      want[size_t(r * C + c)] = gr * ((1 - eps) * wt * (p - (c == t)) + eps / double(C) * (W * p - in.w(c)));
    }
  }
  const long b0 = launches(kb);
  CrossEntropyPlan bplan{};
  err = pyops::cuda::cross_entropy_backward<T>(g.g.data(), g.ld, out.inv_total_weight(red), in.x.data(), in.xl,
                                               in.target.data(), in.weight_ptr(), s.ignore_index, eps, lse.data(),
                                               gx.data(), gl, nullptr, &bplan);
  expect(err == nullptr, std::string("backward launch status: ") + (err ? err : ""));
  if (rows > 0) expect_plan(bplan, s.variant, s.bwd_vec, V, "backward");
  expect_launched(kb, b0, rows > 0 && C > 0 ? 1 : 0);
  const Matrix<T> got = gx.as_rows();
  expect_close("grad_input", got, want, rtol_for<T>(C), Dtype<T>::atol);
  expect_ignored_rows_zero(got, ref);
  expect(gx.outside_intact(), "the backward wrote outside the gradient's elements (padding)");
}

// ---- nll_loss: forward (loss), backward into a contiguous [N, C, D] gradient
template <class T> void nll_case(const std::string& name, const Shape& s, bool weighted, Reduction red, bool all_ignored) {
  constexpr int V = 16 / sizeof(T);
  auto rng = rng_for(name);
  const Inputs<T> in = make_inputs<T>(rng, s, weighted, all_ignored);
  const Ref ref = reference(in, true, 0.0);
  const int64_t rows = in.xl.rows, C = s.C;

  LossBuffers<T> out(rows);
  const long f0 = launches("nll_loss_fwd_kernel"), r0 = launches("loss_reduce_kernel");
  const char* err = pyops::cuda::nll_loss_forward<T>(in.x.data(), in.xl, in.target.data(), in.weight_ptr(),
                                                     s.ignore_index, out.output(red), nullptr);
  expect(err == nullptr, std::string("forward launch status: ") + (err ? err : ""));
  expect_launched("nll_loss_fwd_kernel", f0, rows > 0 ? 1 : 0);
  expect_launched("loss_reduce_kernel", r0, red == Reduction::None ? 0 : 1);
  check_loss(out, ref, red, 1);  // a gather: no sum over classes

  // dx = -g_r scale w_t at the target, 0 elsewhere (every element written)
  const GradLoss<T> g(rng, rows, red, s.ld_grad);
  const ClassRows gl = contiguous_rows(s);
  Strided<T> gx(gl, s.offset);
  std::vector<double> want(size_t(rows * C), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    if (ref.valid[size_t(r)])
      want[size_t(r * C + in.target[size_t(r)])] =
          -g.at(r) * (red == Reduction::Mean ? 1.0 / ref.wt : 1.0) * ref.w[size_t(r)];
  const long b0 = launches("nll_loss_bwd_kernel");
  int vec = 0;
  err = pyops::cuda::nll_loss_backward<T>(g.g.data(), g.ld, out.inv_total_weight(red), in.target.data(),
                                          in.weight_ptr(), s.ignore_index, gx.data(), rows, C, s.D, nullptr, &vec);
  expect(err == nullptr, std::string("backward launch status: ") + (err ? err : ""));
  // vector stores exactly when D == 1, C % V == 0 and the gradient is 16-byte aligned (offset 0)
  const bool want_vec = rows * C > 0 && s.D == 1 && C % V == 0 && s.offset == 0;
  if (rows * C > 0) expect(vec == (want_vec ? V : 1), "nll backward chose vector width " + std::to_string(vec));
  expect_launched("nll_loss_bwd_kernel", b0, rows * C > 0 ? 1 : 0);
  const Matrix<T> got = gx.as_rows();
  expect_close("grad_input", got, want);
  expect_ignored_rows_zero(got, ref);
}

// Vector width V = 16 / sizeof(T): 4 float, 2 double, 8 half/bf16.  64, 16 and 2048 are multiples of every V.
// Fields: name, N, C, D, ld_n, ld_d, ld_c, offset, grad_like_input, ld_grad, ignore_index, variant, fwd_vec, bwd_vec.
template <class T> std::vector<Shape> cross_entropy_shapes() {
  constexpr int64_t V = 16 / sizeof(T);
  const auto W = CrossEntropyVariant::WarpPerRow, B = CrossEntropyVariant::BlockPerRow;
  return {
      // ignore_index 3 is a valid class: rows whose drawn target is 3 are ignored too; C = 10: vector for double only
      {"warp/10-classes/64x10", 64, 10, 1, 10, 0, 1, 0, false, 1, 3, W, 10 % V == 0, 10 % V == 0},
      {"warp/vec/8x64", 8, 64, 1, 64, 0, 1, 0, true, 1, -100, W, true, true},
      {"warp/vec-padded/4x64", 4, 64, 1, 64 + V, 0, 1, 0, true, 2, -100, W, true, true},  // gradient padded too
      {"warp/423-classes/3x423", 3, 423, 1, 423, 0, 1, 0, false, 3, -100, W, false, false},
      {"warp/misaligned/3x64", 3, 64, 1, 64, 0, 1, 1, true, 1, -100, W, false, false},  // x and gradient misaligned
      {"warp/ld-odd/3x64", 3, 64, 1, 65, 0, 1, 0, false, 1, -100, W, false, false},     // row stride % V != 0
      {"warp/transposed/6x10", 6, 10, 1, 1, 0, 6, 0, false, 1, -100, W, false, false},  // class stride 6
      {"warp/class-vector/37", 1, 37, 1, 0, 0, 1, 0, false, 1, -100, W, false, false},  // a (C,) input
      {"warp/inner/2x5x7", 2, 5, 7, 35, 1, 7, 0, false, 1, -100, W, false, false},      // (N, C, D): class stride D
      // (N, C, D) stored channels-last: unit class stride, vector loads; the contiguous gradient has class stride 3
      {"warp/inner-channels-last/2x16x3", 2, 16, 3, 48, 16, 1, 0, false, 1, -100, W, true, false},
      {"warp/empty/0x10", 0, 10, 1, 10, 0, 1, 0, false, 1, -100, W, false, false},
      {"block/1501-classes/5x1501", 5, 1501, 1, 1501, 0, 1, 0, false, 1, -100, B, false, false},
      {"block/vec/3x2048", 3, 2048, 1, 2048, 0, 1, 0, true, 1, -100, B, true, true},
  };
}

template <class T> std::vector<Shape> nll_shapes() {
  const auto W = CrossEntropyVariant::WarpPerRow;  // (unused by nll)
  return {
      {"10-classes/64x10", 64, 10, 1, 10, 0, 1, 0, false, 1, 3, W, false, false},  // vector stores for double
      {"vec/8x64", 8, 64, 1, 64, 0, 1, 0, false, 2, -100, W, false, false},
      {"misaligned/3x64", 3, 64, 1, 64, 0, 1, 1, false, 1, -100, W, false, false},  // x and gradient misaligned
      {"transposed/6x10", 6, 10, 1, 1, 0, 6, 0, false, 1, -100, W, false, false},
      {"class-vector/37", 1, 37, 1, 0, 0, 1, 0, false, 1, -100, W, false, false},
      {"inner/2x5x7", 2, 5, 7, 35, 1, 7, 0, false, 1, -100, W, false, false},
      {"inner-channels-last/2x16x3", 2, 16, 3, 48, 16, 1, 0, false, 1, -100, W, false, false},
      // > 1024 rows: loss_reduce's threads (1024) each fold two rows
      {"many-rows/1100x2", 1100, 2, 1, 2, 0, 1, 0, false, 1, -100, W, false, false},
      {"empty/0x10", 0, 10, 1, 10, 0, 1, 0, false, 1, -100, W, false, false},
  };
}

// ---- the device-side target check: a target outside [0, C) that is not ignore_index stops the kernel
// (PYOPS_DEVICE_REQUIRE in read_target).  On the emulator the failing thread calls simt::fail, the launch
// stops and throws simt::launch_error (a std::runtime_error) carrying the message; launch_status() is never
// reached.  (On a GPU the same check is a device-side assert, cudaErrorAssert at the next synchronization.)
template <class F> void expect_target_error(const std::string& what, const std::string& kernel, F&& launch) {
  const long before = launches(kernel);
  try {
    const char* err = launch();
    fail(what + ": no exception for an out-of-range target (launch status: " + (err ? err : "success") + ")");
  } catch (const std::runtime_error& e) {
    expect(std::string(e.what()).find("target out of bounds") != std::string::npos,
           what + ": unexpected error: " + e.what());
  }
  expect_launched(kernel, before, 1);
}

template <class T> void target_check_case(const std::string& name, const Shape& s, int64_t bad) {
  using A = acc<T>;
  auto rng = rng_for(name);
  Inputs<T> in = make_inputs<T>(rng, s, /*weighted=*/true, false);  // weight[t] must not be read for a bad t
  const int64_t rows = in.xl.rows, last = rows - 1;
  const int64_t good = in.target[size_t(last)];
  in.target[size_t(last)] = bad;  // the last row: the rows before it run (and write) first
  LossBuffers<T> out(rows);
  Matrix<double> lse(rows, 1, 1);
  lse.fill([](int64_t, int64_t) { return 0.0; });
  Matrix<T> grad(1, 1, 1), gx(rows, s.C, s.C);
  grad.set(0, 0, 1.0);
  const long r0 = launches("loss_reduce_kernel");
  expect_target_error("cross_entropy forward", row_kernel(false, s.variant), [&] {
    return pyops::cuda::cross_entropy_forward<T>(in.x.data(), in.xl, in.target.data(), in.weight_ptr(), s.ignore_index,
                                                 0.1, out.output(Reduction::Mean), lse.data(), nullptr);
  });
  expect_launched("loss_reduce_kernel", r0, 0);  // the launch function stopped at the failing kernel
  expect_target_error("cross_entropy backward", row_kernel(true, s.variant), [&] {
    return pyops::cuda::cross_entropy_backward<T>(grad.data(), 0, nullptr, in.x.data(), in.xl, in.target.data(),
                                                  in.weight_ptr(), s.ignore_index, 0.1, lse.data(), gx.data(),
                                                  contiguous_rows(s), nullptr);
  });
  expect_target_error("nll_loss forward", "nll_loss_fwd_kernel", [&] {
    return pyops::cuda::nll_loss_forward<T>(in.x.data(), in.xl, in.target.data(), in.weight_ptr(), s.ignore_index,
                                            out.output(Reduction::Sum), nullptr);
  });
  expect_target_error("nll_loss backward", "nll_loss_bwd_kernel", [&] {
    return pyops::cuda::nll_loss_backward<T>(grad.data(), 0, nullptr, in.target.data(), in.weight_ptr(),
                                             s.ignore_index, gx.data(), rows, s.C, s.D, nullptr);
  });
  // The emulator recovers: with the target fixed, the same forward runs and is right.
  in.target[size_t(last)] = good;
  const Ref ref = reference(in, false, 0.1);
  const char* err = nullptr;
  try {
    err = pyops::cuda::cross_entropy_forward<T>(in.x.data(), in.xl, in.target.data(), in.weight_ptr(), s.ignore_index,
                                                0.1, out.output(Reduction::None), lse.data(), nullptr);
  } catch (const std::exception& e) {
    fail(std::string("forward after the failed launches: ") + e.what());
    return;
  }
  expect(err == nullptr, std::string("launch status: ") + (err ? err : ""));
  expect_close("lse", lse, ref.lse, rtol_for<A>(s.C), Dtype<A>::atol);
  check_loss(out, ref, Reduction::None, s.C);
}

template <class T> void register_dtype() {
  const std::string dt = Dtype<T>::name;
  const Reduction reductions[] = {Reduction::None, Reduction::Mean, Reduction::Sum};
  for (const Shape& s : cross_entropy_shapes<T>())
    for (bool weighted : {false, true})
      for (Reduction red : reductions)
        for (double eps : {0.0, 0.1}) {
          const std::string tail = std::string(weighted ? "/weight/" : "/no-weight/") + reduction_name(red) +
                                   (eps != 0.0 ? "/eps=0.1" : "/eps=0");
          const std::string name = "cross_entropy/" + dt + "/" + s.name + tail;
          add(name, [=] { cross_entropy_case<T>(name, s, weighted, red, eps, false); });
          // every row ignored: loss 0 (none, sum), NaN (mean, 0 / 0, as PyTorch); gradient 0.  Warp per row
          // (64x10) every combination; block per row (5x1501: 256 fibers a row, slow in the sanitizer
          // builds) the mean only, the one with a special value.
          const bool block = s.variant == CrossEntropyVariant::BlockPerRow;
          if (s.N == 64 || (block && s.C == 1501 && red == Reduction::Mean)) {
            const std::string name2 = "cross_entropy/" + dt + "/all-ignored/" + s.name + tail;
            add(name2, [=] { cross_entropy_case<T>(name2, s, weighted, red, eps, true); });
          }
        }
  for (const Shape& s : nll_shapes<T>())
    for (bool weighted : {false, true})
      for (Reduction red : reductions) {
        // 1100 rows (2300 fibers a launch): only what it is for, the reductions' grid-stride fold
        if (s.N == 1100 && (red == Reduction::None || !weighted)) continue;
        const std::string tail = std::string(weighted ? "/weight/" : "/no-weight/") + reduction_name(red);
        const std::string name = "nll_loss/" + dt + "/" + s.name + tail;
        add(name, [=] { nll_case<T>(name, s, weighted, red, false); });
        if (s.N == 64) {
          const std::string name2 = "nll_loss/" + dt + "/all-ignored/" + s.name + tail;
          add(name2, [=] { nll_case<T>(name2, s, weighted, red, true); });
        }
      }
}

const bool registered = [] {
  register_dtype<float>();
  register_dtype<double>();
  register_dtype<__half>();
  register_dtype<__nv_bfloat16>();
  // target check: warp per row (vector nll backward) and block per row (scalar); a target of C and of -1
  const auto W = CrossEntropyVariant::WarpPerRow, B = CrossEntropyVariant::BlockPerRow;
  const Shape warp{"warp/8x64", 8, 64, 1, 64, 0, 1, 0, false, 1, -100, W, true, true};
  const Shape block{"block/3x1501", 3, 1501, 1, 1501, 0, 1, 0, false, 1, -100, B, false, false};
  for (const Shape& s : {warp, block})
    for (int64_t bad : {s.C, int64_t(-1)}) {
      const std::string name = std::string("cross_entropy+nll_loss/target-check/float/") + s.name +
                               "/target=" + std::to_string(bad);
      add(name, [=] { target_check_case<float>(name, s, bad); });
    }
  return true;
}();
}  // namespace
