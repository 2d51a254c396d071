// gemm.h -- the CPU backend's own float32 GEMM (AVX-512 or AVX2 + FMA), with the epilogue fused into it.
//
//   C[m, n] = sum_k A[m, k] B[k, n]      A, B: strided views; C: handed tile by tile to an epilogue
//
// The classic decomposition (GotoBLAS / BLIS), cut down to the shapes of small MLPs (K <= kMaxK, each
// operand at most kMaxPacked floats; larger problems go to BLAS):
//   * A is packed into panels of MR rows, stored k-major ([k][MR]); B into panels of NR = 16 columns
//     ([k][16]); panels past the matrix edge are padded with zeros.  Packing turns every operand layout
//     (row- or column-major, transposed views) into the one the micro-kernel reads, at unit stride.
//   * Two micro-kernels; the best one this CPU can run is used unless PYOPS_CPU_GEMM says otherwise, or MKL is
//     faster here (kernel(), best_kernel()):
//       avx512  a 16 x 16 tile of C in 16 zmm registers; per k ONE load of B's 16 floats and 16 FMAs, each
//               taking its A scalar as a broadcast memory operand (folded into the FMA: no shuffle uop)
//       avx2    a 6 x 16 tile in 12 ymm registers; per k two loads of B, six broadcasts of A, 12 FMAs
//     In L1 the first runs at ~99 % of the FMA peak, the second at ~85 % (its broadcasts compete with the
//     FMAs for a pipe) on the development VM (AMD Zen 4: 2 x 256-bit FMA per cycle either way).
//   * One OpenMP team splits the LARGER operand between the threads (A's row panels when M >= N, else B's
//     column panels) and packs the other, shared, operand together; after the one barrier each thread packs
//     its own panels on first use (still in L1 / L2 when the micro-kernel reads them) and computes its share
//     of C, visiting its share of A in equal blocks of about kBlockFloats (they stay in L2 while every B
//     panel passes over them).  Problems below kSerialFlops run on the calling thread without entering OpenMP.
//   * No K blocking: each element of C is ONE chain of FMAs over k = 0..K-1 starting from +0, so the
//     result does not depend on the micro-kernel, the thread count or the tiling -- both kernels give the
//     same bits.
//   * The epilogue gets each finished tile (rows m0.., columns n0.., the valid counts at the edges) while
//     it is still in L1: bias + ReLU for the forward (linear_relu.cpp), plain stores for the rest.
// Measurements: docs/linear_relu.md ("CPU").
#pragma once

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
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

// Columns of a tile (and of a packed B panel); the epilogue's tile has rows of NR floats.
constexpr int NR = 16;
// Most rows of a tile (the avx512 kernel's); the epilogue's `rows` never exceeds it.
constexpr int kMaxMR = 16;
// Longest reduction handled: a packed panel of either operand is 16 x K floats (64 KB at most), read
// from L2 while the FMAs stream; longer reductions go to BLAS.
constexpr int64_t kMaxK = 1024;
// Largest operand handled (A's M x K and B's K x N floats, 16 MB each): the GEMM packs each operand whole,
// without the outer cache blocking a BLAS has for large problems.  (Before A was blocked for L2, the avx2
// kernel was limited to A of at most 256 rows and 64K floats: with every batch-512 GEMM of the MNIST MLP
// on it the training step ran 1.23-1.33x the GEMM floor against 1.15-1.22x with BLAS.  With the blocks,
// 1.04-1.08x without the limit against 1.08-1.09x with it, lower in each of five interleaved runs --
// docs/train_step.md.)
constexpr int64_t kMaxPacked = int64_t(1) << 22;
// A block of a thread's share of A: about this many floats (256 KB, a quarter of a 1 MB L2).
constexpr int64_t kBlockFloats = int64_t(1) << 16;
// Below this many flops one thread does it all (a parallel region costs more).
constexpr int64_t kSerialFlops = int64_t(1) << 19;

enum class Kernel { blas, avx2, avx512 };

inline const char* kernel_name(Kernel k) {
  return k == Kernel::avx512 ? "avx512" : k == Kernel::avx2 ? "avx2" : "blas";
}

// Whether this CPU (and its OS, which must save the zmm registers) can run the avx512 kernel.
inline bool cpu_has_avx512() {
#if PYOPS_SGEMM && defined(__x86_64__)
  return __builtin_cpu_supports("avx512f");  // libgcc checks XCR0 for the AVX-512 state as well
#else
  return false;
#endif
}

