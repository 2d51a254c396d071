// planted.cpp -- runs one kernel of planted/kernels.cuh on the emulator and says what it observed:
//
//   planted CASE    prints "RESULT CASE correct|wrong|error <detail>"; exit 0 after correct or wrong
//                   results, 3 after a launch_error (the emulator caught something), 2 on misuse.
//   planted --list  the cases
//
// check.py runs every case in the plain, ASan+UBSan and TSan builds and decides what was detected.
// Buffers are exactly as large as the data (std::vector), so ASan sees one element past the end.
#define SIMT_USE_CUDA_HEADERS
#include "simt.h"
#include "kernels.cuh"

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace {
std::vector<float> random_floats(size_t n) {
  std::mt19937 g(7);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& e : v) e = d(g);
  return v;
}
double sum(const std::vector<float>& v, size_t from, size_t to) {
  double a = 0;
  for (size_t i = from; i < to; ++i) a += v[i];
  return a;
}
struct Outcome {
  bool ok;
  std::string detail;
};
Outcome close(double got, double want) {
  char b[128];
  snprintf(b, sizeof b, "got %.7g want %.7g", got, want);
  return {std::isfinite(got) && std::fabs(got - want) <= 1e-4 * (1 + std::fabs(want)), std::string(std::isnan(got) ? "nan: " : "") + b};
}

Outcome reverse(bool bug) {
  const int n = 256;
  auto x = random_floats(n);
  std::vector<float> y(n);
  simt::launch(bug ? "reverse_missing_sync" : "reverse_ok", bug ? planted::reverse_missing_sync : planted::reverse_ok,
               dim3(1), dim3(n), 0, x.data(), y.data(), n);
  for (int t = 0; t < n; ++t)
    if (y[t] != x[n - 1 - t]) return {false, "y[" + std::to_string(t) + "] = " + std::to_string(y[t])};
  return {true, ""};
}
Outcome block_sum(void (*k)(const float*, float*, int), const char* name) {
  const int n = 1000;
  auto x = random_floats(n);
  float out = 0;
  simt::launch(name, k, dim3(1), dim3(256), 0, x.data(), &out, n);
  return close(out, sum(x, 0, n));
}
Outcome divergent_barrier() {
  auto x = random_floats(256);
  float out = 0;
  simt::launch("sum_divergent_barrier", planted::sum_divergent_barrier, dim3(1), dim3(256), 0, x.data(), &out, 256);
  return close(out, sum(x, 0, 256));
}
Outcome uninit_smem(void (*k)(const float*, float*, int), const char* name) {
  auto x = random_floats(256);
  float out = 0;
  // A first block leaves its partial sums in s[]; without the poison the buggy launch would read them.
  simt::launch(name, k, dim3(1), dim3(256), 0, x.data(), &out, 256);
  simt::launch(name, k, dim3(1), dim3(200), 0, x.data(), &out, 200);
  return close(out, sum(x, 0, 200));
}
Outcome warp_sums(void (*k)(const float*, float*), const char* name, int lanes_summed) {
  const int threads = 64;
  auto x = random_floats(threads);
  std::vector<float> out(threads / 32);
  simt::launch(name, k, dim3(1), dim3(threads), 0, x.data(), out.data());
  for (int w = 0; w < threads / 32; ++w) {
    Outcome o = close(out[w], sum(x, w * 32, w * 32 + lanes_summed));
    if (!o.ok) return {false, "warp " + std::to_string(w) + ": " + o.detail};
  }
  return {true, ""};
}
Outcome one_warp_sum(void (*k)(const float*, float*), const char* name) {
  auto x = random_floats(32);
  float out = 0;
  simt::launch(name, k, dim3(1), dim3(32), 0, x.data(), &out);
  return close(out, sum(x, 0, 32));
}
Outcome activemask() {
  std::vector<unsigned> out(64);
  simt::launch("activemask_divergent", planted::activemask_divergent, dim3(1), dim3(32), 0, out.data());
  for (int l = 0; l < 32; ++l) {
    const unsigned want = l < 10 ? 0x3ffu : 0xfffffc00u, want_count = l < 10 ? 10u : 0u;
    if (out[l] != want || out[32 + l] != want_count) {
      char b[128];
      snprintf(b, sizeof b, "lane %d: __activemask 0x%08x (want 0x%08x), group size %u", l, out[l], want, out[32 + l]);
      return {false, b};
    }
  }
  return {true, ""};
}
// Expected values from the CUDA programming guide's rules, written out per case: with width w the
// warp is split into segments of w lanes; a source lane beyond the caller's segment end (down, xor,
// idx) or before its start (up) yields the caller's own value.
Outcome shfl_width8() {
  std::vector<int> out(129);
  simt::launch("shfl_width8", planted::shfl_width8, dim3(1), dim3(32), 0, out.data());
  for (int l = 0; l < 32; ++l) {
    const int seg = l / 8 * 8;
    const int x = l ^ 8, want_xor = x < seg + 8 ? x : l;  // from an earlier segment: allowed
    const int want_down = l + 3 < seg + 8 ? l + 3 : l, want_up = l - 3 >= seg ? l - 3 : l, want_idx = seg + 5;
    if (out[l] != want_xor || out[32 + l] != want_down || out[64 + l] != want_up || out[96 + l] != want_idx) {
      char b[160];
      snprintf(b, sizeof b, "lane %d: xor %d (%d) down %d (%d) up %d (%d) idx %d (%d)", l, out[l], want_xor, out[32 + l],
               want_down, out[64 + l], want_up, out[96 + l], want_idx);
      return {false, b};
    }
  }
  if (unsigned(out[128]) != 0xaaaaaaaau) return {false, "ballot " + std::to_string(out[128])};
  return {true, ""};
}
Outcome wmma() {
  std::vector<__half> a(256), b(256);
  std::vector<float> c(256);
  auto r = random_floats(512);
  for (int i = 0; i < 256; ++i) a[i] = __float2half_rn(r[i]), b[i] = __float2half_rn(r[256 + i]);
  simt::launch("wmma_16x16x16", planted::wmma_16x16x16, dim3(1), dim3(32), 0, a.data(), b.data(), c.data());
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double want = 0;  // A row-major, B column-major: B(k, j) = b[j * 16 + k]
      for (int k = 0; k < 16; ++k) want += double(__half2float(a[i * 16 + k])) * __half2float(b[j * 16 + k]);
      Outcome o = close(c[i * 16 + j], want);
      if (!o.ok) return {false, "C(" + std::to_string(i) + "," + std::to_string(j) + "): " + o.detail};
    }
  return {true, ""};
}

