// harness.h -- the tiny framework of the torch-free C++ driver (tests/cpp).
//
// The driver runs the project's real CUDA kernels (kernels/cuda/*.cuh) on the CPU, through their
// real launch and plan functions -- the code the `cuda-sim` extension runs -- against double-precision
// C++ references.  It is built three times (plain, ASan+UBSan, TSan; see tests/cpp/Makefile).
//
// Adding an op: one file tests/cpp/test_<op>.cpp that includes "harness.h" and "kernels/cuda/<op>.cuh"
// (compiled like the PyTorch glue: declarations of the launch functions; the device code itself is
// csrc/sim/kernels.cpp, linked in) and registers its cases:
//
//     static const bool registered = [] {
//       harness::add("adam/float/n=1000", [] { ... harness::expect(...); harness::expect_close(...); });
//       return true;
//     }();
//
// A case fails when an expectation fails or a launch throws (the emulator's errors: divergent
// barrier, deadlock, bad mask, invalid configuration; strict mode is on, so undefined-behaviour
// hazards are errors too).  After all cases, the driver fails if a __global__ kernel declared in
// kernels/cuda/*.cuh was never launched.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace pyops::sim {  // csrc/sim/kernels.cpp: the emulated kernels' launch counts
std::map<std::string, long> launch_counts();
void reset_launch_counts();
}  // namespace pyops::sim

namespace harness {

// ---- registration and checks
void add(std::string name, std::function<void()> fn);
// Record a failure of the running case (the case goes on; the driver reports all of them).
void fail(const std::string& msg);
inline bool expect(bool ok, const std::string& msg) {
  if (!ok) fail(msg);
  return ok;
}
// Launches of kernel `name` (template arguments stripped) since the driver started.
long launches(const std::string& name);

// ---- element types: float, double, __half, __nv_bfloat16 on the host
template <class T> struct Dtype;
template <> struct Dtype<float> {
  static constexpr const char* name = "float";
  static constexpr double rtol = 1e-5, atol = 1e-6;  // docs/testing.md "Tolerances" (tests/helpers.py TOL)
  static float from(double v) { return float(v); }
  static double to(float v) { return v; }
};
template <> struct Dtype<double> {
  static constexpr const char* name = "double";
  static constexpr double rtol = 1e-7, atol = 1e-10;
  static double from(double v) { return v; }
  static double to(double v) { return v; }
};
template <> struct Dtype<__half> {
  static constexpr const char* name = "half";
  static constexpr double rtol = 2e-2, atol = 1e-3;
  static __half from(double v) { return __float2half_rn(float(v)); }
  static double to(__half v) { return __half2float(v); }
};
template <> struct Dtype<__nv_bfloat16> {
  static constexpr const char* name = "bfloat16";
  static constexpr double rtol = 2e-2, atol = 1e-2;
  static __nv_bfloat16 from(double v) { return __float2bfloat16_rn(float(v)); }
  static double to(__nv_bfloat16 v) { return __bfloat162float(v); }
};
template <class T> double to_double(T v) { return Dtype<T>::to(v); }
template <class T> T from_double(double v) { return Dtype<T>::from(v); }

// A [rows, cols] matrix with row stride ld, in a heap block of exactly the elements it spans
// ((rows - 1) * ld + cols), so ASan reports any access past its end.  `offset` elements before the
// data (offset 1 breaks the 16-byte alignment of the data pointer); padding between rows (ld > cols)
// is filled with a sentinel that `padding_intact()` checks, so a kernel writing outside its columns is seen.
template <class T> class Matrix {
 public:
  Matrix(int64_t rows, int64_t cols, int64_t ld, int offset = 0)
      : rows_(rows), cols_(cols), ld_(ld), offset_(offset),
        n_(rows ? (rows - 1) * ld + cols : 0), mem_(new T[size_t(n_ + offset)]) {
    for (int64_t i = 0; i < n_ + offset; ++i) mem_[i] = sentinel();
  }
  T* data() { return mem_.get() + offset_; }
  const T* data() const { return mem_.get() + offset_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t ld() const { return ld_; }
  T& at(int64_t r, int64_t c) { return data()[r * ld_ + c]; }
  double get(int64_t r, int64_t c) const { return to_double(data()[r * ld_ + c]); }
  void set(int64_t r, int64_t c, double v) { at(r, c) = from_double<T>(v); }
  template <class F> void fill(F f) {  // f(r, c) -> double
    for (int64_t r = 0; r < rows_; ++r)
      for (int64_t c = 0; c < cols_; ++c) set(r, c, f(r, c));
  }
  bool padding_intact() const {
    const T s = sentinel();
    for (int64_t r = 0; r + 1 < rows_; ++r)
      for (int64_t c = cols_; c < ld_; ++c)
        if (std::memcmp(&data()[r * ld_ + c], &s, sizeof(T))) return false;
    return true;
  }
  static T sentinel() { return from_double<T>(-12345.0); }

 private:
  int64_t rows_, cols_, ld_;
  int offset_;
  int64_t n_;
  std::unique_ptr<T[]> mem_;
};

// |got - want| <= atol + rtol * |want| elementwise (NaN == NaN), with the dtype's tolerances unless given.
// Reports the worst element.
template <class T>
bool expect_close(const std::string& what, const Matrix<T>& got, const std::vector<double>& want,
                  double rtol = Dtype<T>::rtol, double atol = Dtype<T>::atol) {
  double worst = 0;
  int64_t wr = -1, wc = -1;
  for (int64_t r = 0; r < got.rows(); ++r)
    for (int64_t c = 0; c < got.cols(); ++c) {
      const double g = got.get(r, c), w = want[size_t(r * got.cols() + c)];
      double excess;
      if (std::isnan(w) || std::isnan(g)) excess = std::isnan(w) && std::isnan(g) ? 0 : INFINITY;
      else if (std::isinf(w) || std::isinf(g)) excess = g == w ? 0 : INFINITY;
      else excess = std::fabs(g - w) / (atol + rtol * std::fabs(w));
      if (excess > worst) worst = excess, wr = r, wc = c;
    }
  if (worst <= 1) return true;
  char m[320];
  snprintf(m, sizeof m, "%s: element (%lld, %lld) is %.9g, expected %.9g (rtol %g, atol %g)", what.c_str(),
           (long long)wr, (long long)wc, got.get(wr, wc), want[size_t(wr * got.cols() + wc)], rtol, atol);
  fail(m);
  return false;
}

// Deterministic random numbers, one stream per case name.
inline std::mt19937_64 rng_for(const std::string& name) { return std::mt19937_64(std::hash<std::string>{}(name)); }

}  // namespace harness