// Whether this build and CPU can run kernel k (BLAS always).
inline bool runnable(Kernel k) {
  return k == Kernel::blas || (PYOPS_SGEMM && (k == Kernel::avx2 || cpu_has_avx512()));
}

// A kernel by name, checked: an error names what was asked for and what can run here -- never a quiet fallback.
inline Kernel parse_kernel(const std::string& v, const char* what) {
  TORCH_CHECK(v == "avx512" || v == "avx2" || v == "blas", what, ": expected auto, avx512, avx2 or blas, got '",
              v, "'");
  const Kernel k = v == "avx512" ? Kernel::avx512 : v == "avx2" ? Kernel::avx2 : Kernel::blas;
  TORCH_CHECK(PYOPS_SGEMM || k == Kernel::blas, what, "=", v, ": this build of pyops has no AVX2 CPU kernels "
              "(built without AVX2); use auto or blas");
  TORCH_CHECK(runnable(k), what, "=", v, ": this CPU has no AVX-512F; use auto, avx2 or blas");
  return k;
}

// Whether auto leaves the float32 GEMMs to PyTorch's BLAS on this CPU: where that BLAS is MKL and the CPU is an
// Intel one.  There MKL outran both own kernels (a Xeon with two 512-bit FMA pipes: the avx512 kernel at
// 0.92-0.94x MKL on one thread, the whole training step 1.05-1.08x the GEMM floor with MKL against 1.18-1.22x
// with the avx512 kernel); on AMD CPUs, where MKL does not take its fastest paths, the own kernels ran at or
// above it (docs/linear_relu.md, "Which kernel auto chooses").
inline bool blas_preferred() {
#if defined(__x86_64__) && defined(__GNUC__)
  return at::hasMKL() && __builtin_cpu_is("intel");
#else
  return false;
#endif
}

inline Kernel best_kernel() {
  return !PYOPS_SGEMM || blas_preferred() ? Kernel::blas : cpu_has_avx512() ? Kernel::avx512 : Kernel::avx2;
}

// The kernel float32 GEMMs use.  Set from PYOPS_CPU_GEMM at the first GEMM: auto (default: BLAS where
// blas_preferred() or in a build without AVX2, else avx512 where the CPU has it, else avx2) | avx512 | avx2 |
// blas (PyTorch's BLAS for every GEMM);
// set_kernel changes it for the whole process (benchmarks and tests compare the kernels in one process).
inline std::atomic<int>& kernel_slot() {
  static std::atomic<int> slot{[] {
    const char* env = std::getenv("PYOPS_CPU_GEMM");
    const std::string v = env ? env : "auto";
    return int(v == "auto" ? best_kernel() : parse_kernel(v, "PYOPS_CPU_GEMM"));
  }()};
  return slot;
}
inline Kernel kernel() { return Kernel(kernel_slot().load(std::memory_order_relaxed)); }
// Switch every later GEMM of the process to kernel `name` (as PYOPS_CPU_GEMM names them); returns the previous.
inline Kernel set_kernel(const std::string& name) {
  const Kernel k = name == "auto" ? best_kernel() : parse_kernel(name, "cpu GEMM kernel");
  return Kernel(kernel_slot().exchange(int(k)));
}

// Whether C[m, n] = A[m, k] B[k, n] runs here (else the caller uses BLAS).
inline bool usable(int64_t m, int64_t n, int64_t k) {
  return kernel() != Kernel::blas && k >= 1 && k <= kMaxK && m <= kMaxPacked / k && n <= kMaxPacked / k;
}

