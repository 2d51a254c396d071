// linear_relu.cpp -- CPU linear / linear+ReLU, forward and backward.
//
// float32 GEMMs small enough for the project's own GEMM (gemm.h: sgemm::usable) run on it, and its
// epilogue sees each finished tile; the others go to the BLAS that libtorch_cpu links and exports (MKL
// in the x86-64 wheels; the ILP64 entry points sgemm_64 / dgemm_64, so sizes are int64) -- the same BLAS
// torch.mm calls, reached without a tensor, a dispatcher call or a layout check per GEMM
// (PYOPS_CPU_GEMM=blas sends the float32 ones there too).  Everything around the GEMMs is fused into as
// few passes as possible (at::vec loops, at::parallel_for):
//   forward   y = x W^T with + b and ReLU applied to each tile in the GEMM's epilogue (BLAS: beta = 0,
//             then ONE pass over y)                                             (torch: bias copy,
//             addmm reading it back, relu into a new tensor: 3 passes)
//   backward  ONE pass over (g, y): dz = g * [y > 0] written once, db = column sums of dz on the fly;
//             then dx = dz W and dW = dz^T x, each only when asked for          (torch: threshold_
//             backward, two GEMMs, a separate sum over dz)
// Without ReLU the backward GEMMs read g itself and the pass only forms db.  The math is derived in
// kernels/cuda/linear_relu.cuh.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "csrc/cpu/gemm.h"
#include "csrc/linear_relu.h"

// Fortran BLAS, ILP64 (64-bit integers), column-major.  Weak: a libtorch without them still loads
// pyops; the CPU linear ops then raise (see blas_gemm).
extern "C" {
void sgemm_64(const char* transa, const char* transb, const int64_t* m, const int64_t* n, const int64_t* k,
              const float* alpha, const float* a, const int64_t* lda, const float* b, const int64_t* ldb,
              const float* beta, float* c, const int64_t* ldc) __attribute__((weak));
void dgemm_64(const char* transa, const char* transb, const int64_t* m, const int64_t* n, const int64_t* k,
              const double* alpha, const double* a, const int64_t* lda, const double* b, const int64_t* ldb,
              const double* beta, double* c, const int64_t* ldc) __attribute__((weak));
}

