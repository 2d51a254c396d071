// Softmax tour, step 3 of 5: a warp per row, merged with shuffles (coalescing).
//
// The 32 lanes of a warp share one row: lane l reads columns l, l + 32, l + 64, ... so one
// warp-wide load reads 32 consecutive floats -- 128 bytes, 4 sectors, all of them used (step 2:
// 32 sectors for the same 128 useful bytes).  Each lane keeps its own online (m, s) pair; the 32
// pairs merge in 5 butterfly steps of __shfl_xor_sync, after which every lane holds the row's pair:
//     (m, s) + (m', s')  =  (M, s * exp(m - M) + s' * exp(m' - M)),   M = max(m, m').
//
// Launch: block (32, 4) -- warp threadIdx.y of the block owns row blockIdx.x * 4 + threadIdx.y;
// grid (ceil(rows / 4)).  The row test is uniform across a warp, so all 32 lanes reach the shuffles.
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
  if (mm == -INFINITY) return;  // both empty (a row of -inf): stays (-inf, 0)
  s = s * expf(m - mm) + s2 * expf(m2 - mm);
  m = mm;
}

__global__ void softmax_warp_row(const float* x, float* y, int rows, int cols) {
  const int row = blockIdx.x * blockDim.y + threadIdx.y;
  if (row >= rows) return;  // the whole warp leaves together
  const float* xr = x + (size_t)row * cols;
  float* yr = y + (size_t)row * cols;
  float m = -INFINITY, s = 0.f;
  for (int c = threadIdx.x; c < cols; c += 32) online_add(m, s, xr[c]);
  for (int o = 16; o > 0; o /= 2) {  // butterfly: after 5 steps every lane has the whole row's (m, s)
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
  const float inv = 1.f / s;
  for (int c = threadIdx.x; c < cols; c += 32) yr[c] = expf(xr[c] - m) * inv;
}
