// planted/kernels.cuh -- kernels with planted bugs, each beside its correct twin, for the emulator's
// self-test (tests/cpp/planted/planted.cpp, check.py).  Plain CUDA: nvcc compiles this file for sm_80
// and sm_90 with warnings as errors (nvcc_check.cu), g++ compiles it with csrc/sim/simt.h.
//
//   bug                          kernel                       caught by
//   missing __syncthreads        reverse_missing_sync         TSan (data race on the shared array)
//   missing __syncwarp           warp_sum_missing_syncwarp    TSan
//   out-of-range global read     sum_oob_read                 ASan (heap-buffer-overflow)
//   divergent __syncthreads      sum_divergent_barrier        emulator (two barrier call sites)
//   shuffle mask names lanes     shfl_mask_absent_lanes       emulator (deadlock report)
//     that never call it
//   shuffle mask lacks caller    shfl_mask_lacks_caller       emulator
//   shuffle reads a lane outside shfl_reads_outside_mask      emulator hazard (poisoned value;
//     its mask                                                error under SIMT_STRICT=1)
//   uninitialized shared read    sum_uninit_smem,             NaN poison in the result
//                                sum_uninit_smem_tmpl<float>
//
// Plus checks of the emulator's semantics (correct kernels): __activemask in a divergent branch,
// shuffles with width < 32 (PTX rules for out-of-segment lanes), votes, a wmma tile product.
#pragma once
#include <cuda_fp16.h>
#include <mma.h>  // g++: simt.h has already included the wmma stand-in, csrc/sim/mma.h

namespace planted {

// ---- 1. y[t] = x[n - 1 - t] through shared memory; one block of n <= 256 threads.
__global__ void reverse_ok(const float* x, float* y, int n) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = x[t];
  __syncthreads();
  y[t] = s[n - 1 - t];
}
__global__ void reverse_missing_sync(const float* x, float* y, int n) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = x[t];
  // BUG: no __syncthreads(): s[n - 1 - t] may not be written yet
  y[t] = s[n - 1 - t];
}

// ---- 2. sum of x[0..n) by one block of 256 threads (strided partial sums, then a tree).
// s[t] holds thread t's partial sum; every thread calls this; *out = the block's sum.
__device__ void tree_sum(float* s, float* out) {
  const int t = threadIdx.x;
  __syncthreads();
  for (int st = blockDim.x / 2; st > 0; st >>= 1) {
    if (t < st) s[t] += s[t + st];
    __syncthreads();
  }
  if (t == 0) *out = s[0];
}
__global__ void sum_ok(const float* x, float* out, int n) {
  __shared__ float s[256];
  float a = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) a += x[i];
  s[threadIdx.x] = a;
  tree_sum(s, out);
}
__global__ void sum_oob_read(const float* x, float* out, int n) {
  __shared__ float s[256];
  float a = 0.f;
  for (int i = threadIdx.x; i <= n; i += blockDim.x) a += x[i];  // BUG: i <= n reads x[n]
  s[threadIdx.x] = a;
  tree_sum(s, out);
}
__global__ void sum_divergent_barrier(const float* x, float* out, int n) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = t < n ? x[t] : 0.f;
  __syncthreads();
  if (t < 128) {
    s[t] += s[t + 128];
    __syncthreads();  // BUG: only threads 0..127 get here; 128..255 wait at the next barrier
  }
  __syncthreads();
  if (t == 0) {
    float a = 0.f;
    for (int i = 0; i < 128; ++i) a += s[i];
    *out = a;
  }
}
// The tree assumes 256 threads; launched with 200, s[200..255] are never written.
__global__ void sum_uninit_smem(const float* x, float* out, int n) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = t < n ? x[t] : 0.f;  // BUG: with blockDim.x == 200 nobody writes s[200..255]
  __syncthreads();
  for (int st = 128; st > 0; st >>= 1) {
    if (t < st) s[t] += s[t + st];
    __syncthreads();
  }
  if (t == 0) *out = s[0];
}

// The same bug in a kernel template: g++ stores a template's statics differently (simt.h finds them
// through the symbol table), so the poison is proven for both kinds.
template <class T>
__global__ void sum_uninit_smem_tmpl(const T* x, T* out, int n) {
  __shared__ T s[256];
  const int t = threadIdx.x;
  s[t] = t < n ? x[t] : T(0);  // BUG: with blockDim.x == 200 nobody writes s[200..255]
  __syncthreads();
  for (int st = 128; st > 0; st >>= 1) {
    if (t < st) s[t] += s[t + st];
    __syncthreads();
  }
  if (t == 0) *out = s[0];
}