namespace pyops::cpu {
namespace {

using at::vec::Vectorized;

// ---------------------------------------------------------------- GEMM through BLAS
// A strided matrix view: element (r, c) at p[r * rs + c * cs].
template <class T> struct View {
  T* p;
  int64_t rs, cs;
};

// How BLAS (column-major) reads a rows x cols view: 'N' with leading dim ld when its columns are
// contiguous runs, 'T' when its rows are; false when neither (the caller copies it first).
inline bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, char& trans, int64_t& ld) {
  if ((rs == 1 || rows == 1) && (cols == 1 || cs >= std::max<int64_t>(1, rows))) {
    trans = 'N';
    ld = cols == 1 ? std::max<int64_t>(1, rows) : cs;
    return true;
  }
  if ((cs == 1 || cols == 1) && (rows == 1 || rs >= std::max<int64_t>(1, cols))) {
    trans = 'T';
    ld = rows == 1 ? std::max<int64_t>(1, cols) : rs;
    return true;
  }
  return false;
}
inline bool blas_ok(const Matrix& m) {
  char t;
  int64_t ld;
  return blas_layout(m.rows, m.cols, m.rs, m.cs, t, ld);
}
// The matrix as BLAS can read it: itself, or a contiguous copy (kept alive in m.hold).
inline Matrix blas_ready(Matrix m, const at::Tensor& t) {
  if (blas_ok(m)) return m;
  m.hold = t.contiguous();
  m.data = m.hold.data_ptr();
  m.rs = m.cols;
  m.cs = 1;
  return m;
}

// C[m, n] = A[m, k] B[k, n], C column-major (c.rs == 1).
template <class T> void gemm_colmajor(int64_t m, int64_t n, int64_t k, View<const T> a, View<const T> b, View<T> c) {
  char ta, tb;
  int64_t lda, ldb;
  const bool ok = blas_layout(m, k, a.rs, a.cs, ta, lda) && blas_layout(k, n, b.rs, b.cs, tb, ldb);
  TORCH_INTERNAL_ASSERT(ok && (c.rs == 1 || m == 1), "linear: operand layout not BLAS-compatible");
  const int64_t ldc = n == 1 ? std::max<int64_t>(1, m) : c.cs;
  const T one = 1, zero = 0;
  if constexpr (std::is_same_v<T, float>) {
    TORCH_CHECK(sgemm_64 != nullptr, "linear: this libtorch_cpu exports no ILP64 BLAS (sgemm_64); pyops' CPU "
                "linear ops need it (use backend='torch')");
    sgemm_64(&ta, &tb, &m, &n, &k, &one, a.p, &lda, b.p, &ldb, &zero, c.p, &ldc);
  } else {
    TORCH_CHECK(dgemm_64 != nullptr, "linear: this libtorch_cpu exports no ILP64 BLAS (dgemm_64); pyops' CPU "
                "linear ops need it (use backend='torch')");
    dgemm_64(&ta, &tb, &m, &n, &k, &one, a.p, &lda, b.p, &ldb, &zero, c.p, &ldc);
  }
}

// C[m, n] = A[m, k] B[k, n], any strides: float32 within sgemm::usable through the project's own GEMM
// (gemm.h), the rest through BLAS, where a row-major C is computed as C^T = B^T A^T.
// k == 0 gives zeros.
template <class T> void gemm(int64_t m, int64_t n, int64_t k, View<const T> a, View<const T> b, View<T> c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c.p[i * c.rs + j * c.cs] = T(0);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm::usable(m, n, k)) {
      sgemm::gemm(m, n, k, {a.p, a.rs, a.cs}, {b.p, b.rs, b.cs},
                  [&](const float* tile, int64_t m0, int64_t n0, int rows, int cols) {
                    for (int r = 0; r < rows; ++r) {
                      float* dst = c.p + (m0 + r) * c.rs + n0 * c.cs;
                      const float* src = tile + r * sgemm::NR;
                      if (c.cs == 1 && cols == sgemm::NR) {  // a whole tile row: a constant-size copy, inlined
                        std::memcpy(dst, src, sizeof(float) * sgemm::NR);
                      } else if (c.cs == 1) {
                        std::memcpy(dst, src, sizeof(float) * size_t(cols));
                      } else {
                        for (int j = 0; j < cols; ++j) dst[j * c.cs] = src[j];
                      }
                    }
                  });
      return;
    }
  }
  if (c.rs == 1 || m == 1) gemm_colmajor<T>(m, n, k, a, b, c);
  else gemm_colmajor<T>(n, m, k, {b.p, b.cs, b.rs}, {a.p, a.cs, a.rs}, {c.p, c.cs, c.rs});
}

// Whether a layer's two backward GEMMs (dx and dW, independent: both read dz) run at once, one on each of
// two threads, each GEMM on one thread, instead of one after the other on both.  Where the intra-op pool has
// exactly two threads and both are the own GEMM's: with a team of two each GEMM packs a shared operand, meets
// at a barrier and joins (a parallel region each), which at the MNIST layers costs more than one thread
// loses by running one GEMM alone (docs/linear_relu.md, "CPU").  The bits are the same either way (gemm.h:
// each element is one chain of FMAs, whatever the thread count).  With more threads the GEMMs keep them all.
template <class T> bool one_gemm_per_thread(int64_t m1, int64_t n1, int64_t k1, int64_t m2, int64_t n2, int64_t k2) {
  if constexpr (std::is_same_v<T, float>) {
    return at::get_num_threads() == 2 && !omp_in_parallel() && !at::in_parallel_region() &&
           sgemm::usable(m1, n1, k1) && sgemm::usable(m2, n2, k2) && m1 > 0 && n1 > 0 && k1 > 0 && m2 > 0 &&
           n2 > 0 && k2 > 0;
  }
  return false;
}

template <class T> View<const T> view(const Matrix& m, bool transposed = false) {
  const T* p = static_cast<const T*>(m.data);
  return transposed ? View<const T>{p, m.cs, m.rs} : View<const T>{p, m.rs, m.cs};
}

