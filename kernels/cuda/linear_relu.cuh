// linear_relu.cuh -- the GEMMs of a fused linear(+ReLU) layer, forward and backward.
//
// Math, for x: [M, K] (M = all leading dims of the input), W: [N, K], b: [N]:
//   forward    z = x W^T + b,   y = relu(z)                 (plain linear: y = z)
//   backward   g = dL/dy;  dz = g * [y > 0]                 (PyTorch's ReLU gradient: 0 where y == 0;
//                                                            like PyTorch's, it passes g where y is NaN:
//                                                            the mask is written !(y <= 0))
//              dx = dz W        [M, K]
//              dW = dz^T x      [N, K]
//              db = sum_m dz    [N]
// The mask [y > 0] uses the saved output (y > 0 <=> z > 0), so the backward never sees z.
//
// All three products are one kernel family computing
//   C[m, n] = epilogue( sum_k A(m, k) * B(n, k) )        A: [M, K], B: [N, K] ("NT" GEMM)
// with each operand given as (pointer, stride along its output index, stride along k) -- so W, W^T,
// x^T and dz^T are the same memory read with swapped strides, never a copy:
//   forward  A = x (m, k)              B = W (n, k)             epilogue + b, relu;  C = y
//   dx       A = g (m, n) masked by y  B = W^T: (k, n)          C = dx      (reduction over n)
//   dW       A = g^T (n, m) masked     B = x^T: (k, m)          C = dW      (reduction over m)
//            and db = row sums of A, formed from the A tiles the first column of blocks already holds
// The ReLU mask is applied while the dz tile is loaded (no masked copy of g is ever written).
//
// Who owns what (CUDA cores, "simt" kernels, float and double):
//   a block owns a BM x BN tile of C and walks k in steps of BK.  Per step, the block's threads copy
//   the BM x BK tile of A and the BN x BK tile of B into shared memory (16-byte loads when the layout
//   allows), stored k-major (As[k][m]) and padded by one 16-byte vector per row against bank
//   conflicts; the next step's tiles are already loading into registers while this step computes.
//   Thread (ty, tx) owns TM x TN outputs: rows {g * TY * RV + ty * RV + e} and the same pattern of
//   columns (RV = one 16-byte vector), so each shared-memory read is a conflict-free vector.
//   Three tile shapes, picked per problem by linear_gemm_plan: 128x128 (256 threads, 8x8 outputs per
//   thread), 64x64 (256 threads, 4x4) and 32x32 (64 threads, 4x4) -- small problems take small tiles
//   so that there are enough blocks for the SMs (no split-K).
// Tensor cores ("wmma" kernel; fp16/bf16 always, fp32 as TF32 only when the caller allows it):
//   a block of 4 warps owns a 64x64 tile; each warp a 32x32 quarter = 2x2 accumulators of 16x16
//   (fp32).  Shared tiles have the same k-major layout: the A fragment is read col_major, B row_major.
//   The epilogue stages the accumulators through shared memory (their register layout is opaque).
// Edge tiles are masked on load (zeros) and on store, so any M, N, K works; every offset is int64.
// Accumulation: float for fp16/bf16/fp32 storage, double for fp64.
#pragma once
#include <type_traits>

#include "common.cuh"

#if defined(__CUDACC__)
#include <mma.h>  // (the emulator's simt.h brings its own nvcuda::wmma stand-in, csrc/sim/mma.h)
#endif

namespace pyops::cuda {

// Which index of an operand has unit stride: its reduction index k (Red) or its output index (Out).
// Decides the direction of the 16-byte loads; with scalar loads any strides work.
enum class GemmDir : int { Red = 0, Out = 1 };
enum class GemmKernel : int { Simt128 = 0, Simt64 = 1, Simt32 = 2, Wmma = 3 };

template <class T> struct GemmOperand {
  const T* ptr = nullptr;  // element (i, k) at ptr[i * s_out + k * s_red]
  int64_t s_out = 0, s_red = 0;
  const T* relu_out = nullptr;  // optional, same strides: element (i, k) counts only where relu_out > 0
};

template <class T> struct GemmArgs {
  GemmOperand<T> a;  // [M, K]
  GemmOperand<T> b;  // [N, K]
  T* c = nullptr;    // [M, N], element (m, n) at c[m * c_rs + n * c_cs]
  int64_t c_rs = 0, c_cs = 0;
  const T* bias = nullptr;   // [N] or nullptr: added in the epilogue
  bool relu = false;         // epilogue max(., 0)
  T* a_row_sums = nullptr;   // [M] or nullptr: sum_k A(m, k), written by the first column of blocks
  int64_t M = 0, N = 0, K = 0;
};

struct GemmPlan {
  GemmKernel kernel;
  GemmDir dir_a, dir_b;  // load directions (both Red when vec == 1: scalar loads, any strides)
  int vec;               // elements per global load: 16 / sizeof(T), or 1
  int64_t tiles_m, tiles_n;
  LaunchConfig cfg;
};

// Tile shapes; THREADS = (BM / TM) * (BN / TN).
template <int BM_, int BN_, int BK_, int TM_, int TN_> struct SimtTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int TY = BM / TM, TX = BN / TN, THREADS = TX * TY;
};
using SimtTile128 = SimtTile<128, 128, 8, 8, 8>;
using SimtTile64 = SimtTile<64, 64, 16, 4, 4>;
using SimtTile32 = SimtTile<32, 32, 16, 4, 4>;
struct WmmaTile {
  static constexpr int BM = 64, BN = 64, BK = 32, WARPS_M = 2, WARPS_N = 2, THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // 32 x 32 per warp = 2 x 2 fragments of 16 x 16
};
constexpr int64_t kGemmMaxBlocks = (int64_t(1) << 31) - 1;  // gridDim.x limit: tiles are a 1-D grid

