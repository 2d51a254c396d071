// profile_rt.cpp -- the counting runtime of the emulator's profiling build (csrc/sim/profile_rt.h says how
// it is compiled).  Compile it once into every counting module, instrumented like the kernels: its own
// memory accesses are ignored (a reentrancy guard), as are the emulator's (its Internal scopes).
//
// Counting (docs/profiling.md has each metric and its Nsight Compute name):
//   * Every load/store of a CUDA thread is logged as (warp, lane, program point, occurrence, address, size);
//     the program point is the instrumentation call's return address, the occurrence how many times this
//     thread has executed that point in this block.  Threads run one at a time between synchronization
//     points, so no moment exists where 32 lanes issue "the same" instruction: lanes of one warp with the
//     same (program point, occurrence) form one warp-level request.  An if/else on the lane splits into two
//     requests, as on the GPU.
//   * The log is reduced at every __syncthreads release and at the end of each block (memory stays bounded
//     by one barrier interval of one block); what is kept per launch is a table per program point and a
//     bitmap of the 32-byte sectors touched per registered range.
//   * Global memory: an address inside a registered range (simt_prof_register), rebased to the range's
//     virtual base.  Sectors of a request: the distinct 32-byte segments its lanes touch; its ideal: the
//     distinct bytes it touches / 32, rounded up.  Shared memory: an address in the block's __shared__
//     variables or its dynamic shared memory.  Wavefronts of a request: lanes are taken in phases (32 lanes
//     for accesses up to 4 bytes, 16 for 8, 8 for 16), and a phase costs the largest number of distinct
//     4-byte words any one of the 32 banks must deliver (one word to many lanes is a broadcast); the ideal
//     is one wavefront per phase with an active lane.  Anything else (the fiber's stack = registers and local
//     memory, the emulator's own data) is not counted.
#include "profile_rt.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace simt_prof {
namespace {

enum Cls : uint8_t { GLD, GST, GATOM, SLD, SST, NCLS };
const char* const kClsName[NCLS] = {"global_load", "global_store", "global_atomic", "shared_load", "shared_store"};
constexpr int kVaShift = 40;  // range i lives at virtual base (i + 1) << 40: cudaMalloc-like alignment

struct Acc {
  uint16_t warp;
  uint8_t lane, cls;
  uint32_t size, occ;
  uintptr_t pc;
  uint64_t addr;  // global: virtual address; shared: host address (only its offsets within a request matter)
};
struct Stat {  // one program point's (or one class's) counts over a launch
  uint8_t cls = 0;
  uint32_t size = 0;
  uint64_t requests = 0, lanes = 0, bytes = 0, sectors = 0, ideal_sectors = 0, wavefronts = 0, ideal_wavefronts = 0;
  void add(const Stat& o) {
    requests += o.requests; lanes += o.lanes; bytes += o.bytes; sectors += o.sectors;
    ideal_sectors += o.ideal_sectors; wavefronts += o.wavefronts; ideal_wavefronts += o.ideal_wavefronts;
  }
};
struct RangeRec {
  uintptr_t lo = 0, hi = 0;
  bool live = true;
  std::vector<uint64_t> ld, st;  // sector bitmaps of the current launch (allocated on first touch)
};
struct Launch {
  std::string name, symbol;  // as launched; the mangled name (the same in nvcc's cubin)
  unsigned grid[3] = {1, 1, 1}, block[3] = {1, 1, 1};
  size_t smem = 0;
  bool failed = false;
  uint64_t blocks = 0, warps = 0, barriers = 0;
  uint64_t coll[4] = {0, 0, 0, 0};  // syncwarp, shuffle, vote/match, reduce (warp-level instructions)
  uint64_t uniq_ld = 0, uniq_st = 0, uniq_all = 0;  // sectors
  Stat cls[NCLS];
  std::map<uintptr_t, Stat> pcs;  // by program point (offset in the module, for addr2line)
};

struct State {
  std::mutex mu;  // the API against the allocator's registrations; launches are serialized by the emulator
  bool on = false;
  std::vector<RangeRec> ranges;            // by index; dead ones keep their slot
  std::map<uintptr_t, size_t> by_lo;      // live ranges by start
  std::vector<Launch> launches;
  Launch* cur = nullptr;
  std::vector<Acc> log;
  std::unordered_map<uint64_t, uint32_t> occ;  // (fiber, pc) -> executions in this block
  uintptr_t module_base = 0;
  std::string json;
};
State& st() { static State s; return s; }
thread_local int in_rt = 0;  // > 0 inside the runtime: its own (instrumented) accesses are not recorded
struct Guard {
  __attribute__((no_sanitize_thread, always_inline)) Guard() { ++in_rt; }
  __attribute__((no_sanitize_thread, always_inline)) ~Guard() { --in_rt; }
};

uintptr_t module_base() {
  State& s = st();
  if (!s.module_base) {
    Dl_info di;
    if (dladdr(reinterpret_cast<void*>(&module_base), &di)) s.module_base = reinterpret_cast<uintptr_t>(di.dli_fbase);
  }
  return s.module_base;
}

// Global address -> virtual address, or 0 when not in a registered range.
uint64_t to_virtual(uintptr_t a) {
  State& s = st();
  auto it = s.by_lo.upper_bound(a);
  if (it == s.by_lo.begin()) return 0;
  --it;
  const RangeRec& r = s.ranges[it->second];
  if (a >= r.hi) return 0;
  return (uint64_t(it->second + 1) << kVaShift) + (a - r.lo);
}

bool in_shared(const simt::Block& b, uintptr_t a) {
  const uintptr_t d = reinterpret_cast<uintptr_t>(b.dyn.get());
  if (a >= d && a < d + b.smem) return true;
  for (const simt::Range& r : b.statics)
    if (a >= reinterpret_cast<uintptr_t>(r.p) && a < reinterpret_cast<uintptr_t>(r.p) + r.n) return true;
  const uintptr_t s0 = reinterpret_cast<uintptr_t>(simt::__start_simt_shared), s1 = reinterpret_cast<uintptr_t>(simt::__stop_simt_shared);
  return s0 && a >= s0 && a < s1;
}

void mark(RangeRec& r, std::vector<uint64_t>& bits, uint64_t sector) {
  if (bits.empty()) bits.assign(((r.hi - r.lo + 31) / 32 + 63) / 64, 0);
  if (sector / 64 < bits.size()) bits[sector / 64] |= uint64_t(1) << (sector % 64);
}

// One warp-level request: the lanes [i, j) of the sorted log.
void reduce_request(Launch& L, const Acc* a, size_t n) {
  State& s = st();
  const uint8_t cls = a[0].cls;
  Stat q;
  q.cls = cls; q.size = a[0].size; q.requests = 1; q.lanes = n;
  for (size_t t = 0; t < n; ++t) q.bytes += a[t].size;
  if (cls <= GATOM) {
    // sectors touched, and the distinct bytes (merged intervals) for the ideal
    std::vector<std::pair<uint64_t, uint64_t>> iv(n);
    for (size_t t = 0; t < n; ++t) iv[t] = {a[t].addr, a[t].addr + a[t].size};
    std::sort(iv.begin(), iv.end());
    uint64_t distinct = 0, last_sector = ~uint64_t(0), cover_end = 0;
    for (auto [lo, hi] : iv) {
      const uint64_t from = std::max(lo, cover_end);
      if (hi > from) distinct += hi - from;
      cover_end = std::max(cover_end, hi);
      for (uint64_t sec = lo / 32; sec <= (hi - 1) / 32; ++sec) {
        if (sec != last_sector && (last_sector == ~uint64_t(0) || sec > last_sector)) { ++q.sectors; last_sector = sec; }
        const size_t ri = size_t(sec * 32 >> kVaShift) - 1;
        if (ri < s.ranges.size()) {
          RangeRec& r = s.ranges[ri];
          const uint64_t off = (sec * 32) & ((uint64_t(1) << kVaShift) - 1);
          if (cls != GLD) mark(r, r.st, off / 32);
          if (cls != GST) mark(r, r.ld, off / 32);
        }
      }
    }
    q.ideal_sectors = (distinct + 31) / 32;
  } else {
    const uint32_t width = std::max<uint32_t>(4, std::min<uint32_t>(16, q.size));
    const uint32_t per_phase = 128 / width;  // lanes per phase: 32, 16 (8-byte), 8 (16-byte)
    for (uint32_t ph = 0; ph < 32 / per_phase; ++ph) {
      uint64_t words[32 * 4 * 4];
      size_t nw = 0;
      for (size_t t = 0; t < n; ++t) {
        if (a[t].lane / per_phase != ph) continue;
        for (uint64_t w = a[t].addr / 4; w <= (a[t].addr + a[t].size - 1) / 4 && nw < sizeof words / sizeof *words; ++w)
          words[nw++] = w;
      }
      if (!nw) continue;
      std::sort(words, words + nw);
      nw = size_t(std::unique(words, words + nw) - words);
      unsigned per_bank[32] = {};
      unsigned most = 0;
      for (size_t k = 0; k < nw; ++k) most = std::max(most, ++per_bank[words[k] % 32]);
      q.wavefronts += most;
      q.ideal_wavefronts += 1;
    }
  }
  L.cls[cls].add(q);
  Stat& p = L.pcs[a[0].pc - module_base() - 1];
  if (!p.requests) { p.cls = cls; p.size = q.size; }
  p.size = std::max(p.size, q.size);
  p.add(q);
}

void flush() {
  State& s = st();
  if (!s.cur || s.log.empty()) { s.log.clear(); return; }
  std::sort(s.log.begin(), s.log.end(), [](const Acc& x, const Acc& y) {
    if (x.warp != y.warp) return x.warp < y.warp;
    if (x.pc != y.pc) return x.pc < y.pc;
    if (x.occ != y.occ) return x.occ < y.occ;
    return x.lane < y.lane;
  });
  for (size_t i = 0; i < s.log.size();) {
    size_t j = i + 1;
    while (j < s.log.size() && s.log[j].warp == s.log[i].warp && s.log[j].pc == s.log[i].pc && s.log[j].occ == s.log[i].occ) ++j;
    reduce_request(*s.cur, &s.log[i], j - i);
    i = j;
  }
  s.log.clear();
}

// Not instrumented itself (it reads thread-locals); everything it calls runs under the reentrancy guard.
__attribute__((no_sanitize_thread)) void rec(uintptr_t a, uint32_t size, uint8_t kind, void* pc) {
  // kind 0 load, 1 store, 2 atomic
  if (in_rt) return;
  Guard g;
  simt::Block* b = simt::tl;
  State& s = st();
  if (!s.on || !s.cur || !b || b->cur < 0) return;
  simt::Fiber& f = b->f[size_t(b->cur)];
  if (f.ign > 0) return;  // the emulator's own bookkeeping
  static const size_t stack_bytes = simt::cfg().stack;
  if (a - reinterpret_cast<uintptr_t>(f.stack) < stack_bytes) return;  // the thread's stack: registers, locals
  uint8_t cls;
  uint64_t addr = a;
  if (in_shared(*b, a)) cls = kind == 0 ? SLD : SST;  // shared atomics are counted as stores
  else if (uint64_t v = to_virtual(a)) { addr = v; cls = kind == 0 ? GLD : kind == 1 ? GST : GATOM; }
  else return;  // TLS (threadIdx ...), the emulator's own data
  const uintptr_t p = reinterpret_cast<uintptr_t>(pc);
  const uint32_t o = s.occ[(uint64_t(b->cur) << 48) ^ p]++;
  s.log.push_back({uint16_t(f.warp), uint8_t(f.lane), cls, size, o, p, addr});
}

void json_stat(std::string& j, const Stat& q) {
  char buf[320];
  snprintf(buf, sizeof buf,
           "\"requests\":%llu,\"lanes\":%llu,\"bytes\":%llu,\"sectors\":%llu,\"ideal_sectors\":%llu,"
           "\"wavefronts\":%llu,\"ideal_wavefronts\":%llu",
           (unsigned long long)q.requests, (unsigned long long)q.lanes, (unsigned long long)q.bytes,
           (unsigned long long)q.sectors, (unsigned long long)q.ideal_sectors, (unsigned long long)q.wavefronts,
           (unsigned long long)q.ideal_wavefronts);
  j += buf;
}
std::string json_escape(const std::string& x) {
  std::string r;
  for (char c : x) {
    if (c == '"' || c == '\\') { r += '\\'; r += c; }
    else if (c == '\n') r += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) r += ' ';
    else r += c;
  }
  return r;
}

