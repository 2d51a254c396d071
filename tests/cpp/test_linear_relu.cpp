// test_linear_relu.cpp -- kernels/cuda/linear_relu.cuh on the emulator, through linear_gemm and
// linear_bias_grad (the launch functions the cuda-sim glue calls; they run linear_gemm_plan and
// PYOPS_LAUNCH), with every GEMM's operands chosen exactly as csrc/cuda/linear_relu.cpp chooses them:
//   forward   A = x (m, k),  B = W (n, k),  C = y,  + bias, ReLU
//   dW        A = g^T masked by the saved output y,  B = x^T,  C = dW (weight's layout),  db = row sums of A
//   db alone  linear_bias_grad (when dW is not asked for, or K == 0)
//   dx        A = g masked,  B = W^T,  C = dx
// against double-precision references.  Every kernel: simt128 / simt64 / simt32 (float, double; the
// tile is picked through the plan's sm_count), wmma (__half, __nv_bfloat16, and float with TF32 allowed);
// vector and scalar loads in every direction pair (x and W given transposed, misaligned pointers, odd
// sizes, padded rows); edge tiles in M, N and K; ReLU on / off, bias present / absent; pre-activations
// exactly 0 (output 0, gradient 0 there, as PyTorch); M == 0 and K == 0.
//
// Tolerances are error bounds, not fixed percentages: the kernels see exactly the values stored here,
// so the only errors are the accumulation (at most (terms + 2) unit roundoffs of the accumulation type
// times sum |a_k b_k|, the usual bound for a sum of products) and the final rounding to T.  TF32: the
// reference rounds both operands of every product to TF32 itself (round to nearest, ties away from
// zero, as cvt.rna.tf32.f32), so the TF32 path is held to fp32-accumulation accuracy on those values.
#include <array>
#include <optional>
#include <set>

#include "harness.h"
#include "kernels/cuda/linear_relu.cuh"