template <class T> constexpr int smem_pad() { return 16 / int(sizeof(T)); }  // one 16-byte vector per tile row

// Shared memory of one block (dynamic: the tiles of every instantiation share one buffer).  A and B
// tiles are k-major, BK rows of BM + pad (BN + pad) elements; the wmma kernel reuses the buffer to
// stage its fp32 accumulators (BM rows of BN + 4) and asks for 32 bytes more to align it to 32.
template <class Tile> constexpr size_t simt_smem_bytes(int elem) {
  return size_t(Tile::BK) * (Tile::BM + Tile::BN + 2 * (16 / elem)) * elem;
}
constexpr int kWmmaLdc = WmmaTile::BN + 4;
constexpr size_t wmma_smem_bytes(int elem) {
  const size_t ab = size_t(WmmaTile::BK) * (WmmaTile::BM + WmmaTile::BN + 2 * (16 / elem)) * elem;
  const size_t c = size_t(WmmaTile::BM) * kWmmaLdc * sizeof(float);
  return (ab > c ? ab : c) + 32;
}

inline int gemm_tile_rows(GemmKernel k) {
  return k == GemmKernel::Simt128 ? 128 : k == GemmKernel::Simt64 ? 64 : k == GemmKernel::Simt32 ? 32 : WmmaTile::BM;
}
inline unsigned gemm_threads(GemmKernel k) {
  return k == GemmKernel::Simt128 ? SimtTile128::THREADS : k == GemmKernel::Simt64 ? SimtTile64::THREADS
         : k == GemmKernel::Simt32 ? SimtTile32::THREADS : WmmaTile::THREADS;
}

// The one place that picks kernel, tile, load width and grid -- for the real launch, the emulated
// launch and the tests alike.  `tensor_cores`: fp16/bf16, or fp32 with TF32 allowed.  `sm_count`:
// the simt tile is the largest whose tile count still gives every SM a block (else the smallest).
// `vec_ok`: both operands (and the mask) allow VEC-wide loads in directions da, db.
inline GemmPlan linear_gemm_plan(int64_t M, int64_t N, int elem_size, bool tensor_cores, int sm_count, GemmDir da,
                                 GemmDir db, bool vec_ok) {
  GemmPlan p{};
  p.vec = vec_ok ? 16 / elem_size : 1;
  p.dir_a = vec_ok ? da : GemmDir::Red;
  p.dir_b = vec_ok ? db : GemmDir::Red;
  if (tensor_cores) {
    p.kernel = GemmKernel::Wmma;
  } else {
    const auto tiles = [&](int t) { return ceil_div(M, t) * ceil_div(N, t); };
    p.kernel = tiles(128) >= sm_count ? GemmKernel::Simt128
               : tiles(64) >= sm_count ? GemmKernel::Simt64 : GemmKernel::Simt32;
  }
  const int t = gemm_tile_rows(p.kernel);  // all tiles are square
  p.tiles_m = ceil_div(M, t);
  p.tiles_n = ceil_div(N, t);
  p.cfg.block = dim3(gemm_threads(p.kernel));
  // (more tiles than kGemmMaxBlocks: linear_gemm refuses to launch)
  p.cfg.grid = dim3(unsigned(std::min<int64_t>(p.tiles_m * p.tiles_n, kGemmMaxBlocks)));
  p.cfg.smem = p.kernel == GemmKernel::Simt128 ? simt_smem_bytes<SimtTile128>(elem_size)
               : p.kernel == GemmKernel::Simt64 ? simt_smem_bytes<SimtTile64>(elem_size)
               : p.kernel == GemmKernel::Simt32 ? simt_smem_bytes<SimtTile32>(elem_size)
                                                : wmma_smem_bytes(elem_size);
  return p;
}