// The mangled name of a function of a loaded module (its symbol table; hidden symbols included).
std::string symbol_of(const void* fn) {
  Dl_info di;
  if (!dladdr(fn, &di) || !di.dli_fname) return "";
  static std::map<std::string, simt::ModuleSymbols> modules;
  auto it = modules.find(di.dli_fname);
  if (it == modules.end())
    it = modules.emplace(di.dli_fname, simt::read_symbols(di.dli_fname, reinterpret_cast<uintptr_t>(di.dli_fbase))).first;
  auto f = it->second.funcs.find(reinterpret_cast<uintptr_t>(fn));
  return f == it->second.funcs.end() ? "" : f->second;
}
// simt::Redirect: the instrumented copy of a plain module's kernel, found by its mangled name.
std::map<const void*, const void*>& found() { static std::map<const void*, const void*> m; return m; }
const void* find_copy(const void* kernel) {
  Guard g;
  State& s = st();
  if (!s.on) return nullptr;
  auto& cache = found();
  if (auto it = cache.find(kernel); it != cache.end()) return it->second;
  static std::map<std::string, uintptr_t> mine;  // this module's functions by name
  if (mine.empty()) {
    Dl_info di;
    if (dladdr(reinterpret_cast<void*>(&find_copy), &di) && di.dli_fname) {
      simt::ModuleSymbols m = simt::read_symbols(di.dli_fname, reinterpret_cast<uintptr_t>(di.dli_fbase));
      for (auto& [addr, name] : m.funcs) mine.emplace(name, addr);
    }
  }
  const void* copy = nullptr;
  const std::string name = symbol_of(kernel);
  if (auto m = mine.find(name); !name.empty() && m != mine.end()) copy = reinterpret_cast<const void*>(m->second);
  cache.emplace(kernel, copy);
  return copy;
}
void run_copy(const char* name, const void* entry, dim3 g, dim3 b, size_t smem, const std::function<void()>& body) {
  simt::run_grid(name, entry, g, b, smem, body);
}
const simt::Redirect kRedirect{&find_copy, &run_copy};

}  // namespace

