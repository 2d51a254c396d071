// cases.cpp -- hand-computable kernels for the emulator's counting build (tests/test_profile.py builds this
// file with csrc/sim/profile_rt.cpp into a small counting module, exactly as a learner's kernel is built):
// each case's sectors per request and shared-memory wavefronts are known in advance (docs/profiling.md).
#include "profile_rt.h"

#include <cstring>

template <int S> __global__ void copy_strided(const float* x, float* y, int n) {  // y[i] = x[i * S]
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[int64_t(i) * S];
}
__global__ void copy_vec4(const float4* x, float4* y, int n) {  // 16-byte accesses
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i];
}
__global__ void lane_parity(const float* x, float* y, int n) {  // if/else on the lane: two half-warp stores
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = x[i];
  if (threadIdx.x & 1) y[i] = v * 2.f;
  else y[i] = v + 1.f;
}
template <int S> __global__ void smem_stride(float* out) {  // one warp: s[lane * S], then a broadcast s[0]
  __shared__ float s[32 * 33];
  const int t = threadIdx.x;
  s[t * S] = float(t);
  __syncthreads();
  out[t] = s[t * S] + s[0];
}
template <int PAD> __global__ void transpose_smem(const float* in, float* out, int n) {  // 32x32 tiles, block 32x8
  __shared__ float tile[32][32 + PAD];
  int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
  for (int j = 0; j < 32; j += 8) tile[threadIdx.y + j][threadIdx.x] = in[(y + j) * n + x];
  __syncthreads();
  x = blockIdx.y * 32 + threadIdx.x;
  y = blockIdx.x * 32 + threadIdx.y;
  for (int j = 0; j < 32; j += 8) out[(y + j) * n + x] = tile[threadIdx.x][threadIdx.y + j];  // column read
}
__global__ void warp_sum(const float* x, float* y) {  // collectives and a barrier per warp
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) y[blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32] = v;
}

// Runs case `name` on x (input) and y (output), n elements each (the caller registers both); 0 when known.
extern "C" __attribute__((visibility("default"))) int prof_case(const char* name, float* x, float* y, int n) {
  const dim3 b256(256), g(unsigned(n / 256));
  if (!strcmp(name, "copy_stride1")) simt::launch("copy_stride1", copy_strided<1>, g, b256, 0, x, y, n);
  else if (!strcmp(name, "copy_stride2")) simt::launch("copy_stride2", copy_strided<2>, g, b256, 0, x, y, n / 2);
  else if (!strcmp(name, "copy_stride32")) simt::launch("copy_stride32", copy_strided<32>, g, b256, 0, x, y, n / 32);
  else if (!strcmp(name, "copy_vec4"))
    simt::launch("copy_vec4", copy_vec4, dim3(unsigned(n / 4 / 256)), b256, 0, reinterpret_cast<const float4*>(x),
                 reinterpret_cast<float4*>(y), n / 4);
  else if (!strcmp(name, "lane_parity")) simt::launch("lane_parity", lane_parity, g, b256, 0, x, y, n);
  else if (!strcmp(name, "smem_stride1")) simt::launch("smem_stride1", smem_stride<1>, dim3(1), dim3(32), 0, y);
  else if (!strcmp(name, "smem_stride2")) simt::launch("smem_stride2", smem_stride<2>, dim3(1), dim3(32), 0, y);
  else if (!strcmp(name, "smem_stride32")) simt::launch("smem_stride32", smem_stride<32>, dim3(1), dim3(32), 0, y);
  else if (!strcmp(name, "smem_stride33")) simt::launch("smem_stride33", smem_stride<33>, dim3(1), dim3(32), 0, y);
  else if (!strcmp(name, "transpose_unpadded"))
    simt::launch("transpose_unpadded", transpose_smem<0>, dim3(2, 2), dim3(32, 8), 0, x, y, 64);
  else if (!strcmp(name, "transpose_padded"))
    simt::launch("transpose_padded", transpose_smem<1>, dim3(2, 2), dim3(32, 8), 0, x, y, 64);
  else if (!strcmp(name, "warp_sum")) simt::launch("warp_sum", warp_sum, dim3(2), dim3(128), 0, x, y);
  else return 1;
  return 0;
}
