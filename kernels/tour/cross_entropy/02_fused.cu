// Cross-entropy tour, step 2 of 4: fused, with the online log-sum-exp.
//
// Nothing needs the log-softmax row but the loss: loss_r = lse_r - x[r, t_r] with
// lse_r = log(sum_c exp(x[r, c])), computed from the online (m, s) pair of softmax step 2 in one
// pass over the row.  The [rows, C] buffer is gone -- C stores and C loads per row less -- and x is
// read once instead of three times (plus the one target logit).  Still one thread per row, so still
// 32 sectors per request.
//
// Launch: block (128), grid (ceil(rows / 128)).
#include <math.h>

__global__ void ce_fused(const float* x, const long long* target, float* loss, int rows, int C) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const float* xr = x + (size_t)row * C;
  float m = -INFINITY, s = 0.f;
  for (int c = 0; c < C; ++c) {
    const float v = xr[c];
    if (v > m) {
      s = s * expf(m - v) + 1.f;
      m = v;
    } else if (v != -INFINITY) {
      s += expf(v - m);
    }
  }
  loss[row] = m + logf(s) - xr[target[row]];
}
