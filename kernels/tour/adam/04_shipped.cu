// Adam tour, step 4 of 4: every tensor in one launch -- the shipped kernel (kernels/cuda/adam.cuh).
//
// Steps 1 to 3 update one flat buffer.  A model's parameters are separate tensors (a weight and a
// bias per layer), and a kernel like step 3 takes one pointer per array: one launch per tensor,
// each a few microseconds of launch cost on a GPU for a tensor that may be a few hundred bytes.
// adam_multi_tensor_kernel takes a table of up to 54 tensors by value in its kernel argument
// (pointers to param, grad, m, v, numel, first tile; within the 4 KB kernel-parameter limit), cuts
// every tensor into tiles of 4096 floats, numbers the tiles of all tensors one after another, and
// block b takes tiles b, b + gridDim, ... (a grid-stride loop over tiles), finding the tile's tensor
// in the table: the 8 tensors of the tour's input take 1 launch instead of 8 (a count of launches
// the tests make, the profile below is that one launch).  Inside a tile it is step 3 grown up: each
// thread issues the 16-byte loads of 4 vectors of every array before computing (more bytes in
// flight per thread -- time again, invisible to the counts), with scalar accesses for a tensor
// whose pointers are not 16-byte aligned and for each tensor's last partial vector.  The per-tensor
// scalars are computed once per block and tensor; the update is torch's formula in torch's order
// (one function shared with the CPU kernel), with AMSGrad, maximize, fp16/bf16 parameters with
// fp32 state, and a capturable mode for CUDA graphs.  What the counts cannot show: in the machine
// code (cuobjdump -sass) nvcc keeps step 3's float4 loads and stores as LDG.E.128 / STG.E.128, and
// this kernel's loads as LDG.E.128, but splits its 16-byte stores into four 4-byte STG.E each; the
// emulator counts the stores the source asks for, one 16-byte request.  This file is not a copy: it
// instantiates the library's kernel.
//
// Launch (adam_plan): block (256), grid (min(total tiles, 8192)).
#include "kernels/cuda/adam.cuh"

template __global__ void pyops::cuda::adam_multi_tensor_kernel<float>(const pyops::cuda::AdamLaunch<float> args);
