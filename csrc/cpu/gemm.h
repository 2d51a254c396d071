// gemm.h -- the CPU backend's own float32 GEMM (AVX2 + FMA), with the epilogue fused into it.
//
//   C[m, n] = sum_k A[m, k] B[k, n]      A, B: strided views; C: handed tile by tile to an epilogue
//
// The classic decomposition (GotoBLAS / BLIS), cut down to the shapes of small MLPs (K <= kMaxK, A of at most
// kMaxPackedA floats; larger problems go to BLAS):
//   * A is packed into panels of MR = 6 rows, stored k-major ([k][6]); B into panels of NR = 16
//     columns ([k][16]); panels past the matrix edge are padded with zeros.  Packing turns every
//     operand layout (row- or column-major, transposed views) into the one the micro-kernel reads,
//     at unit stride.
//   * The micro-kernel keeps a 6 x 16 tile of C in 12 AVX2 registers; per k it loads two vectors of B
//     and broadcasts six scalars of A into 12 FMAs -- FMA-bound, operands from L1/L2.
//   * One OpenMP team: the threads pack A's panels together, then share B's panels (each packs its own
//     into a thread-local buffer that stays in cache while it sweeps every A panel).  Two barriers per
//     GEMM (after the packing of A, the end of the region); problems below kSerialFlops run on the calling
//     thread without entering OpenMP.
//   * No K blocking: each element of C is ONE chain of FMAs over k = 0..K-1 starting from +0, so the
//     result does not depend on the thread count or the tiling.
//   * The epilogue gets each finished tile (rows m0.., columns n0.., the valid counts at the edges) while
//     it is still in L1: bias + ReLU for the forward (linear_relu.cpp), plain stores for the rest.
// Measured on the development VM (2 threads): 140-150 GFLOP/s at the MNIST MLP's shapes, on par with the
// BLAS sgemm that torch.mm calls there (docs/linear_relu.md).
#pragma once

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PYOPS_SGEMM 1
#else
#define PYOPS_SGEMM 0
#endif

namespace pyops::cpu::sgemm {

constexpr int MR = 6, NR = 16;
// Longest reduction handled (a packed B panel, 16 x K floats, stays in L2); longer ones go to BLAS.
constexpr int64_t kMaxK = 1024;
// Largest A handled: at most kMaxM rows and kMaxPackedA floats (256 KB, half of a 512 KB L2).  Every B panel
// sweeps all of packed A and there is no cache blocking of A, so a larger A streams from L3 once per panel.
// Measured on the development VM, the one-op training step at batch 512 with every GEMM here ran 1.23-1.33x
// the GEMM floor against 1.15-1.22x with BLAS (five interleaved runs out of five); with these limits (batch
// 512 leaves only its three smaller weight-gradient GEMMs here) the two are even, while at batch 64 (all
// GEMMs here) the own GEMM stays ahead (docs/train_step.md).
constexpr int64_t kMaxPackedA = int64_t(1) << 16;
constexpr int64_t kMaxM = 256;
// Below this many flops one thread does it all (a parallel region costs more).
constexpr int64_t kSerialFlops = int64_t(1) << 19;

// element (r, c) at p[r * rs + c * cs]
struct Operand {
  const float* p;
  int64_t rs, cs;
};

// Whether this build has the kernel and the problem suits it.
inline bool enabled() {
  static const bool on = [] {
    const char* v = std::getenv("PYOPS_CPU_GEMM");
    return !(v && std::string(v) == "blas");
  }();
  return on;
}
inline bool usable(int64_t m, int64_t k) {
  return PYOPS_SGEMM && k >= 1 && k <= kMaxK && m <= kMaxM && m * k <= kMaxPackedA && enabled();
}

#if PYOPS_SGEMM
// r[i][j] <- r[j][i]: an 8 x 8 block of floats transposed in registers.
inline void transpose8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// A's rows [m0, m0 + rows) as a [K][MR] panel, zero rows past the edge.
inline void pack_a(const Operand& a, int64_t m0, int rows, int64_t K, float* __restrict out) {
  int64_t k0 = 0;  // the k below k0 are packed by the vector path
  if (a.cs == 1) {  // rows contiguous: 8 x 8 register transposes
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    for (; k0 + 8 <= K; k0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = i < rows ? _mm256_loadu_ps(a.p + (m0 + i) * a.rs + k0) : _mm256_setzero_ps();
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_maskstore_ps(out + (k0 + i) * MR, six, r[i]);
    }
  }
  for (int64_t k = k0; k < K; ++k) {  // any layout; the tail of k after the vector path
    const float* src = a.p + k * a.cs + m0 * a.rs;
    for (int r = 0; r < MR; ++r) out[k * MR + r] = r < rows ? src[r * a.rs] : 0.f;
  }
}

// B's columns [n0, n0 + cols) as a [K][NR] panel, zero columns past the edge.
inline void pack_b(const Operand& b, int64_t n0, int cols, int64_t K, float* __restrict out) {
  int64_t k0 = 0;  // the k below k0 are packed by a vector path
  if (b.cs == 1 && cols == NR) {  // rows of B contiguous: 64-byte copies
    for (; k0 < K; ++k0) {
      const float* src = b.p + k0 * b.rs + n0;
      _mm256_store_ps(out + k0 * NR, _mm256_loadu_ps(src));
      _mm256_store_ps(out + k0 * NR + 8, _mm256_loadu_ps(src + 8));
    }
  } else if (b.rs == 1) {  // columns contiguous: 8 x 8 register transposes
    for (; k0 + 8 <= K; k0 += 8)
      for (int h = 0; h < NR; h += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; ++i)
          r[i] = h + i < cols ? _mm256_loadu_ps(b.p + (n0 + h + i) * b.cs + k0) : _mm256_setzero_ps();
        transpose8(r);
        for (int i = 0; i < 8; ++i) _mm256_store_ps(out + (k0 + i) * NR + h, r[i]);
      }
  }
  for (int64_t k = k0; k < K; ++k)  // any layout; the tail of k after the vector path
    for (int j = 0; j < NR; ++j) out[k * NR + j] = j < cols ? b.p[k * b.rs + (n0 + j) * b.cs] : 0.f;
}

