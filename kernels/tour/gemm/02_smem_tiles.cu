// GEMM tour, step 2 of 6: shared-memory tiles.
//
// The 256 threads of a block need 16 rows of x and 16 rows of w -- every x[m, k] is read by the 16
// threads of its row, every w[n, k] by 16 threads.  So the block walks k in tiles of 16: each thread
// copies ONE element of the x tile and one of the w tile into shared memory (consecutive threads,
// consecutive k: coalesced), __syncthreads, and the 16 multiply-adds of the tile read shared memory.
// Global loads per FLOP drop by the tile factor, 16.  The second __syncthreads keeps the next tile's
// copy from overwriting this one while other threads still read it.  A cost this step adds: in the
// inner loop the 16 lanes of a row read ws[tx][kk], 16 floats apart -- two banks serve 16 addresses,
// an 8-way bank conflict (8 wavefronts per read; step 3's k-major tiles remove it).
// Edge tiles are padded with zeros, so any M, N, K works.
// Launch: block (16, 16), grid (ceil(N / 16), ceil(M / 16)).
#define TILE 16

__global__ void gemm_smem_tiles(const float* x, const float* w, const float* b, float* y, int M, int N, int K) {
  __shared__ float xs[TILE][TILE];  // xs[i][k] = x[m0 + i, k0 + k]
  __shared__ float ws[TILE][TILE];  // ws[j][k] = w[n0 + j, k0 + k]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE;
  float acc = 0.f;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    const int k = k0 + tx;
    xs[ty][tx] = (m0 + ty < M && k < K) ? x[(size_t)(m0 + ty) * K + k] : 0.f;
    ws[ty][tx] = (n0 + ty < N && k < K) ? w[(size_t)(n0 + ty) * K + k] : 0.f;
    __syncthreads();
    for (int kk = 0; kk < TILE; ++kk) acc += xs[ty][kk] * ws[tx][kk];
    __syncthreads();
  }
  const int m = m0 + ty, n = n0 + tx;
  if (m < M && n < N) {
    acc += b[n];
    y[(size_t)m * N + n] = acc > 0.f ? acc : 0.f;
  }
}
