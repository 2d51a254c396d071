// Softmax tour, step 1 of 5: three passes.
//
// For each row r of a [rows, cols] float matrix, y[r, c] = exp(x[r, c] - m) / s with
//     m = max_c x[r, c],   s = sum_c exp(x[r, c] - m)     (subtracting m keeps exp() in range).
//
// One thread per row reads its row three times from global memory: once for the maximum, once for
// the sum, once to write the output.  Correct, and as slow as it looks: 3 reads + 1 write of every
// element, and the 32 threads of a warp read 32 different rows (addresses `cols` floats apart), so
// each warp-wide load touches 32 separate 32-byte sectors to use 4 bytes of each.
//
// Launch: block (128), grid (ceil(rows / 128)).
#include <math.h>

__global__ void softmax_three_pass(const float* x, float* y, int rows, int cols) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const float* xr = x + (size_t)row * cols;
  float* yr = y + (size_t)row * cols;
  float m = -INFINITY;  // pass 1: the maximum (subtracting it keeps exp() in range)
  for (int c = 0; c < cols; ++c) m = fmaxf(m, xr[c]);
  float s = 0.f;  // pass 2: the sum of exponentials
  for (int c = 0; c < cols; ++c) s += expf(xr[c] - m);
  for (int c = 0; c < cols; ++c) yr[c] = expf(xr[c] - m) / s;  // pass 3: the output
}
