// adam_vec.h -- the CPU Adam update on SIMD lanes, shared by adam_step's kernel (adam.cpp) and the
// fused backward + update of mlp_bwd_adam (linear_relu.cpp), so both run the same instructions per
// element and agree bit for bit.
//
// The update is THE function of kernels/cuda/adam.cuh (adam_update), the same one the CUDA kernel
// runs per element: that header is included here without its device part (PYOPS_ADAM_MATH_ONLY), and
// AdamMath<Vectorized<T>> below gives it fma / sqrt / max / neg on SIMD vectors (8 floats / 4 doubles
// per AVX2 instruction).
#pragma once
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <optional>

#include "csrc/adam.h"
#define PYOPS_ADAM_MATH_ONLY
#include "kernels/cuda/adam.cuh"

namespace pyops::cuda {
// The lane type of the CPU kernels: a SIMD vector of S.  at::vec::maximum propagates NaN like torch.maximum.
template <class S> struct AdamMath<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  static V fma(const V& a, const V& b, const V& c) { return at::vec::fmadd(a, b, c); }
  static V sqrt(const V& a) { return a.sqrt(); }
  static V neg(const V& a) { return a.neg(); }
  static V max(const V& a, const V& b) { return at::vec::maximum(a, b); }
};
}  // namespace pyops::cuda

namespace pyops::cpu {

// cnt lanes of one tensor at p, m, v (vm: nullptr without amsgrad) updated with the gradient lanes g;
// cnt < V::size() only for the last, partial vector of a range.
template <class T>
inline void adam_lanes(T* p, const at::vec::Vectorized<T>& g, T* m, T* v, T* vm, int cnt,
                       const cuda::AdamCoeffs<T>& c, const cuda::AdamHyper& h) {
  using V = at::vec::Vectorized<T>;
  V pv = V::loadu(p, cnt), mv = V::loadu(m, cnt), vv = V::loadu(v, cnt);
  V vmv = h.amsgrad ? V::loadu(vm, cnt) : V(T(0));
  cuda::adam_update<V, T>(pv, g, mv, vv, vmv, c, h);
  pv.store(p, cnt);
  mv.store(m, cnt);
  vv.store(v, cnt);
  if (h.amsgrad) vmv.store(vm, cnt);
}

// The CPU kernel of adam_step (adam.cpp): checks, host steps, one parallel pass over all tensors.
void adam_step_cpu(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                   at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                   const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& counters, double lr,
                   double beta1, double beta2, double weight_decay, double eps, bool amsgrad, bool maximize,
                   bool decoupled_weight_decay, bool capturable);

}  // namespace pyops::cpu
