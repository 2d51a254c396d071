// simt.h -- the CUDA-on-CPU emulation harness: runs pyops' CUDA kernels (kernels/cuda/*.cuh),
// unmodified, on the CPU with g++.  Header-only, torch-free; nvcc never sees this file.
//
// Model
//   A launch runs its blocks one after another on the calling OS thread.  Each CUDA thread of the
//   block is a fiber (makecontext once, then _setjmp/_longjmp) that runs until it blocks: at
//   __syncthreads*, __syncwarp, a warp collective (shuffle, vote, match, reduce), __activemask, or
//   its end.  The scheduler then resumes the next runnable thread (order: SIMT_ORDER).  So between
//   two synchronization points a thread runs alone: memory written by another thread without a
//   barrier in between is either already there or not, depending on the order -- the sanitizer
//   build (below) reports such accesses as races instead of leaving them to chance.
//   `__shared__` makes a variable a static, which the threads of the running block share.  Before
//   every block all of them and the launch's dynamic shared memory
//   (pyops::cuda::dynamic_smem<T>() in kernels/cuda/common.cuh) are filled with 0xFF bytes (NaN in
//   every float type, -1 in every signed integer), so reading shared memory that no thread of this
//   block wrote shows up as NaN in the results (how they are found: see "shared memory" below).
//   One grid at a time per process (launch_mutex): the statics hold one block's shared memory.
//   g++ limitation: in one translation unit, __shared__ variables may sit in templates and in
//   non-inline functions, but not also in non-template *inline* functions (section type conflict).
//
// What is checked (a violation throws simt::launch_error naming kernel, block, thread, source line)
//   * __syncthreads reached at two different call sites in one barrier round (divergent barrier);
//   * warp collectives whose lanes disagree on the mask or on the intrinsic, a lane calling one
//     with a mask that does not contain itself, and deadlocks (lanes named in a mask that never
//     arrive, e.g. because they wait at a __syncthreads), with who waits where;
//   * launch configurations a GPU rejects (cudaErrorInvalidConfiguration), > 48 KiB dynamic shared
//     memory (the limit without cudaFuncSetAttribute), launches from device code;
//   * hazards that are undefined behaviour in CUDA but usually harmless (a shuffle that reads a lane
//     which did not take part -- its result is poisoned with 0xFF bytes; __syncthreads after other
//     threads of the block exited): counted in simt::diagnostics() and printed once per kind, or
//     fatal with SIMT_STRICT=1.
//   Sanitizer builds:
//   * -fsanitize=thread: every CUDA thread is a TSan fiber; __syncthreads* and __syncwarp are
//     release/acquire points among the threads they synchronize (shuffles and votes are not: CUDA
//     does not order memory at them either).  A missing __syncthreads/__syncwarp is a data race.
//   * -fsanitize=address: fiber stacks are announced to ASan, so out-of-range global accesses are
//     reported at the kernel's source line; dynamic shared memory is a heap block of exactly the
//     launch's smem bytes, so overruns of it are reported too.  -fsanitize=undefined sees
//     misaligned vector loads.
//
// What it cannot see: memory-ordering bugs between blocks (blocks run one after another), anything
// about registers, occupancy, speed; out-of-range accesses within shared memory (no redzones
// between __shared__ arrays: they read a neighbour or NaN poison); uninitialized reads of
// __shared__ variables of template helper functions (not poisoned); __expf & co. are the exact
// libm functions here.  Not emulated: inline PTX, cp.async, TMA, wgmma, mma.sync, ldmatrix,
// CUB/CUTLASS, cooperative groups, __constant__ + cudaMemcpyToSymbol, `extern __shared__`.
// nvcuda::wmma has a stand-in (csrc/sim/mma.h).
//
// Knobs (environment, read at the first launch)
//   SIMT_ORDER   0 (default) threads of a block scheduled 0..n-1, 1 in reverse, 2 random per pass
//   SIMT_SEED    seed for SIMT_ORDER=2 (default 1)
//   SIMT_STRICT  1: hazards (see above) are errors instead of counted warnings
//   SIMT_STACK_KB  fiber stack per CUDA thread (default 128; a guard page turns overflow into SIGSEGV)
#pragma once
#ifdef __CUDACC__
#error "simt.h is the host-compiler emulation layer; nvcc must not include it"
#endif
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <math.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>  // before __noinline__ is defined: libstdc++ uses __attribute__((__noinline__))
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
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

// Profiling hooks (csrc/sim/profile_rt.h defines them for the counting build, pyops._C_prof); empty in every
// other build, so the plain emulator does not pay for them.
#ifndef SIMT_PROF_BARRIER_RELEASE
#define SIMT_PROF_BARRIER_RELEASE(block)
#endif
#ifndef SIMT_PROF_COLLECTIVE
#define SIMT_PROF_COLLECTIVE(block, fiber, op, mask)
#endif
#ifndef SIMT_PROF_BLOCK_END
#define SIMT_PROF_BLOCK_END(block)
#endif
#ifndef SIMT_PROF_LAUNCH_BEGIN
#define SIMT_PROF_LAUNCH_BEGIN(block, entry, grid, threads)
#endif
#ifndef SIMT_PROF_LAUNCH_END
#define SIMT_PROF_LAUNCH_END(block, failed)
#endif

