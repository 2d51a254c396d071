// Cross-entropy tour, step 3 of 4: a warp per row (coalescing).
//
// As softmax step 3: the 32 lanes of a warp share a row, lane l reads classes l, l + 32, ..., so a
// warp-wide load is 128 consecutive bytes (4 sectors, the ideal); the lanes' (m, s) pairs merge with
// __shfl_xor_sync, and lane 0 reads the target logit and writes the loss.
//
// Launch: block (32, 4) -- warp threadIdx.y owns row blockIdx.x * 4 + threadIdx.y; grid (ceil(rows / 4)).
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

__global__ void ce_warp_row(const float* x, const long long* target, float* loss, int rows, int C) {
  const int row = blockIdx.x * blockDim.y + threadIdx.y;
  if (row >= rows) return;  // the whole warp leaves together
  const float* xr = x + (size_t)row * C;
  float m = -INFINITY, s = 0.f;
  for (int c = threadIdx.x; c < C; c += 32) online_add(m, s, xr[c]);
  for (int o = 16; o > 0; o /= 2) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_merge(m, s, m2, s2);
  }
  if (threadIdx.x == 0) loss[row] = m + logf(s) - xr[target[row]];
}