namespace {
using namespace harness;
using pyops::cuda::GemmArgs;
using pyops::cuda::GemmDir;
using pyops::cuda::GemmKernel;
using pyops::cuda::GemmOperand;
using pyops::cuda::GemmPlan;

constexpr int kGlueSms = 4;  // the SM count the glue plans for under the emulator (csrc/cuda/linear_relu.cpp)

const char* kernel_label(GemmKernel k) {
  switch (k) {
    case GemmKernel::Simt128: return "simt128";
    case GemmKernel::Simt64: return "simt64";
    case GemmKernel::Simt32: return "simt32";
    default: return "wmma";
  }
}
std::string kernel_name(GemmKernel k) { return std::string("linear_relu_") + kernel_label(k) + "_kernel"; }
const char* kBiasGradKernel = "linear_relu_bias_grad_kernel";

// The sm_count that makes the plan pick simt kernel `k` for an M x N output (the largest square tile
// whose tile count still reaches sm_count), or -1 when no sm_count does (Simt64 needs M or N > 64).
// Tensor cores ignore it: the glue's value.
int64_t tiles(int64_t M, int64_t N, int t) { return ((M + t - 1) / t) * ((N + t - 1) / t); }
int sms_for(GemmKernel k, int64_t M, int64_t N) {
  switch (k) {
    case GemmKernel::Simt128: return 1;
    case GemmKernel::Simt64: return tiles(M, N, 128) < tiles(M, N, 64) ? int(tiles(M, N, 64)) : -1;
    case GemmKernel::Simt32: return int(tiles(M, N, 64)) + 1;
    default: return kGlueSms;
  }
}

// Which (kernel, load directions, vector width) the GEMMs ran with, for the final coverage case.
std::set<std::string>& variants_seen() {
  static std::set<std::string> s;
  return s;
}
std::string variant_key(GemmKernel k, bool vec, GemmDir da, GemmDir db) {
  if (!vec) return std::string(kernel_label(k)) + "/scalar";
  auto d = [](GemmDir x) { return x == GemmDir::Red ? "red" : "out"; };
  return std::string(kernel_label(k)) + "/vec/" + d(da) + "-" + d(db);
}

// ---- accuracy model (see the top of the file)
struct Tol {
  double u_out;  // unit roundoff of T (final rounding)
  double u_acc;  // unit roundoff of the accumulation type
  double atol;   // below T's subnormal spacing
};
template <class T> Tol tol_for() {
  if constexpr (std::is_same_v<T, double>) return {0x1p-53, 0x1p-53, 1e-300};
  else if constexpr (std::is_same_v<T, float>) return {0x1p-24, 0x1p-24, 1e-30};
  else if constexpr (std::is_same_v<T, __half>) return {0x1p-11, 0x1p-24, 0x1p-24};
  else return {0x1p-8, 0x1p-24, 1e-30};
}

// TF32 as the tensor cores take fp32 operands: 11 significant bits, round to nearest, ties away.
double round_tf32(double v) {
  if (v == 0 || !std::isfinite(v)) return v;
  int e;
  const double m = std::frexp(v, &e);  // |m| in [0.5, 1)
  return std::ldexp(std::round(std::ldexp(m, 11)), e - 11);
}

// A reference result: value and sum of the magnitudes of its terms, row-major [rows, cols]; `terms`
// is the length of the longest sum (the reduction length).
struct Ref {
  int64_t rows = 0, cols = 0, terms = 0;
  std::vector<double> v, scale;
};

// C(m, n) = epi(sum_k rd(A(m, k)) rd(B(n, k)) + bias[n]), epi = ReLU or identity, rd = TF32 rounding or none.
template <class FA, class FB>
Ref gemm_ref(int64_t M, int64_t N, int64_t K, FA a, FB b, const std::vector<double>& bias, bool relu, bool tf32) {
  Ref r{M, N, K + 1, std::vector<double>(size_t(M * N)), std::vector<double>(size_t(M * N))};
  const auto rd = [&](double v) { return tf32 ? round_tf32(v) : v; };
  std::vector<double> bt(size_t(N * K));  // B once, k-contiguous
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) bt[size_t(n * K + k)] = rd(b(n, k));
  std::vector<double> arow(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k) arow[size_t(k)] = rd(a(m, k));
    for (int64_t n = 0; n < N; ++n) {
      double s = bias.empty() ? 0.0 : bias[size_t(n)], sa = std::fabs(s);
      for (int64_t k = 0; k < K; ++k) {
        const double p = arow[size_t(k)] * bt[size_t(n * K + k)];
        s += p;
        sa += std::fabs(p);
      }
      r.v[size_t(m * N + n)] = relu && s < 0 ? 0.0 : s;
      r.scale[size_t(m * N + n)] = sa;
    }
  }
  return r;
}

// got(r, c) within the error bound of the reference; reports the worst element.
template <class Get> bool expect_ref(const std::string& what, const Ref& ref, Get got, const Tol& tol) {
  double worst = 0;
  int64_t wr = -1, wc = -1;
  for (int64_t r = 0; r < ref.rows; ++r)
    for (int64_t c = 0; c < ref.cols; ++c) {
      const double g = got(r, c), w = ref.v[size_t(r * ref.cols + c)], s = ref.scale[size_t(r * ref.cols + c)];
      const double bound = tol.atol + 2 * tol.u_out * std::fabs(w) + double(ref.terms + 2) * tol.u_acc * s;
      const double excess = std::isfinite(g) ? std::fabs(g - w) / bound : INFINITY;
      if (!(excess <= worst)) worst = excess, wr = r, wc = c;
    }
  if (worst <= 1) return true;
  char m[320];
  snprintf(m, sizeof m, "%s: element (%lld, %lld) of [%lld, %lld] is %.9g, expected %.9g (error %.3g x the bound)",
           what.c_str(), (long long)wr, (long long)wc, (long long)ref.rows, (long long)ref.cols, got(wr, wc),
           ref.v[size_t(wr * ref.cols + wc)], worst);
  fail(m);
  return false;
}

