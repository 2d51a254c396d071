// profile_kernels.cpp -- the kernels of kernels/cuda in the emulator's counting build (pyops._C_prof):
// the translation unit of the cuda-sim extension (csrc/sim/kernels.cpp) compiled again with the memory-access
// instrumentation described in csrc/sim/profile_rt.h.  While a recording is on, pyops._C_sim sends its launches
// here (simt::Redirect), so an op runs through its usual PyTorch glue and launch plan, counted.
#include "profile_rt.h"
#define PYOPS_SIM_DEVICE
#include "csrc/cuda/kernels.cu"
