// glue.h -- what the PyTorch side of every CUDA op shares: device checks, the current stream, the
// device guard, dtype dispatch to the kernels' storage types, and the launch check.
//
// Each csrc/cuda/<op>.cpp is compiled twice from the same source:
//   real extension (pyops._C)     registers `pyops::<op>` for the CUDA dispatch key, launches with
//                                 <<<>>> on the current CUDA stream (device code: csrc/cuda/kernels.cu)
//   emulation (pyops._C_sim)      PYOPS_SIM: registers `pyops_sim::<op>` for the CPU dispatch key;
//                                 the same launch functions run on the CPU (csrc/sim/kernels.cpp)
#pragma once
#include "csrc/common.h"
#include "kernels/cuda/common.cuh"

#include <torch/library.h>

#if !defined(PYOPS_SIM)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pyops::cuda {

#if defined(PYOPS_SIM)
#define PYOPS_CUDA_KEY CPU
constexpr const char* kBackendName = "cuda-sim";
constexpr const char* kDeviceWanted = "a CPU tensor (cuda-sim runs the CUDA kernels on the CPU)";
inline bool on_backend_device(const at::Tensor& t) { return t.is_cpu(); }
inline Stream current_stream(const at::Tensor&) { return nullptr; }
struct DeviceGuard {
  explicit DeviceGuard(const at::Tensor&) {}
};
#else
#define PYOPS_CUDA_KEY CUDA
constexpr const char* kBackendName = "cuda";
constexpr const char* kDeviceWanted = "a CUDA tensor";
inline bool on_backend_device(const at::Tensor& t) { return t.is_cuda(); }
inline Stream current_stream(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}
struct DeviceGuard {
  explicit DeviceGuard(const at::Tensor& t) : g(t.device()) {}
  c10::cuda::CUDAGuard g;
};
#endif

inline void check_device(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(on_backend_device(t), op, ": backend ", kBackendName, " expected ", name, " to be ", kDeviceWanted,
              ", got a tensor on ", t.device());
}

template <class T> struct Tag { using type = T; };

// Calls f(Tag<T>{}) with T the kernels' storage type for `st` (float, double, __half, __nv_bfloat16).
template <class F> decltype(auto) dispatch_float(at::ScalarType st, const char* op, F&& f) {
  switch (st) {
    case at::kFloat: return f(Tag<float>{});
    case at::kDouble: return f(Tag<double>{});
    case at::kHalf: return f(Tag<__half>{});
    case at::kBFloat16: return f(Tag<__nv_bfloat16>{});
    default: TORCH_CHECK(false, op, ": unsupported dtype ", st, " (expected float32, float64, float16 or bfloat16)");
  }
}

template <class T> T* ptr(const at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }

inline void check_launch(const char* err, const char* op) {
  TORCH_CHECK(err == nullptr, op, " (backend ", kBackendName, "): CUDA kernel launch failed: ", err);
}

}  // namespace pyops::cuda