// ---- operands as the glue sees them: a logical [rows, cols] matrix, element (r, c) at data + r * rs + c * cs
// (as_matrix), stored in a Matrix either as is or transposed (a [cols, rows] buffer: rs = 1, cs = ld,
// e.g. weight = W_storage.t()).  `pad` extra elements per stored row; `offset` misaligns the data.
template <class T> struct Mat2 {
  Matrix<T> buf;
  bool t;
  Mat2(int64_t rows, int64_t cols, bool transposed, int64_t pad, int offset)
      : buf(transposed ? cols : rows, transposed ? rows : cols, (transposed ? rows : cols) + pad, offset),
        t(transposed) {}
  int64_t rows() const { return t ? buf.cols() : buf.rows(); }
  int64_t cols() const { return t ? buf.rows() : buf.cols(); }
  int64_t rs() const { return t ? 1 : buf.ld(); }
  int64_t cs() const { return t ? buf.ld() : 1; }
  T* data() { return buf.data(); }
  double get(int64_t r, int64_t c) const { return t ? buf.get(c, r) : buf.get(r, c); }
  void set(int64_t r, int64_t c, double v) { t ? buf.set(c, r, v) : buf.set(r, c, v); }
  template <class F> void fill(F f) {
    for (int64_t r = 0; r < rows(); ++r)
      for (int64_t c = 0; c < cols(); ++c) set(r, c, f(r, c));
  }
};

// csrc/cuda/linear_relu.cpp: operand()
template <class T> GemmOperand<T> operand(Mat2<T>& m, bool transposed, const T* relu_out = nullptr) {
  GemmOperand<T> op;
  op.ptr = m.data();
  op.s_out = transposed ? m.cs() : m.rs();
  op.s_red = transposed ? m.rs() : m.cs();
  op.relu_out = relu_out;
  return op;
}

// ---- cases
enum class VecExp { Any, All, None };  // every GEMM of the case must load with vectors / scalars

// Who runs a setup: the CUDA-core kernels (float, double), the wmma kernel in fp16, and in bf16 and TF32.
// The wmma stand-in does every fragment operation in every lane (about 25-60 ms per 64x64x32 block step
// here), so the tensor-core setups are smaller -- still with 2 tiles in M, N and K where it matters --
// and bf16 / TF32 take a subset of fp16's.
enum Runs : unsigned { kSimt = 1, kHalf = 2, kLight = 4, kAll = 7 };

struct Setup {
  const char* name;
  int64_t M, N, K;
  unsigned runs = kAll;
  bool xt = false, wt = false;  // input / weight given as transposed views of [K, M] / [K, N] buffers
  int64_t pad = 0;              // extra elements per row of every matrix (inputs and outputs)
  int offset = 0;               // 1: every pointer one element past a 16-byte boundary
  bool relu = true, bias = true;
  std::array<bool, 3> mask{true, true, true};  // backward output_mask: dx, dW, db
  VecExp vec = VecExp::Any;
  bool zeros = false;  // exact-zero pre-activations by construction; forward, then backward on its output
};