// SIMT_USE_CUDA_HEADERS: take dim3/float4/make_float4/__half from the toolkit's host-usable headers
// (vector_types.h, vector_functions.h, cuda_fp16.h) instead of the minimal definitions below.
#ifdef SIMT_USE_CUDA_HEADERS
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>
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
// Dynamic shared memory a launch may request: 48 KiB, what sm_80/sm_90 allow without the
// cudaFuncSetAttribute(MaxDynamicSharedMemorySize) opt-in, which pyops' launch path does not make.
#ifndef SIMT_MAX_DYN_SMEM
#define SIMT_MAX_DYN_SMEM (48 * 1024)
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
inline int env_int(const char* n, int d) { const char* v = getenv(n); return v && *v ? atoi(v) : d; }
struct Config {
  size_t stack = size_t(std::max(16, env_int("SIMT_STACK_KB", 128))) * 1024;
  int order = env_int("SIMT_ORDER", 0);
  unsigned seed = unsigned(env_int("SIMT_SEED", 1));
  bool strict = env_int("SIMT_STRICT", 0) != 0;
};
// Read once; a test driver may change the fields before its first launch (e.g. strict = true).
inline Config& cfg() { static Config c; return c; }

// Source location of a synchronization call, for error messages (default arguments of the intrinsics).
struct Site { const char* file = ""; int line = 0; };
#define SIMT_SITE const char *simt_file_ = __builtin_FILE(), int simt_line_ = __builtin_LINE()
#define SIMT_HERE ::simt::Site{simt_file_, simt_line_}

// Warp collectives: lanes meeting in one group must all call the same one.
enum Op : uint8_t { OP_SYNCWARP, OP_SHFL, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_ANY, OP_ALL,
                    OP_MATCH_ANY, OP_MATCH_ALL, OP_REDUCE_ADD, OP_REDUCE_MIN, OP_REDUCE_MAX, OP_REDUCE_AND,
                    OP_REDUCE_OR, OP_REDUCE_XOR };
inline const char* op_name(uint8_t op) {
  static const char* const n[] = {"__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                  "__shfl_xor_sync", "__ballot_sync", "__any_sync", "__all_sync",
                                  "__match_any_sync", "__match_all_sync", "__reduce_add_sync",
                                  "__reduce_min_sync", "__reduce_max_sync", "__reduce_and_sync",
                                  "__reduce_or_sync", "__reduce_xor_sync"};
  return op < sizeof n / sizeof *n ? n[op] : "?";
}

enum St : uint8_t { READY, WAIT_BAR, WAIT_WARP, WAIT_ACTIVE, DONE };
struct Range { unsigned char* p; size_t n; };  // a piece of shared memory
struct Fiber {
  ucontext_t ctx; jmp_buf jb; uint3 tid; St st; bool started = false;
  int lane, warp; unsigned gen, seq, wseq;
  Site site;               // where it waits (barrier, collective, __activemask), for messages
  unsigned active_mask;    // result of __activemask
  char* stack = nullptr; void* ts = nullptr; int ign = 0;
};
struct Warp {
  uint32_t live, arrived, released, mask[32], group[32];
  uint8_t op[32];
  uint64_t buf[2][32];  // values exchanged by shuffles/votes, double-buffered by per-lane call parity
  char hb[2];           // TSan happens-before objects of __syncwarp
};

struct Block {
  jmp_buf sched_jb;
  std::deque<Fiber> f;  // deque: growing keeps parked fibers' addresses stable
  std::vector<Warp> w; std::vector<int> order;
  int n = 0, live = 0, cur = -1, bar_arrived = 0, bar_acc = 0, bar_res[2][2] = {}, active_waiting = 0;
  unsigned bar_gen = 0; Site bar_site;
  const char* kernel = "";
  size_t smem = 0;                        // dynamic shared memory of this launch, bytes
  std::unique_ptr<unsigned char[]> dyn;   // ... exactly that large (new[] aligns to 16)
  std::vector<Range> statics;             // the kernel's __shared__ variables (found by symbol)
  const std::function<void()>* body = nullptr;
  std::string err;
  std::mt19937 rng{cfg().seed};
  const void* sched_bottom = nullptr; size_t sched_size = 0;
  void* sched_ts = nullptr; char hb_start, hb_exit, hb_bar[2];  // TSan happens-before objects
  ~Block() { for (auto& x : f) { if (x.stack) munmap(x.stack, cfg().stack); SIMT_TS(if (x.ts) __tsan_destroy_fiber(x.ts)); } }
};
inline thread_local Block* tl = nullptr;
inline void* cur_block_dyn() {
  if (!tl || tl->cur < 0) { fprintf(stderr, "simt: dynamic shared memory used outside a launch\n"); abort(); }
  return tl->dyn.get();
}