// Bias gradient on its own (used when dW is not wanted): db[n] = sum_m g[m, n] * [y[m, n] > 0].
constexpr unsigned kBiasGradCols = 32, kBiasGradRowThreads = 8;
inline LaunchConfig linear_bias_grad_plan(int64_t N) {
  LaunchConfig c;
  c.block = dim3(kBiasGradCols, kBiasGradRowThreads);
  c.grid = dim3(unsigned(std::min<int64_t>(ceil_div(N, kBiasGradCols), kGemmMaxBlocks)));
  return c;
}

// Raw-pointer entry points called by the glue (csrc/cuda/linear_relu.cpp).  Return nullptr on
// success, else the launch error; `plan_out`, if given, receives the plan used.
template <class T>
const char* linear_gemm(const GemmArgs<T>& p, bool allow_tf32, int sm_count, Stream stream,
                        GemmPlan* plan_out = nullptr);
template <class T>
const char* linear_bias_grad(const T* g, int64_t g_rs, int64_t g_cs, const T* relu_out, T* db, int64_t M, int64_t N,
                             Stream stream);

#if defined(PYOPS_DEVICE_CODE)

// ---------------------------------------------------------------- global -> registers -> shared tiles
// One operand tile: rows [i0, i0 + BR) x reduction [k0, k0 + BK), stored in shared memory k-major,
// s[k * LD + i] with LD = BR + PAD.  The PAD of one 16-byte vector keeps vector stores aligned and
// spreads the transposed scalar stores of the Red direction over all banks.

// The XOR applied to the element order of k-group q's transposed stores (see TileLoader::store): derived from
// bank(q, e, i) = 4 VEC q + 4 e + i sizeof(T)/4 (mod 32 words) for LD = BR + 16 bytes and BR sizeof(T) a
// multiple of 128.  8-byte T (VEC 2): a phase is 16 lanes = 2 rows i x 8 k-groups (32/64 tiles, BK 16), whose
// doubles start at word 8q + 4e + 2i, so q and q + 4 share banks (2 wavefronts per phase); swapping the two
// elements for q >= 4 moves those k-groups 4 words over: 1 wavefront.  (The 128 tile, BK 8, has q < 4.)
template <class T, int VEC> __device__ __forceinline__ int red_store_swizzle(int q) {
  if constexpr (sizeof(T) == 4 && VEC == 4) return q & 2;
  else if constexpr (sizeof(T) == 2 && VEC == 8) return (q << 1) & 6;
  else if constexpr (sizeof(T) == 8 && VEC == 2) return (q >> 2) & 1;
  else return 0;
}

template <class T, int BR, int BK, int THREADS, GemmDir DIR, int VEC> struct TileLoader {
  static constexpr int ROWS = BR, LD = BR + smem_pad<T>();
  static constexpr int VECS = BR * BK / VEC;  // vectors per tile
  static constexpr int PER_THREAD = VECS / THREADS;
  static_assert(VECS % THREADS == 0, "tile must split evenly over the threads");
  Vec<T, VEC> reg[PER_THREAD];  // staged here while the previous tile is being multiplied

  // Tile coordinates of vector v: Red walks k fastest (VEC consecutive k of one row i), Out walks i
  // fastest (VEC consecutive i of one k).  Consecutive threads take consecutive vectors: coalesced.
  __device__ __forceinline__ static void coords(int v, int& i, int& k) {
    if (DIR == GemmDir::Red) {
      i = v / (BK / VEC);
      k = (v % (BK / VEC)) * VEC;
    } else {
      k = v / (BR / VEC);
      i = (v % (BR / VEC)) * VEC;
    }
  }

  // Vector loads need: the unit-stride direction, VEC | (extent along it) so a vector is all in or all
  // out of range, aligned pointers and strides -- checked by the launcher (operand_vec_ok).
  __device__ __forceinline__ void load(const GemmOperand<T>& op, int64_t i0, int64_t rows, int64_t k0, int64_t K) {
    using A = acc_t<T>;
#pragma unroll
    for (int j = 0; j < PER_THREAD; ++j) {
      int i, k;
      coords(int(threadIdx.x) + j * THREADS, i, k);
      const int64_t gi = i0 + i, gk = k0 + k;
      if constexpr (VEC > 1) {
        Vec<T, VEC> v;
        if (gi < rows && gk < K) {
          const int64_t off = gi * op.s_out + gk * op.s_red;
          v = load_vec<T, VEC>(op.ptr + off);
          if (op.relu_out) {
            const Vec<T, VEC> y = load_vec<T, VEC>(op.relu_out + off);
#pragma unroll
            for (int e = 0; e < VEC; ++e)
              if (to_acc(y.v[e]) <= A(0)) v.v[e] = from_acc<T>(A(0));
          }
        } else {
#pragma unroll
          for (int e = 0; e < VEC; ++e) v.v[e] = from_acc<T>(A(0));
        }
        reg[j] = v;
      } else {
        T v = from_acc<T>(A(0));
        if (gi < rows && gk < K) {
          const int64_t off = gi * op.s_out + gk * op.s_red;
          if (!op.relu_out || !(to_acc(op.relu_out[off]) <= A(0))) v = op.ptr[off];
        }
        reg[j].v[0] = v;
      }
    }
  }

  __device__ __forceinline__ void store(T* s) const {
#pragma unroll
    for (int j = 0; j < PER_THREAD; ++j) {
      int i, k;
      coords(int(threadIdx.x) + j * THREADS, i, k);
      if (DIR == GemmDir::Out) {
        store_vec<T, VEC>(s + k * LD + i, reg[j]);
      } else {
        // Transposed: element e of the vector goes to row k + e.  One store instruction writes element e of
        // every lane, and with LD = BR + 16 bytes the lanes of different k-groups q = k / VEC would hit the
        // same banks (4-byte T, 32/64 tiles: q and q + 2, 2 wavefronts per store; 8-byte T, 32/64 tiles: q and
        // q + 4, 2 per half-warp phase; 2-byte T, wmma tile: all four q, 4 wavefronts -- counted by
        // `python -m pyops profile linear_relu`).  So lane q stores its
        // elements in the order e ^ m(q), which moves each k-group onto banks of its own: 1 wavefront.  The
        // same values land in the same places; only the order of a thread's VEC stores changes.
        const int m = red_store_swizzle<T, VEC>(k / VEC);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          T val = reg[j].v[e];
#pragma unroll
          for (int t = 1; t < VEC; ++t)
            if (m == t) val = reg[j].v[e ^ t];  // a select per candidate: no dynamically indexed registers
          s[(k + (e ^ m)) * LD + i] = val;
        }
      }
    }
  }
};