// ---------------------------------------------------------------- fused passes
// Work per parallel task: enough (~16K elements) that splitting beats the fork/join.
constexpr int64_t kGrainElems = 16384;

// y[m, :] = relu(y[m, :] + b), y contiguous [M, N].  NaN stays NaN (clamp_min), as in torch.relu.
template <class T> void bias_relu_pass(T* y, const T* bias, int64_t M, int64_t N, bool relu) {
  using V = Vectorized<T>;
  const V zero(T(0));
  at::parallel_for(0, M, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(N, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* yr = y + r * N;
      for (int64_t c = 0; c < N; c += V::size()) {
        const int64_t n = std::min<int64_t>(V::size(), N - c);
        V v = V::loadu(yr + c, n);
        if (bias) v = v + V::loadu(bias + c, n);
        if (relu) v = at::vec::clamp_min(v, zero);
        v.store(yr + c, n);
      }
    }
  });
}

// The same on one tile of the project's GEMM (tile rows of sgemm::NR floats) written into y (row stride
// ldy): the forward's epilogue, with the arithmetic of bias_relu_pass.
inline void bias_relu_tile(const float* tile, float* y, int64_t ldy, const float* bias, int rows, int cols, bool relu) {
  using V = Vectorized<float>;
  const V zero(0.f);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; c += V::size()) {
      const int n = std::min<int>(V::size(), cols - c);
      V v = V::loadu(tile + r * sgemm::NR + c, n);
      if (bias) v = v + V::loadu(bias + c, n);
      if (relu) v = at::vec::clamp_min(v, zero);
      v.store(y + r * ldy + c, n);
    }
}

// One pass over the gradient g [M, N] (strides g_rs, g_cs) and, with ReLU, the output y (contiguous):
//   dz = g * [y > 0] into dz (contiguous [M, N]) when dz != nullptr,
//   db = column sums of dz (of g without ReLU) when db != nullptr.
// Parallel over blocks of columns, so each task owns its slice of db and no partial sums need merging; each
// column is summed row by row, whatever the blocks, so the bits do not depend on the thread count.
constexpr int kMaskVecs = 8;  // column block: 8 vectors, their db sums in registers

// A whole block of kMaskVecs vectors from column c0 on, g's columns contiguous.  The flags are template
// arguments and the vector loop has a constant count, so the 8 sums stay in registers and the row loop has
// no branch (the general loop below, with its partial vectors and run-time flags, ran ~3x slower).
template <class T, bool kY, bool kDz, bool kDb>
void mask_block(const T* g, int64_t g_rs, const T* y, T* dz, T* db, int64_t M, int64_t N, int64_t c0) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  V acc[kMaskVecs];
  for (auto& a : acc) a = V(T(0));
  const V zero(T(0));
  for (int64_t m = 0; m < M; ++m) {
    const T* gr = g + m * g_rs + c0;
#pragma GCC unroll 8
    for (int i = 0; i < kMaskVecs; ++i) {
      V v = V::loadu(gr + i * W);
      // zero where y <= 0; a NaN y passes g, as PyTorch's threshold_backward
      if constexpr (kY) v = V::blendv(v, zero, V::loadu(y + m * N + c0 + i * W) <= zero);
      if constexpr (kDz) v.store(dz + m * N + c0 + i * W);
      if constexpr (kDb) acc[i] = acc[i] + v;
    }
  }
  if constexpr (kDb)
    for (int i = 0; i < kMaskVecs; ++i) acc[i].store(db + c0 + i * W);
}

template <class T, bool kY, bool kDz>
void mask_block(const T* g, int64_t g_rs, const T* y, T* dz, T* db, int64_t M, int64_t N, int64_t c0) {
  if (db) mask_block<T, kY, kDz, true>(g, g_rs, y, dz, db, M, N, c0);
  else mask_block<T, kY, kDz, false>(g, g_rs, y, dz, db, M, N, c0);
}

