// GEMM tour, step 4 of 6: 16-byte global loads.
//
// Step 3 copies each tile with 4 scalar loads per thread.  When K is a multiple of 4 (and the
// pointers are 16-byte aligned, as torch's allocations are), 4 consecutive k of one row are one
// float4: each thread copies its part of the tile with ONE load instead of 4 -- 4x fewer global load
// requests for the same bytes, 16 sectors (512 bytes) per warp-wide request.  Vector v = t of the
// 64 x 16 tile is row t / 4, k = 4 (t % 4); its 4 values go to xs[k..k+3][row].  Those transposed
// stores: a warp writes 8 rows x 4 k-groups, consecutive k are 64 floats (2 x 32 banks) apart, so
// the 4 k-groups of a row share its bank (a 4-way conflict -- less than step 3's 16-way, fixed further
// in step 5).
//
// Requires K % 4 == 0 (the launcher checks).
// Launch: block (256), grid (ceil(N / 64), ceil(M / 64)).
#define BM 64
#define BN 64
#define BK 16
#define TM 4
#define TN 4

__global__ void gemm_vectorized(const float* x, const float* w, const float* b, float* y, int M, int N, int K) {
  __shared__ __align__(16) float xs[BK][BM];
  __shared__ __align__(16) float ws[BK][BN];
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