// Bias gradient inside the dW GEMM: thread t < BR adds column t of the k-major A tile (= row t of A).
template <class T, int BR, int BK, int LD>
__device__ __forceinline__ void add_row_sums(const T* s, acc_t<T>& sum) {
  if (threadIdx.x < unsigned(BR)) {
#pragma unroll 8
    for (int k = 0; k < BK; ++k) sum += to_acc(s[k * LD + threadIdx.x]);
  }
}
template <class T>
__device__ __forceinline__ void store_row_sums(const GemmArgs<T>& p, int64_t m0, int BR, acc_t<T> sum) {
  if (threadIdx.x < unsigned(BR) && m0 + threadIdx.x < p.M) p.a_row_sums[m0 + threadIdx.x] = from_acc<T>(sum);
}

// The epilogue for one output: + bias, ReLU (NaN stays NaN, as in torch.relu).
template <class A> __device__ __forceinline__ A epilogue(A v, A bias, bool relu) {
  v += bias;
  return relu && v < A(0) ? A(0) : v;
}

// Tile indices of this block: consecutive blocks walk down M, so they share the same B tile (W in
// the forward pass) while it is hot in L2.
__device__ __forceinline__ void block_tile(int64_t M, int BM, int64_t& tile_m, int64_t& tile_n) {
  const int64_t tiles_m = (M + BM - 1) / BM;
  tile_m = int64_t(blockIdx.x) % tiles_m;
  tile_n = int64_t(blockIdx.x) / tiles_m;
}

// The main loop both GEMM kernels share.  Per step of BK: the staged tiles go to shared memory, a
// barrier, the next tiles start loading into registers (they travel while this step computes), the
// bias-gradient row sums take their part of the A tile, `mma()` multiplies the shared tiles, and a
// barrier before they are overwritten.
template <class T, class LA, class LB, int BK, class Mma>
__device__ __forceinline__ void gemm_main_loop(const GemmArgs<T>& p, int64_t m0, int64_t n0, T* As, T* Bs,
                                               bool row_sums, acc_t<T>& rsum, Mma&& mma) {
  LA la;
  LB lb;
  la.load(p.a, m0, p.M, 0, p.K);
  lb.load(p.b, n0, p.N, 0, p.K);
  for (int64_t k0 = 0; k0 < p.K; k0 += BK) {
    la.store(As);
    lb.store(Bs);
    __syncthreads();
    if (k0 + BK < p.K) {
      la.load(p.a, m0, p.M, k0 + BK, p.K);
      lb.load(p.b, n0, p.N, k0 + BK, p.K);
    }
    if (row_sums) add_row_sums<T, LA::ROWS, BK, LA::LD>(As, rsum);
    mma();
    __syncthreads();
  }
}

