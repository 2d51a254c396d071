// Cross-entropy tour, step 1 of 4: log-softmax, then the loss (unfused).
//
// The loss of row r of logits x [rows, C] with target class t_r is
//     loss_r = -log_softmax(x_r)[t_r] = log(sum_c exp(x[r, c] - m)) + m - x[r, t_r],   m = max_c x[r, c].
// Written as PyTorch writes it unfused -- F.nll_loss(F.log_softmax(x), t) -- one thread per row
// computes the whole log-softmax row into a [rows, C] buffer (three passes over x, as softmax step 1)
// and then reads back the one element the loss needs.  The buffer is C floats written per row to
// use one of them, and the warp's accesses are one row per lane: 32 sectors per request.
//
// Launch: block (128), grid (ceil(rows / 128)).
#include <math.h>

__global__ void ce_unfused(const float* x, const long long* target, float* logp, float* loss, int rows, int C) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= rows) return;
  const float* xr = x + (size_t)row * C;
  float* lr = logp + (size_t)row * C;
  float m = -INFINITY;
  for (int c = 0; c < C; ++c) m = fmaxf(m, xr[c]);
  float s = 0.f;
  for (int c = 0; c < C; ++c) s += expf(xr[c] - m);
  const float lse = m + logf(s);
  for (int c = 0; c < C; ++c) lr[c] = xr[c] - lse;  // the log-softmax row, all of it
  loss[row] = -lr[target[row]];                     // ... to read one element back
}
