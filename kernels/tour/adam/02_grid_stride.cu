// Adam tour, step 2 of 4: a grid-stride loop, fewer blocks.
//
// Step 1 starts a thread per element, and every thread computes the step's scalars (two pow, a
// sqrt, four divisions in double) for its one element.  Here a fixed, small grid -- a few blocks
// per multiprocessor on a GPU; 16 blocks of 256 threads in the tour's launch -- walks the whole
// buffer: thread i takes elements i, i + stride, i + 2 * stride, ... (stride = all the threads of
// the grid), so consecutive threads still take consecutive elements (coalesced), and each thread
// computes the scalars once for all its elements.  The emulator counts the same requests as
// step 1 from 8x fewer warps; what that saves on a GPU (starting blocks, the per-thread set-up) is
// time, which the emulator does not measure.
//
// Launch: block (256), grid (min(ceil(n / 256), 16)).
#include <math.h>

__global__ void adam_grid_stride(float* p, const float* g, float* m, float* v, int n, double lr, double beta1,
                                 double beta2, double eps, double wd, int adamw, int t) {
  // the step's scalars, once per thread
  const float step_size = (float)(lr / (1.0 - pow(beta1, (double)t)));
  const float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
  const float decay = (float)(1.0 - lr * wd), fwd = (float)wd, w1 = (float)(1.0 - beta1);
  const float b2 = (float)beta2, w2 = (float)(1.0 - beta2), feps = (float)eps;
  const int stride = gridDim.x * blockDim.x;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    float gi = g[i], pi = p[i], mi = m[i], vi = v[i];
    if (adamw) pi = pi * decay;
    else gi = gi + fwd * pi;
    mi = mi + w1 * (gi - mi);
    vi = vi * b2 + w2 * gi * gi;
    pi = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + feps);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}