// Vector width V = 16 / sizeof(T) <= 8: sizes, pads and M (when x is transposed) that are multiples of 8
// allow vector loads for every T; odd K or a misaligned pointer forbids them in every GEMM of the case.
// Load directions of the GEMMs: plain layouts  fwd red-red, dW out-out, dx red-out;
//                               x^T and W^T    fwd out-out, dW out-red, dx red-red (dW written transposed).
std::vector<Setup> setups() {
  std::vector<Setup> s;
  auto add = [&](Setup x) { s.push_back(x); };
  Setup x{"1x1x1", 1, 1, 1};
  x.vec = VecExp::None;
  add(x);

  // CUDA cores: tiles of 128 / 64 / 32 rows and columns, BK 8 / 16 / 16
  x = {"67x129x45", 67, 129, 45, kSimt};  // edge tiles in every dimension; K odd: scalar loads
  x.vec = VecExp::None;
  add(x);
  x = {"33x31x97/no-relu/no-bias", 33, 31, 97, kSimt};  // plain linear; backward without db: no row sums
  x.relu = false, x.bias = false, x.mask = {true, true, false}, x.vec = VecExp::None;
  add(x);
  x = {"67x136x40/vec", 67, 136, 40, kSimt};
  x.vec = VecExp::All;
  add(x);
  x = {"72x136x40/vec/x^T/W^T", 72, 136, 40, kSimt};
  x.xt = true, x.wt = true, x.vec = VecExp::All;
  add(x);
  x = {"67x136x40/vec/padded/no-relu", 67, 136, 40, kSimt};  // row strides > cols, still vector loads
  x.pad = 8, x.relu = false, x.vec = VecExp::All;
  add(x);
  x = {"67x136x40/misaligned/no-dW", 67, 136, 40, kSimt};  // scalar loads; db by linear_bias_grad
  x.offset = 1, x.mask = {true, false, true}, x.vec = VecExp::None;
  add(x);
  x = {"67x129x45/padded/W^T/no-bias/no-dx", 67, 129, 45, kSimt};  // odd row strides, transposed weight
  x.pad = 3, x.wt = true, x.bias = false, x.mask = {false, true, true}, x.vec = VecExp::None;
  add(x);
  x = {"67x72x40/zero-preactivations", 67, 72, 40, kSimt};
  x.zeros = true, x.vec = VecExp::All;
  add(x);

  // tensor cores: 64 x 64 tiles, BK 32
  x = {"67x72x40/vec", 67, 72, 40, kHalf | kLight};
  x.vec = VecExp::All;
  add(x);
  x = {"72x24x40/vec/x^T/W^T", 72, 24, 40, kHalf | kLight};
  x.xt = true, x.wt = true, x.vec = VecExp::All;
  add(x);
  x = {"33x31x97/no-relu/no-bias", 33, 31, 97, kHalf};
  x.relu = false, x.bias = false, x.mask = {true, true, false}, x.vec = VecExp::None;
  add(x);
  x = {"67x24x45/misaligned/padded/W^T/no-dW", 67, 24, 45, kHalf | kLight};
  x.offset = 1, x.pad = 3, x.wt = true, x.mask = {true, false, true}, x.vec = VecExp::None;
  add(x);
  x = {"67x40x24/zero-preactivations", 67, 40, 24, kHalf | kLight};
  x.zeros = true;
  add(x);

  x = {"M=0", 0, 5, 3};  // backward: dW = 0 and db = 0 from a GEMM with an empty reduction
  add(x);
  x = {"K=0", 5, 7, 0};  // forward: y = relu(b); backward: db alone, by linear_bias_grad
  add(x);
  return s;
}

struct Cfg {
  GemmKernel kernel;
  bool allow_tf32;
};

template <class T> std::string case_name(const char* pass, const Setup& s, const Cfg& c) {
  std::string dt = Dtype<T>::name;
  if (std::is_same_v<T, float> && c.kernel == GemmKernel::Wmma) dt += "-tf32";
  return std::string("linear_relu/") + pass + "/" + dt + "/" + kernel_label(c.kernel) + "/" + s.name;
}

// One GEMM through linear_gemm, with the sm_count that makes the plan pick c.kernel; checks the plan
// and that exactly that kernel was launched once.
template <class T> void run_gemm(const std::string& what, const GemmArgs<T>& a, const Cfg& c, VecExp vec) {
  const int sms = sms_for(c.kernel, a.M, a.N);
  if (!expect(sms > 0, what + ": no sm_count makes the plan pick " + kernel_label(c.kernel))) return;
  const std::string k = kernel_name(c.kernel);
  const long before = launches(k);
  GemmPlan plan{};
  const char* err = pyops::cuda::linear_gemm<T>(a, c.allow_tf32, sms, nullptr, &plan);
  expect(err == nullptr, what + ": launch status: " + (err ? err : ""));
  expect(plan.kernel == c.kernel, what + ": the plan chose " + kernel_label(plan.kernel));
  expect(launches(k) == before + 1, what + ": " + k + " was not launched exactly once");
  constexpr int V = 16 / sizeof(T);
  expect(plan.vec == 1 || plan.vec == V, what + ": vector width " + std::to_string(plan.vec));
  if (vec == VecExp::All) expect(plan.vec == V, what + ": the plan chose scalar loads");
  if (vec == VecExp::None) expect(plan.vec == 1, what + ": the plan chose vector loads");
  variants_seen().insert(variant_key(plan.kernel, plan.vec > 1, plan.dir_a, plan.dir_b));
}