// ---------------------------------------------------------------- CUDA-core GEMM
template <class T, class Tile, GemmDir DA, GemmDir DB, int VEC>
__device__ __forceinline__ void gemm_simt(const GemmArgs<T>& p) {
  using A = acc_t<T>;
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
  constexpr int TX = Tile::TX, TY = Tile::TY, THREADS = Tile::THREADS;
  // RV: how many consecutive rows (columns) a thread owns together -- one 16-byte vector, at most TM.
  constexpr int RV = (TM * int(sizeof(T)) >= 16) ? 16 / int(sizeof(T)) : TM;
  static_assert(TM == TN && TM % RV == 0, "square thread tiles of whole vectors");
  using LA = TileLoader<T, BM, BK, THREADS, DA, VEC>;
  using LB = TileLoader<T, BN, BK, THREADS, DB, VEC>;
  T* As = dynamic_smem<T>();  // [BK][LA::LD]
  T* Bs = As + BK * LA::LD;   // [BK][LB::LD]

  int64_t tile_m, tile_n;
  block_tile(p.M, BM, tile_m, tile_n);
  const int64_t m0 = tile_m * BM, n0 = tile_n * BN;
  const int tx = int(threadIdx.x) % TX, ty = int(threadIdx.x) / TX;
  const bool row_sums = p.a_row_sums != nullptr && tile_n == 0;  // uniform over the block

  A acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = A(0);
  A rsum = A(0);
  gemm_main_loop<T, LA, LB, BK>(p, m0, n0, As, Bs, row_sums, rsum, [&] {
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      Vec<T, RV> a[TM / RV], b[TN / RV];  // this thread's rows and columns at step k: vector reads
#pragma unroll
      for (int g = 0; g < TM / RV; ++g) {
        a[g] = load_vec<T, RV>(As + k * LA::LD + g * TY * RV + ty * RV);
        b[g] = load_vec<T, RV>(Bs + k * LB::LD + g * TX * RV + tx * RV);
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += to_acc(a[i / RV].v[i % RV]) * to_acc(b[j / RV].v[j % RV]);
    }
  });
  if (row_sums) store_row_sums(p, m0, BM, rsum);

  // Epilogue straight from registers: + bias, ReLU, store (one vector per RV columns when C allows).
  const bool c_vec = p.c_cs == 1 && p.c_rs % RV == 0 && aligned_to(p.c, unsigned(RV * sizeof(T)));
  // The bias as RV-wide vectors when aligned: scalar loads of p.bias[tx * RV + e] are strided by RV elements
  // (8 sectors per request where 2 hold the data, counted by the profiler).
  A bias[TN];
  const bool b_vec = p.bias && aligned_to(p.bias, unsigned(RV * sizeof(T)));
#pragma unroll
  for (int g = 0; g < TN / RV; ++g) {
    const int64_t n = n0 + g * TX * RV + tx * RV;
    if (b_vec && n + RV <= p.N) {
      const Vec<T, RV> bv = load_vec<T, RV>(p.bias + n);
#pragma unroll
      for (int e = 0; e < RV; ++e) bias[g * RV + e] = to_acc(bv.v[e]);
    } else {
#pragma unroll
      for (int e = 0; e < RV; ++e) bias[g * RV + e] = p.bias && n + e < p.N ? to_acc(p.bias[n + e]) : A(0);
    }
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t m = m0 + (i / RV) * TY * RV + ty * RV + i % RV;
    if (m >= p.M) continue;
#pragma unroll
    for (int g = 0; g < TN / RV; ++g) {
      const int64_t n = n0 + g * TX * RV + tx * RV;
      Vec<T, RV> o;
#pragma unroll
      for (int e = 0; e < RV; ++e) o.v[e] = from_acc<T>(epilogue(acc[i][g * RV + e], bias[g * RV + e], p.relu));
      if (c_vec && n + RV <= p.N) {
        store_vec_global<T, RV>(p.c + m * p.c_rs + n, o);
      } else {
#pragma unroll
        for (int e = 0; e < RV; ++e)
          if (n + e < p.N) p.c[m * p.c_rs + (n + e) * p.c_cs] = o.v[e];
      }
    }
  }
}

// profile-exception linear_relu_simt128_kernel unique: the backward is two launches, dx = (g*mask) W and
//   dW = (g*mask)^T x, each reading g and the ReLU mask y: 2*M*N*sizeof(T) bytes more than the model
//   (measured: 1.29x at 128x256x512 float; 1.06x at the MNIST layer 64x784x256, where it is under the 1.1x budget)
template <class T, GemmDir DA, GemmDir DB, int VEC>
__global__ void __launch_bounds__(SimtTile128::THREADS) linear_relu_simt128_kernel(const GemmArgs<T> p) {
  gemm_simt<T, SimtTile128, DA, DB, VEC>(p);
}
// profile-exception linear_relu_simt64_kernel unique: the backward is two launches, dx = (g*mask) W and
//   dW = (g*mask)^T x, each reading g and the ReLU mask y: 2*M*N*sizeof(T) bytes more than the model
//   (measured: 1.67x at 256x64x256 float; 1.06x at the MNIST layer 64x784x256, where it is under the 1.1x budget)
template <class T, GemmDir DA, GemmDir DB, int VEC>
__global__ void __launch_bounds__(SimtTile64::THREADS) linear_relu_simt64_kernel(const GemmArgs<T> p) {
  gemm_simt<T, SimtTile64, DA, DB, VEC>(p);
}
// profile-exception linear_relu_simt32_kernel unique: the backward is two launches, dx = (g*mask) W and
//   dW = (g*mask)^T x, each reading g and the ReLU mask y: 2*M*N*sizeof(T) bytes more than the model
//   (measured: 1.33x at 64x64x64 float; 1.06x at the MNIST layer 64x784x256, where it is under the 1.1x budget)
template <class T, GemmDir DA, GemmDir DB, int VEC>
__global__ void __launch_bounds__(SimtTile32::THREADS) linear_relu_simt32_kernel(const GemmArgs<T> p) {
  gemm_simt<T, SimtTile32, DA, DB, VEC>(p);
}