// ---- shared memory: where the __shared__ variables are, so they can be poisoned before each block.
// `__shared__` makes a static; g++ places a static of a non-template function in section
// simt_shared (the linker defines __start_/__stop_ symbols for it; hidden visibility keeps each
// shared object on its own section) but silently ignores the section for a static of a template
// instantiation (a COMDAT object: .bss.<mangled name>) -- and kernels are templates.  Those are
// found by name instead: the static locals of function F are the symbols "_ZZ" F "E...", so the
// symbol table of the module holding the launched kernel (its ELF file: .symtab, else .dynsym) gives
// their addresses and sizes.  Not found, and not poisoned: __shared__ variables declared in template
// *helper* functions the kernel calls; everything if the module is stripped (a hazard says so).
// Dynamic shared memory is a heap block of exactly the launch's smem bytes (ASan sees an access past it).
extern "C" unsigned char __start_simt_shared[] __attribute__((weak, visibility("hidden")));
extern "C" unsigned char __stop_simt_shared[] __attribute__((weak, visibility("hidden")));
struct ModuleSymbols {  // of one loaded ELF object: functions by address, static locals ("_ZZ...")
  bool ok = false;
  std::map<uintptr_t, std::string> funcs;
  std::vector<std::pair<std::string, Range>> statics;
};
inline ModuleSymbols read_symbols(const char* path, uintptr_t bias) {
  ModuleSymbols m;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return m;
  struct stat st;
  void* map = fstat(fd, &st) == 0 ? mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
  close(fd);
  if (map == MAP_FAILED) return m;
  const auto* base = static_cast<const unsigned char*>(map);
  const auto* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  if (size_t(st.st_size) >= sizeof(Elf64_Ehdr) && !memcmp(eh->e_ident, ELFMAG, SELFMAG) &&
      eh->e_ident[EI_CLASS] == ELFCLASS64 && eh->e_shoff && eh->e_shoff + size_t(eh->e_shnum) * sizeof(Elf64_Shdr) <= size_t(st.st_size)) {
    const auto* sh = reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff);
    for (uint32_t want : {uint32_t(SHT_SYMTAB), uint32_t(SHT_DYNSYM)}) {  // .symtab has the local symbols too
      for (int i = 0; i < eh->e_shnum && !m.ok; ++i) {
        if (sh[i].sh_type != want || sh[i].sh_link >= eh->e_shnum) continue;
        const auto* sym = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
        const char* str = reinterpret_cast<const char*>(base + sh[sh[i].sh_link].sh_offset);
        for (size_t k = 0; k < sh[i].sh_size / sizeof(Elf64_Sym); ++k) {
          if (sym[k].st_shndx == SHN_UNDEF || !sym[k].st_name) continue;
          const char* name = str + sym[k].st_name;
          if (ELF64_ST_TYPE(sym[k].st_info) == STT_FUNC) m.funcs.emplace(bias + sym[k].st_value, name);
          else if (ELF64_ST_TYPE(sym[k].st_info) == STT_OBJECT && sym[k].st_size && !strncmp(name, "_ZZ", 3))
            m.statics.push_back({name, {reinterpret_cast<unsigned char*>(bias + sym[k].st_value), size_t(sym[k].st_size)}});
        }
        m.ok = !m.funcs.empty();
      }
    }
  }
  munmap(map, size_t(st.st_size));
  return m;
}
// The static locals of `kernel` (its __shared__ variables); false if its symbol cannot be found.
inline bool kernel_statics(const void* kernel, std::vector<Range>& out) {
  struct Hit { const void* addr; std::string path; uintptr_t bias = 0; bool found = false; } hit{kernel, "", 0, false};
  dl_iterate_phdr([](dl_phdr_info* info, size_t, void* data) {
    auto* h = static_cast<Hit*>(data);
    const uintptr_t a = reinterpret_cast<uintptr_t>(h->addr);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
      const auto& ph = info->dlpi_phdr[i];
      if (ph.p_type == PT_LOAD && a >= info->dlpi_addr + ph.p_vaddr && a < info->dlpi_addr + ph.p_vaddr + ph.p_memsz) {
        h->path = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : "/proc/self/exe";
        h->bias = info->dlpi_addr; h->found = true;
        return 1;
      }
    }
    return 0;
  }, &hit);
  if (!hit.found) return false;
  static std::map<std::string, ModuleSymbols> modules;  // guarded by launch_mutex (callers hold it)
  auto it = modules.find(hit.path);
  if (it == modules.end()) it = modules.emplace(hit.path, read_symbols(hit.path.c_str(), hit.bias)).first;
  const ModuleSymbols& m = it->second;
  const auto f = m.funcs.find(reinterpret_cast<uintptr_t>(kernel));
  if (!m.ok || f == m.funcs.end() || f->second.rfind("_Z", 0) != 0) return false;
  const std::string prefix = "_ZZ" + f->second.substr(2) + "E";
  for (const auto& [name, r] : m.statics)
    if (!name.compare(0, prefix.size(), prefix)) out.push_back(r);
  return true;
}
inline void poison_range(unsigned char* p, size_t n) {
#ifdef SIMT_ASAN  // an instrumented global may be followed by its redzone: stop at the first poisoned byte
  if (void* bad = __asan_region_is_poisoned(p, n)) n = size_t(static_cast<unsigned char*>(bad) - p);
#endif
  std::memset(p, 0xFF, n);
}
inline void poison_shared(Block& b) {  // 0xFF bytes: NaN as float/double/half/bf16, -1 as an integer
  unsigned char* s = __start_simt_shared; unsigned char* e = __stop_simt_shared;
  if (s && e > s) poison_range(s, size_t(e - s));
  for (const Range& r : b.statics) poison_range(r.p, r.n);
  std::memset(b.dyn.get(), 0xFF, b.smem);
}
inline void* dynamic_shared() { return cur_block_dyn(); }
struct Internal {  // emulator bookkeeping is invisible to TSan; only kernel memory accesses are checked
  Internal() { SIMT_TS(__tsan_ignore_thread_begin(); ++tl->f[tl->cur].ign); }
  ~Internal() { SIMT_TS(--tl->f[tl->cur].ign; __tsan_ignore_thread_end()); }
};
inline long page() { static long p = sysconf(_SC_PAGESIZE); return p; }

inline Block& cur_block() {
  if (!tl || tl->cur < 0) { fprintf(stderr, "simt: device function called outside a launch\n"); abort(); }
  return *tl;
}
inline int lane_id() { Block& b = cur_block(); return b.f[b.cur].lane; }  // threadIdx linearized, mod 32
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

