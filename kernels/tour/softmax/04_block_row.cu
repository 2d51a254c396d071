// Softmax tour, step 4 of 5: a block per row (long rows).
//
// A warp per row leaves each lane cols / 32 elements -- 64 for a 2048-column row, read one after
// another.  A block of 256 threads per row splits the row 256 ways: every thread strides by
// blockDim.x, each warp merges its lanes with shuffles as in step 3, then the warps' 8 partial pairs
// meet in shared memory: warp 0 merges them and writes the row's pair back for everyone.  Two
// __syncthreads: after the partials are written, and after the result is.
//
// Launch: block (256), grid (rows).
#include <math.h>

__device__ void online_add(float& m, float& s, float v) {
  if (v > m) {
    s = s * expf(m - v) + 1.f;
    m = v;
  } else if (v != -INFINITY) {
    s += expf(v - m);
  }
}

__device__ void online_merge(float& m, float& s, float m2, float s2) {
  const float mm = fmaxf(m, m2);
  if (mm == -INFINITY) return;
  s = s * expf(m - mm) + s2 * expf(m2 - mm);
  m = mm;
}

__device__ void warp_merge(float& m, float& s) {
  for (int o = 16; o > 0; o /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
}

__global__ void softmax_block_row(const float* x, float* y, int rows, int cols) {
  __shared__ float part_m[32], part_s[32];  // one pair per warp (up to 1024 threads)
  const int row = blockIdx.x;
  const float* xr = x + (size_t)row * cols;
  float* yr = y + (size_t)row * cols;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  float m = -INFINITY, s = 0.f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) online_add(m, s, xr[c]);
  warp_merge(m, s);
  if (lane == 0) {
    part_m[warp] = m;
    part_s[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    m = lane < warps ? part_m[lane] : -INFINITY;
    s = lane < warps ? part_s[lane] : 0.f;
    warp_merge(m, s);
    if (lane == 0) {
      part_m[0] = m;
      part_s[0] = s;
    }
  }
  __syncthreads();
  m = part_m[0];
  const float inv = 1.f / part_s[0];
  for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = expf(xr[c] - m) * inv;
}