// ---------------------------------------------------------------- tensor-core GEMM (wmma)
// Fragment element type and k-depth of one mma: 16x16x16 for fp16/bf16, 16x16x8 for TF32.
template <class T> struct WmmaKind { using frag = T; static constexpr int K = 16; };
template <> struct WmmaKind<float> { using frag = nvcuda::wmma::precision::tf32; static constexpr int K = 8; };

// profile-exception linear_relu_wmma_kernel unique: the backward is two launches, dx = (g*mask) W and
//   dW = (g*mask)^T x, each reading g and the ReLU mask y: 2*M*N*sizeof(T) bytes more than the model
//   (measured: 1.33x at 64x64x64 half; 1.06x at the MNIST layer 64x784x256, where it is under the 1.1x budget)
template <class T, GemmDir DA, GemmDir DB, int VEC>
__global__ void __launch_bounds__(WmmaTile::THREADS) linear_relu_wmma_kernel(const GemmArgs<T> p) {
  namespace wmma = nvcuda::wmma;
  using A = acc_t<T>;  // float
  using F = typename WmmaKind<T>::frag;
  constexpr int BM = WmmaTile::BM, BN = WmmaTile::BN, BK = WmmaTile::BK, THREADS = WmmaTile::THREADS;
  constexpr int FK = WmmaKind<T>::K, FM = WmmaTile::WM / 16, FN = WmmaTile::WN / 16;
  using LA = TileLoader<T, BM, BK, THREADS, DA, VEC>;
  using LB = TileLoader<T, BN, BK, THREADS, DB, VEC>;
  constexpr int LDC = kWmmaLdc;  // fp32 staging of the accumulators for the epilogue
  // The A/B tiles and, after the main loop, the accumulator staging share one buffer, aligned to 32
  // bytes: wmma fragment pointers must be 256-bit aligned (rows of LD elements keep that, as
  // fragments start at k multiples of 8 or 16 and i multiples of 16).
  unsigned char* smem = dynamic_smem<unsigned char>();
  smem += (32 - reinterpret_cast<uintptr_t>(smem) % 32) % 32;
  T* As = reinterpret_cast<T*>(smem);  // [BK][LA::LD]
  T* Bs = As + BK * LA::LD;            // [BK][LB::LD]
  float* Cs = reinterpret_cast<float*>(smem);  // [BM][LDC], after the main loop

  int64_t tile_m, tile_n;
  block_tile(p.M, BM, tile_m, tile_n);
  const int64_t m0 = tile_m * BM, n0 = tile_n * BN;
  const int warp = int(threadIdx.x) / 32, wm = warp / WmmaTile::WARPS_N, wn = warp % WmmaTile::WARPS_N;
  const bool row_sums = p.a_row_sums != nullptr && tile_n == 0;

  wmma::fragment<wmma::accumulator, 16, 16, FK, float> acc[FM][FN];
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  A rsum = A(0);
  gemm_main_loop<T, LA, LB, BK>(p, m0, n0, As, Bs, row_sums, rsum, [&] {
#pragma unroll
    for (int k = 0; k < BK; k += FK) {
      // As[k][m] is A with m contiguous: a col_major M x K fragment; Bs[k][n] a row_major K x N one.
      wmma::fragment<wmma::matrix_a, 16, 16, FK, F, wmma::col_major> fa[FM];
      wmma::fragment<wmma::matrix_b, 16, 16, FK, F, wmma::row_major> fb[FN];
#pragma unroll
      for (int i = 0; i < FM; ++i) {
        wmma::load_matrix_sync(fa[i], As + k * LA::LD + wm * WmmaTile::WM + i * 16, LA::LD);
        if constexpr (FK == 8)  // TF32: round the fp32 inputs to 10-bit mantissas (cvt.rna.tf32.f32)
          for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
      }
#pragma unroll
      for (int j = 0; j < FN; ++j) {
        wmma::load_matrix_sync(fb[j], Bs + k * LB::LD + wn * WmmaTile::WN + j * 16, LB::LD);
        if constexpr (FK == 8)
          for (int e = 0; e < fb[j].num_elements; ++e) fb[j].x[e] = wmma::__float_to_tf32(fb[j].x[e]);
      }
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
  });
  if (row_sums) store_row_sums(p, m0, BM, rsum);

  // Epilogue: accumulators -> shared (fp32) -> + bias, ReLU -> C, consecutive threads on consecutive n.
#pragma unroll
  for (int i = 0; i < FM; ++i)
#pragma unroll
    for (int j = 0; j < FN; ++j)
      wmma::store_matrix_sync(Cs + (wm * WmmaTile::WM + i * 16) * LDC + wn * WmmaTile::WN + j * 16, acc[i][j], LDC,
                              wmma::mem_row_major);
  __syncthreads();
  for (int idx = int(threadIdx.x); idx < BM * BN; idx += THREADS) {
    const int r = idx / BN, cc = idx % BN;
    const int64_t m = m0 + r, n = n0 + cc;
    if (m < p.M && n < p.N) {
      const A bias = p.bias ? to_acc(p.bias[n]) : A(0);
      p.c[m * p.c_rs + n * p.c_cs] = from_acc<T>(epilogue(Cs[r * LDC + cc], bias, p.relu));
    }
  }
}

// ---------------------------------------------------------------- bias gradient alone
// Block (32, 8): threadIdx.x owns column n, the 8 rows of threads stride down M; the 8 partial sums
// meet in shared memory.  Used only when dW is not computed (then nothing else reads the dz tiles).
// profile-exception linear_relu_bias_grad_kernel sectors: a limit of the emulator's counting, not of the kernel:
//   the g load sits under the data-dependent ReLU guard inside the m loop, so lanes execute it different numbers
//   of times and their loads are grouped across iterations (docs/profiling.md); on a GPU each iteration is one
//   coalesced request of the lanes whose mask is positive (measured here: 3398 sectors above the ideal at 64x256)
template <class T>
__global__ void __launch_bounds__(kBiasGradCols * kBiasGradRowThreads)
linear_relu_bias_grad_kernel(const T* __restrict__ g, int64_t g_rs, int64_t g_cs,  // [M, N]
                             const T* __restrict__ relu_out,                        // [M, N], g's strides, or null
                             T* __restrict__ db, int64_t M, int64_t N) {            // db: [N]
  using A = acc_t<T>;
  __shared__ A part[kBiasGradRowThreads][kBiasGradCols];
  for (int64_t n0 = int64_t(blockIdx.x) * kBiasGradCols; n0 < N; n0 += int64_t(gridDim.x) * kBiasGradCols) {
    const int64_t n = n0 + threadIdx.x;
    A s = A(0);
    if (n < N) {
      for (int64_t m = threadIdx.y; m < M; m += kBiasGradRowThreads) {
        const int64_t off = m * g_rs + n * g_cs;
        if (!relu_out || !(to_acc(relu_out[off]) <= A(0))) s += to_acc(g[off]);
      }
    }
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && n < N) {
      for (unsigned r = 1; r < kBiasGradRowThreads; ++r) s += part[r][threadIdx.x];
      db[n] = from_acc<T>(s);
    }
    __syncthreads();
  }
}

