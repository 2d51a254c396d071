// linear_relu.cpp -- CPU linear / linear+ReLU, forward and backward.
//
// The GEMMs go to the BLAS that libtorch_cpu links and exports (MKL in the x86-64 wheels; the ILP64
// entry points sgemm_64 / dgemm_64, so sizes are int64) -- the same BLAS torch.mm calls, reached
// without a tensor, a dispatcher call or a layout check per GEMM.  Everything around the GEMMs is
// fused into as few passes as possible (at::vec loops, at::parallel_for):
//   forward   y = x W^T (BLAS, beta = 0), then ONE pass over y: + b, ReLU       (torch: bias copy,
//             addmm reading it back, relu into a new tensor: 3 passes)
//   backward  ONE pass over (g, y): dz = g * [y > 0] written once, db = column sums of dz on the fly;
//             then dx = dz W and dW = dz^T x (BLAS), each only when asked for   (torch: threshold_
//             backward, two GEMMs, a separate sum over dz)
// Without ReLU the backward GEMMs read g itself and the pass only forms db.  The math is derived in
// kernels/cuda/linear_relu.cuh.
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "csrc/cpu/adam_vec.h"
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

// C[m, n] = A[m, k] B[k, n], any strides: float32 with k <= sgemm::kMaxK through the project's own
// GEMM (gemm.h), the rest through BLAS, where a row-major C is computed as C^T = B^T A^T.
// k == 0 gives zeros.
template <class T> void gemm(int64_t m, int64_t n, int64_t k, View<const T> a, View<const T> b, View<T> c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c.p[i * c.rs + j * c.cs] = T(0);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm::usable(k)) {
      sgemm::gemm(m, n, k, {a.p, a.rs, a.cs}, {b.p, b.rs, b.cs},
                  [&](const float* tile, int64_t m0, int64_t n0, int rows, int cols) {
                    for (int r = 0; r < rows; ++r) {
                      float* dst = c.p + (m0 + r) * c.rs + n0 * c.cs;
                      if (c.cs == 1) std::memcpy(dst, tile + r * sgemm::NR, sizeof(float) * size_t(cols));
                      else
                        for (int j = 0; j < cols; ++j) dst[j * c.cs] = tile[r * sgemm::NR + j];
                    }
                  });
      return;
    }
  }
  if (c.rs == 1 || m == 1) gemm_colmajor<T>(m, n, k, a, b, c);
  else gemm_colmajor<T>(n, m, k, {b.p, b.cs, b.rs}, {a.p, a.cs, a.rs}, {c.p, c.cs, c.rs});
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
// Parallel over blocks of columns, so each task owns its slice of db and no partial sums need merging.
template <class T>
void mask_bias_grad_pass(const T* g, int64_t g_rs, int64_t g_cs, const T* y, T* dz, T* db, int64_t M, int64_t N) {
  using V = Vectorized<T>;
  constexpr int kVecs = 8;                         // column block: 8 vectors, their db sums in registers
  constexpr int64_t kCols = kVecs * V::size();
  const int64_t blocks = (N + kCols - 1) / kCols;
  const int64_t grain = std::max<int64_t>(1, kGrainElems / std::max<int64_t>(M * kCols, 1));
  at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t c0 = blk * kCols, c1 = std::min(N, c0 + kCols);
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
  at::Tensor y = at::empty(linear_out_shape(input, N), input.options());
  const Matrix x = blas_ready(as_matrix(input), input), w = blas_ready(as_matrix(weight), weight);
  const int64_t M = x.rows;
  if (M == 0 || N == 0) return y;
  const at::Tensor b = bias ? bias->contiguous() : at::Tensor();
  dispatch_cpu_float(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    T* yp = static_cast<T*>(y.data_ptr());
    const T* bp = b.defined() ? static_cast<const T*>(b.data_ptr()) : nullptr;
    if constexpr (std::is_same_v<T, float>) {
      if (sgemm::usable(K)) {  // y = x W^T with + b and ReLU applied to each tile while it is in cache
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_relu_bwd(const at::Tensor& grad_output, const at::Tensor& input,
                                                               const at::Tensor& weight,
                                                               const std::optional<at::Tensor>& output,
                                                               std::array<bool, 3> output_mask) {
  const char* op = check_linear_backward_args(grad_output, input, weight, output, /*allow_half=*/false);
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
      if (gemms) {
        dz_hold = at::empty({M, N}, input.options());
        dz.hold = dz_hold, dz.data = dz_hold.data_ptr(), dz.rs = N, dz.cs = 1;
      }
      if (gemms || need_b)
        mask_bias_grad_pass<T>(static_cast<const T*>(g.data), g.rs, g.cs, static_cast<const T*>(y.data_ptr()),
                               gemms ? static_cast<T*>(dz_hold.data_ptr()) : nullptr, db, M, N);
    } else {
      if (need_b) mask_bias_grad_pass<T>(static_cast<const T*>(g.data), g.rs, g.cs, nullptr, nullptr, db, M, N);
      if (gemms) dz = blas_ready(g, grad_output);
    }
    if (need_x) {  // dx = dz W: [M, N] x [N, K]
      const Matrix w = blas_ready(as_matrix(weight), weight);
      gemm<T>(M, K, N, view<T>(dz), view<T>(w), {static_cast<T*>(gx.data_ptr()), K, 1});
    }
    if (need_w) {  // dW = dz^T x: [N, M] x [M, K], in gw's layout (weight's)
      const Matrix x = blas_ready(as_matrix(input), input);
      gemm<T>(N, K, M, view<T>(dz, /*transposed=*/true), view<T>(x),
              {static_cast<T*>(gw.data_ptr()), gw.stride(0), gw.stride(1)});
    }
  });
  return {gx, gw, gb};
}

// ---------------------------------------------------------------- mlp_bwd_adam: the update inside the GEMM
// What the default kernel does -- mlp_bwd (no grad_input), then adam_step on the weights and the existing
// biases -- with the update of each weight applied to the tiles of its gradient GEMM as they leave the
// registers.  Layer by layer from the top, in linear_relu_bwd's order:
//   dz, db = the mask / bias-gradient pass                        (mask_bias_grad_pass)
//   dx     = dz W                                                  (gemm, W still the old weight)
//   W      = Adam(W, dW = dz^T x), tile by tile                    (sgemm::gemm + adam_lanes)
// then Adam on the biases with their db.  dW never reaches memory: the update reads p, m, v while the GEMM
// computes, instead of a pass of its own over p, g, m, v after the backward.  The same GEMM tiles (one FMA
// chain per element) and the same adam_lanes as the two ops, so the results are theirs bit for bit
// (tests/test_train_step.py).  Taken for float32 with contiguous operands and a batch the project's GEMM
// handles; anything else runs the two ops' own code (and their checks).
bool bwd_adam_fusable(const at::Tensor& grad_output, const at::Tensor& input, at::TensorList weights,
                      at::TensorList outputs, const c10::List<bool>& with_bias, at::TensorList biases,
                      at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                      bool amsgrad) {
  const size_t L = weights.size();
  auto f32 = [](const at::Tensor& t, int64_t dim) {
    return t.defined() && t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == dim &&
           t.is_contiguous() && !t.is_neg() && !t.is_conj();
  };
  if (L == 0 || with_bias.size() != L || outputs.size() != L - 1 || !f32(input, 2) || !f32(grad_output, 2)) return false;
  const int64_t M = input.size(0);
  if (M == 0 || !sgemm::usable(M)) return false;
  size_t n_bias = 0;
  for (size_t i = 0; i < L; ++i) {
    const at::Tensor& w = weights[i];
    if (!f32(w, 2) || w.size(1) != (i ? weights[i - 1].size(0) : input.size(1)) || w.numel() == 0) return false;
    for (size_t j = 0; j < i; ++j)
      if (weights[j].data_ptr() == w.data_ptr()) return false;  // a shared weight: the update order would show
    if (i + 1 < L && !(f32(outputs[i], 2) && outputs[i].size(0) == M && outputs[i].size(1) == w.size(0))) return false;
    if (with_bias.get(i)) {
      if (n_bias >= biases.size() || !f32(biases[n_bias], 1) || biases[n_bias].size(0) != w.size(0)) return false;
      ++n_bias;
    }
  }
  if (n_bias != biases.size() || grad_output.size(0) != M || grad_output.size(1) != weights[L - 1].size(0))
    return false;
  const size_t P = L + n_bias;
  if (exp_avgs.size() != P || exp_avg_sqs.size() != P || max_exp_avg_sqs.size() != (amsgrad ? P : 0)) return false;
  for (size_t i = 0; i < P; ++i) {
    const at::Tensor& p = i < L ? weights[i] : biases[i - L];
    for (const at::Tensor* s : {&exp_avgs[i], &exp_avg_sqs[i], amsgrad ? &max_exp_avg_sqs[i] : nullptr})
      if (s && !(f32(*s, p.dim()) && s->sizes() == p.sizes())) return false;
  }
  return true;
}

void mlp_bwd_adam_cpu(const at::Tensor& grad_output, const at::Tensor& input, at::TensorList weights,
                      at::TensorList outputs, const c10::List<bool>& with_bias, at::TensorList biases,
                      at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs,
                      at::TensorList state_steps, const std::optional<at::Tensor>& lr_tensor,
                      const std::optional<at::Tensor>& counters, double lr, double beta1, double beta2,
                      double weight_decay, double eps, bool amsgrad, bool maximize, bool decoupled_weight_decay,
                      bool capturable) {
  check_with_bias("mlp_bwd_adam", weights.size(), with_bias, biases.size());
  const std::vector<at::Tensor> params = weights_then_biases(weights, biases);
  if (!bwd_adam_fusable(grad_output, input, weights, outputs, with_bias, biases, exp_avgs, exp_avg_sqs,
                        max_exp_avg_sqs, amsgrad)) {  // the two ops' own code
    const std::vector<at::Tensor> grads =
        mlp_backward(grad_output, input, weights, outputs, train_grad_mask(with_bias).vec(), linear_relu_bwd);
    adam_step_cpu(params, train_param_grads(grads, with_bias), exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps,
                  lr_tensor, counters, lr, beta1, beta2, weight_decay, eps, amsgrad, maximize, decoupled_weight_decay,
                  capturable);
    return;
  }
  // adam_step's checks, with the params standing in for their gradients (the kernel makes those: same shapes)
  check_adam({params, params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters, lr, beta1,
              beta2, weight_decay, eps, amsgrad, maximize, decoupled_weight_decay, capturable},
             /*allow_half=*/false);
  const std::vector<double> steps = adam_advance_host_steps(state_steps);  // as adam_step_cpu
  const double lr_value = lr_tensor ? read_scalar(*lr_tensor) : lr;
  const cuda::AdamHyper h{lr_value, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay};
  auto state = [&](at::TensorList list, size_t i) { return list.empty() ? nullptr : list[i].data_ptr<float>(); };
  using V = Vectorized<float>;

  const size_t L = weights.size();
  const int64_t M = input.size(0);
  std::vector<at::Tensor> bias_grads(L);
  at::Tensor g = grad_output;
  for (size_t i = L; i-- > 0;) {
    const at::Tensor& w = weights[i];
    const at::Tensor& x = i == 0 ? input : outputs[i - 1];
    const int64_t N = w.size(0), K = w.size(1);
    const float* gp = g.data_ptr<float>();
    float* db = nullptr;
    if (with_bias.get(i)) {
      bias_grads[i] = at::empty({N}, input.options());
      db = bias_grads[i].data_ptr<float>();
    }
    at::Tensor dz = g;  // the last layer: no ReLU, its gradient is g
    if (i + 1 < L) {
      dz = at::empty({M, N}, input.options());
      mask_bias_grad_pass<float>(gp, N, 1, outputs[i].data_ptr<float>(), dz.data_ptr<float>(), db, M, N);
    } else if (db) {
      mask_bias_grad_pass<float>(gp, N, 1, nullptr, nullptr, db, M, N);
    }
    const float* dzp = dz.data_ptr<float>();
    if (i > 0) {  // dx = dz W, before W changes
      g = at::empty({M, K}, input.options());
      gemm<float>(M, K, N, {dzp, N, 1}, {w.data_ptr<float>(), K, 1}, {g.data_ptr<float>(), K, 1});
    }
    // dW = dz^T x [N, K], each tile straight into the update of W
    float *p = w.data_ptr<float>(), *m = state(exp_avgs, i), *v = state(exp_avg_sqs, i);
    float* vm = amsgrad ? state(max_exp_avg_sqs, i) : nullptr;
    const cuda::AdamCoeffs<float> c = cuda::adam_coeffs<float>(h, steps[i], lr_value);
    sgemm::gemm<sgemm::Order::rows_outer>(N, K, M, {dzp, 1, N}, {x.data_ptr<float>(), K, 1},
                [&](const float* tile, int64_t m0, int64_t n0, int rows, int cols) {
                  for (int r = 0; r < rows; ++r) {
                    const int64_t at = (m0 + r) * K + n0;
                    for (int j = 0; j < cols; j += V::size()) {
                      const int cnt = std::min<int>(V::size(), cols - j);
                      adam_lanes<float>(p + at + j, V::loadu(tile + r * sgemm::NR + j, cnt), m + at + j, v + at + j,
                                        vm ? vm + at + j : nullptr, cnt, c, h);
                    }
                  }
                });
  }
  for (size_t i = 0, j = L; i < L; ++i) {  // the biases: a few hundred values, on this thread
    if (!with_bias.get(i)) continue;
    const at::Tensor& b = biases[j - L];
    float *p = b.data_ptr<float>(), *m = state(exp_avgs, j), *v = state(exp_avg_sqs, j);
    float* vm = amsgrad ? state(max_exp_avg_sqs, j) : nullptr;
    const float* gb = bias_grads[i].data_ptr<float>();
    const cuda::AdamCoeffs<float> c = cuda::adam_coeffs<float>(h, steps[j], lr_value);
    for (int64_t e = 0; e < b.numel(); e += V::size()) {
      const int cnt = int(std::min<int64_t>(V::size(), b.numel() - e));
      adam_lanes<float>(p + e, V::loadu(gb + e, cnt), m + e, v + e, vm ? vm + e : nullptr, cnt, c, h);
    }
    ++j;
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(pyops, CPU, m) {
  PYOPS_LINEAR_IMPLS(m);
  m.impl("mlp_bwd_adam", &mlp_bwd_adam_cpu);
}

}  // namespace pyops::cpu
