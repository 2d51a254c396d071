// common.cuh -- what every pyops CUDA kernel shares.  Torch-free: this header and the kernel
// headers beside it are compiled three ways.
//
//   nvcc (csrc/cuda/kernels.cu)        __CUDACC__        real device code, launched with <<<>>>
//   g++ + emulator (csrc/sim/...)      PYOPS_SIM_DEVICE  the same device code, run on the CPU by
//                                                        csrc/sim/simt.h (backend "cuda-sim")
//   g++, glue (csrc/cuda/<op>.cpp)     neither           declarations only: the launch functions
//                                                        the PyTorch glue calls
//
// Layers: a kernel header (softmax.cuh, ...) holds the __global__ kernels, a torch-free *plan*
// function that picks variant/grid/block from the shape (one function, used by the real launch,
// the emulated launch and the tests), and a launch function taking raw pointers, sizes and
// strides.  PyTorch never appears below csrc/.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define PYOPS_DEVICE_CODE 1
#include <cuda_runtime.h>
#elif defined(PYOPS_SIM_DEVICE)
#define PYOPS_DEVICE_CODE 1
#define SIMT_USE_CUDA_HEADERS
#include "simt.h"  // csrc/sim: qualifiers, threadIdx, __syncthreads, shuffles, atomics on the CPU
#else
#include <vector_types.h>  // dim3 for the plans (host-only; no device code in this mode)
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace pyops::cuda {

#if defined(PYOPS_SIM) || defined(PYOPS_SIM_DEVICE)
using Stream = void*;  // the emulator runs every launch synchronously on the calling thread
#else
using Stream = struct CUstream_st*;  // == cudaStream_t, without pulling in the runtime headers
#endif

// Where a launch goes: filled by an op's plan function, consumed by PYOPS_LAUNCH.
struct LaunchConfig {
  dim3 grid{1, 1, 1};
  dim3 block{1, 1, 1};
  size_t smem = 0;  // dynamic shared memory, bytes
};

// PYOPS_LAUNCH(cfg, stream, kernel<T, N>)(args...)  ==  kernel<T, N><<<grid, block, smem, stream>>>(args...)
// The kernel comes last so template arguments with commas need no extra parentheses.
#if defined(__CUDACC__)
#define PYOPS_LAUNCH(cfg, stream, ...) __VA_ARGS__<<<(cfg).grid, (cfg).block, (cfg).smem, (stream)>>>
#elif defined(PYOPS_SIM_DEVICE)
#define PYOPS_LAUNCH(cfg, stream, ...) \
  ((void)(stream), ::simt::Launcher{#__VA_ARGS__, __VA_ARGS__, (cfg).grid, (cfg).block, (cfg).smem})
#endif

// Status of the launches just made: nullptr on success, else the CUDA error string.  The glue
// turns it into a Python exception (TORCH_CHECK); the emulator throws its own errors instead.
#if defined(__CUDACC__)
inline const char* launch_status() {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}
#elif defined(PYOPS_SIM_DEVICE)
inline const char* launch_status() { return nullptr; }
#endif

// PYOPS_DEVICE_REQUIRE(cond, "message"): a check of data the host never looked at (e.g. a class index
// read by the kernel).  Costs one compare and a never-taken branch; no host synchronization.
//   nvcc      __assert_fail, exactly what device-side assert() does: the kernel prints the message
//             with the failing block/thread and stops; the launch fails with cudaErrorAssert ("device-side
//             assert triggered"), reported by the next synchronizing CUDA call, and the CUDA context is
//             unusable afterwards (as with PyTorch's own CUDA_KERNEL_ASSERT).
//   emulator  the launch stops and the glue raises a Python RuntimeError carrying the message.
// `message` must be a string literal.
#if defined(__CUDACC__)
#include <assert.h>
#define PYOPS_DEVICE_REQUIRE(cond, message) \
  ((cond) ? (void)0 : __assert_fail(message, __FILE__, static_cast<unsigned>(__LINE__), __func__))
#elif defined(PYOPS_SIM_DEVICE)
#define PYOPS_DEVICE_REQUIRE(cond, message) ((cond) ? (void)0 : ::simt::fail(message))
#endif

// Explicit instantiation lists: each kernel header ends with PYOPS_FOR_EACH_FLOAT(ITS_INSTANTIATION)
// under PYOPS_INSTANTIATE, defined only by the one translation unit that compiles the device code.
#define PYOPS_FOR_EACH_FLOAT(X) X(float) X(double) X(__half) X(__nv_bfloat16)

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// p is a multiple of `bytes` (a power of two): what a vector access of that width needs.  Host and device.
#if defined(PYOPS_DEVICE_CODE)
__host__ __device__
#endif
inline bool aligned_to(const void* p, unsigned bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}
inline bool aligned16(const void* p) { return aligned_to(p, 16); }
inline unsigned next_pow2(uint64_t v) {
  unsigned p = 1;
  while (p < v) p <<= 1;
  return p;
}

// ---- the plan of the row-reduction kernels (softmax.cuh, cross_entropy.cuh): who owns a row of `cols` elements.
//   warp per row   cols <= 1024: block (32, 4), warp threadIdx.y owns one row, 4 rows per block
//   block per row  cols > 1024: 128..1024 threads (about 8 vector accesses per thread per pass)
// Grids are grid-stride beyond 2^20 blocks.  vec: elements per access, 16 / elem_size when `vec_ok`, else 1.
enum class RowVariant : int { WarpPerRow = 0, BlockPerRow = 1 };
constexpr int64_t kRowWarpMaxCols = 1024;  // longest row a single warp handles
constexpr unsigned kRowsPerWarpBlock = 4;  // warps (rows) per block in the warp variant
constexpr int64_t kMaxGrid = 1 << 20;      // grid-stride beyond this many blocks

struct RowPlan {
  RowVariant variant;
  int vec;  // elements per access: 1 or 16 / elem_size
  LaunchConfig cfg;
};

inline RowPlan row_plan(int64_t rows, int64_t cols, int elem_size, bool vec_ok) {
  RowPlan p{};
  p.vec = vec_ok ? 16 / elem_size : 1;
  if (cols <= kRowWarpMaxCols) {
    p.variant = RowVariant::WarpPerRow;
    p.cfg.block = dim3(32, kRowsPerWarpBlock);
    p.cfg.grid = dim3(unsigned(std::min<int64_t>(ceil_div(rows, kRowsPerWarpBlock), kMaxGrid)));
  } else {
    p.variant = RowVariant::BlockPerRow;
    const unsigned t = next_pow2(uint64_t(ceil_div(cols, int64_t(p.vec) * 8)));
    p.cfg.block = dim3(std::min(1024u, std::max(128u, t)));
    p.cfg.grid = dim3(unsigned(std::min<int64_t>(rows, kMaxGrid)));
  }
  return p;
}

// Accumulation type: fp16/bf16 are storage only; float accumulates in float, double in double.
template <class T> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };
template <class T> using acc_t = typename Acc<T>::type;

#if defined(PYOPS_DEVICE_CODE)

template <class T> __device__ __forceinline__ acc_t<T> to_acc(T v) { return static_cast<acc_t<T>>(v); }
template <> __device__ __forceinline__ float to_acc<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T> __device__ __forceinline__ T from_acc(acc_t<T> v) { return static_cast<T>(v); }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Full-precision math in the accumulation type (the __expf intrinsics are too loose for the
// float32 tolerances the tests hold the kernels to).
__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }
__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }
template <class A> __device__ __forceinline__ A neg_inf() { return -static_cast<A>(INFINITY); }

// N elements moved as one 16-byte (or smaller) access: LDG.E.128 / STG.E.128 when N * sizeof(T) == 16.
template <class T, int N> struct alignas(sizeof(T) * N) Vec { T v[N]; };

template <class T, int N> __device__ __forceinline__ Vec<T, N> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, N>*>(p);
}
template <class T, int N> __device__ __forceinline__ void store_vec(T* p, const Vec<T, N>& v) {
  *reinterpret_cast<Vec<T, N>*>(p) = v;
}
// store_vec to global memory, as one STG.E.128 when 16 bytes.  nvcc (13.0) compiled store_vec's 16-byte
// struct store as four 4-byte STG.E at +0, +4, +8, +12 (or two 8-byte) in the SIMT GEMM's epilogue (every C
// store of the float 32 and 64 tiles), in Adam's p/m/v updates and in some of softmax's unrolled warp kernels: the PTX already has four st.global.f32, so nvcc's optimizer, not ptxas, splits them, and whether it
// does depends on the code around the store (the GEMM epilogue without its bias loads, or without the main
// loop, gets st.global.v4).  No source-level hint changed it (__builtin_assume_aligned, a uint4 store, the row
// pointer computed first).  An explicit st.global.v4.b32 cannot be split; the emulator (g++) keeps the struct
// store, a 16-byte access either way.  Same bits, same place: results are unchanged.  (The generic address is
// the global one, as CUTLASS's stores assume; converting it first with __cvta_generic_to_global cost the sm_90
// softmax backward warp kernels <float, 4, false> and <__half, 8, true> 8 bytes of stack.)
template <class T, int N> __device__ __forceinline__ void store_vec_global(T* p, const Vec<T, N>& v) {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(Vec<T, N>) == 16) {
    uint4 u;
    memcpy(&u, &v, 16);
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(u.x), "r"(u.y), "r"(u.z), "r"(u.w)
                 : "memory");
    return;
  }