// "simt: <kernel>: <what> [block (x,y,z) thread (x,y,z)] at file:line"
inline std::string describe(const Block& b, const char* what, const Fiber* t, Site s) {
  char buf[1024];
  int k = snprintf(buf, sizeof buf, "simt: %s: %s [block (%u,%u,%u)", b.kernel, what, blockIdx.x, blockIdx.y, blockIdx.z);
  if (t && k > 0 && k < (int)sizeof buf)
    k += snprintf(buf + k, sizeof buf - k, " thread (%u,%u,%u)", t->tid.x, t->tid.y, t->tid.z);
  if (k > 0 && k < (int)sizeof buf) k += snprintf(buf + k, sizeof buf - k, "]");
  if (s.line && k > 0 && k < (int)sizeof buf) snprintf(buf + k, sizeof buf - k, " at %s:%d", s.file, s.line);
  return buf;
}
// Called on a fiber: record the error, abandon the fiber, the scheduler throws launch_error.
// Takes const char*: std::string temporaries in abandoned frames would leak.
[[noreturn]] inline void fail(const char* m, Site s = {}) {
  SIMT_TS(__tsan_ignore_thread_begin());
  Block& b = cur_block(); Fiber& me = b.f[b.cur];
  b.err = describe(b, m, &me, s); me.st = DONE;
  SIMT_TS(__tsan_ignore_thread_end(); for (; me.ign > 0; --me.ign) __tsan_ignore_thread_end());
  to_sched(b, me, true);
  __builtin_unreachable();
}

// ---- hazards: undefined behaviour that usually works; counted (per kind), fatal under SIMT_STRICT.
struct Diagnostic { long count = 0; std::string first; };
inline std::mutex& diag_mutex() { static std::mutex m; return m; }
inline std::map<std::string, Diagnostic>& diagnostics_map() { static std::map<std::string, Diagnostic> m; return m; }
inline std::map<std::string, Diagnostic> diagnostics() {  // kind -> (count, first message)
  std::lock_guard<std::mutex> l(diag_mutex()); return diagnostics_map();
}
inline void reset_diagnostics() { std::lock_guard<std::mutex> l(diag_mutex()); diagnostics_map().clear(); }
inline void hazard(const char* kind, const char* m, Site s) {  // called on a fiber, inside Internal
  if (cfg().strict) fail(m, s);
  Block& b = cur_block();
  std::lock_guard<std::mutex> l(diag_mutex());
  Diagnostic& d = diagnostics_map()[kind];
  if (d.count++ == 0) {
    d.first = describe(b, m, &b.f[b.cur], s);
    fprintf(stderr, "%s (warning: undefined behaviour in CUDA; SIMT_STRICT=1 makes it an error)\n", d.first.c_str());
  }
}

// ---- block barrier (counts arrivals of live threads, like bar.sync on sm_70+)
inline void release_bar(Block& b) {
  SIMT_PROF_BARRIER_RELEASE(b);
  b.bar_res[b.bar_gen & 1][0] = b.bar_acc; b.bar_res[b.bar_gen & 1][1] = b.bar_arrived;
  b.bar_acc = 0; b.bar_arrived = 0; b.bar_gen++;
}
inline int block_barrier(int pred, int what, Site s) {  // what: 0 count, 1 and, 2 or
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur];
  if (b.live != b.n) hazard("barrier-after-exit", "__syncthreads() reached after other threads of the block exited", s);
  if (b.bar_arrived == 0) b.bar_site = s;
  else if (s.line != b.bar_site.line || strcmp(s.file, b.bar_site.file)) {  // one barrier round, two call sites
    char m[768];
    snprintf(m, sizeof m, "divergent __syncthreads(): threads wait at %s:%d, this one arrived at %s:%d",
             b.bar_site.file, b.bar_site.line, s.file, s.line);
    fail(m, s);
  }
  unsigned g = b.bar_gen; b.bar_acc += pred != 0;
  me.gen = g; me.st = WAIT_BAR; me.site = s;
  if (++b.bar_arrived == b.live) release_bar(b);
  SIMT_TS(__tsan_release(&b.hb_bar[g & 1]));
  to_sched(b, me); me.st = READY;
  SIMT_TS(__tsan_acquire(&b.hb_bar[g & 1]));
  int* r = b.bar_res[g & 1];
  return what == 0 ? r[0] : what == 1 ? r[0] == r[1] : r[0] != 0;
}

// ---- warp collectives: the lanes named in `mask` (and still alive) must all arrive with the same
// mask and the same intrinsic; then they are released together and each sees the group's values.
inline void warp_check(Warp& w) {
  for (uint32_t pend = w.arrived; pend;) {
    int l = std::countr_zero(pend); uint32_t m = w.mask[l] & w.live;
    if ((w.arrived & m) == m) {
      for (uint32_t t = m; t; t &= t - 1) {
        int j = std::countr_zero(t);
        if ((w.mask[j] & w.live) != m || w.op[j] != w.op[l]) {
          char msg[256];
          snprintf(msg, sizeof msg, "warp collective: lane %d called %s(mask 0x%08x) while lane %d called %s(mask 0x%08x)",
                   l, op_name(w.op[l]), w.mask[l], j, op_name(w.op[j]), w.mask[j]);
          fail(msg, tl->f[tl->cur].site);
        }
        w.group[j] = m;
      }
      w.arrived &= ~m; w.released |= m;
    }
    pend &= ~(m | (1u << l));
  }
}
// Arrive at a collective, wait for the group; returns the buffer parity this call wrote its value to.
inline unsigned collective(uint8_t op, uint32_t mask, uint64_t value, Site s) {
  Block& b = cur_block(); Fiber& me = b.f[b.cur]; Warp& w = b.w[me.warp];
  if (!(mask >> me.lane & 1)) {
    char m[160];
    snprintf(m, sizeof m, "%s(mask 0x%08x) called by lane %d, which is not in its mask", op_name(op), mask, me.lane);
    fail(m, s);
  }
  const unsigned p = me.seq++ & 1;  // double buffer: a fast lane may write the next value before others read
  w.buf[p][me.lane] = value;
  w.mask[me.lane] = mask; w.op[me.lane] = op; w.arrived |= 1u << me.lane; me.st = WAIT_WARP; me.site = s;
  SIMT_PROF_COLLECTIVE(b, me, op, mask);
  warp_check(w);
  // __syncwarp orders memory among its lanes (bar.warp.sync); shuffles and votes do not.
  [[maybe_unused]] const unsigned q = op == OP_SYNCWARP ? me.wseq++ & 1 : 0;
  SIMT_TS(if (op == OP_SYNCWARP) __tsan_release(&w.hb[q]));
  to_sched(b, me); me.st = READY; w.released &= ~(1u << me.lane);
  SIMT_TS(if (op == OP_SYNCWARP) __tsan_acquire(&w.hb[q]));
  return p;
}
template <class T> uint64_t bits_of(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp collective on a type wider than 8 bytes");
  uint64_t u = 0; std::memcpy(&u, &v, sizeof(T)); return u;
}
template <class T> T from_bits(uint64_t u) { T v; std::memcpy(&v, &u, sizeof(T)); return v; }

