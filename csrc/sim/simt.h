// simt.h -- the CUDA-on-CPU emulation harness: runs pyops' CUDA kernels (kernels/cuda/*.cuh),
// unmodified, on the CPU with g++.  nvcc never sees this file.
//
// Model: a launch runs its blocks one after another on the calling OS thread; each CUDA thread of
// a block is a fiber (makecontext once, then _setjmp/_longjmp) that only switches at
// __syncthreads and warp collectives.  `__shared__` variables are plain statics placed in one
// linker section ("simt_shared"), so the threads of a block share them and the whole section is
// poisoned with 0xFF bytes (NaN for every float type, -1 for integers) before each block: a read
// of shared memory that no thread of this block wrote shows up as NaN.  Dynamic shared memory
// (pyops::cuda::dynamic_smem<T>() in kernels/cuda/common.cuh) lives in the same section.
//
// Checks: divergent __syncthreads (two call sites in one barrier generation), warp collectives
// whose lanes disagree on mask or intrinsic, deadlocks, invalid launch configurations.
// Under -fsanitize=thread every CUDA thread is a TSan fiber and barriers / warp syncs are
// release/acquire points, so TSan reports a missing __syncthreads/__syncwarp as a data race.
// Under -fsanitize=address fiber stacks are announced to ASan, so out-of-range global accesses
// are reported with the kernel's source line.
//
// Knobs (env): SIMT_STACK_KB (fiber stack, default 128), SIMT_ORDER (0 forward, 1 reverse,
// 2 random thread order per scheduling pass), SIMT_SEED, SIMT_STRICT (1: undefined behaviour such
// as a shuffle from an inactive lane is fatal instead of a warning).
// Cannot see: memory-ordering bugs between blocks, occupancy/registers, speed; __expf etc. are
// the exact libm functions here.
#pragma once
#ifdef __CUDACC__
#error "simt_cpu.h is the host-compiler emulation layer; nvcc must not include it"
#endif
#include <math.h>
#include <sys/mman.h>
#include <setjmp.h>
#include <ucontext.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <functional>
#include <memory>  // before __noinline__ is defined: libstdc++ uses __attribute__((__noinline__))
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SIMT_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)  // -fsanitize=thread: every CUDA thread becomes a TSan fiber => racecheck
#include <sanitizer/tsan_interface.h>
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#define SIMT_TS(...) __VA_ARGS__
#else
#define SIMT_TS(...)
#endif

// SIMT_USE_CUDA_HEADERS: take dim3/float4/make_float4/__half from the toolkit's host-usable headers
// (vector_types.h, vector_functions.h, cuda_fp16.h) instead of the minimal definitions below.
#ifdef SIMT_USE_CUDA_HEADERS
#include <vector_types.h>
#include <vector_functions.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif

// ---------------------------------------------------------------- qualifiers
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __noinline__
#undef __launch_bounds__
#undef __constant__
#undef __managed__
#undef __align__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __constant__
#define __managed__
#define __align__(n) __attribute__((aligned(n)))
// Block-scope `__shared__ float s[32];` becomes a static in the "simt_shared" section: one copy,
// shared by the fibers of the running block, poisoned before every block (see run_block).
#define __shared__ static __attribute__((section("simt_shared"), aligned(16)))
#ifndef SIMT_MAX_DYN_SMEM
#define SIMT_MAX_DYN_SMEM (64 * 1024)
#endif

// ---------------------------------------------------------------- vector types
#ifndef SIMT_USE_CUDA_HEADERS
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return {x, y, z}; }
};
#define SIMT_V2(T, N, A) struct alignas(A) N##2 { T x, y; }; \
  inline N##2 make_##N##2(T x, T y) { return {x, y}; }
#define SIMT_V4(T, N, A) struct alignas(A) N##4 { T x, y, z, w; }; \
  inline N##4 make_##N##4(T x, T y, T z, T w) { return {x, y, z, w}; }
SIMT_V2(float, float, 8) SIMT_V4(float, float, 16) SIMT_V2(int, int, 8) SIMT_V4(int, int, 16)
SIMT_V2(unsigned, uint, 8) SIMT_V4(unsigned, uint, 16) SIMT_V2(double, double, 16)
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }
#endif

