// linear_relu.cpp -- PyTorch glue of the CUDA linear / linear+ReLU: checks, allocation, dtype dispatch,
// current stream, and the choice of GEMM operands (which tensor, which strides) for each pass.  The
// kernels and their launch plan are in kernels/cuda/linear_relu.cuh.
// Compiled twice (see glue.h): pyops:: ops for CUDA tensors and pyops_sim:: ops for the emulator.
#include <ATen/Context.h>

#include <atomic>

#include "csrc/cuda/glue.h"
#include "csrc/linear_relu.h"
#include "kernels/cuda/linear_relu.cuh"

#if !defined(PYOPS_SIM)
#include <cuda_runtime_api.h>
#endif

namespace pyops::cuda {
namespace {

// SMs of the tensor's device: the plan gives every SM a block when it can.  The emulator plans for a
// 4-SM device, so that test-sized problems reach every tile shape (see linear_gemm_plan).
int sm_count(const at::Tensor& t) {
#if defined(PYOPS_SIM)
  (void)t;
  return 4;
#else
  static std::atomic<int> cache[64];
  const int dev = t.device().index();
  if (dev < 0 || dev >= 64) return 1;
  int n = cache[dev].load(std::memory_order_relaxed);
  if (n == 0) {
    TORCH_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess,
                "linear_relu: cannot query the SM count of device ", dev);
    cache[dev].store(n, std::memory_order_relaxed);
  }
  return n;
#endif
}

// fp32 GEMMs may use TF32 tensor cores only when torch.backends.cuda.matmul.allow_tf32 says so.
bool tf32_allowed() { return at::globalContext().allowTF32CuBLAS(); }

template <class T> GemmOperand<T> operand(const Matrix& m, bool transposed, const void* relu_out = nullptr) {
  // (i, k) = (row, col) of the matrix, or (col, row) when the GEMM reads it transposed
  GemmOperand<T> op;
  op.ptr = static_cast<const T*>(m.data);
  op.s_out = transposed ? m.cs : m.rs;
  op.s_red = transposed ? m.rs : m.cs;
  op.relu_out = static_cast<const T*>(relu_out);
  return op;
}

template <class T> void run_gemm(const GemmArgs<T>& args, const at::Tensor& like, const char* op) {
  check_launch(linear_gemm<T>(args, tf32_allowed(), sm_count(like), current_stream(like)), op);
}

at::Tensor linear_relu_fwd(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           bool relu) {
  const char* op = linear_name(relu);
  check_linear_args(input, weight, bias, op, /*allow_half=*/true);
  check_device(input, op, "input");
  DeviceGuard guard(input);
  const int64_t N = weight.size(0), K = weight.size(1);
  at::Tensor y = empty_linear_output(input, weight);  // contiguous [M, N]
  const Matrix x = as_matrix(input), w = as_matrix(weight);
  if (x.rows == 0 || N == 0) return y;
  dispatch_float(input.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    GemmArgs<T> a;
    a.a = operand<T>(x, false);  // x: (m, k)
    a.b = operand<T>(w, false);  // W: (n, k)
    a.c = ptr<T>(y);
    a.c_rs = N;
    a.c_cs = 1;
    a.bias = bias ? ptr<const T>(*bias) : nullptr;
    a.relu = relu;
    a.M = x.rows;
    a.N = N;
    a.K = K;
    run_gemm(a, input, op);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> linear_relu_bwd(const at::Tensor& grad_output, const at::Tensor& input,
                                                               const at::Tensor& weight,
                                                               const std::optional<at::Tensor>& output,
                                                               std::array<bool, 3> output_mask) {
  const char* op = check_linear_backward_args(grad_output, input, weight, output, /*allow_half=*/true);
  const bool relu = output.has_value();
  check_device(input, op, "input");
  DeviceGuard guard(input);
  const int64_t N = weight.size(0), K = weight.size(1);
  const auto [gx, gw, gb] = linear_grads(input, weight, output_mask);
  const Matrix x = as_matrix(input), w = as_matrix(weight);
  Matrix g = as_matrix(grad_output), y;
  if (relu) {
    y = as_matrix(*output);
    if (y.rs != g.rs || y.cs != g.cs) {  // the mask is read at the gradient's offsets: give both one layout
      g.hold = grad_output.contiguous(), g.data = g.hold.data_ptr(), g.rs = N, g.cs = 1;
      y.hold = output->contiguous(), y.data = y.hold.data_ptr(), y.rs = N, y.cs = 1;
    }
  }
  const int64_t M = x.rows;
  dispatch_float(input.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    bool bias_done = false;
    if (output_mask[1] && K > 0 && N > 0) {
      // dW[n, k] = sum_m dz[m, n] x[m, k]: A = g^T masked, B = x^T; db = row sums of A, same pass
      GemmArgs<T> a;
      a.a = operand<T>(g, true, relu ? y.data : nullptr);
      a.b = operand<T>(x, true);
      a.c = ptr<T>(gw);
      a.c_rs = gw.stride(0);
      a.c_cs = gw.stride(1);
      a.a_row_sums = output_mask[2] ? ptr<T>(gb) : nullptr;
      a.M = N;
      a.N = K;
      a.K = M;
      run_gemm(a, input, op);
      bias_done = output_mask[2];
    }
    if (output_mask[2] && !bias_done)
      check_launch(linear_bias_grad<T>(static_cast<const T*>(g.data), g.rs, g.cs,
                                       relu ? static_cast<const T*>(y.data) : nullptr, ptr<T>(gb), M, N,
                                       current_stream(input)),
                   op);
    if (output_mask[0] && M > 0 && K > 0) {
      // dx[m, k] = sum_n dz[m, n] W[n, k]: A = g masked, B = W^T
      GemmArgs<T> a;
      a.a = operand<T>(g, false, relu ? y.data : nullptr);
      a.b = operand<T>(w, true);
      a.c = ptr<T>(gx);
      a.c_rs = K;
      a.c_cs = 1;
      a.M = M;
      a.N = K;
      a.K = N;
      run_gemm(a, input, op);
    }
  });
  return {gx, gw, gb};
}

}  // namespace

PYOPS_LIBRARY_IMPL(PYOPS_CUDA_KEY, m) {
  PYOPS_LINEAR_IMPLS(m);
}

}  // namespace pyops::cuda
