// test_softmax.cpp -- kernels/cuda/softmax.cuh on the emulator, through softmax_forward/softmax_backward
// (the launch functions the cuda-sim glue calls; they run softmax_plan and PYOPS_LAUNCH), against
// double-precision references.  Every variant: warp / block per row, vectorized / scalar (cols not
// a multiple of the vector width, misaligned pointer, row stride not a multiple), forward /
// backward, softmax / log_softmax, float / double / __half / __nv_bfloat16.
#include "harness.h"
#include "kernels/cuda/softmax.cuh"

namespace {
using namespace harness;
using pyops::cuda::SoftmaxPlan;
using pyops::cuda::SoftmaxVariant;

struct Shape {
  const char* name;
  int64_t rows, cols, ld;
  int offset;  // elements before the data: 1 misaligns every pointer
  SoftmaxVariant variant;
  bool vec;  // the plan must choose vector accesses
};

// Vector width V = 16 / sizeof(T): 4 float, 2 double, 8 half/bf16.  64 and 2048 are multiples of every V.
template <class T> std::vector<Shape> shapes() {
  constexpr int64_t V = 16 / sizeof(T);
  const auto W = SoftmaxVariant::WarpPerRow, B = SoftmaxVariant::BlockPerRow;
  return {
      {"warp/vec", 6, 64, 64, 0, W, true},           // 6 rows: the second block has 2 of its 4 warps idle
      {"warp/vec-padded", 3, 64, 64 + V, 0, W, true},  // row stride > cols, still a multiple of V
      {"warp/cols-odd", 5, 37, 37, 0, W, false},      // cols % V != 0
      {"warp/misaligned", 3, 64, 64, 1, W, false},    // pointers 1 element past a 16-byte boundary
      {"warp/ld-odd", 3, 64, 65, 0, W, false},        // row stride % V != 0
      {"warp/one-col", 3, 1, 1, 0, W, false},
      {"block/vec", 3, 2048, 2048, 0, B, true},
      {"block/cols-odd", 3, 1501, 1501, 0, B, false},
      {"block/misaligned", 2, 2048, 2048 + V, 1, B, false},
  };
}

// Inputs: row 0 plain normal, row 1 with -inf entries, row 2 all -inf (output NaN, as in PyTorch),
// further rows scaled by 100 (outliers: most exp() underflow).
double input_value(std::mt19937_64& g, int64_t r, int64_t c) {
  std::normal_distribution<double> n(0.0, 3.0);
  const double v = n(g);
  if (r == 1 && c % 3 == 1) return -INFINITY;
  if (r == 2) return -INFINITY;
  return r >= 3 ? 100 * v : v;
}

// y = (log_)softmax over each row, in double, from the values as stored.
template <class T> std::vector<double> ref_forward(const Matrix<T>& x, bool log) {
  std::vector<double> y(size_t(x.rows() * x.cols()));
  for (int64_t r = 0; r < x.rows(); ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < x.cols(); ++c) m = std::max(m, x.get(r, c));
    for (int64_t c = 0; c < x.cols(); ++c) s += std::exp(x.get(r, c) - m);
    for (int64_t c = 0; c < x.cols(); ++c) {
      const double d = x.get(r, c) - m;  // NaN for a row of only -inf: (-inf) - (-inf)
      y[size_t(r * x.cols() + c)] = log ? d - std::log(s) : std::exp(d) / s;
    }
  }
  return y;
}

// dx from g and the forward output y: softmax  y * (g - sum g*y);  log_softmax  g - exp(y) * sum g.
template <class T> std::vector<double> ref_backward(const Matrix<T>& g, const Matrix<T>& y, bool log) {
  std::vector<double> dx(size_t(y.rows() * y.cols()));
  for (int64_t r = 0; r < y.rows(); ++r) {
    double dot = 0;
    for (int64_t c = 0; c < y.cols(); ++c) dot += log ? g.get(r, c) : g.get(r, c) * y.get(r, c);
    for (int64_t c = 0; c < y.cols(); ++c)
      dx[size_t(r * y.cols() + c)] = log ? g.get(r, c) - std::exp(y.get(r, c)) * dot : y.get(r, c) * (g.get(r, c) - dot);
  }
  return dx;
}

