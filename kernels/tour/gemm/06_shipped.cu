// GEMM tour, step 6 of 6: the shipped kernels (kernels/cuda/linear_relu.cuh), CUDA and tensor cores.
//
// linear_relu_simt64_kernel is step 5 grown up: the same 64 x 64 x 16 tile, 4 x 4 outputs per
// thread, 16-byte loads and one vector of padding, plus (1) the next tile is loaded into registers
// while the current one is multiplied (the loads travel during the math -- invisible to the
// emulator's counts, which have no timing), (2) the epilogue stores 4 outputs as one float4 (steps 3
// to 5 store scalars 4 floats apart: 16 sectors per request; now 4x fewer store requests) and reads
// the bias as one float4 per thread (the steps before: 4-byte loads 4 floats apart), (3)
// operands given by (pointer, strides), so the backward GEMMs read W^T and x^T without copies, and
// the ReLU mask of the backward is applied on load, (4) the transposed tile stores are swizzled: a
// thread stores its 4 elements in the order e ^ (q & 2), q = its k-group, which moves the k-groups
// that padding left on the same banks onto banks of their own -- step 5's 2-way conflicts become
// none (the same values land in the same places).  linear_relu_wmma_kernel runs the same tiles on
// tensor cores: a warp multiplies 16 x 16 x 16 half-precision fragments (nvcuda::wmma, accumulating
// in fp32); 4 warps own a 64 x 64 tile (the tour's profile shows the float kernel).
// Both take one GemmArgs struct.  This file is not a copy: it instantiates the library's kernels.
//
// Launch (linear_gemm_plan): block (256) simt / (128) wmma, grid (ceil(M / 64) * ceil(N / 64)),
// dynamic shared memory simt_smem_bytes / wmma_smem_bytes.
#include "kernels/cuda/linear_relu.cuh"

template __global__ void pyops::cuda::linear_relu_simt64_kernel<float, pyops::cuda::GemmDir::Red,
                                                                pyops::cuda::GemmDir::Red, 4>(
    const pyops::cuda::GemmArgs<float> p);
template __global__ void pyops::cuda::linear_relu_wmma_kernel<__half, pyops::cuda::GemmDir::Red,
                                                              pyops::cuda::GemmDir::Red, 8>(
    const pyops::cuda::GemmArgs<__half> p);