void on_launch_begin(simt::Block& b, const void* entry, const dim3& g, const dim3& bd) {
  State& s = st();
  if (!s.on) return;
  Guard gd;
  s.launches.emplace_back();
  Launch& L = s.launches.back();
  L.name = b.kernel; L.smem = b.smem; L.symbol = symbol_of(entry);
  L.grid[0] = g.x; L.grid[1] = g.y; L.grid[2] = g.z;
  L.block[0] = bd.x; L.block[1] = bd.y; L.block[2] = bd.z;
  for (RangeRec& r : s.ranges) { r.ld.clear(); r.st.clear(); }
  s.cur = &L; s.log.clear(); s.occ.clear();
}
void on_launch_end(simt::Block&, bool failed) {
  State& s = st();
  if (!s.cur) return;
  Guard gd;
  flush();
  Launch& L = *s.cur;
  L.failed = failed;
  for (RangeRec& r : s.ranges) {
    const size_t n = std::max(r.ld.size(), r.st.size());
    for (size_t k = 0; k < n; ++k) {
      const uint64_t l = k < r.ld.size() ? r.ld[k] : 0, w = k < r.st.size() ? r.st[k] : 0;
      L.uniq_ld += unsigned(__builtin_popcountll(l)); L.uniq_st += unsigned(__builtin_popcountll(w));
      L.uniq_all += unsigned(__builtin_popcountll(l | w));
    }
    r.ld.clear(); r.st.clear();
  }
  s.cur = nullptr; s.occ.clear();
}
void on_barrier_release(simt::Block& b) {
  State& s = st();
  if (!s.cur) return;
  Guard gd;
  flush();
  for (const simt::Warp& w : b.w) s.cur->barriers += w.live != 0;
}
void on_block_end(simt::Block& b) {
  State& s = st();
  if (!s.cur) return;
  Guard gd;
  flush();
  s.occ.clear();
  s.cur->blocks += 1;
  s.cur->warps += (unsigned(b.n) + 31) / 32;
}
void on_collective(simt::Block& b, simt::Fiber& me, unsigned op, uint32_t mask) {
  State& s = st();
  if (!s.cur) return;
  const uint32_t group = mask & b.w[size_t(me.warp)].live;
  if (!group || int(__builtin_ctz(group)) != me.lane) return;  // once per warp-level instruction
  const int k = op == simt::OP_SYNCWARP ? 0 : op <= simt::OP_SHFL_XOR ? 1 : op <= simt::OP_MATCH_ALL ? 2 : 3;
  s.cur->coll[k] += 1;
}

}  // namespace simt_prof

