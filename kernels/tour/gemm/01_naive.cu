// GEMM tour, step 1 of 6: one thread per output.
//
// The forward pass of a linear+ReLU layer,
//     y[m, n] = relu(b[n] + sum_k x[m, k] * w[n, k]),    x: [M, K], w: [N, K] (nn.Linear's layout), b: [N]
//
// Thread (tx, ty) of block (bx, by) computes y[by * 16 + ty, bx * 16 + tx] straight from global
// memory: 2 loads per multiply-add, 2K loads for 2K FLOPs.  In a warp (two rows of 16 threads) the
// x loads are broadcasts, but the w loads hit 16 rows of w, K floats apart: 16 sectors per request.
//
// Launch: block (16, 16), grid (ceil(N / 16), ceil(M / 16)).

__global__ void gemm_naive(const float* x, const float* w, const float* b, float* y, int M, int N, int K) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  const int m = blockIdx.y * blockDim.y + threadIdx.y;
  if (m >= M || n >= N) return;
  float acc = b[n];
  for (int k = 0; k < K; ++k) acc += x[(size_t)m * K + k] * w[(size_t)n * K + k];
  y[(size_t)m * N + n] = acc > 0.f ? acc : 0.f;
}
