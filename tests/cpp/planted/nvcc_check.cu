// nvcc_check.cu -- proves the planted kernels are valid CUDA: nvcc compiles them for sm_80 and sm_90
// with warnings as errors (tests/cpp/Makefile, target planted-nvcc).  Nothing here runs.
#include "kernels.cuh"
template __global__ void planted::sum_uninit_smem_tmpl<float>(const float*, float*, int);