// element (r, c) at p[r * rs + c * cs]
struct Operand {
  const float* p;
  int64_t rs, cs;
};

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
template <int MR> void pack_a(const Operand& a, int64_t m0, int rows, int64_t K, float* __restrict out) {
  int64_t k0 = 0;  // the k below k0 are packed by a vector path
  if (a.cs == 1) {  // rows contiguous: 8 x 8 register transposes, MR / 8 of them (6 of 8 rows for MR = 6)
    for (; k0 + 8 <= K; k0 += 8)
      for (int h = 0; h < MR; h += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; ++i)
          r[i] = h + i < rows ? _mm256_loadu_ps(a.p + (m0 + h + i) * a.rs + k0) : _mm256_setzero_ps();
        transpose8(r);
        if constexpr (MR % 8 == 0) {
          for (int i = 0; i < 8; ++i) _mm256_store_ps(out + (k0 + i) * MR + h, r[i]);
        } else {
          // Six floats per k: whole 8-float stores in k order, each one's last two floats (zeros) overwritten by
          // the next k's store, and the group's last k stored as 4 + 2 so that nothing lands past it.
          // (vmaskmovps, the obvious store of six, is microcoded on AMD CPUs: on a Zen 3 it made this pack 10 %
          // of the GEMMs' time.)
          static_assert(MR == 6, "the 8-float stores cover six floats per k");
          for (int i = 0; i < 7; ++i) _mm256_storeu_ps(out + (k0 + i) * MR, r[i]);
          _mm_storeu_ps(out + (k0 + 7) * MR, _mm256_castps256_ps128(r[7]));
          _mm_storel_pi(reinterpret_cast<__m64*>(out + (k0 + 7) * MR + 4), _mm256_extractf128_ps(r[7], 1));
        }
      }
  } else if (a.rs == 1 && rows == MR) {  // columns contiguous (a transposed view): MR floats per k
    for (; k0 < K; ++k0) std::memcpy(out + k0 * MR, a.p + k0 * a.cs + m0, sizeof(float) * MR);
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

// The avx2 kernel: tile[r * NR + j] = sum_k a[k * 6 + r] * b[k * NR + j], one FMA chain per element from +0.
// The 12 accumulators are spelled out, one variable each, so that they live in registers for the whole loop.
struct Avx2 {
  static constexpr int MR = 6;
  static void micro(const float* __restrict a, const float* __restrict b, int64_t K, float* __restrict tile) {
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
};

// The avx512 kernel: the same sums for a 16 x 16 tile, row r in one zmm register.  Compiled for AVX-512F
// whatever the build's flags (the target attribute), and only called where cpu_has_avx512().  The array and
// the unrolled row loop become 16 named registers: `objdump -d` of the extension shows the loop as two prefetches, one load
// and 16 `vfmadd231ps zmm, zmm, DWORD PTR [...]{1to16}`, with no stack traffic.
struct Avx512 {
  static constexpr int MR = 16;
  __attribute__((target("avx512f"), noinline, visibility("hidden"))) static void micro(const float* __restrict a,
                                                                  const float* __restrict b, int64_t K,
                                                                  float* __restrict tile) {
    __m512 c[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) c[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      // Eight k ahead: the panels (K x 16 floats each) do not fit L1 at K = 784, and the hardware prefetchers of
      // an Intel core left the kernel at 0.84x MKL there; with these two lines 0.92-0.94x (bench/bench_gemm.py).
      _mm_prefetch(reinterpret_cast<const char*>(b + (k + 8) * NR), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(a + (k + 8) * MR), _MM_HINT_T0);
      const __m512 x = _mm512_load_ps(b + k * NR);
      const float* ak = a + k * MR;
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) c[r] = _mm512_fmadd_ps(_mm512_set1_ps(ak[r]), x, c[r]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) _mm512_store_ps(tile + r * NR, c[r]);
  }
};

// A 64-byte-aligned float buffer of the calling thread, grown on demand (packing space; never shrinks):
// which = 0 for the shared operand (the thread that calls gemm), 1 for a thread's own share.
inline float* scratch(int which, int64_t floats) {
  static thread_local std::vector<float> bufs[2];
  std::vector<float>& buf = bufs[which];
  if (int64_t(buf.size()) < floats + 16) buf.resize(size_t(floats + 16));
  const auto addr = reinterpret_cast<std::uintptr_t>(buf.data());
  return buf.data() + ((64 - addr % 64) % 64) / sizeof(float);
}

template <class Kern, class Epi> void gemm_with(int64_t M, int64_t N, int64_t K, Operand a, Operand b, Epi& epi) {
  constexpr int MR = Kern::MR;
  static_assert(MR <= kMaxMR, "the epilogue's tile has at most kMaxMR rows");
  const int64_t mp = (M + MR - 1) / MR, np = (N + NR - 1) / NR;
  const int64_t a_panel = K * MR, b_panel = K * NR;  // floats per packed panel
  // The larger operand is split between the threads, the other one shared.
  const bool split_a = M >= N;
  const int64_t split_panels = split_a ? mp : np;
  const int64_t flops = 2 * M * N * K;
  const bool serial = flops < kSerialFlops || split_panels < 2 || at::get_num_threads() < 2 || omp_in_parallel() ||
                      at::in_parallel_region();
  const int team = serial ? 1 : int(std::min<int64_t>(at::get_num_threads(), split_panels));
  float* shared = scratch(0, split_a ? np * b_panel : mp * a_panel);
  // A row panels per block of a thread's share: the block stays in L2 while every B panel passes over it.
  // (Equal blocks, as few as its rows allow: 128 rows of K = 512 are one block of 22 six-row panels.)
  const int64_t a_rows = split_a ? (M + team - 1) / team : M;
  const int64_t a_panels = split_a ? (mp + team - 1) / team : mp;
  const int64_t blocks = std::max<int64_t>(1, (a_rows * K + kBlockFloats - 1) / kBlockFloats);
  const int64_t block = (a_panels + blocks - 1) / blocks;

  auto run = [&](int t, int nt) {
    // this thread's panels of the split operand: [p0, p1)
    const int64_t p0 = split_panels * t / nt, p1 = split_panels * (t + 1) / nt;
    float* own = scratch(1, (p1 - p0) * (split_a ? a_panel : b_panel));
    auto pack_a_panel = [&](int64_t i, float* dst) {
      pack_a<MR>(a, i * MR, int(std::min<int64_t>(MR, M - i * MR)), K, dst);
    };
    auto pack_b_panel = [&](int64_t j, float* dst) {
      pack_b(b, j * NR, int(std::min<int64_t>(NR, N - j * NR)), K, dst);
    };
    // the shared operand, its panels split between the team (this thread's own share is packed on first use,
    // so that it is still in L1 / L2 when the micro-kernel reads it)
    const int64_t shared_panels = split_a ? np : mp;
    for (int64_t s = shared_panels * t / nt, e = shared_panels * (t + 1) / nt; s < e; ++s) {
      if (split_a) pack_b_panel(s, shared + s * b_panel);
      else pack_a_panel(s, shared + s * a_panel);
    }
    if (nt > 1) {
#pragma omp barrier
    }
    // A panels [i0, i1) against B panels [j0, j1); pa(i), pb(j): the packed panels
    const int64_t i0 = split_a ? p0 : 0, i1 = split_a ? p1 : mp, j0 = split_a ? 0 : p0, j1 = split_a ? np : p1;
    auto pa = [&](int64_t i) { return split_a ? own + (i - p0) * a_panel : shared + i * a_panel; };
    auto pb = [&](int64_t j) { return split_a ? shared + j * b_panel : own + (j - p0) * b_panel; };
    alignas(64) float tile[MR * NR];
    for (int64_t ib = i0; ib < i1; ib += block) {
      const int64_t ie = std::min(i1, ib + block);
      if (split_a)
        for (int64_t i = ib; i < ie; ++i) pack_a_panel(i, pa(i));
      for (int64_t j = j0; j < j1; ++j) {
        if (!split_a && ib == i0) pack_b_panel(j, pb(j));
        const int cols = int(std::min<int64_t>(NR, N - j * NR));
        for (int64_t i = ib; i < ie; ++i) {
          Kern::micro(pa(i), pb(j), K, tile);
          epi(static_cast<const float*>(tile), i * MR, j * NR, int(std::min<int64_t>(MR, M - i * MR)), cols);
        }
      }
    }
  };
  if (team == 1) {
    // No OpenMP region at all: even a one-thread team costs libgomp a team and a futex wake per barrier.
    run(0, 1);
    return;
  }
#pragma omp parallel num_threads(team)
  run(omp_get_thread_num(), omp_get_num_threads());  // one barrier inside, the end of the region
}
#endif

// C = A B for A [M, K], B [K, N] (usable(M, N, K) must hold).  For every tile of C:
//   epi(tile, m0, n0, rows, cols)  tile[r * NR + j] = C[m0 + r, n0 + j] for r < rows (<= kMaxMR), j < cols
// Tiles are visited by several threads at once, each tile once.
template <class Epi> void gemm(int64_t M, int64_t N, int64_t K, Operand a, Operand b, Epi&& epi) {
#if PYOPS_SGEMM
  if (M <= 0 || N <= 0) return;
  if (kernel() == Kernel::avx512) gemm_with<Avx512>(M, N, K, a, b, epi);
  else gemm_with<Avx2>(M, N, K, a, b, epi);
#else
  (void)M, (void)N, (void)K, (void)a, (void)b, (void)epi;
#endif
}

}  // namespace pyops::cpu::sgemm