// Per OS thread: launches from different host threads are serialized (launch_mutex) but keep
// their own block state.
inline thread_local uint3 threadIdx, blockIdx;
inline thread_local dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ---------------------------------------------------------------- runtime
namespace simt {
struct launch_error : std::runtime_error { using std::runtime_error::runtime_error; };
inline int env_int(const char* n, int d) { const char* v = getenv(n); return v ? atoi(v) : d; }
struct Config {
  size_t stack = size_t(env_int("SIMT_STACK_KB", 128)) * 1024;
  int order = env_int("SIMT_ORDER", 0);
  unsigned seed = env_int("SIMT_SEED", 1);
  bool strict = env_int("SIMT_STRICT", 0);
};
inline Config& cfg() { static Config c; return c; }
inline std::atomic<long> inactive_lane_reads{0};  // shfl from a lane that did not participate (UB)

enum St : uint8_t { READY, WAIT_BAR, WAIT_WARP, DONE };
struct Fiber { ucontext_t ctx; jmp_buf jb; uint3 tid; St st; bool started; int lane, warp; unsigned gen, seq, wseq;
               char* stack = nullptr; void* ts = nullptr; int ign = 0; };
struct Warp { uint32_t live, arrived, released, mask[32], group[32]; uint8_t kind[32]; uint64_t buf[2][32]; char hb[2]; };

struct Block {
  jmp_buf sched_jb;
  std::deque<Fiber> f;  // deque: growing keeps parked fibers' addresses stable
  std::vector<Warp> w; std::vector<int> order;
  int n = 0, live = 0, cur = -1, bar_arrived = 0, bar_acc = 0, bar_res[2][2] = {}, bar_line = 0;
  unsigned bar_gen = 0; const char* bar_file = "";
  const std::function<void()>* body = nullptr;
  std::string err;
  std::mt19937 rng{cfg().seed};
  const void* sched_bottom = nullptr; size_t sched_size = 0;
  void* sched_ts = nullptr; char hb_start, hb_exit, hb_bar[2];  // TSan happens-before objects
  ~Block() { for (auto& x : f) { if (x.stack) munmap(x.stack, cfg().stack); SIMT_TS(if (x.ts) __tsan_destroy_fiber(x.ts)); } }
};
inline thread_local Block* tl = nullptr;

// ---- shared memory: every __shared__ variable and the dynamic buffer live in section simt_shared.
// The linker defines __start_/__stop_ symbols for a section whose name is a C identifier;
// hidden visibility keeps each shared object (extension, test binary) on its own section.
inline unsigned char dynamic_smem_storage[SIMT_MAX_DYN_SMEM] __attribute__((section("simt_shared"), aligned(16)));
extern "C" unsigned char __start_simt_shared[] __attribute__((weak, visibility("hidden")));
extern "C" unsigned char __stop_simt_shared[] __attribute__((weak, visibility("hidden")));
inline void poison_shared() {  // 0xFF bytes: NaN as float/double/half/bf16, -1 as an integer
  unsigned char* b = __start_simt_shared; unsigned char* e = __stop_simt_shared;
  if (b && e > b) std::memset(b, 0xFF, size_t(e - b));
}
inline void* dynamic_shared() { return dynamic_smem_storage; }
struct Internal {  // emulator bookkeeping is invisible to TSan; only kernel memory accesses are checked
  Internal() { SIMT_TS(__tsan_ignore_thread_begin(); ++tl->f[tl->cur].ign); }
  ~Internal() { SIMT_TS(--tl->f[tl->cur].ign; __tsan_ignore_thread_end()); }
};
inline long page() { static long p = sysconf(_SC_PAGESIZE); return p; }

inline Block& cur_block() {
  if (!tl || tl->cur < 0) { fprintf(stderr, "simt: device function called outside a launch\n"); abort(); }
  return *tl;
}
// Context switch: makecontext/setcontext only the first time a fiber runs; afterwards _setjmp/_longjmp
// (swapcontext costs a rt_sigprocmask syscall per switch, ~10x slower). Fibers loop over blocks.
inline void fiber_entry();
// call glibc's _longjmp directly: -D_FORTIFY_SOURCE would redirect it to __longjmp_chk, which rejects stack switches
extern "C" [[noreturn]] void simt_longjmp(struct __jmp_buf_tag*, int) __asm__("_longjmp");
__attribute__((noinline)) inline void to_fiber(Block& b, Fiber& x) {
#ifdef SIMT_ASAN
  void* fs; __sanitizer_start_switch_fiber(&fs, x.stack + page(), cfg().stack - page());
#endif
  if (_setjmp(b.sched_jb) == 0) {
    SIMT_TS(__tsan_switch_to_fiber(x.ts, __tsan_switch_to_fiber_no_sync));
    if (!x.started) {
      x.started = true; getcontext(&x.ctx);
      x.ctx.uc_stack.ss_sp = x.stack + page(); x.ctx.uc_stack.ss_size = cfg().stack - page(); x.ctx.uc_link = nullptr;
      makecontext(&x.ctx, fiber_entry, 0); setcontext(&x.ctx);
    }
    simt_longjmp(x.jb, 1);
  }
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(fs, nullptr, nullptr);
#endif
}
__attribute__((noinline)) inline void to_sched(Block& b, Fiber& me, bool dying = false) {
#ifdef SIMT_ASAN
  void* fs; __sanitizer_start_switch_fiber(dying ? nullptr : &fs, b.sched_bottom, b.sched_size);
#endif
  if (!dying) {
    if (_setjmp(me.jb) != 0) {  // resumed by the scheduler
#ifdef SIMT_ASAN
      __sanitizer_finish_switch_fiber(fs, nullptr, nullptr);
#endif
      return;
    }
  }
  SIMT_TS(__tsan_switch_to_fiber(b.sched_ts, __tsan_switch_to_fiber_no_sync));
  simt_longjmp(b.sched_jb, 1);
}
// Called on a fiber: record the error, abandon the fiber, the scheduler throws launch_error.
// Takes const char*: std::string temporaries in abandoned frames would leak.
[[noreturn]] inline void fail(const char* m) {
  SIMT_TS(__tsan_ignore_thread_begin());
  Block& b = cur_block(); Fiber& me = b.f[b.cur];
  char where[160];
  snprintf(where, sizeof where, " [block (%u,%u,%u) thread (%u,%u,%u)]", blockIdx.x, blockIdx.y, blockIdx.z,
           me.tid.x, me.tid.y, me.tid.z);
  b.err = std::string("simt: ") + m + where; me.st = DONE;
  SIMT_TS(__tsan_ignore_thread_end(); for (; me.ign > 0; --me.ign) __tsan_ignore_thread_end());
  to_sched(b, me, true);
  __builtin_unreachable();
}

// ---- block barrier (counts arrivals of live threads, like bar.sync on sm_70+)
inline void release_bar(Block& b) {
  b.bar_res[b.bar_gen & 1][0] = b.bar_acc; b.bar_res[b.bar_gen & 1][1] = b.bar_arrived;
  b.bar_acc = 0; b.bar_arrived = 0; b.bar_gen++;
}
inline int block_barrier(int pred, int what, const char* file, int line) {  // what: 0 count, 1 and, 2 or
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur];
  if (cfg().strict && b.live != b.n) fail("__syncthreads() reached after other threads of the block exited");
  if (b.bar_arrived == 0) { b.bar_file = file; b.bar_line = line; }
  else if (line != b.bar_line || strcmp(file, b.bar_file)) {  // same barrier generation, different call sites
    char m[512];
    snprintf(m, sizeof m, "divergent __syncthreads(): %s:%d vs %s:%d", file, line, b.bar_file, b.bar_line);
    fail(m);
  }
  unsigned g = b.bar_gen; b.bar_acc += pred != 0;
  me.gen = g; me.st = WAIT_BAR;
  if (++b.bar_arrived == b.live) release_bar(b);
  SIMT_TS(__tsan_release(&b.hb_bar[g & 1]));
  to_sched(b, me); me.st = READY;
  SIMT_TS(__tsan_acquire(&b.hb_bar[g & 1]));
  int* r = b.bar_res[g & 1];
  return what == 0 ? r[0] : what == 1 ? r[0] == r[1] : r[0] != 0;
}