// Shuffles, as PTX shfl.sync defines them: the lane offset/index is taken mod 32 (5 bits); `width`
// splits the warp into segments; a source lane outside the allowed range yields the caller's own
// value (up: below the segment start; down/xor/idx: above the segment end -- so a xor may read an
// *earlier* segment, as on the GPU).
template <class T> T shfl(uint8_t op, uint32_t mask, T v, int b_arg, int width, Site s) {
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur]; Warp& w = b.w[me.warp];
  if (width < 1 || width > 32 || (width & (width - 1))) {
    char m[96]; snprintf(m, sizeof m, "%s: width %d is not a power of two in [1, 32]", op_name(op), width); fail(m, s);
  }
  const unsigned p = collective(op, mask, bits_of(v), s);
  const int lane = me.lane, bval = b_arg & 31, segmask = (32 - width) & 31;
  const int cval = op == OP_SHFL_UP ? 0 : 31;
  const int max_lane = (lane & segmask) | (cval & ~segmask), min_lane = lane & segmask;
  int j; bool ok;
  switch (op) {
    case OP_SHFL_UP: j = lane - bval; ok = j >= max_lane; break;
    case OP_SHFL_DOWN: j = lane + bval; ok = j <= max_lane; break;
    case OP_SHFL_XOR: j = lane ^ bval; ok = j <= max_lane; break;
    default: j = min_lane | (bval & ~segmask); ok = j <= max_lane; break;
  }
  if (!ok) j = lane;
  if (j != lane && !(w.group[lane] >> j & 1)) {  // source lane not in this shuffle: undefined value
    char m[160];
    snprintf(m, sizeof m, "%s(mask 0x%08x) in lane %d reads lane %d, which did not take part (result poisoned)",
             op_name(op), mask, lane, j);
    hazard("shfl-inactive-lane", m, s);
    return from_bits<T>(~uint64_t(0));
  }
  return from_bits<T>(w.buf[p][j]);
}
// Vote / match / reduce: f(group, values) on the released group.
template <class F> auto group_op(uint8_t op, uint32_t mask, uint64_t value, Site s, F f) {
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur]; Warp& w = b.w[me.warp];
  const unsigned p = collective(op, mask, value, s);
  return f(w.group[me.lane], w.buf[p], me.lane);
}
inline uint32_t ballot(uint8_t op, uint32_t mask, int pred, Site s, uint32_t* group = nullptr) {
  return group_op(op, mask, pred != 0, s, [&](uint32_t g, const uint64_t* v, int) {
    uint32_t r = 0;
    for (uint32_t t = g; t; t &= t - 1) if (v[std::countr_zero(t)]) r |= 1u << std::countr_zero(t);
    if (group) *group = g;
    return r;
  });
}
inline void warp_sync(uint32_t mask, Site s) { Internal in_; collective(OP_SYNCWARP, mask, 0, s); }

// __activemask(): the lanes of the warp that execute this call together.  The emulator does not
// track convergence; it approximates it as "the lanes that wait at this same call site once every
// thread of the block has run as far as it can" -- lanes in the other branch of an if are then
// blocked elsewhere (or exited) and are not in the mask, as on the GPU.  No memory ordering.
inline unsigned activemask(Site s) {
  Internal in_; Block& b = cur_block(); Fiber& me = b.f[b.cur];
  me.st = WAIT_ACTIVE; me.site = s; b.active_waiting++;
  to_sched(b, me); me.st = READY;
  return me.active_mask;
}
inline bool resolve_activemask(Block& b) {  // scheduler: nothing else can run; group waiting lanes by site
  if (!b.active_waiting) return false;
  for (int i = 0; i < b.n; ++i) {
    Fiber& x = b.f[i];
    if (x.st != WAIT_ACTIVE) continue;
    unsigned m = 0;
    for (int j = x.warp * 32; j < std::min(b.n, x.warp * 32 + 32); ++j) {
      const Fiber& y = b.f[j];
      if (y.st == WAIT_ACTIVE && y.site.line == x.site.line && !strcmp(y.site.file, x.site.file)) m |= 1u << y.lane;
    }
    x.active_mask = m;
  }
  for (int i = 0; i < b.n; ++i) if (b.f[i].st == WAIT_ACTIVE) b.f[i].st = READY;
  b.active_waiting = 0;
  return true;
}

