// Adam tour, step 3 of 4: 16-byte loads and stores.
//
// Step 2 moves every float with its own 4-byte access: a warp's request covers 128 bytes, 4
// sectors.  Here a thread loads 4 consecutive floats of each array as one float4 (one 16-byte
// access, LDG.E.128 on a GPU): a warp's request covers 512 bytes, 16 sectors, and the kernel issues
// 4x fewer load and store requests for the same bytes.  A float4 access must be 16-byte aligned:
// the tour's buffers come fresh from the allocator (the shipped kernel checks every pointer and
// falls back to scalar accesses).  The last n % 4 elements, which do not fill a vector, are done
// one by one by the first threads of the grid.
//
// Launch: block (256), grid (min(ceil(n / 4 / 256), 16)).
#include <math.h>

struct Coeffs {
  float step_size, bc2_sqrt, decay, wd, w1, b2, w2, eps;
  int adamw;
};

__device__ void adam_element(float& p, float g, float& m, float& v, const Coeffs& c) {
  if (c.adamw) p = p * c.decay;
  else g = g + c.wd * p;
  m = m + c.w1 * (g - m);
  v = v * c.b2 + c.w2 * g * g;
  p = p - c.step_size * m / (sqrtf(v) / c.bc2_sqrt + c.eps);
}

__global__ void adam_vectorized(float* p, const float* g, float* m, float* v, int n, double lr, double beta1,
                                double beta2, double eps, double wd, int adamw, int t) {
  Coeffs c;
  c.step_size = (float)(lr / (1.0 - pow(beta1, (double)t)));
  c.bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)t));
  c.decay = (float)(1.0 - lr * wd);
  c.wd = (float)wd;
  c.w1 = (float)(1.0 - beta1);
  c.b2 = (float)beta2;
  c.w2 = (float)(1.0 - beta2);
  c.eps = (float)eps;
  c.adamw = adamw;
  const int stride = gridDim.x * blockDim.x;
  const int first = blockIdx.x * blockDim.x + threadIdx.x;
  const int n4 = n / 4;
  for (int i = first; i < n4; i += stride) {
    float4 p4 = reinterpret_cast<const float4*>(p)[i];
    const float4 g4 = reinterpret_cast<const float4*>(g)[i];
    float4 m4 = reinterpret_cast<const float4*>(m)[i];
    float4 v4 = reinterpret_cast<const float4*>(v)[i];
    adam_element(p4.x, g4.x, m4.x, v4.x, c);
    adam_element(p4.y, g4.y, m4.y, v4.y, c);
    adam_element(p4.z, g4.z, m4.z, v4.z, c);
    adam_element(p4.w, g4.w, m4.w, v4.w, c);
    reinterpret_cast<float4*>(p)[i] = p4;
    reinterpret_cast<float4*>(m)[i] = m4;
    reinterpret_cast<float4*>(v)[i] = v4;
  }
  const int i = n4 * 4 + first;  // the tail: n % 4 elements
  if (i < n) {
    float pi = p[i], mi = m[i], vi = v[i];
    adam_element(pi, g[i], mi, vi, c);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}