// ---- 3. warp sums: out[w] = sum of the 32 values of warp w.
__global__ void warp_sum_ok(const float* x, float* out) {
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  if ((threadIdx.x & 31) == 0) out[(blockIdx.x * blockDim.x + threadIdx.x) >> 5] = v;
}
// Lanes 0..15 sum 16 values; the mask names all 32 lanes, but lanes 16..31 go on to __syncthreads.
__global__ void shfl_mask_absent_lanes(const float* x, float* out) {
  const int lane = threadIdx.x & 31;
  float v = x[threadIdx.x];
  if (lane < 16)
    for (int off = 8; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);  // BUG: mask 0x0000ffff
  __syncthreads();
  if (lane == 0) out[threadIdx.x >> 5] = v;
}
// Every lane calls, but the mask names only lanes 0..15.
__global__ void shfl_mask_lacks_caller(const float* x, float* out) {
  float v = x[threadIdx.x];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0x0000ffffu, v, off);  // BUG: should be 0xffffffff
  if ((threadIdx.x & 31) == 0) out[threadIdx.x >> 5] = v;
}
// Lanes 0..15 with mask 0x0000ffff shuffle down by 8, 4, 2, 1 at width 32: lanes 8..15 read lanes
// 16..23, outside the mask (undefined values; lane 0's sum happens not to use them).
__global__ void shfl_reads_outside_mask(const float* x, float* out) {
  const int lane = threadIdx.x & 31;
  float v = x[threadIdx.x];
  if (lane < 16)
    for (int off = 8; off > 0; off >>= 1) v += __shfl_down_sync(0x0000ffffu, v, off);  // BUG: width 16 intended
  if (lane == 0) out[threadIdx.x >> 5] = v;
}
// Legacy warp-synchronous tree in shared memory: since Volta the lanes need __syncwarp() between steps.
__global__ void warp_sum_missing_syncwarp(const float* x, float* out) {
  __shared__ float s[64];
  const int t = threadIdx.x;  // blockDim.x == 32
  s[t] = x[t];
  s[t + 32] = 0.f;
  __syncwarp();
  for (int off = 16; off > 0; off >>= 1) {
    s[t] += s[t + off];  // BUG: lane t reads s[t + off] while lane t + off may be updating it
  }
  if (t == 0) *out = s[0];
}
__global__ void warp_sum_syncwarp_ok(const float* x, float* out) {
  __shared__ float s[64];
  const int t = threadIdx.x;
  s[t] = x[t];
  s[t + 32] = 0.f;
  __syncwarp();
  for (int off = 16; off > 0; off >>= 1) {
    const float o = s[t + off];
    __syncwarp();
    s[t] += o;
    __syncwarp();
  }
  if (t == 0) *out = s[0];
}

// ---- 4. semantics of the emulated intrinsics (correct kernels; the driver checks the values).
// out[lane] = __activemask() inside `if (lane < 10)`, and the popcount of the group via __reduce_add_sync.
__global__ void activemask_divergent(unsigned* out) {
  const int lane = threadIdx.x & 31;
  if (lane < 10) {
    const unsigned m = __activemask();
    out[lane] = m;
    out[32 + lane] = __reduce_add_sync(m, 1u);
  } else {
    out[lane] = __activemask();
    out[32 + lane] = 0u;
  }
}
// out[k * 32 + lane]: shuffles of the lane id with width 8: xor 8 (a later segment -> own value; an
// earlier one -> read), down 3, up 3, idx 5.  Ballot of odd lanes in out[128].
__global__ void shfl_width8(int* out) {
  const int lane = threadIdx.x;
  out[lane] = __shfl_xor_sync(0xffffffffu, lane, 8, 8);
  out[32 + lane] = __shfl_down_sync(0xffffffffu, lane, 3, 8);
  out[64 + lane] = __shfl_up_sync(0xffffffffu, lane, 3, 8);
  out[96 + lane] = __shfl_sync(0xffffffffu, lane, 5, 8);
  const unsigned b = __ballot_sync(0xffffffffu, lane & 1);
  if (lane == 0) out[128] = int(b);
}
// C[16x16] (float) = A[16x16] (half, row-major) * B[16x16] (half, col-major) on the tensor cores.
__global__ void wmma_16x16x16(const __half* a, const __half* b, float* c) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::fill_fragment(fc, 0.0f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

}  // namespace planted