// ---- warp collectives: lanes named in `mask` (and still alive) must all arrive with the same mask
inline void warp_check(Warp& w) {
  for (uint32_t pend = w.arrived; pend;) {
    int l = std::countr_zero(pend); uint32_t m = w.mask[l] & w.live;
    if ((w.arrived & m) == m) {
      for (uint32_t t = m; t; t &= t - 1) {
        int j = std::countr_zero(t);
        if ((w.mask[j] & w.live) != m || w.kind[j] != w.kind[l])
          fail("warp collective: lanes of one warp used different masks or different intrinsics");
        w.group[j] = m;
      }
      w.arrived &= ~m; w.released |= m;
    }
    pend &= ~(m | (1u << l));
  }
}
inline void warp_sync(uint32_t mask, uint8_t kind) {
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur]; Warp& w = b.w[me.warp];
  if (!(mask >> me.lane & 1)) fail("warp collective called by a lane that is not in its mask");
  w.mask[me.lane] = mask; w.kind[me.lane] = kind; w.arrived |= 1u << me.lane; me.st = WAIT_WARP;
  warp_check(w);
  [[maybe_unused]] unsigned q = me.wseq++ & 1; SIMT_TS(__tsan_release(&w.hb[q]));
  to_sched(b, me); me.st = READY; w.released &= ~(1u << me.lane);
  SIMT_TS(__tsan_acquire(&w.hb[q]));
}
template <class T, class Src> T shfl(uint32_t mask, T v, int width, Src src_of) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shfl: type too large");
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur]; Warp& w = b.w[me.warp];
  if (width < 1 || width > 32 || (width & (width - 1))) fail("shfl: width must be a power of two <= 32");
  unsigned p = me.seq++ & 1;  // double buffer: a fast lane may write the next value before others read
  std::memcpy(&w.buf[p][me.lane], &v, sizeof(T));
  warp_sync(mask, 1);
  int s = src_of(me.lane, width);
  if (s != me.lane && !(w.group[me.lane] >> s & 1)) {
    if (cfg().strict) fail("shfl reads a lane that did not participate (undefined value)");
    if (inactive_lane_reads++ == 0) fprintf(stderr, "simt: warning: shfl from inactive lane %d (UB)\n", s);
  }
  T r; std::memcpy(&r, &w.buf[p][s], sizeof(T)); return r;
}
inline uint32_t ballot(uint32_t mask, int pred, uint32_t* group = nullptr) {
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur]; Warp& w = b.w[me.warp];
  unsigned p = me.seq++ & 1; w.buf[p][me.lane] = pred != 0;
  warp_sync(mask, 1);
  uint32_t r = 0, g = w.group[me.lane];
  for (uint32_t t = g; t; t &= t - 1) if (w.buf[p][std::countr_zero(t)]) r |= 1u << std::countr_zero(t);
  if (group) *group = g;
  return r;
}