// ---------------------------------------------------------------- launch functions
template <class T> constexpr bool is_half_v = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

inline GemmDir operand_dir(int64_t s_out, int64_t s_red, int64_t rows, int64_t K) {
  if (s_red == 1 || K <= 1) return GemmDir::Red;
  if (s_out == 1 || rows <= 1) return GemmDir::Out;
  return GemmDir::Red;  // neither stride is 1: scalar loads
}

// Can this operand be read in vectors of V along `dir`?  (see TileLoader::load)
template <class T>
bool operand_vec_ok(const GemmOperand<T>& op, GemmDir dir, int64_t rows, int64_t K, int V) {
  const bool aligned = aligned16(op.ptr) && (op.relu_out == nullptr || aligned16(op.relu_out));
  if (dir == GemmDir::Red)
    return aligned && (op.s_red == 1 || K == 1) && K % V == 0 && (rows <= 1 || op.s_out % V == 0);
  return aligned && (op.s_out == 1 || rows == 1) && rows % V == 0 && (K <= 1 || op.s_red % V == 0);
}

// Instantiates kernel K<T, DA, DB, VEC> for the plan's directions.
#define PYOPS_GEMM_LAUNCH_DIRS(KERNEL)                                                                 \
  switch (int(plan.dir_a) * 2 + int(plan.dir_b)) {                                                    \
    case 0: PYOPS_LAUNCH(plan.cfg, stream, KERNEL<T, GemmDir::Red, GemmDir::Red, V>)(p); break;        \
    case 1: PYOPS_LAUNCH(plan.cfg, stream, KERNEL<T, GemmDir::Red, GemmDir::Out, V>)(p); break;        \
    case 2: PYOPS_LAUNCH(plan.cfg, stream, KERNEL<T, GemmDir::Out, GemmDir::Red, V>)(p); break;        \
    default: PYOPS_LAUNCH(plan.cfg, stream, KERNEL<T, GemmDir::Out, GemmDir::Out, V>)(p); break;       \
  }