// tile[r * NR + j] = sum_k a[k * MR + r] * b[k * NR + j], one FMA chain per element from +0.
// The 12 accumulators are spelled out, one variable each, so that they live in registers for the whole loop.
inline void micro(const float* __restrict a, const float* __restrict b, int64_t K, float* __restrict tile) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < K; ++k) {
    const __m256 x0 = _mm256_load_ps(b + k * NR), x1 = _mm256_load_ps(b + k * NR + 8);
    const float* ak = a + k * MR;
    __m256 s = _mm256_broadcast_ss(ak);
    c00 = _mm256_fmadd_ps(s, x0, c00);
    c01 = _mm256_fmadd_ps(s, x1, c01);
    s = _mm256_broadcast_ss(ak + 1);
    c10 = _mm256_fmadd_ps(s, x0, c10);
    c11 = _mm256_fmadd_ps(s, x1, c11);
    s = _mm256_broadcast_ss(ak + 2);
    c20 = _mm256_fmadd_ps(s, x0, c20);
    c21 = _mm256_fmadd_ps(s, x1, c21);
    s = _mm256_broadcast_ss(ak + 3);
    c30 = _mm256_fmadd_ps(s, x0, c30);
    c31 = _mm256_fmadd_ps(s, x1, c31);
    s = _mm256_broadcast_ss(ak + 4);
    c40 = _mm256_fmadd_ps(s, x0, c40);
    c41 = _mm256_fmadd_ps(s, x1, c41);
    s = _mm256_broadcast_ss(ak + 5);
    c50 = _mm256_fmadd_ps(s, x0, c50);
    c51 = _mm256_fmadd_ps(s, x1, c51);
  }
  _mm256_store_ps(tile + 0 * NR, c00), _mm256_store_ps(tile + 0 * NR + 8, c01);
  _mm256_store_ps(tile + 1 * NR, c10), _mm256_store_ps(tile + 1 * NR + 8, c11);
  _mm256_store_ps(tile + 2 * NR, c20), _mm256_store_ps(tile + 2 * NR + 8, c21);
  _mm256_store_ps(tile + 3 * NR, c30), _mm256_store_ps(tile + 3 * NR + 8, c31);
  _mm256_store_ps(tile + 4 * NR, c40), _mm256_store_ps(tile + 4 * NR + 8, c41);
  _mm256_store_ps(tile + 5 * NR, c50), _mm256_store_ps(tile + 5 * NR + 8, c51);
}

// A 64-byte-aligned float buffer per thread, grown on demand (packing space; never shrinks).
inline float* scratch(std::vector<float>& buf, int64_t floats) {
  if (int64_t(buf.size()) < floats + 16) buf.resize(size_t(floats + 16));
  const auto addr = reinterpret_cast<std::uintptr_t>(buf.data());
  return buf.data() + ((64 - addr % 64) % 64) / sizeof(float);
}
#endif

// C = A B for A [M, K], B [K, N] (usable(M, K) must hold, N >= 1).  For every 6 x 16 tile of C:
//   epi(tile, m0, n0, rows, cols)  tile[r * NR + j] = C[m0 + r, n0 + j] for r < rows, j < cols
// Tiles are visited by several threads at once, each tile once.
template <class Epi> void gemm(int64_t M, int64_t N, int64_t K, Operand a, Operand b, Epi&& epi) {
#if PYOPS_SGEMM
  const int64_t mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR;
  static thread_local std::vector<float> a_buf;
  float* pa = scratch(a_buf, mp * K * MR);
  auto pack_panel = [&](int64_t i) {  // A's panel i, rows [6i, 6i + 6)
    pack_a(a, i * MR, int(std::min<int64_t>(MR, M - i * MR)), K, pa + i * K * MR);
  };
  // B panels j0, j0 + step, ... against every packed A panel
  auto sweep = [&](int64_t j0, int64_t step, float* pb) {
    alignas(64) float tile[MR * NR];
    for (int64_t j = j0; j < np; j += step) {
      const int cols = int(std::min<int64_t>(NR, N - j * NR));
      pack_b(b, j * NR, cols, K, pb);
      for (int64_t i = 0; i < mp; ++i) {
        micro(pa + i * K * MR, pb, K, tile);
        epi(static_cast<const float*>(tile), i * MR, j * NR, int(std::min<int64_t>(MR, M - i * MR)), cols);
      }
    }
  };
  static thread_local std::vector<float> b_buf;
  const int64_t flops = 2 * M * N * K;
  if (flops < kSerialFlops || np < 2 || at::get_num_threads() < 2 || omp_in_parallel() || at::in_parallel_region()) {
    // No OpenMP region at all: even a one-thread team costs libgomp a team and a futex wake per barrier.
    for (int64_t i = 0; i < mp; ++i) pack_panel(i);
    sweep(0, 1, scratch(b_buf, K * NR));
    return;
  }
  const int threads = int(std::min<int64_t>(at::get_num_threads(), np));
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < mp; ++i) pack_panel(i);
    // (the implicit barrier: every A panel is packed; the end of the region is the only other one)
    sweep(omp_get_thread_num(), omp_get_num_threads(), scratch(b_buf, K * NR));
  }
#else
  (void)M, (void)N, (void)K, (void)a, (void)b, (void)epi;
#endif
}

}  // namespace pyops::cpu::sgemm