// ---- scheduler
inline void thread_exit(Block& b) {
  SIMT_TS(__tsan_release(&b.hb_exit));
  Fiber* me;
  {
    Internal in_; me = &b.f[b.cur]; me->st = DONE; b.live--;
    Warp& w = b.w[me->warp]; w.live &= ~(1u << me->lane); warp_check(w);
    if (b.bar_arrived && cfg().strict) fail("thread exited while others wait at __syncthreads()");
    if (b.bar_arrived && b.bar_arrived == b.live) release_bar(b);  // exited threads no longer count
  }
  to_sched(b, *me);  // parked; resumed for the next block
}
inline void fiber_entry() {
  Block& b = *tl;
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &b.sched_bottom, &b.sched_size);
#endif
  for (;;) {
    SIMT_TS(__tsan_acquire(&b.hb_start));
    (*b.body)();
    thread_exit(b);
  }
}
inline std::string deadlock_report(Block& b) {
  int bar = 0, wrp = 0; char buf[256]; std::string lanes;
  for (int i = 0; i < b.n; ++i) {
    if (b.f[i].st == WAIT_BAR) ++bar;
    if (b.f[i].st == WAIT_WARP && ++wrp <= 4) {
      snprintf(buf, sizeof buf, " (warp %d lane %d mask 0x%08x)", b.f[i].warp, b.f[i].lane, b.w[b.f[i].warp].mask[b.f[i].lane]);
      lanes += buf;
    }
  }
  snprintf(buf, sizeof buf, "simt: deadlock in block (%u,%u,%u): %d threads at __syncthreads, %d at warp collectives%s, %d exited",
           blockIdx.x, blockIdx.y, blockIdx.z, bar, wrp, lanes.c_str(), b.n - b.live);
  return buf;
}
inline void prepare(Block& b, dim3 bd) {
  int n = bd.x * bd.y * bd.z; size_t sz = cfg().stack;
  if ((int)b.f.size() < n) b.f.resize(n);
  for (int i = 0; i < n; ++i) if (!b.f[i].stack) {
    void* p = mmap(nullptr, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw launch_error("simt: cannot allocate fiber stack");
    mprotect(p, page(), PROT_NONE);  // guard page: stack overflow => SIGSEGV, not silent corruption
    b.f[i].stack = (char*)p;
  }
  SIMT_TS(for (int i = 0; i < n; ++i) if (!b.f[i].ts) b.f[i].ts = __tsan_create_fiber(0));
  b.n = n; b.w.assign((n + 31) / 32, Warp{}); b.order.resize(n);
  for (int i = 0; i < n; ++i) b.order[i] = cfg().order == 1 ? n - 1 - i : i;
}
inline void abandon(Block& b) {  // after an error: fibers stuck mid-kernel restart from scratch next time
  b.cur = -1;
  for (auto& x : b.f) {
    x.started = false;
    SIMT_TS(if (x.ts) {  // end the ignore scopes the parked fiber still holds, then drop it
      __tsan_switch_to_fiber(x.ts, __tsan_switch_to_fiber_no_sync);
      for (; x.ign > 0; --x.ign) __tsan_ignore_thread_end();
      __tsan_release(&b.hb_exit); __tsan_switch_to_fiber(b.sched_ts, __tsan_switch_to_fiber_no_sync);
      __tsan_destroy_fiber(x.ts); x.ts = nullptr; })
  }
}
inline void run_block(Block& b) {
  b.live = b.n; b.bar_arrived = b.bar_acc = 0; b.cur = -1; b.err.clear();
  poison_shared();
  for (auto& w : b.w) std::memset(&w, 0, sizeof w);
  for (int i = 0; i < b.n; ++i) {
    Fiber& x = b.f[i];
    x.tid = {i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    x.st = READY; x.seq = x.wseq = 0; x.lane = i & 31; x.warp = i >> 5; b.w[x.warp].live |= 1u << x.lane;
  }
  // TSan: order block k before block k+1 on this worker, as __shared__ storage is reused.
  SIMT_TS(__tsan_acquire(&b.hb_exit); __tsan_release(&b.hb_start));
  while (b.live > 0) {
    if (cfg().order == 2) std::shuffle(b.order.begin(), b.order.end(), b.rng);
    int ran = 0;
    for (int i : b.order) {
      Fiber& x = b.f[i];
      if (x.st == DONE || (x.st == WAIT_BAR && x.gen == b.bar_gen) ||
          (x.st == WAIT_WARP && !(b.w[x.warp].released >> x.lane & 1))) continue;
      b.cur = i; threadIdx = x.tid; ++ran;
      to_fiber(b, x);
      if (!b.err.empty()) { abandon(b); throw launch_error(b.err); }
    }
    if (!ran) { std::string m = deadlock_report(b); abandon(b); throw launch_error(m); }
  }
  b.cur = -1;
}
// One grid at a time per process: __shared__ storage is a single static section.
inline std::mutex& launch_mutex() { static std::mutex m; return m; }
inline void run_grid(dim3 g, dim3 bd, size_t smem, const std::function<void()>& body) {
  long nthr = (long)bd.x * bd.y * bd.z, nb = (long)g.x * g.y * g.z;
  if (nthr < 1 || nthr > 1024 || bd.z > 64 || nb < 1 || g.y > 65535 || g.z > 65535)
    throw launch_error("simt: invalid configuration argument (like cudaErrorInvalidConfiguration): grid (" +
                       std::to_string(g.x) + "," + std::to_string(g.y) + "," + std::to_string(g.z) + ") block (" +
                       std::to_string(bd.x) + "," + std::to_string(bd.y) + "," + std::to_string(bd.z) + ")");
  if (smem > SIMT_MAX_DYN_SMEM)
    throw launch_error("simt: " + std::to_string(smem) + " bytes of dynamic shared memory requested, the emulator has " +
                       std::to_string(SIMT_MAX_DYN_SMEM) + " (SIMT_MAX_DYN_SMEM)");
  std::lock_guard<std::mutex> guard(launch_mutex());
  static thread_local Block blk;
  SIMT_TS(__tsan_ignore_thread_begin(); blk.sched_ts = __tsan_get_current_fiber());
  tl = &blk; blockDim = bd; gridDim = g; blk.body = &body;
  std::exception_ptr ep;
  try {
    prepare(blk, bd);
    for (long i = 0; i < nb; ++i) {
      blockIdx = {unsigned(i % g.x), unsigned(i / g.x % g.y), unsigned(i / ((long)g.x * g.y))};
      run_block(blk);
    }
  } catch (...) { ep = std::current_exception(); }
  tl = nullptr;
  SIMT_TS(__tsan_acquire(&blk.hb_exit); __tsan_ignore_thread_end());
  if (ep) std::rethrow_exception(ep);
}

// ---- which kernels ran: launches counted by kernel name (template arguments stripped), so a test
// can assert that a given variant ran and that every __global__ of kernels/cuda was executed.
inline std::map<std::string, long>& launch_counts() { static std::map<std::string, long> m; return m; }
inline std::mutex& counts_mutex() { static std::mutex m; return m; }
inline void count_launch(const char* name) {
  std::string n(name);
  n = n.substr(0, n.find('<'));
  while (!n.empty() && n.back() == ' ') n.pop_back();
  std::lock_guard<std::mutex> l(counts_mutex());
  ++launch_counts()[n];
}

// ---- launch: simt::launch("name", kernel, grid, block, smem, args...) replaces
// kernel<<<grid, block, smem>>>(args...).  Arguments are converted to the kernel's parameter types
// once (as the CUDA runtime copies them into the launch) and every thread reads that copy.
template <class... P, class... A>
void launch(const char* name, void (*k)(P...), dim3 grid, dim3 block, size_t smem, A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel argument count mismatch");
  count_launch(name);
  std::tuple<std::decay_t<P>...> params(std::forward<A>(a)...);
  std::function<void()> body = [&] { std::apply(k, params); };
  run_grid(grid, block, smem, body);
}
// Launcher(name, kernel, grid, block, smem)(args...): the form the PYOPS_LAUNCH macro expands to.
template <class... P> struct Launcher {
  const char* name; void (*k)(P...); dim3 grid, block; size_t smem;
  template <class... A> void operator()(A&&... a) const { launch(name, k, grid, block, smem, std::forward<A>(a)...); }
};
template <class... P> Launcher(const char*, void (*)(P...), dim3, dim3, size_t) -> Launcher<P...>;
}  // namespace simt

// ---------------------------------------------------------------- device intrinsics
#define SIMT_SITE const char* f_ = __builtin_FILE(), int l_ = __builtin_LINE()  // call site of the barrier
inline void __syncthreads(SIMT_SITE) { simt::block_barrier(0, 0, f_, l_); }
inline int __syncthreads_count(int p, SIMT_SITE) { return simt::block_barrier(p, 0, f_, l_); }
inline int __syncthreads_and(int p, SIMT_SITE) { return simt::block_barrier(p, 1, f_, l_); }
inline int __syncthreads_or(int p, SIMT_SITE) { return simt::block_barrier(p, 2, f_, l_); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { simt::warp_sync(mask, 0); }
inline unsigned __activemask() { auto& b = simt::cur_block(); return b.w[b.f[b.cur].warp].live; }  // approx.
template <class T> T __shfl_sync(unsigned m, T v, int src, int w = 32) {
  return simt::shfl(m, v, w, [&](int l, int wd) { return (l & ~(wd - 1)) + (src & (wd - 1)); });
}
template <class T> T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32) {
  return simt::shfl(m, v, w, [&](int l, int wd) { return (l & (wd - 1)) < (int)d ? l : l - (int)d; });
}
template <class T> T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32) {
  return simt::shfl(m, v, w, [&](int l, int wd) { return (l & (wd - 1)) + (int)d >= wd ? l : l + (int)d; });
}
template <class T> T __shfl_xor_sync(unsigned m, T v, int lm, int w = 32) {
  return simt::shfl(m, v, w, [&](int l, int wd) { int s = l ^ lm; return (s & ~(wd - 1)) > (l & ~(wd - 1)) || s > 31 ? l : s; });
}
inline unsigned __ballot_sync(unsigned m, int p) { return simt::ballot(m, p); }
inline int __any_sync(unsigned m, int p) { return simt::ballot(m, p) != 0; }
inline int __all_sync(unsigned m, int p) { uint32_t g; return simt::ballot(m, p, &g) == g; }