#endif
  store_vec<T, N>(p, v);
}

constexpr unsigned FULL_MASK = 0xffffffffu;

template <class A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(FULL_MASK, v, off);
  return v;
}
template <class A> __device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = max(v, __shfl_xor_sync(FULL_MASK, v, off));
  return v;
}

// Block-wide sum; every thread gets the result.  `scratch` holds 32 values in shared memory and may
// be reused as soon as this returns (the trailing barrier).  blockDim.x must be a multiple of 32.
template <class A> __device__ __forceinline__ A block_sum(A v, A* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < nwarps ? scratch[lane] : A(0);
    v = warp_sum(v);
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  v = scratch[0];
  __syncthreads();
  return v;
}

// ---- online softmax statistics: the running pair (m, s) = (max, sum of exp(x - m)) of a set of values,
// built one value at a time and merged across threads without a second pass over the data.
// When a larger value arrives, the sum is rescaled: s <- s * exp(m_old - m_new) + 1.  -inf values add
// nothing; a set of only -inf values ends as (-inf, 0).  Used by softmax.cuh and cross_entropy.cuh.

// Running (max, sum-of-exp) pair: add one value.
template <class A> __device__ __forceinline__ void online_add(A& m, A& s, A v) {
  if (v > m) {
    s = s * exp_(m - v) + A(1);  // m == -inf: s is 0 and exp(-inf) is 0
    m = v;
  } else if (v != neg_inf<A>()) {  // skip -inf: exp(-inf - m) adds 0, and m == -inf would give NaN
    s += exp_(v - m);              // NaN input: lands here and propagates
  }
}
// Merge another thread's pair into (m, s).  A pair (-inf, 0) adds nothing; a NaN sum always propagates (a
// thread whose values were NaN only still has m2 == -inf, and dropping it would lose the NaN).
template <class A> __device__ __forceinline__ void online_merge(A& m, A& s, A m2, A s2) {
  if (m2 > m) {
    s = s * exp_(m - m2) + s2;
    m = m2;
  } else if (m2 != neg_inf<A>() || s2 != A(0)) {
    s += s2 * exp_(m2 - m);
  }
}
template <class A> __device__ __forceinline__ void warp_online_merge(A& m, A& s) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const A m2 = __shfl_xor_sync(FULL_MASK, m, off);
    const A s2 = __shfl_xor_sync(FULL_MASK, s, off);
    online_merge(m, s, m2, s2);
  }
}
// Block-wide merge; every thread gets the block's pair.  part_m / part_s: 32 values each in shared
// memory, reusable as soon as this returns (the trailing barrier).  blockDim.x a multiple of 32.
template <class A> __device__ __forceinline__ void block_online_merge(A& m, A& s, A* part_m, A* part_s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  warp_online_merge(m, s);
  if (lane == 0) {
    part_m[warp] = m;
    part_s[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    m = lane < nwarps ? part_m[lane] : neg_inf<A>();
    s = lane < nwarps ? part_s[lane] : A(0);
    warp_online_merge(m, s);
    if (lane == 0) {
      part_m[0] = m;
      part_s[0] = s;
    }
  }
  __syncthreads();
  m = part_m[0];
  s = part_s[0];
  __syncthreads();
}

// Dynamic shared memory of the running block, as an array of T (size chosen by the plan).
template <class T> __device__ __forceinline__ T* dynamic_smem() {
#if defined(__CUDACC__)
  extern __shared__ __align__(16) unsigned char pyops_dynamic_smem[];
  return reinterpret_cast<T*>(pyops_dynamic_smem);
#else
  return reinterpret_cast<T*>(::simt::dynamic_shared());
#endif
}

#endif  // PYOPS_DEVICE_CODE

}  // namespace pyops::cuda
