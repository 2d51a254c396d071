// kernels.cu -- the single nvcc translation unit: every kernel header of kernels/cuda, with its
// launch functions instantiated for float, double, __half and __nv_bfloat16.  Torch-free, so nvcc
// compiles it in seconds; the PyTorch glue that calls these functions is csrc/cuda/<op>.cpp.
// csrc/sim/kernels.cpp compiles this same file with g++ and the CUDA-on-CPU emulator.
#define PYOPS_INSTANTIATE
#include "kernels/cuda/softmax.cuh"
#include "kernels/cuda/adam.cuh"
#include "kernels/cuda/linear_relu.cuh"
#include "kernels/cuda/cross_entropy.cuh"