using namespace simt_prof;

extern "C" {
int simt_prof_begin(void) {
  Guard g;
  State& s = st();
  std::lock_guard<std::mutex> l(s.mu);
  s.launches.clear(); s.cur = nullptr; s.on = true;
  return 0;
}
int simt_prof_end(void) {
  Guard g;
  State& s = st();
  std::lock_guard<std::mutex> l(s.mu);
  s.on = false;
  return int(s.launches.size());
}
void simt_prof_register(const void* p, size_t n) {
  if (!n) return;
  Guard g;
  State& s = st();
  std::lock_guard<std::mutex> l(s.mu);
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + n;
  for (auto it = s.by_lo.begin(); it != s.by_lo.end();) {  // drop overlapping (the memory was reused)
    RangeRec& r = s.ranges[it->second];
    if (r.lo < hi && lo < r.hi) { r.live = false; r.ld = {}; r.st = {}; it = s.by_lo.erase(it); }
    else ++it;
  }
  s.ranges.push_back({lo, hi, true, {}, {}});
  s.by_lo[lo] = s.ranges.size() - 1;
}
void simt_prof_unregister(const void* p) {
  Guard g;
  State& s = st();
  std::lock_guard<std::mutex> l(s.mu);
  auto it = s.by_lo.find(reinterpret_cast<uintptr_t>(p));
  if (it == s.by_lo.end()) return;
  RangeRec& r = s.ranges[it->second];
  r.live = false; r.ld = {}; r.st = {};
  s.by_lo.erase(it);
}
void simt_prof_clear_ranges(void) {
  Guard g;
  State& s = st();
  std::lock_guard<std::mutex> l(s.mu);
  s.ranges.clear(); s.by_lo.clear();
}
const char* simt_prof_json(void) {
  Guard g;
  State& s = st();
  std::lock_guard<std::mutex> l(s.mu);
  std::string& j = s.json;
  j = "[";
  char buf[4096];
  for (size_t i = 0; i < s.launches.size(); ++i) {
    const Launch& L = s.launches[i];
    snprintf(buf, sizeof buf,
             "%s{\"kernel\":\"%s\",\"symbol\":\"%s\",\"grid\":[%u,%u,%u],\"block\":[%u,%u,%u],\"smem\":%zu,\"failed\":%s,"
             "\"blocks\":%llu,\"warps\":%llu,\"barriers\":%llu,\"syncwarps\":%llu,\"shuffles\":%llu,\"votes\":%llu,"
             "\"reduces\":%llu,\"unique_sectors\":{\"load\":%llu,\"store\":%llu,\"all\":%llu},",
             i ? "," : "", json_escape(L.name).c_str(), json_escape(L.symbol).c_str(), L.grid[0], L.grid[1], L.grid[2], L.block[0], L.block[1],
             L.block[2], L.smem, L.failed ? "true" : "false", (unsigned long long)L.blocks, (unsigned long long)L.warps,
             (unsigned long long)L.barriers, (unsigned long long)L.coll[0], (unsigned long long)L.coll[1],
             (unsigned long long)L.coll[2], (unsigned long long)L.coll[3],
             (unsigned long long)L.uniq_ld, (unsigned long long)L.uniq_st, (unsigned long long)L.uniq_all);
    j += buf;
    j += "\"classes\":{";
    for (int c = 0; c < NCLS; ++c) {
      j += c ? ",\"" : "\""; j += kClsName[c]; j += "\":{";
      json_stat(j, L.cls[c]);
      j += "}";
    }
    j += "},\"sites\":[";
    bool first = true;
    for (const auto& [pc, q] : L.pcs) {
      snprintf(buf, sizeof buf, "%s{\"pc\":\"0x%llx\",\"class\":\"%s\",\"size\":%u,", first ? "" : ",",
               (unsigned long long)pc, kClsName[q.cls], q.size);
      j += buf;
      json_stat(j, q);
      j += "}";
      first = false;
    }
    j += "]}";
  }
  j += "]";
  return j.c_str();
}
const void* simt_prof_redirect(void) { return &kRedirect; }

// ---- ThreadSanitizer's instrumentation interface, implemented by the counter (no libtsan is linked).
#define SIMT_PROF_NI __attribute__((no_sanitize_thread))
#define SIMT_PROF_RW(n)                                                                                        \
  SIMT_PROF_NI void __tsan_read##n(void* a) { rec(uintptr_t(a), n, 0, __builtin_return_address(0)); }                    \
  SIMT_PROF_NI void __tsan_write##n(void* a) { rec(uintptr_t(a), n, 1, __builtin_return_address(0)); }                   \
  SIMT_PROF_NI void __tsan_unaligned_read##n(void* a) { rec(uintptr_t(a), n, 0, __builtin_return_address(0)); }          \
  SIMT_PROF_NI void __tsan_unaligned_write##n(void* a) { rec(uintptr_t(a), n, 1, __builtin_return_address(0)); }         \
  SIMT_PROF_NI void __tsan_volatile_read##n(void* a) { rec(uintptr_t(a), n, 0, __builtin_return_address(0)); }           \
  SIMT_PROF_NI void __tsan_volatile_write##n(void* a) { rec(uintptr_t(a), n, 1, __builtin_return_address(0)); }          \
  SIMT_PROF_NI void __tsan_unaligned_volatile_read##n(void* a) { rec(uintptr_t(a), n, 0, __builtin_return_address(0)); } \
  SIMT_PROF_NI void __tsan_unaligned_volatile_write##n(void* a) { rec(uintptr_t(a), n, 1, __builtin_return_address(0)); }
SIMT_PROF_RW(1)
SIMT_PROF_RW(2)
SIMT_PROF_RW(4)
SIMT_PROF_RW(8)
SIMT_PROF_RW(16)
#undef SIMT_PROF_RW
SIMT_PROF_NI void __tsan_read_range(void* a, size_t n) { rec(uintptr_t(a), uint32_t(n), 0, __builtin_return_address(0)); }
SIMT_PROF_NI void __tsan_write_range(void* a, size_t n) { rec(uintptr_t(a), uint32_t(n), 1, __builtin_return_address(0)); }
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
void __tsan_init() {}
static char simt_prof_fiber;
void* __tsan_create_fiber(unsigned) { return &simt_prof_fiber; }
void __tsan_destroy_fiber(void*) {}
void* __tsan_get_current_fiber() { return &simt_prof_fiber; }
void __tsan_switch_to_fiber(void*, unsigned) {}
void __tsan_acquire(void*) {}
void __tsan_release(void*) {}
void __tsan_ignore_thread_begin() {}
void __tsan_ignore_thread_end() {}
SIMT_PROF_NI void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
SIMT_PROF_NI void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
// Atomics: done sequentially consistent; read-modify-writes are counted as atomic accesses.
#define SIMT_PROF_ATOMIC(bits, T)                                                                               \
  SIMT_PROF_NI T __tsan_atomic##bits##_load(const volatile T* a, int) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); }    \
  SIMT_PROF_NI void __tsan_atomic##bits##_store(volatile T* a, T v, int) { __atomic_store_n(a, v, __ATOMIC_SEQ_CST); }    \
  SIMT_PROF_NI T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) {                                                \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                       \
  }                                                                                                           \
  SIMT_PROF_NI T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) {                                               \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  SIMT_PROF_NI T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) {                                               \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  SIMT_PROF_NI T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) {                                               \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  SIMT_PROF_NI T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) {                                                \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                           \
  SIMT_PROF_NI T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) {                                               \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                           \
  SIMT_PROF_NI T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) {                                              \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                                       \
  }                                                                                                           \
  SIMT_PROF_NI int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {                    \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                   \
  }                                                                                                           \
  SIMT_PROF_NI int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                      \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                   \
  }                                                                                                           \
  SIMT_PROF_NI T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                          \
    rec(uintptr_t(a), sizeof(T), 2, __builtin_return_address(0));                                             \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                         \
    return c;                                                                                                 \
  }
SIMT_PROF_ATOMIC(8, unsigned char)
SIMT_PROF_ATOMIC(16, unsigned short)
SIMT_PROF_ATOMIC(32, unsigned int)
SIMT_PROF_ATOMIC(64, unsigned long long)
#undef SIMT_PROF_ATOMIC
}