const std::map<std::string, Outcome (*)()>& cases() {
  static const std::map<std::string, Outcome (*)()> c = {
      {"reverse_ok", [] { return reverse(false); }},
      {"reverse_missing_sync", [] { return reverse(true); }},
      {"sum_ok", [] { return block_sum(planted::sum_ok, "sum_ok"); }},
      {"sum_oob_read", [] { return block_sum(planted::sum_oob_read, "sum_oob_read"); }},
      {"sum_divergent_barrier", divergent_barrier},
      {"sum_uninit_smem", [] { return uninit_smem(planted::sum_uninit_smem, "sum_uninit_smem"); }},
      {"sum_uninit_smem_template",
       [] { return uninit_smem(planted::sum_uninit_smem_tmpl<float>, "sum_uninit_smem_tmpl<float>"); }},
      {"warp_sum_ok", [] { return warp_sums(planted::warp_sum_ok, "warp_sum_ok", 32); }},
      {"shfl_mask_absent_lanes", [] { return warp_sums(planted::shfl_mask_absent_lanes, "shfl_mask_absent_lanes", 16); }},
      {"shfl_mask_lacks_caller", [] { return warp_sums(planted::shfl_mask_lacks_caller, "shfl_mask_lacks_caller", 32); }},
      {"shfl_reads_outside_mask", [] { return warp_sums(planted::shfl_reads_outside_mask, "shfl_reads_outside_mask", 16); }},
      {"warp_sum_syncwarp_ok", [] { return one_warp_sum(planted::warp_sum_syncwarp_ok, "warp_sum_syncwarp_ok"); }},
      {"warp_sum_missing_syncwarp", [] { return one_warp_sum(planted::warp_sum_missing_syncwarp, "warp_sum_missing_syncwarp"); }},
      {"activemask_divergent", activemask},
      {"shfl_width8", shfl_width8},
      {"wmma_16x16x16", wmma},
  };
  return c;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CASE | --list\n", argv[0]);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--list") {
    for (const auto& [n, f] : cases()) printf("%s\n", n.c_str());
    return 0;
  }
  const auto it = cases().find(name);
  if (it == cases().end()) {
    fprintf(stderr, "unknown case %s (--list)\n", name.c_str());
    return 2;
  }
  try {
    const Outcome o = it->second();
    long hazards = 0;
    for (const auto& [kind, d] : simt::diagnostics()) hazards += d.count;
    printf("RESULT %s %s %s%s\n", name.c_str(), o.ok ? "correct" : "wrong", o.detail.c_str(),
           hazards ? (" (" + std::to_string(hazards) + " hazard warnings)").c_str() : "");
    return 0;
  } catch (const simt::launch_error& e) {
    printf("RESULT %s error %s\n", name.c_str(), e.what());
    return 3;
  }
}