template <class T> T atomicAdd(T* a, std::type_identity_t<T> v) { return std::atomic_ref<T>(*a).fetch_add(v); }
template <class T> T atomicSub(T* a, std::type_identity_t<T> v) { return std::atomic_ref<T>(*a).fetch_sub(v); }
template <class T> T atomicExch(T* a, std::type_identity_t<T> v) { return std::atomic_ref<T>(*a).exchange(v); }
template <class T> T atomicAnd(T* a, std::type_identity_t<T> v) { return std::atomic_ref<T>(*a).fetch_and(v); }
template <class T> T atomicOr(T* a, std::type_identity_t<T> v) { return std::atomic_ref<T>(*a).fetch_or(v); }
template <class T> T atomicXor(T* a, std::type_identity_t<T> v) { return std::atomic_ref<T>(*a).fetch_xor(v); }
template <class T> T atomicCAS(T* a, std::type_identity_t<T> c, std::type_identity_t<T> v) {
  std::atomic_ref<T>(*a).compare_exchange_strong(c, v); return c;
}
template <class T, class F> T simt_atomic_rmw(T* a, F f) {
  std::atomic_ref<T> r(*a); T o = r.load();
  while (!r.compare_exchange_weak(o, f(o))) {}
  return o;
}
template <class T> T atomicMax(T* a, std::type_identity_t<T> v) {
  static_assert(std::is_integral_v<T>, "CUDA has no floating-point atomicMax");
  return simt_atomic_rmw(a, [&](T o) { return o < v ? v : o; });
}
template <class T> T atomicMin(T* a, std::type_identity_t<T> v) {
  static_assert(std::is_integral_v<T>, "CUDA has no floating-point atomicMin");
  return simt_atomic_rmw(a, [&](T o) { return v < o ? v : o; });
}
inline unsigned atomicInc(unsigned* a, unsigned v) { return simt_atomic_rmw(a, [&](unsigned o) { return o >= v ? 0u : o + 1; }); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
template <class T> T __ldg(const T* p) { return *p; }
[[noreturn]] inline void __trap() { simt::fail("__trap()"); }

inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)x; }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero((unsigned)x); }
inline int __ffs(int x) { return x ? std::countr_zero((unsigned)x) + 1 : 0; }
inline unsigned __brev(unsigned x) { unsigned r = 0; for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i); return r; }
template <class A, class B> std::common_type_t<A, B> min(A a, B b) { return b < a ? b : a; }
template <class A, class B> std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }
