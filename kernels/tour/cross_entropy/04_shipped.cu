// Cross-entropy tour, step 4 of 4: 16-byte loads -- the shipped kernel (kernels/cuda/cross_entropy.cuh).
//
// Step 3 with float4 loads (4x fewer load requests, 16 sectors each) when the row length and
// pointers allow, written once for float, double, half and bfloat16, with everything
// F.cross_entropy takes: class weights, ignore_index, label smoothing, [N, C, D] layouts, the
// reductions (none writes a loss per row; mean and sum go through a second, one-block kernel), a
// device-side check that every target is a valid class, and the row's log-sum-exp saved for the
// backward.  This file is not a copy: it instantiates the library's warp-per-row kernel (rows of up
// to 1024 classes; longer rows take the block-per-row kernel).
//
// Launch (the plan of common.cuh, row_plan): block (32, 4), grid (ceil(rows / 4)).
#include "kernels/cuda/cross_entropy.cuh"

template __global__ void pyops::cuda::cross_entropy_fwd_warp_kernel<float, 4, false>(
    const float* __restrict__ x, pyops::cuda::ClassRows xl, const int64_t* __restrict__ target,
    const float* __restrict__ weight, int64_t ignore_index, pyops::cuda::Smoothing<float> sm,
    pyops::cuda::LossOutput<float> out, double* __restrict__ lse);