template <class T>
void mask_bias_grad_pass(const T* g, int64_t g_rs, int64_t g_cs, const T* y, T* dz, T* db, int64_t M, int64_t N) {
  using V = Vectorized<T>;
  constexpr int kVecs = kMaskVecs;
  constexpr int64_t kCols = kVecs * V::size();
  const int64_t blocks = (N + kCols - 1) / kCols;
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(M * kCols, 1));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * kCols, c1 = std::min(N, c0 + kCols);
      if (g_cs == 1 && c1 - c0 == kCols) {
        if (y && dz) mask_block<T, true, true>(g, g_rs, y, dz, db, M, N, c0);
        else if (y) mask_block<T, true, false>(g, g_rs, y, dz, db, M, N, c0);
        else if (dz) mask_block<T, false, true>(g, g_rs, y, dz, db, M, N, c0);
        else mask_block<T, false, false>(g, g_rs, y, dz, db, M, N, c0);
        continue;
      }
      if (g_cs == 1) {
        V acc[kVecs];
        for (auto& a : acc) a = V(T(0));
        for (int64_t m = 0; m < M; ++m) {
          const T* gr = g + m * g_rs;
          for (int i = 0; i < kVecs; ++i) {
            const int64_t c = c0 + i * V::size(), n = std::min<int64_t>(V::size(), c1 - c);
            if (n <= 0) break;
            const bool full = n == V::size();  // the same for every row: a predictable branch
            V v = full ? V::loadu(gr + c) : V::loadu(gr + c, n);
            // zero where y <= 0; a NaN y passes g, as PyTorch's threshold_backward
            if (y) v = V::blendv(v, V(T(0)), (full ? V::loadu(y + m * N + c) : V::loadu(y + m * N + c, n)) <= V(T(0)));
            if (dz) v.store(dz + m * N + c, n);
            acc[i] = acc[i] + v;
          }
        }
        if (db)
          for (int i = 0; i < kVecs && c0 + i * V::size() < c1; ++i)
            acc[i].store(db + c0 + i * V::size(), std::min<int64_t>(V::size(), c1 - c0 - i * V::size()));
      } else {  // strided gradient (e.g. the expanded gradient of a sum): scalar
        if (db) std::fill(db + c0, db + c1, T(0));
        for (int64_t m = 0; m < M; ++m)
          for (int64_t c = c0; c < c1; ++c) {
            T v = g[m * g_rs + c * g_cs];
            if (y && y[m * N + c] <= T(0)) v = T(0);
            if (dz) dz[m * N + c] = v;
            if (db) db[c] += v;
          }
      }
    }
  });
}

template <class F> void dispatch_cpu_float(at::ScalarType st, F&& f) {
  if (st == at::kDouble) f(double{});
  else f(float{});  // dtype was checked: float32 or float64
}

// ---------------------------------------------------------------- ops
at::Tensor linear_relu_fwd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           bool relu) {
  const char* op = linear_name(relu);
  check_linear_args(input, weight, bias, op, /*allow_half=*/false);
  const int64_t N = weight.size(0), K = weight.size(1);
  at::Tensor y = empty_linear_output(input, weight);
  const Matrix x = blas_ready(as_matrix(input), input), w = blas_ready(as_matrix(weight), weight);
  const int64_t M = x.rows;
  if (M == 0 || N == 0) return y;
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  dispatch_cpu_float(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    T* yp = static_cast<T*>(y.data_ptr());
    const T* bp = b.defined() ? static_cast<const T*>(b.data_ptr()) : nullptr;
    if constexpr (std::is_same_v<T, float>) {
      if (sgemm::usable(M, N, K)) {  // y = x W^T with + b and ReLU applied to each tile while it is in cache
        const View<const T> xv = view<T>(x), wv = view<T>(w, /*transposed=*/true);
        sgemm::gemm(M, N, K, {xv.p, xv.rs, xv.cs}, {wv.p, wv.rs, wv.cs},
                    [&](const float* tile, int64_t m0, int64_t n0, int rows, int cols) {
                      bias_relu_tile(tile, yp + m0 * N + n0, N, bp ? bp + n0 : nullptr, rows, cols, relu);
                    });
        return;
      }
    }
    gemm<T>(M, N, K, view<T>(x), view<T>(w, /*transposed=*/true), {yp, N, 1});  // y = x W^T
    if (b.defined() || relu) bias_relu_pass<T>(yp, bp, M, N, relu);
  });
  return y;
}