template <class T, int V> void launch_simt(const GemmPlan& plan, const GemmArgs<T>& p, Stream stream) {
  if constexpr (V == 1) {  // scalar loads: one instantiation serves every layout
    switch (plan.kernel) {
      case GemmKernel::Simt128:
        PYOPS_LAUNCH(plan.cfg, stream, linear_relu_simt128_kernel<T, GemmDir::Red, GemmDir::Red, 1>)(p); break;
      case GemmKernel::Simt64:
        PYOPS_LAUNCH(plan.cfg, stream, linear_relu_simt64_kernel<T, GemmDir::Red, GemmDir::Red, 1>)(p); break;
      default:
        PYOPS_LAUNCH(plan.cfg, stream, linear_relu_simt32_kernel<T, GemmDir::Red, GemmDir::Red, 1>)(p); break;
    }
  } else {
    switch (plan.kernel) {
      case GemmKernel::Simt128: PYOPS_GEMM_LAUNCH_DIRS(linear_relu_simt128_kernel) break;
      case GemmKernel::Simt64: PYOPS_GEMM_LAUNCH_DIRS(linear_relu_simt64_kernel) break;
      default: PYOPS_GEMM_LAUNCH_DIRS(linear_relu_simt32_kernel) break;
    }
  }
}

template <class T, int V> void launch_wmma(const GemmPlan& plan, const GemmArgs<T>& p, Stream stream) {
  if constexpr (V == 1) {
    PYOPS_LAUNCH(plan.cfg, stream, linear_relu_wmma_kernel<T, GemmDir::Red, GemmDir::Red, 1>)(p);
  } else {
    PYOPS_GEMM_LAUNCH_DIRS(linear_relu_wmma_kernel)
  }
}

template <class T>
const char* linear_gemm(const GemmArgs<T>& p, bool allow_tf32, int sm_count, Stream stream, GemmPlan* plan_out) {
  constexpr int V = 16 / sizeof(T);
  const GemmDir da = operand_dir(p.a.s_out, p.a.s_red, p.M, p.K), db = operand_dir(p.b.s_out, p.b.s_red, p.N, p.K);
  const bool vec_ok = operand_vec_ok(p.a, da, p.M, p.K, V) && operand_vec_ok(p.b, db, p.N, p.K, V);
  // fp16/bf16 always on tensor cores; fp32 only as TF32 when allowed; fp64 on CUDA cores.
  const bool tensor_cores = is_half_v<T> || (std::is_same_v<T, float> && allow_tf32);
  const GemmPlan plan = linear_gemm_plan(p.M, p.N, sizeof(T), tensor_cores, sm_count, da, db, vec_ok);
  if (plan_out) *plan_out = plan;
  if (p.M == 0 || p.N == 0) return nullptr;  // nothing to write (a K of 0 still writes bias / zeros)
  if (plan.tiles_m * plan.tiles_n > kGemmMaxBlocks) return "linear_gemm: more than 2^31 - 1 output tiles";
  if constexpr (is_half_v<T> || std::is_same_v<T, float>) {
    if (plan.kernel == GemmKernel::Wmma) {
      if (plan.vec == V) launch_wmma<T, V>(plan, p, stream);
      else launch_wmma<T, 1>(plan, p, stream);
      return launch_status();
    }
  }
  if constexpr (!is_half_v<T>) {
    if (plan.vec == V) launch_simt<T, V>(plan, p, stream);
    else launch_simt<T, 1>(plan, p, stream);
  }
  return launch_status();
}

template <class T>
const char* linear_bias_grad(const T* g, int64_t g_rs, int64_t g_cs, const T* relu_out, T* db, int64_t M, int64_t N,
                             Stream stream) {
  if (N == 0) return nullptr;
  const LaunchConfig cfg = linear_bias_grad_plan(N);
  PYOPS_LAUNCH(cfg, stream, linear_relu_bias_grad_kernel<T>)(g, g_rs, g_cs, relu_out, db, M, N);
  return launch_status();
}

#undef PYOPS_GEMM_LAUNCH_DIRS

#if defined(PYOPS_INSTANTIATE)
#define PYOPS_LINEAR_RELU_INSTANTIATE(T)                                                                      \
  template const char* linear_gemm<T>(const GemmArgs<T>&, bool, int, Stream, GemmPlan*);                     \
  template const char* linear_bias_grad<T>(const T*, int64_t, int64_t, const T*, T*, int64_t, int64_t, Stream);
PYOPS_FOR_EACH_FLOAT(PYOPS_LINEAR_RELU_INSTANTIATE)
#endif

#endif  // PYOPS_DEVICE_CODE

}  // namespace pyops::cuda
