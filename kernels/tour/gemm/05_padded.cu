// GEMM tour, step 5 of 6: padding against bank conflicts.
//
// Shared memory has 32 banks of 4 bytes; a warp's access takes one pass (wavefront) per distinct
// address in the busiest bank.  Step 4 stores xs[k][row]: consecutive k sit 64 floats apart and
// 64 % 32 == 0, so the 4 k-groups a warp stores for each of its 8 rows all land in that row's
// bank -- 4 wavefronts per store.  Padding each k-row of the tile by PAD = 4 floats (one 16-byte
// vector, so the float4 reads below stay aligned) shifts k-group q by 16 q banks: the 4 groups now
// share 2 banks pairwise, 2 wavefronts per store.  (No padding that keeps 16-byte rows does better
// with this copy pattern: 16 q mod 32 takes only two values.)  The shipped kernel uses the same PAD.
//
// Requires K % 4 == 0 (the launcher checks).
// Launch: block (256), grid (ceil(N / 64), ceil(M / 64)).
#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4
#define PAD 4  // one 16-byte vector per k-row of a tile

__global__ void gemm_padded(const float* x, const float* w, const float* b, float* y, int M, int N, int K) {
  __shared__ __align__(16) float xs[BK][BM + PAD];
  __shared__ __align__(16) float ws[BK][BN + PAD];
  const int t = threadIdx.x, tx = t % (BN / TN), ty = t / (BN / TN);
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int i = t / (BK / 4), kq = (t % (BK / 4)) * 4;  // this thread's row and first k in the tile
  float acc[TM][TN] = {};
  for (int k0 = 0; k0 < K; k0 += BK) {
    const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
    const bool kin = k0 + kq < K;  // K % 4 == 0: a float4 is all in or all out
    const float4 xv = (m0 + i < M && kin) ? *reinterpret_cast<const float4*>(x + (size_t)(m0 + i) * K + k0 + kq) : zero;
    const float4 wv = (n0 + i < N && kin) ? *reinterpret_cast<const float4*>(w + (size_t)(n0 + i) * K + k0 + kq) : zero;
    xs[kq][i] = xv.x; xs[kq + 1][i] = xv.y; xs[kq + 2][i] = xv.z; xs[kq + 3][i] = xv.w;
    ws[kq][i] = wv.x; ws[kq + 1][i] = wv.y; ws[kq + 2][i] = wv.z; ws[kq + 3][i] = wv.w;
    __syncthreads();
    for (int k = 0; k < BK; ++k) {
      const float4 a = *reinterpret_cast<const float4*>(&xs[k][ty * TM]);
      const float4 c = *reinterpret_cast<const float4*>(&ws[k][tx * TN]);
      const float av[TM] = {a.x, a.y, a.z, a.w}, bv[TN] = {c.x, c.y, c.z, c.w};
      for (int r = 0; r < TM; ++r)
        for (int j = 0; j < TN; ++j) acc[r][j] += av[r] * bv[j];
    }
    __syncthreads();
  }
  for (int r = 0; r < TM; ++r)
    for (int j = 0; j < TN; ++j) {
      const int m = m0 + ty * TM + r, n = n0 + tx * TN + j;
      if (m < M && n < N) {
        const float v = acc[r][j] + b[n];
        y[(size_t)m * N + n] = v > 0.f ? v : 0.f;
      }
    }
}