// g_is_scratch: grad_output is mlp_bwd's own tensor (the grad_input of the layer above), which nobody else holds:
// the ReLU mask is then applied in place, where the GEMM that produced it left it in cache, instead of into a new
// tensor (an allocation and a write to memory that is usually not in cache).  The values are the same.
std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_relu_bwd_impl(const at::Tensor& grad_output,
                                                                    const at::Tensor& input, const at::Tensor& weight,
                                                                    const std::optional<at::Tensor>& output,
                                                                    std::array<bool, 3> output_mask, bool g_is_scratch) {
  check_linear_backward_args(grad_output, input, weight, output, /*allow_half=*/false);
  const bool relu = output.has_value();
  const auto [need_x, need_w, need_b] = output_mask;
  const int64_t N = weight.size(0), K = weight.size(1);
  const auto [gx, gw, gb] = linear_grads(input, weight, output_mask);
  Matrix g = as_matrix(grad_output);
  const int64_t M = g.rows;
  dispatch_cpu_float(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    T* db = need_b ? static_cast<T*>(gb.data_ptr()) : nullptr;
    // dz: the masked gradient (ReLU), else g itself
    at::Tensor dz_hold;
    Matrix dz = g;
    const bool gemms = (need_x && M > 0 && K > 0) || (need_w && N > 0 && K > 0);
    if (relu) {
      const at::Tensor y = output->contiguous();  // our forward's output: already contiguous
      T* dz_out = nullptr;
      if (gemms) {
        if (g_is_scratch && g.rs == N && g.cs == 1) {  // in place: each element is read, then written
          dz_out = static_cast<T*>(g.data);
        } else {
          dz_hold = at::empty({M, N}, input.options());
          dz.hold = dz_hold, dz.data = dz_hold.data_ptr(), dz.rs = N, dz.cs = 1;
          dz_out = static_cast<T*>(dz_hold.data_ptr());
        }
      }
      if (gemms || need_b)
        mask_bias_grad_pass<T>(static_cast<const T*>(g.data), g.rs, g.cs, static_cast<const T*>(y.data_ptr()),
                               dz_out, db, M, N);
    } else {
      if (need_b) mask_bias_grad_pass<T>(static_cast<const T*>(g.data), g.rs, g.cs, nullptr, nullptr, db, M, N);
      if (gemms) dz = blas_ready(g, grad_output);
    }
    const Matrix w = need_x ? blas_ready(as_matrix(weight), weight) : Matrix{};
    const Matrix x = need_w ? blas_ready(as_matrix(input), input) : Matrix{};
    auto dx = [&] {  // dx = dz W: [M, N] x [N, K]
      gemm<T>(M, K, N, view<T>(dz), view<T>(w), {static_cast<T*>(gx.data_ptr()), K, 1});
    };
    auto dw = [&] {  // dW = dz^T x: [N, M] x [M, K], in gw's layout (weight's)
      gemm<T>(N, K, M, view<T>(dz, /*transposed=*/true), view<T>(x),
              {static_cast<T*>(gw.data_ptr()), gw.stride(0), gw.stride(1)});
    };
    if (need_x && need_w && one_gemm_per_thread<T>(M, K, N, N, K, M)) {
#pragma omp parallel num_threads(2)
      {
        const int t = omp_get_thread_num();
        if (t == 0) dx();
        if (t == 1 || omp_get_num_threads() == 1) dw();
      }
    } else {
      if (need_x) dx();
      if (need_w) dw();
    }
  });
  return {gx, gw, gb};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_relu_bwd(const at::Tensor& grad_output, const at::Tensor& input,
                                                               const at::Tensor& weight,
                                                               const std::optional<at::Tensor>& output,
                                                               std::array<bool, 3> output_mask) {
  return linear_relu_bwd_impl(grad_output, input, weight, output, output_mask, /*g_is_scratch=*/false);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyops, CPU, m) {
  PYOPS_LINEAR_IMPLS_WITH(m, linear_relu_bwd_impl);
}

}  // namespace pyops::cpu
