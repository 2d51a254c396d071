// profile_rt.h -- the counting build of the CUDA-on-CPU emulator: Nsight-style memory metrics of the
// kernels, counted exactly from their own source (docs/profiling.md).
//
// How: the translation units holding the kernels are compiled with g++'s ThreadSanitizer
// instrumentation but linked WITHOUT libtsan:
//     g++ -O2 -fsanitize=thread -fno-tree-sra -fno-tree-vectorize -g1 -fvisibility=hidden
//         -include csrc/sim/profile_rt.h  kernels.cpp ...   +  csrc/sim/profile_rt.cpp (once per module)
// g++ then calls __tsan_read4(addr), __tsan_write16(addr), ... before every load and store, and
// profile_rt.cpp implements those functions: each lane's access is recorded with its program point
// (the return address) and regrouped into warp-level requests (see profile_rt.cpp).  The kernels'
// source is not changed.  -fno-tree-sra keeps a float4/Vec<T,4> access one 16-byte access (scalar
// replacement would split it into four 4-byte ones), -fno-tree-vectorize keeps g++ from merging
// lanes' scalar accesses into vector ones the GPU code does not have; -g1 gives the line table for
// per-source-line counts; -fvisibility=hidden keeps this emulator copy apart from the plain one.
//
// This header must come first in every instrumented translation unit of a module (it defines the
// emulator's profiling hooks, then includes simt.h): the hooks are empty macros in every other build.
#pragma once
#if !defined(__SANITIZE_THREAD__)
#error "profile_rt.h: compile the counting build with -fsanitize=thread (linked without libtsan; see this header)"
#endif
#include <cstddef>
#include <cstdint>

struct dim3;
namespace simt {
struct Block;
struct Fiber;
}  // namespace simt
namespace simt_prof {
void on_launch_begin(simt::Block& b, const void* entry, const dim3& grid, const dim3& block);
void on_launch_end(simt::Block& b, bool failed);
void on_barrier_release(simt::Block& b);
void on_block_end(simt::Block& b);
void on_collective(simt::Block& b, simt::Fiber& me, unsigned op, uint32_t mask);
}  // namespace simt_prof
#define SIMT_PROF_LAUNCH_BEGIN(block, entry, grid, threads) ::simt_prof::on_launch_begin(block, entry, grid, threads)
#define SIMT_PROF_LAUNCH_END(block, failed) ::simt_prof::on_launch_end(block, failed)
#define SIMT_PROF_BARRIER_RELEASE(block) ::simt_prof::on_barrier_release(block)
#define SIMT_PROF_BLOCK_END(block) ::simt_prof::on_block_end(block)
#define SIMT_PROF_COLLECTIVE(block, fiber, op, mask) ::simt_prof::on_collective(block, fiber, op, mask)
#ifndef SIMT_USE_CUDA_HEADERS
#define SIMT_USE_CUDA_HEADERS
#endif
#include "simt.h"

// The C API every counting module exports (profile_rt.cpp), used from Python through ctypes
// (pyops/profile.py): begin/end a recording, register global-memory ranges, read the launches as JSON.
extern "C" {
// Start recording (forgets earlier launches and keeps the registered ranges).  Returns 0.
__attribute__((visibility("default"))) int simt_prof_begin(void);
// Stop recording; returns the number of launches recorded.
__attribute__((visibility("default"))) int simt_prof_end(void);
// [p, p + n) is global memory (a tensor's storage, a cudaMalloc'd buffer).  It is given a virtual base
// aligned as cudaMalloc aligns (to 2^40 here, so to 256 bytes), so sector counts do not depend on where the
// host allocator put it.  A range overlapping earlier ones replaces them (the host reused the memory).
__attribute__((visibility("default"))) void simt_prof_register(const void* p, size_t n);
// Forget the range starting at p (its memory was freed); forget every range.
__attribute__((visibility("default"))) void simt_prof_unregister(const void* p);
__attribute__((visibility("default"))) void simt_prof_clear_ranges(void);
// The recorded launches as a JSON array (valid until the next call of any simt_prof_ function).
__attribute__((visibility("default"))) const char* simt_prof_json(void);
// The emulator redirect (simt::Redirect) through which a plain cuda-sim module sends its launches to this
// module's instrumented copies of the same kernels while recording.
__attribute__((visibility("default"))) const void* simt_prof_redirect(void);
}
