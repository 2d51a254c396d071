// Softmax tour, step 2 of 5: the online maximum and sum (one read less).
//
// Still one thread per row, but the maximum and the sum come from ONE pass: keep a running pair
// (m, s) and, when a larger value v arrives, rescale the sum to the new maximum,
//     s <- s * exp(m - v) + 1,   m <- v            (else s <- s + exp(v - m)).
// Pass 2 then writes the output: 2 reads + 1 write per element instead of 3 + 1 (bytes read: -1/3).
// The access pattern is unchanged -- a warp still reads 32 rows at once, one sector per thread.
//
// Launch: block (128), grid (ceil(rows / 128)).
#include <math.h>

__global__ void softmax_online(const float* x, float* y, int rows, int cols) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const float* xr = x + (size_t)row * cols;
  float* yr = y + (size_t)row * cols;
  float m = -INFINITY, s = 0.f;
  for (int c = 0; c < cols; ++c) {
    const float v = xr[c];
    if (v > m) {
      s = s * expf(m - v) + 1.f;  // exp(-inf) = 0: the first element just starts the sum
      m = v;
    } else if (v != -INFINITY) {  // -inf adds nothing (and -inf - -inf would be NaN)
      s += expf(v - m);
    }
  }
  for (int c = 0; c < cols; ++c) yr[c] = expf(xr[c] - m) / s;
}
