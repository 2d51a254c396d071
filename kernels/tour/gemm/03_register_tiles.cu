// GEMM tour, step 3 of 6: register tiles.
//
// In step 2 every multiply-add needs two shared-memory loads.  Now each thread computes a 4 x 4
// block of outputs: per k it loads 4 values of x and 4 of w (one 16-byte shared load each) and does
// 16 multiply-adds from registers -- 16x fewer shared load instructions per FLOP (4x fewer bytes).
// The block grows to a 64 x 64 tile of y (256 threads x 16 outputs), walking k in steps of 16, so
// the tile loads from global memory per FLOP drop another 4x (each loaded element now serves 64
// outputs instead of 16).
// The tiles are stored k-major, xs[k][i], so a thread's 4 rows at step k are adjacent: one float4.
// The copy into shared memory: element e = t + 256 j (j < 4) of the 64 x 16 tile is row e / 16,
// k = e % 16 -- coalesced global reads; the transposed store xs[k][row] puts the 16 lanes that share
// a row into ONE bank, a 16-way bank conflict (steps 4 and 5 deal with it).
//
// Launch: block (256), grid (ceil(N / 64), ceil(M / 64)).
#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4

__global__ void gemm_register_tiles(const float* x, const float* w, const float* b, float* y, int M, int N,
                                    int K) {
  __shared__ __align__(16) float xs[BK][BM];
  __shared__ __align__(16) float ws[BK][BN];
  const int t = threadIdx.x, tx = t % (BN / TN), ty = t / (BN / TN);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  float acc[TM][TN] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
    for (int j = 0; j < BM * BK / 256; ++j) {  // 4 elements of each tile per thread
      const int e = t + 256 * j, i = e / BK, k = e % BK;
      xs[k][i] = (m0 + i < M && k0 + k < K) ? x[(size_t)(m0 + i) * K + k0 + k] : 0.f;
      ws[k][i] = (n0 + i < N && k0 + k < K) ? w[(size_t)(n0 + i) * K + k0 + k] : 0.f;
    }
    __syncthreads();
    for (int k = 0; k < BK; ++k) {
      const float4 a = *reinterpret_cast<const float4*>(&xs[k][ty * TM]);
      const float4 c = *reinterpret_cast<const float4*>(&ws[k][tx * TN]);
      const float av[TM] = {a.x, a.y, a.z, a.w}, bv[TN] = {c.x, c.y, c.z, c.w};
      for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < TM; ++i)
    for (int j = 0; j < TN; ++j) {
      const int m = m0 + ty * TM + i, n = n0 + tx * TN + j;
      if (m < M && n < N) {
        const float v = acc[i][j] + b[n];
        y[(size_t)m * N + n] = v > 0.f ? v : 0.f;
      }
    }
}