// Inputs of one case.
template <class T> struct Inputs {
  Mat2<T> x, w;
  std::optional<Matrix<T>> b;
  std::vector<double> bias;  // as stored (empty: no bias)
  Inputs(const Setup& s, std::mt19937_64& rng)
      : x(s.M, s.K, s.xt, s.pad, s.offset), w(s.N, s.K, s.wt, s.pad, s.offset) {
    std::normal_distribution<double> n(0.0, 1.0);
    x.fill([&](int64_t m, int64_t) { return s.zeros && m == 1 ? 0.0 : n(rng); });
    w.fill([&](int64_t r, int64_t) { return s.zeros && r % 5 == 2 ? 0.0 : n(rng); });
    if (s.bias) {
      b.emplace(1, s.N, s.N, s.offset);
      b->fill([&](int64_t, int64_t c) { return s.zeros && (c % 5 == 2 || c % 3 == 0) ? 0.0 : n(rng); });
      for (int64_t c = 0; c < s.N; ++c) bias.push_back(b->get(0, c));
    }
  }
};

// Forward as the glue runs it; checks y.  Returns y (the saved output for a chained backward).
template <class T> Matrix<T> forward(const std::string& name, const Setup& s, const Cfg& c, Inputs<T>& in) {
  Matrix<T> y(s.M, s.N, s.N + s.pad, s.offset);
  if (s.M == 0 || s.N == 0) return y;  // the glue launches nothing
  GemmArgs<T> a;
  a.a = operand<T>(in.x, false);
  a.b = operand<T>(in.w, false);
  a.c = y.data();
  a.c_rs = y.ld();
  a.c_cs = 1;
  a.bias = in.b ? in.b->data() : nullptr;
  a.relu = s.relu;
  a.M = s.M;
  a.N = s.N;
  a.K = s.K;
  run_gemm(name + ": forward", a, c, s.vec);
  const bool tf32 = std::is_same_v<T, float> && c.kernel == GemmKernel::Wmma;
  const Ref ref = gemm_ref(
      s.M, s.N, s.K, [&](int64_t m, int64_t k) { return in.x.get(m, k); },
      [&](int64_t n, int64_t k) { return in.w.get(n, k); }, in.bias, s.relu, tf32);
  expect_ref("y", ref, [&](int64_t m, int64_t n) { return y.get(m, n); }, tol_for<T>());
  expect(y.padding_intact(), "the forward wrote into the padding between rows of y");
  if (s.zeros) {  // designed zeros: exactly 0 (both with and without ReLU)
    bool ok = true;
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n)
        if ((n % 5 == 2 || (m == 1 && n % 3 == 0)) && y.get(m, n) != 0.0) ok = false;
    expect(ok, "a pre-activation that is exactly 0 did not give an output of exactly 0");
  }
  return y;
}

// Backward as the glue runs it (linear_relu_bwd), with grad_output g and the saved output y (null:
// plain linear) in one layout; checks dx, dW, db.
template <class T>
void backward(const std::string& name, const Setup& s, const Cfg& c, Inputs<T>& in, const Matrix<T>& g,
              const Matrix<T>* y) {
  const int64_t M = s.M, N = s.N, K = s.K;
  const bool relu = y != nullptr;
  const auto [need_x, need_w, need_b] = s.mask;
  // outputs: dx contiguous-like [M, K]; dW in the weight's layout (transposed iff W is); db [N]
  Matrix<T> gx(M, K, K + s.pad, s.offset);
  Mat2<T> gw(N, K, s.wt, s.pad, s.offset);
  Matrix<T> gb(1, N, N, s.offset);
  Mat2<T>& x = in.x;
  Mat2<T>& w = in.w;
  // g (masked by y, same strides) as the glue's operand(): [M, N], rs = ld, cs = 1, or read transposed
  auto g_op = [&](bool transposed) {
    GemmOperand<T> op;
    op.ptr = g.data();
    op.s_out = transposed ? 1 : g.ld();
    op.s_red = transposed ? g.ld() : 1;
    op.relu_out = relu ? y->data() : nullptr;
    return op;
  };
  const long bias_before = launches(kBiasGradKernel);
  bool bias_done = false;
  if (need_w && K > 0 && N > 0) {
    GemmArgs<T> a;  // dW[n, k] = sum_m dz[m, n] x[m, k]: A = g^T masked, B = x^T; db = row sums of A
    a.a = g_op(true);
    a.b = operand<T>(x, true);
    a.c = gw.data();
    a.c_rs = gw.rs();
    a.c_cs = gw.cs();
    a.a_row_sums = need_b ? gb.data() : nullptr;
    a.M = N;
    a.N = K;
    a.K = M;
    run_gemm(name + ": dW", a, c, s.vec);
    bias_done = need_b;
  }
  if (need_b && !bias_done) {
    const char* err = pyops::cuda::linear_bias_grad<T>(g.data(), g.ld(), 1, relu ? y->data() : nullptr, gb.data(), M,
                                                       N, nullptr);
    expect(err == nullptr, std::string("linear_bias_grad: launch status: ") + (err ? err : ""));
  }
  expect(launches(kBiasGradKernel) == bias_before + (need_b && !bias_done && N > 0 ? 1 : 0),
         std::string(kBiasGradKernel) + (bias_done ? " was launched though dW formed db" : " was not launched once"));
  if (need_x && M > 0 && K > 0) {
    GemmArgs<T> a;  // dx[m, k] = sum_n dz[m, n] W[n, k]: A = g masked, B = W^T
    a.a = g_op(false);
    a.b = operand<T>(w, true);
    a.c = gx.data();
    a.c_rs = gx.ld();
    a.c_cs = 1;
    a.M = M;
    a.N = K;
    a.K = N;
    run_gemm(name + ": dx", a, c, s.vec);
  }

  // references from the stored values; dz = g * [y > 0]
  const bool tf32 = std::is_same_v<T, float> && c.kernel == GemmKernel::Wmma;
  const Tol tol = tol_for<T>();
  std::vector<double> dz(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) dz[size_t(m * N + n)] = !relu || y->get(m, n) > 0 ? g.get(m, n) : 0.0;
  const auto dzf = [&](int64_t m, int64_t n) { return dz[size_t(m * N + n)]; };
  if (need_w) {
    const Ref r = gemm_ref(
        N, K, M, [&](int64_t n, int64_t m) { return dzf(m, n); }, [&](int64_t k, int64_t m) { return x.get(m, k); },
        {}, false, tf32);
    expect_ref("dW", r, [&](int64_t n, int64_t k) { return gw.get(n, k); }, tol);
    expect(gw.buf.padding_intact(), "dW: written into the padding between rows");
  }
  if (need_b) {  // db: plain sums (also on the TF32 path: the row sums take the unrounded tile)
    const Ref r = gemm_ref(
        1, N, M, [&](int64_t, int64_t) { return 1.0; }, [&](int64_t n, int64_t m) { return dzf(m, n); }, {}, false,
        false);
    expect_ref("db", r, [&](int64_t, int64_t n) { return gb.get(0, n); }, tol);
  }
  if (need_x) {
    const Ref r = gemm_ref(
        M, K, N, dzf, [&](int64_t k, int64_t n) { return w.get(n, k); }, {}, false, tf32);
    expect_ref("dx", r, [&](int64_t m, int64_t k) { return gx.get(m, k); }, tol);
    expect(gx.padding_intact(), "dx: written into the padding between rows");
  }
}

template <class T> void forward_case(const std::string& name, const Setup& s, const Cfg& c) {
  auto rng = rng_for(name);
  Inputs<T> in(s, rng);
  forward<T>(name, s, c, in);
}

// Backward on its own: the saved output is relu(normal) -- about half of it exactly 0.
template <class T> void backward_case(const std::string& name, const Setup& s, const Cfg& c) {
  auto rng = rng_for(name);
  std::normal_distribution<double> n(0.0, 1.0);
  Inputs<T> in(s, rng);
  Matrix<T> g(s.M, s.N, s.N + s.pad, s.offset), y(s.M, s.N, s.N + s.pad, s.offset);
  g.fill([&](int64_t, int64_t) { return n(rng); });
  y.fill([&](int64_t, int64_t) { return std::max(0.0, n(rng)); });
  backward<T>(name, s, c, in, g, s.relu ? &y : nullptr);
}

// Forward, then backward on the forward's own output: where the pre-activation is exactly 0 the output
// is 0 and no gradient flows (dW rows and db entries of the all-zero columns are exactly 0).
template <class T> void chained_case(const std::string& name, const Setup& s, const Cfg& c) {
  auto rng = rng_for(name);
  std::normal_distribution<double> n(0.0, 1.0);
  Inputs<T> in(s, rng);
  Matrix<T> y = forward<T>(name, s, c, in);
  Matrix<T> g(s.M, s.N, s.N + s.pad, s.offset);
  g.fill([&](int64_t, int64_t) { return n(rng); });
  backward<T>(name, s, c, in, g, s.relu ? &y : nullptr);
}

// Does every GEMM of the pass have an sm_count that makes the plan pick c.kernel?
bool reachable(const Setup& s, const Cfg& c, bool bwd) {
  std::vector<std::pair<int64_t, int64_t>> outs;
  if (!bwd && s.M > 0 && s.N > 0) outs.push_back({s.M, s.N});
  if (bwd && s.mask[1] && s.K > 0 && s.N > 0) outs.push_back({s.N, s.K});
  if (bwd && s.mask[0] && s.M > 0 && s.K > 0) outs.push_back({s.M, s.K});
  for (const auto& [m, n] : outs)
    if (sms_for(c.kernel, m, n) < 0) return false;
  return true;
}

template <class T> void register_dtype(const std::vector<Cfg>& cfgs, unsigned runs) {
  for (const Cfg& c : cfgs)
    for (const Setup& s : setups()) {
      if (!(s.runs & runs)) continue;
      if (s.zeros) {
        if (reachable(s, c, false) && reachable(s, c, true)) {
          const std::string name = case_name<T>("fwd+bwd", s, c);
          add(name, [=] { chained_case<T>(name, s, c); });
        }
        continue;
      }
      for (bool bwd : {false, true}) {
        if (!reachable(s, c, bwd)) continue;
        if (!bwd && s.M == 0) continue;  // nothing to launch
        const std::string name = case_name<T>(bwd ? "bwd" : "fwd", s, c);
        add(name, [=] { bwd ? backward_case<T>(name, s, c) : forward_case<T>(name, s, c); });
      }
    }
}