// ---- scheduler
inline void thread_exit(Block& b) {
  SIMT_TS(__tsan_release(&b.hb_exit));
  Fiber* me;
  {
    Internal in_; me = &b.f[b.cur]; me->st = DONE; b.live--;
    Warp& w = b.w[me->warp]; w.live &= ~(1u << me->lane); warp_check(w);
    if (b.bar_arrived) hazard("barrier-after-exit", "thread exited while others wait at __syncthreads()", b.bar_site);
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
// Who waits where, grouped: "12 threads at __syncthreads (f.cuh:40); lanes 0-15 of warp 3 at
// __shfl_down_sync(mask 0xffffffff) (f.cuh:12), e.g. thread (96,0,0)".
inline std::string deadlock_report(Block& b) {
  struct Key { int kind; const char* file; int line; uint32_t mask; uint8_t op; };
  std::vector<std::pair<Key, std::vector<int>>> groups;
  for (int i = 0; i < b.n; ++i) {
    const Fiber& x = b.f[i];
    if (x.st != WAIT_BAR && x.st != WAIT_WARP) continue;
    const Warp& w = b.w[x.warp];
    Key k{x.st, x.site.file, x.site.line, x.st == WAIT_WARP ? w.mask[x.lane] : 0, x.st == WAIT_WARP ? w.op[x.lane] : uint8_t(0)};
    auto it = std::find_if(groups.begin(), groups.end(), [&](auto& g) {
      return g.first.kind == k.kind && g.first.line == k.line && g.first.mask == k.mask && g.first.op == k.op &&
             !strcmp(g.first.file, k.file);
    });
    if (it == groups.end()) groups.push_back({k, {i}}); else it->second.push_back(i);
  }
  char buf[512];
  snprintf(buf, sizeof buf, "simt: %s: deadlock in block (%u,%u,%u) (%d of %d threads exited): ", b.kernel, blockIdx.x,
           blockIdx.y, blockIdx.z, b.n - b.live, b.n);
  std::string r = buf;
  for (auto& [k, ids] : groups) {
    const Fiber& x = b.f[ids[0]];
    if (k.kind == WAIT_BAR)
      snprintf(buf, sizeof buf, "%zu threads at __syncthreads (%s:%d), e.g. thread (%u,%u,%u); ", ids.size(), k.file,
               k.line, x.tid.x, x.tid.y, x.tid.z);
    else
      snprintf(buf, sizeof buf, "%zu lanes at %s(mask 0x%08x) (%s:%d), e.g. warp %d lane %d; ", ids.size(), op_name(k.op),
               k.mask, k.file, k.line, x.warp, x.lane);
    r += buf;
  }
  return r + "lanes named in a mask never arrived, or a __syncthreads is not reached by every thread";
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
  b.live = b.n; b.bar_arrived = b.bar_acc = 0; b.active_waiting = 0; b.cur = -1; b.err.clear();
  poison_shared(b);
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
      if (x.st == DONE || x.st == WAIT_ACTIVE || (x.st == WAIT_BAR && x.gen == b.bar_gen) ||
          (x.st == WAIT_WARP && !(b.w[x.warp].released >> x.lane & 1))) continue;
      b.cur = i; threadIdx = x.tid; ++ran;
      to_fiber(b, x);
      if (!b.err.empty()) { abandon(b); throw launch_error(b.err); }
    }
    if (!ran && !resolve_activemask(b)) { std::string m = deadlock_report(b); abandon(b); throw launch_error(m); }
  }
  b.cur = -1;
  SIMT_PROF_BLOCK_END(b);
}

