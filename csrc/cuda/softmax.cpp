// softmax.cpp -- PyTorch glue of the CUDA softmax / log-softmax: checks, allocation, dtype dispatch,
// current stream.  The kernels and their launch plan are in kernels/cuda/softmax.cuh.
// Compiled twice (see glue.h): pyops:: ops for CUDA tensors and pyops_sim:: ops for the emulator.
#include "csrc/softmax.h"
#include "csrc/cuda/glue.h"
#include "kernels/cuda/softmax.cuh"

namespace pyops::cuda {
namespace {

at::Tensor softmax_fwd_impl(const at::Tensor& x, int64_t dim, bool log) {
  const char* op = softmax_name(log);
  check_device(x, op, "input");
  DeviceGuard guard(x);
  return softmax_forward_rows(x, dim, log, /*allow_half=*/true, [&](const Rows& in, at::Tensor& y) {
    dispatch_float(x.scalar_type(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      check_launch(softmax_forward<T>(ptr<const T>(in.data), in.ld, ptr<T>(y), in.cols, in.rows, in.cols, log,
                                      current_stream(x)),
                   op);
    });
  });
}

at::Tensor softmax_bwd_impl(const at::Tensor& grad, const at::Tensor& out, int64_t dim, bool log) {
  const char* op = softmax_backward_name(log);
  check_device(out, op, "output");
  DeviceGuard guard(out);
  return softmax_backward_rows(grad, out, dim, log, /*allow_half=*/true,
                               [&](const Rows& g, const Rows& y, at::Tensor& gx) {
    dispatch_float(out.scalar_type(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      check_launch(softmax_backward<T>(ptr<const T>(g.data), g.ld, ptr<const T>(y.data), y.ld, ptr<T>(gx), y.cols,
                                       y.rows, y.cols, log, current_stream(out)),
                   op);
    });
  });
}

PYOPS_SOFTMAX_OPS(softmax_fwd_impl, softmax_bwd_impl)

}  // namespace

PYOPS_LIBRARY_IMPL(PYOPS_CUDA_KEY, m) { PYOPS_SOFTMAX_REGISTER(m); }

}  // namespace pyops::cuda
