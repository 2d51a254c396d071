// Softmax tour, step 5 of 5: 16-byte loads -- the shipped kernels (kernels/cuda/softmax.cuh).
//
// Steps 3 and 4 with one more idea: every access moves a float4, 16 bytes (LDG.E.128), when the
// pointers, cols and row strides are multiples of 4 floats.  A warp-wide load then carries 512
// bytes (16 sectors) instead of 128: a quarter of the load instructions for the same bytes.  The
// shipped header picks warp per row up to 1024 columns and block per row above, and is written once
// for float, double, half and bfloat16 (accumulating in float), with row strides, grid-stride loops
// and 64-bit offsets.  This file is not a copy: it instantiates the library's own kernels.
//
// Launch (the plan of common.cuh, row_plan): cols <= 1024: block (32, 4), grid (ceil(rows / 4));
// else block (clamp(next_pow2(cols / 32), 128, 1024)), grid (rows).
#include "kernels/cuda/softmax.cuh"

template __global__ void pyops::cuda::softmax_fwd_warp_kernel<float, 4, false>(
    const float* __restrict__ x, int64_t ldx, float* __restrict__ y, int64_t ldy, int64_t rows, int64_t cols);
template __global__ void pyops::cuda::softmax_fwd_block_kernel<float, 4, false>(
    const float* __restrict__ x, int64_t ldx, float* __restrict__ y, int64_t ldy, int64_t rows, int64_t cols);