// Checks of a launch configuration, as cudaLaunchKernel makes them; throws launch_error.
inline void check_config(const char* kernel, dim3 g, dim3 bd, size_t smem) {
  const long long nthr = (long long)bd.x * bd.y * bd.z;
  auto cfg_str = [&] {
    return "grid (" + std::to_string(g.x) + "," + std::to_string(g.y) + "," + std::to_string(g.z) + ") block (" +
           std::to_string(bd.x) + "," + std::to_string(bd.y) + "," + std::to_string(bd.z) + ")";
  };
  if (nthr < 1 || nthr > 1024 || bd.x > 1024 || bd.y > 1024 || bd.z > 64 || g.x < 1 || g.y < 1 || g.z < 1 ||
      g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
    throw launch_error(std::string("simt: ") + kernel + ": invalid configuration argument " + cfg_str() +
                       " (cudaErrorInvalidConfiguration: block <= 1024 threads with z <= 64, grid.x < 2^31, "
                       "grid.y/z <= 65535, nothing 0)");
  if (smem > SIMT_MAX_DYN_SMEM)
    throw launch_error(std::string("simt: ") + kernel + ": " + std::to_string(smem) +
                       " bytes of dynamic shared memory requested; without cudaFuncSetAttribute a launch may use " +
                       std::to_string(SIMT_MAX_DYN_SMEM) + " (SIMT_MAX_DYN_SMEM)");
}
// One grid at a time per process: __shared__ storage is a single static section.
inline std::mutex& launch_mutex() { static std::mutex m; return m; }
inline void run_grid(const char* kernel, const void* entry, dim3 g, dim3 bd, size_t smem,
                     const std::function<void()>& body) {
  if (tl) throw launch_error(std::string("simt: ") + kernel + ": launched from device code (dynamic parallelism is not emulated)");
  std::lock_guard<std::mutex> guard(launch_mutex());
  static thread_local Block blk;
  static std::map<const void*, std::pair<bool, std::vector<Range>>> statics;  // per kernel, under launch_mutex
  auto st = statics.find(entry);
  if (st == statics.end()) {
    std::vector<Range> r;
    const bool found = kernel_statics(entry, r);
    st = statics.emplace(entry, std::make_pair(found, std::move(r))).first;
  }
  if (!st->second.first) {  // its __shared__ variables cannot be poisoned
    const std::string m = std::string("simt: ") + kernel + ": no symbol table entry for the kernel (stripped binary?): "
                          "its __shared__ variables are not poisoned before each block";
    if (cfg().strict) throw launch_error(m);
    std::lock_guard<std::mutex> l(diag_mutex());
    Diagnostic& d = diagnostics_map()["shared-not-poisoned"];
    if (d.count++ == 0) { d.first = m; fprintf(stderr, "%s\n", m.c_str()); }
  }
  blk.statics = st->second.second;
  SIMT_TS(__tsan_ignore_thread_begin(); blk.sched_ts = __tsan_get_current_fiber());
  tl = &blk; blockDim = bd; gridDim = g; blk.body = &body; blk.kernel = kernel;
  if (!blk.dyn || blk.smem != smem) blk.dyn.reset(new unsigned char[smem]);  // exact size, for ASan
  blk.smem = smem;
  std::exception_ptr ep;
  try {
    SIMT_PROF_LAUNCH_BEGIN(blk, entry, g, bd);
    prepare(blk, bd);
    const long long nb = (long long)g.x * g.y * g.z;
    for (long long i = 0; i < nb; ++i) {
      blockIdx = {unsigned(i % g.x), unsigned(i / g.x % g.y), unsigned(i / ((long long)g.x * g.y))};
      run_block(blk);
    }
  } catch (...) { ep = std::current_exception(); }
  SIMT_PROF_LAUNCH_END(blk, ep != nullptr);
  tl = nullptr;
  SIMT_TS(__tsan_acquire(&blk.hb_exit); __tsan_ignore_thread_end());
  if (ep) std::rethrow_exception(ep);
}

// ---- which kernels ran: launches counted by kernel name (template arguments and namespace
// qualifiers stripped: "pyops::cuda::softmax_fwd_warp_kernel<T, V, L>" -> "softmax_fwd_warp_kernel"),
// so a test can assert that a given variant ran and that every __global__ of kernels/cuda was executed.
inline std::string kernel_base_name(const char* name) {
  std::string n(name);
  n = n.substr(0, n.find('<'));
  while (!n.empty() && (n.back() == ' ' || n.back() == '\n')) n.pop_back();
  const size_t c = n.rfind("::");
  if (c != std::string::npos) n = n.substr(c + 2);
  const size_t sp = n.find_first_not_of(" (&");
  return sp == std::string::npos ? n : n.substr(sp);
}
inline std::map<std::string, long>& launch_counts() { static std::map<std::string, long> m; return m; }
inline std::mutex& counts_mutex() { static std::mutex m; return m; }
inline void count_launch(const char* name) {
  std::lock_guard<std::mutex> l(counts_mutex());
  ++launch_counts()[kernel_base_name(name)];
}

// ---- profiling redirect: while a counting build of the same kernels (pyops._C_prof, csrc/sim/profile_rt.h)
// is switched on, launches go to its instrumented copy of the kernel.  One relaxed load per launch otherwise.
struct Redirect {
  const void* (*find)(const void* kernel);  // the counting build's copy of `kernel`, or nullptr (run it here)
  void (*run)(const char* name, const void* entry, dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);
};
inline std::atomic<const Redirect*>& redirect() { static std::atomic<const Redirect*> r{nullptr}; return r; }

// ---- launch: simt::launch("name", kernel, grid, block, smem, args...) replaces
// kernel<<<grid, block, smem>>>(args...).  Arguments are converted to the kernel's parameter types
// once (as the CUDA runtime copies them into the launch) and every thread reads that copy.
// Synchronous: when it returns, the grid has finished (or launch_error was thrown).
template <class... P, class... A>
void launch(const char* name, void (*k)(P...), dim3 grid, dim3 block, size_t smem, A&&... a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel argument count mismatch");
  check_config(name, grid, block, smem);
  count_launch(name);
  std::tuple<std::decay_t<P>...> params(std::forward<A>(a)...);
  if (const Redirect* r = redirect().load(std::memory_order_relaxed)) [[unlikely]] {
    if (const void* copy = r->find(reinterpret_cast<const void*>(k))) {
      auto* kc = reinterpret_cast<void (*)(P...)>(const_cast<void*>(copy));  // same signature, same ABI
      std::function<void()> body = [&] { std::apply(kc, params); };
      r->run(name, copy, grid, block, smem, body);
      return;
    }
  }
  std::function<void()> body = [&] { std::apply(k, params); };
  run_grid(name, reinterpret_cast<const void*>(k), grid, block, smem, body);
}
// Launcher(name, kernel, grid, block, smem)(args...): the form the PYOPS_LAUNCH macro expands to.
template <class... P> struct Launcher {
  const char* name; void (*k)(P...); dim3 grid, block; size_t smem;
  template <class... A> void operator()(A&&... a) const { launch(name, k, grid, block, smem, std::forward<A>(a)...); }
};
template <class... P> Launcher(const char*, void (*)(P...), dim3, dim3, size_t) -> Launcher<P...>;
}  // namespace simt

