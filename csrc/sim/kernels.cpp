// kernels.cpp -- the CUDA kernels of kernels/cuda, compiled by g++ for the CUDA-on-CPU emulator
// (backend "cuda-sim").  Exactly the translation unit nvcc compiles (csrc/cuda/kernels.cu), with the
// emulator (csrc/sim/simt.h) providing threadIdx, __syncthreads, shuffles and the launch.
// Torch-free: the PyTorch glue (csrc/cuda/*.cpp built with PYOPS_SIM) calls in through the launch
// functions declared in the kernel headers.
#define PYOPS_SIM_DEVICE
#include "csrc/cuda/kernels.cu"

namespace pyops::sim {
std::map<std::string, long> launch_counts() {
  std::lock_guard<std::mutex> l(::simt::counts_mutex());
  return ::simt::launch_counts();
}
void reset_launch_counts() {
  std::lock_guard<std::mutex> l(::simt::counts_mutex());
  ::simt::launch_counts().clear();
}
}  // namespace pyops::sim

// The profiler (pyops.profile) switches the counting build (pyops._C_prof) in and out here: while `r` is
// not null, launches of kernels that build also holds run there, counted (simt::Redirect in simt.h).
extern "C" __attribute__((visibility("default"))) void pyops_sim_set_redirect(const void* r) {
  ::simt::redirect().store(static_cast<const ::simt::Redirect*>(r), std::memory_order_relaxed);
}