// float sums over >= 1000 elements: docs/testing.md ("Tolerances") allows rtol 1e-4 for such reductions.
template <class T> double rtol_for(int64_t cols) {
  return std::is_same_v<T, float> && cols >= 1000 ? 1e-4 : Dtype<T>::rtol;
}

void expect_plan(const SoftmaxPlan& p, const Shape& s, int vec_width) {
  expect(p.variant == s.variant, std::string("plan chose the ") +
                                     (p.variant == SoftmaxVariant::WarpPerRow ? "warp" : "block") + "-per-row variant");
  expect(p.vec == (s.vec ? vec_width : 1), "plan chose vector width " + std::to_string(p.vec));
}

std::string kernel_name(bool backward, SoftmaxVariant v) {
  return std::string("softmax_") + (backward ? "bwd" : "fwd") + (v == SoftmaxVariant::WarpPerRow ? "_warp" : "_block") +
         "_kernel";
}

template <class T> void forward_case(const std::string& name, const Shape& s, bool log) {
  auto rng = rng_for(name);
  Matrix<T> x(s.rows, s.cols, s.ld, s.offset), y(s.rows, s.cols, s.ld, s.offset);
  x.fill([&](int64_t r, int64_t c) { return input_value(rng, r, c); });
  const std::string k = kernel_name(false, s.variant);
  const long before = launches(k);
  SoftmaxPlan plan{};
  const char* err = pyops::cuda::softmax_forward<T>(x.data(), x.ld(), y.data(), y.ld(), s.rows, s.cols, log, nullptr, &plan);
  expect(err == nullptr, std::string("launch status: ") + (err ? err : ""));
  expect_plan(plan, s, 16 / sizeof(T));
  expect(launches(k) == before + 1, k + " was not launched exactly once");
  expect_close("y", y, ref_forward(x, log), rtol_for<T>(s.cols));
  expect(y.padding_intact(), "the kernel wrote into the padding between rows");
}

template <class T> void backward_case(const std::string& name, const Shape& s, bool log) {
  auto rng = rng_for(name);
  std::normal_distribution<double> n(0.0, 1.0);
  Matrix<T> x(s.rows, s.cols, s.cols), g(s.rows, s.cols, s.ld, s.offset), y(s.rows, s.cols, s.ld, s.offset),
      gx(s.rows, s.cols, s.ld, s.offset);
  x.fill([&](int64_t r, int64_t c) { return r == 2 ? n(rng) : input_value(rng, r, c); });  // finite forward rows
  const std::vector<double> yv = ref_forward(x, log);
  y.fill([&](int64_t r, int64_t c) { return yv[size_t(r * s.cols + c)]; });
  g.fill([&](int64_t, int64_t) { return n(rng); });
  const std::string k = kernel_name(true, s.variant);
  const long before = launches(k);
  SoftmaxPlan plan{};
  const char* err = pyops::cuda::softmax_backward<T>(g.data(), g.ld(), y.data(), y.ld(), gx.data(), gx.ld(), s.rows,
                                                     s.cols, log, nullptr, &plan);
  expect(err == nullptr, std::string("launch status: ") + (err ? err : ""));
  expect_plan(plan, s, 16 / sizeof(T));
  expect(launches(k) == before + 1, k + " was not launched exactly once");
  expect_close("grad_x", gx, ref_backward(g, y, log), rtol_for<T>(s.cols));
  expect(gx.padding_intact(), "the kernel wrote into the padding between rows");
}

template <class T> void register_dtype() {
  for (const Shape& s : shapes<T>())
    for (bool log : {false, true})
      for (bool bwd : {false, true}) {
        const std::string name = std::string(log ? "log_softmax" : "softmax") + (bwd ? "/bwd/" : "/fwd/") +
                                 Dtype<T>::name + "/" + s.name + "/" + std::to_string(s.rows) + "x" +
                                 std::to_string(s.cols);
        add(name, [=] { bwd ? backward_case<T>(name, s, log) : forward_case<T>(name, s, log); });
      }
}

const bool registered = [] {
  register_dtype<float>();
  register_dtype<double>();
  register_dtype<__half>();
  register_dtype<__nv_bfloat16>();
  return true;
}();
}  // namespace