// ---------------------------------------------------------------- device intrinsics
inline void __syncthreads(SIMT_SITE) { simt::block_barrier(0, 0, SIMT_HERE); }
inline int __syncthreads_count(int p, SIMT_SITE) { return simt::block_barrier(p, 0, SIMT_HERE); }
inline int __syncthreads_and(int p, SIMT_SITE) { return simt::block_barrier(p, 1, SIMT_HERE); }
inline int __syncthreads_or(int p, SIMT_SITE) { return simt::block_barrier(p, 2, SIMT_HERE); }
inline void __syncwarp(unsigned mask = 0xffffffffu, SIMT_SITE) { simt::warp_sync(mask, SIMT_HERE); }
inline unsigned __activemask(SIMT_SITE) { return simt::activemask(SIMT_HERE); }
template <class T> T __shfl_sync(unsigned m, T v, int src, int w = 32, SIMT_SITE) {
  return simt::shfl(simt::OP_SHFL, m, v, src, w, SIMT_HERE);
}
template <class T> T __shfl_up_sync(unsigned m, T v, unsigned d, int w = 32, SIMT_SITE) {
  return simt::shfl(simt::OP_SHFL_UP, m, v, int(d), w, SIMT_HERE);
}
template <class T> T __shfl_down_sync(unsigned m, T v, unsigned d, int w = 32, SIMT_SITE) {
  return simt::shfl(simt::OP_SHFL_DOWN, m, v, int(d), w, SIMT_HERE);
}
template <class T> T __shfl_xor_sync(unsigned m, T v, int lane_mask, int w = 32, SIMT_SITE) {
  return simt::shfl(simt::OP_SHFL_XOR, m, v, lane_mask, w, SIMT_HERE);
}
inline unsigned __ballot_sync(unsigned m, int p, SIMT_SITE) { return simt::ballot(simt::OP_BALLOT, m, p, SIMT_HERE); }
inline int __any_sync(unsigned m, int p, SIMT_SITE) { return simt::ballot(simt::OP_ANY, m, p, SIMT_HERE) != 0; }
inline int __all_sync(unsigned m, int p, SIMT_SITE) {
  uint32_t g; return simt::ballot(simt::OP_ALL, m, p, SIMT_HERE, &g) == g;
}
// sm_70+: lanes of the group holding the same value as this lane (match_all: all or nothing).
template <class T> unsigned __match_any_sync(unsigned m, T v, SIMT_SITE) {
  static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>, "__match_any_sync: 32/64-bit values");
  return simt::group_op(simt::OP_MATCH_ANY, m, simt::bits_of(v), SIMT_HERE, [](uint32_t g, const uint64_t* b, int l) {
    uint32_t r = 0;
    for (uint32_t t = g; t; t &= t - 1) if (b[std::countr_zero(t)] == b[l]) r |= 1u << std::countr_zero(t);
    return r;
  });
}
template <class T> unsigned __match_all_sync(unsigned m, T v, int* pred, SIMT_SITE) {
  static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>, "__match_all_sync: 32/64-bit values");
  const unsigned r = simt::group_op(simt::OP_MATCH_ALL, m, simt::bits_of(v), SIMT_HERE, [](uint32_t g, const uint64_t* b, int l) {
    for (uint32_t t = g; t; t &= t - 1) if (b[std::countr_zero(t)] != b[l]) return 0u;
    return g;
  });
  *pred = r != 0;
  return r;
}
// sm_80+: warp reductions of 32-bit integers.
#define SIMT_REDUCE(NAME, OP, T, INIT, EXPR)                                                                   \
  inline T NAME(unsigned m, T v, SIMT_SITE) {                                                                 \
    return simt::group_op(simt::OP, m, uint64_t(uint32_t(v)), SIMT_HERE, [](uint32_t g, const uint64_t* b, int) { \
      T a = INIT;                                                                                             \
      for (uint32_t t = g; t; t &= t - 1) { const T x = T(uint32_t(b[std::countr_zero(t)])); a = EXPR; }    \
      return a;                                                                                               \
    });                                                                                                       \
  }
SIMT_REDUCE(__reduce_add_sync, OP_REDUCE_ADD, unsigned, 0u, a + x)
SIMT_REDUCE(__reduce_add_sync, OP_REDUCE_ADD, int, 0, int(unsigned(a) + unsigned(x)))
SIMT_REDUCE(__reduce_min_sync, OP_REDUCE_MIN, unsigned, ~0u, std::min(a, x))
SIMT_REDUCE(__reduce_min_sync, OP_REDUCE_MIN, int, INT32_MAX, std::min(a, x))
SIMT_REDUCE(__reduce_max_sync, OP_REDUCE_MAX, unsigned, 0u, std::max(a, x))
SIMT_REDUCE(__reduce_max_sync, OP_REDUCE_MAX, int, INT32_MIN, std::max(a, x))
SIMT_REDUCE(__reduce_and_sync, OP_REDUCE_AND, unsigned, ~0u, a & x)
SIMT_REDUCE(__reduce_or_sync, OP_REDUCE_OR, unsigned, 0u, a | x)
SIMT_REDUCE(__reduce_xor_sync, OP_REDUCE_XOR, unsigned, 0u, a ^ x)
#undef SIMT_REDUCE

// Atomics: the fibers of a block interleave only at synchronization points, so these are atomic by
// construction; std::atomic_ref makes them atomic for TSan too.
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
inline unsigned atomicDec(unsigned* a, unsigned v) {
  return simt_atomic_rmw(a, [&](unsigned o) { return (o == 0 || o > v) ? v : o - 1; });
}
#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer does not model standalone fences (GCC warns: -Wtsan).  Every atomic of this emulator is a
// seq_cst read-modify-write (simt_atomic_rmw, atomicAdd, ...), which TSan does model and which orders what
// the kernels' fences order (a fence before an arrival counter); so under TSan the fences are left out, and
// a kernel that relied on a fence with plain loads and stores would show up as the race it is.
inline void __threadfence() {}
inline void __threadfence_block() {}
#else
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
#endif
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
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero((unsigned)x); }
inline int __clzll(long long x) { return std::countl_zero((unsigned long long)x); }
inline int __ffs(int x) { return x ? std::countr_zero((unsigned)x) + 1 : 0; }
inline int __ffsll(long long x) { return x ? std::countr_zero((unsigned long long)x) + 1 : 0; }
inline unsigned __brev(unsigned x) { unsigned r = 0; for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i); return r; }
// CUDA's min/max: fminf/fmaxf semantics for floating point (a NaN operand loses), the usual
// integer promotions otherwise.
template <class A, class B> std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
  else return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B> std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
  else return C(a) < C(b) ? C(b) : C(a);
}

// nvcuda::wmma stand-in, always: a kernel's own `#include <mma.h>` may find the toolkit's header
// first (torch's build puts the CUDA include folder ahead of csrc/sim), which is empty under g++.
#include "mma.h"
