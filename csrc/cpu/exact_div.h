// exact_div.h -- x / b for a vector x and a scalar b, correctly rounded (what vdivps gives), without a
// division: one multiply and four FMAs (AVX2 + FMA).
//
// Why: in the CPU Adam kernel (adam.cpp) the square root and the two divisions per element share the
// core's one divider unit, which bounds the loop; sqrt(v) / sqrt(1 - beta2^t) divides by a scalar, so
// its reciprocal y can be rounded once per call and the division done on the FMA units (docs/adam.md).
//
// With y = RN(1 / b) (round to nearest):
//   q0 = RN(x y) is within 1.5 ulp of x / b (half an ulp of error in y, then the product's rounding);
//   r0 = RN(x - b q0), one FMA, and q1 = RN(q0 + r0 y) is within 1 ulp of x / b;
//   r1 = x - b q1 is exact in one FMA (q1 within 1 ulp), and q2 = RN(q1 + r1 y) = RN(x / b) by
//   Markstein's theorem (y within half an ulp of 1 / b, q1 within 1 ulp of x / b) -- the correction step
//   of IEEE division on GPUs.
// The proof needs every intermediate normal and finite: b and y in [2^-40, 2^40] (the caller passes y = 0
// otherwise) and x in [2^-60, 2^60], where the residuals stay above 2^-110 -- or x = +-0, whose quotient
// is x.  A vector with any other lane (subnormal, huge, infinite, NaN or negative) is divided with
// vdivps.  tests/test_adam.py runs tests/exact_div_check.cpp, which compares this with vdivps for every
// float x of the range and several b, and the CPU kernel with the emulated CUDA one (a true division) bit
// for bit over every binade of exp_avg_sq.
#pragma once
#include <immintrin.h>

namespace pyops::cpu {

inline __m256 div_by_scalar(__m256 x, float b, float y) {
  if (y == 0.0f) return _mm256_div_ps(x, _mm256_set1_ps(b));
  const __m256 zero = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_EQ_OQ);
  const __m256 in_range = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(0x1p-60f), _CMP_GE_OQ),
                                        _mm256_cmp_ps(x, _mm256_set1_ps(0x1p60f), _CMP_LE_OQ));
  if (_mm256_movemask_ps(_mm256_or_ps(zero, in_range)) != 0xFF) return _mm256_div_ps(x, _mm256_set1_ps(b));
  const __m256 vb = _mm256_set1_ps(b), vy = _mm256_set1_ps(y);
  __m256 q = _mm256_mul_ps(x, vy);
  q = _mm256_fmadd_ps(_mm256_fnmadd_ps(q, vb, x), vy, q);
  q = _mm256_fmadd_ps(_mm256_fnmadd_ps(q, vb, x), vy, q);
  return _mm256_blendv_ps(q, x, zero);  // +-0 / b = +-0 (the FMAs would give +0 for -0)
}

// The y to pass for b: RN(1 / b), or 0 where the FMA path does not apply.
inline float div_by_scalar_rcp(float b) { return (b >= 0x1p-40f && b <= 0x1p40f) ? 1.0f / b : 0.0f; }

}  // namespace pyops::cpu
