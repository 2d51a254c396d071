// exact_div_check.cpp -- csrc/cpu/exact_div.h's div_by_scalar against vdivps, bit for bit, for EVERY float x
// in [2^-60, 2^60] (the FMA path's whole range, ~1e9 values), x = +-0, and each divisor b given on the command
// line (in the C99 hex or decimal form strtof reads).  Also counts what a single correction step would get
// wrong, so a run shows how much margin the second step buys.  Prints one line per b; exit status 1 on any
// mismatch.  tests/test_adam.py compiles and runs it.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "csrc/cpu/exact_div.h"

namespace {
int mismatches(__m256 a, __m256 b) {  // lanes whose bits differ
  const __m256i eq = _mm256_cmpeq_epi32(_mm256_castps_si256(a), _mm256_castps_si256(b));
  return __builtin_popcount(0xFF ^ _mm256_movemask_ps(_mm256_castsi256_ps(eq)));
}
uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
}  // namespace

int main(int argc, char** argv) {
  const uint32_t lo = bits(0x1p-60f), hi = bits(0x1p60f);
  int64_t total = 0;
  for (int k = 1; k < argc; ++k) {
    const float b = std::strtof(argv[k], nullptr), y = pyops::cpu::div_by_scalar_rcp(b);
    const __m256 vb = _mm256_set1_ps(b), vy = _mm256_set1_ps(y);
    int64_t bad = 0, one_step_bad = 0;
#pragma omp parallel for reduction(+ : bad, one_step_bad) schedule(static)
    for (int64_t u0 = lo; u0 <= int64_t(hi); u0 += 8) {
      alignas(32) uint32_t us[8];
      for (int j = 0; j < 8; ++j) us[j] = u0 + j <= int64_t(hi) ? uint32_t(u0 + j) : hi;
      const __m256 x = _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(us)));
      const __m256 ref = _mm256_div_ps(x, vb);
      bad += mismatches(pyops::cpu::div_by_scalar(x, b, y), ref);
      const __m256 q = _mm256_mul_ps(x, vy);
      one_step_bad += mismatches(_mm256_fmadd_ps(_mm256_fnmadd_ps(q, vb, x), vy, q), ref);
    }
    for (float z : {0.0f, -0.0f}) bad += mismatches(pyops::cpu::div_by_scalar(_mm256_set1_ps(z), b, y),
                                                    _mm256_div_ps(_mm256_set1_ps(z), vb));
    std::printf("b=%a y=%a: %" PRId64 " mismatches in %" PRIu32 " x (one correction step: %" PRId64 ")\n", b, y, bad,
                hi - lo + 1 + 2, one_step_bad);
    total += bad;
  }
  return total != 0;
}
