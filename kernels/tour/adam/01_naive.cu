// Adam tour, step 1 of 4: one thread per element, torch.optim's formula.
//
// One Adam step updates every element of a parameter p from its gradient g and two running
// averages, m (of g) and v (of g * g); t is the step count after this step:
//     g <- g + wd * p                                      (Adam: weight decay as an L2 term)
//     p <- p * (1 - lr * wd)                               (AdamW: decoupled, instead)
//     m <- m + (1 - beta1) * (g - m)                       (torch: exp_avg.lerp_(grad, 1 - beta1))
//     v <- v * beta2 + (1 - beta2) * g * g
//     p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// written as torch.optim.Adam's single-tensor loop writes it, with its two divisions by the bias
// corrections, and its scalars in double (torch computes them in Python) rounded once to float.
// Every element is independent: one thread per element.  Each reads 4 floats (p, g, m, v) and
// writes 3 -- 28 bytes for about 15 flops -- so the step is bound by memory, and the tour is
// about how the kernel moves those bytes.  Consecutive threads take consecutive elements, so the
// accesses are coalesced from the start (4 sectors per request, the ideal).  Here the parameters
// are one flat buffer (as if every parameter of the model lived in one allocation), so the step is
// one launch; a model's parameters are separate tensors, one launch each -- step 4 is about that.
//
// Launch: block (256), grid (ceil(n / 256)).
#include <math.h>

__global__ void adam_naive(float* p, const float* g, float* m, float* v, int n, double lr, double beta1,
                           double beta2, double eps, double wd, int adamw, int t) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  // the step's scalars, as torch.optim computes them -- here once per element
  const float step_size = (float)(lr / (1.0 - pow(beta1, (double)t)));
  const float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
  float gi = g[i], pi = p[i], mi = m[i], vi = v[i];
  if (adamw) pi = pi * (float)(1.0 - lr * wd);
  else gi = gi + (float)wd * pi;
  mi = mi + (float)(1.0 - beta1) * (gi - mi);
  vi = vi * (float)beta2 + (float)(1.0 - beta2) * gi * gi;
  pi = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + (float)eps);
  p[i] = pi;
  m[i] = mi;
  v[i] = vi;
}