// The plan itself (host only): the tile choice by tile count against sm_count, the block sizes,
// tensor cores for fp16/bf16 and TF32, and the grid of the bias gradient.
void plan_case() {
  using pyops::cuda::linear_gemm_plan;
  const auto R = GemmDir::Red;
  struct P {
    int64_t M, N;
    int sms;
    bool tc;
    GemmKernel want;
    unsigned threads, grid;
  };
  const P ps[] = {
      {256, 256, 4, false, GemmKernel::Simt128, 256, 4},    // 2 x 2 tiles of 128 reach 4 SMs
      {67, 129, 4, false, GemmKernel::Simt64, 256, 6},      // 1 x 2 of 128 do not; 2 x 3 of 64 do
      {33, 31, 4, false, GemmKernel::Simt32, 64, 2},        // 1 of 64 does not: the smallest tile
      {4096, 4096, 132, false, GemmKernel::Simt128, 256, 1024},
      {1024, 1024, 132, false, GemmKernel::Simt64, 256, 256},
      {256, 256, 132, false, GemmKernel::Simt32, 64, 64},
      {33, 31, 132, true, GemmKernel::Wmma, 128, 1},
      {4096, 4096, 1, true, GemmKernel::Wmma, 128, 4096},
  };
  for (const P& p : ps) {
    const GemmPlan plan = linear_gemm_plan(p.M, p.N, 4, p.tc, p.sms, R, R, true);
    const std::string what = std::to_string(p.M) + "x" + std::to_string(p.N) + " on " + std::to_string(p.sms) + " SMs";
    expect(plan.kernel == p.want, what + ": plan chose " + kernel_label(plan.kernel));
    expect(plan.cfg.block.x == p.threads && plan.cfg.grid.x == p.grid,
           what + ": block " + std::to_string(plan.cfg.block.x) + ", grid " + std::to_string(plan.cfg.grid.x));
    expect(plan.cfg.smem <= 48 * 1024, what + ": more than 48 KiB of shared memory");
  }
  const GemmPlan s = linear_gemm_plan(67, 129, 8, false, 4, GemmDir::Out, GemmDir::Out, false);
  expect(s.vec == 1 && s.dir_a == R && s.dir_b == R, "scalar plan: vec 1, both directions Red");
  const GemmPlan v = linear_gemm_plan(67, 129, 2, true, 4, GemmDir::Out, GemmDir::Red, true);
  expect(v.vec == 8 && v.dir_a == GemmDir::Out && v.dir_b == R, "fp16 vector plan: vec 8, directions as given");
  const pyops::cuda::LaunchConfig bg = pyops::cuda::linear_bias_grad_plan(129);
  expect(bg.block.x == 32 && bg.block.y == 8 && bg.grid.x == 5, "bias-gradient plan: (32, 8) threads, 5 blocks");
}

// Every kernel ran with scalar loads and with vector loads in all four direction pairs.
void variants_case() {
  for (GemmKernel k : {GemmKernel::Simt128, GemmKernel::Simt64, GemmKernel::Simt32, GemmKernel::Wmma}) {
    std::vector<std::string> want = {variant_key(k, false, GemmDir::Red, GemmDir::Red)};
    for (GemmDir da : {GemmDir::Red, GemmDir::Out})
      for (GemmDir db : {GemmDir::Red, GemmDir::Out}) want.push_back(variant_key(k, true, da, db));
    for (const auto& w : want) expect(variants_seen().count(w) > 0, "never ran: " + w);
  }
  for (const char* k : {"linear_relu_simt128_kernel", "linear_relu_simt64_kernel", "linear_relu_simt32_kernel",
                        "linear_relu_wmma_kernel", kBiasGradKernel})
    expect(launches(k) > 0, std::string("never launched: ") + k);
}

const bool registered = [] {
  add("linear_relu/plan", plan_case);
  const auto S128 = GemmKernel::Simt128, S64 = GemmKernel::Simt64, S32 = GemmKernel::Simt32;
  register_dtype<float>({{S128, false}, {S64, false}, {S32, false}}, kSimt);
  // the glue passes allow_tf32 whatever the dtype: fp64 must stay on CUDA cores
  register_dtype<double>({{S128, true}, {S64, true}, {S32, true}}, kSimt);
  register_dtype<__half>({{GemmKernel::Wmma, false}}, kHalf);
  register_dtype<__nv_bfloat16>({{GemmKernel::Wmma, false}}, kLight);
  register_dtype<float>({{GemmKernel::Wmma, true}}, kLight);
  // last: needs the cases above (run it with them, e.g. `driver linear_relu`)
  add("linear_relu/variants-and-kernels-covered", variants_case);
  return true;
}();
}  // namespace
