// adam.cpp -- PyTorch glue of the CUDA Adam/AdamW step: checks, the host side of `step`, the
// tensor table, dtype dispatch, current stream.  The kernel and its launch plan are in
// kernels/cuda/adam.cuh.  Compiled twice (see glue.h): pyops::adam_step for CUDA tensors and
// pyops_sim::adam_step for the emulator.
#include "csrc/adam.h"
#include "csrc/cuda/glue.h"
#include "kernels/cuda/adam.cuh"

namespace pyops::cuda {
namespace {

// Fills the table for params [start, start + count) and launches once.
template <class T>
void launch_table(const AdamArgs& a, const AdamHyper& h, const std::vector<double>& steps, const void* lr_ptr,
                  size_t start, size_t count, Stream stream) {
  using A = acc_t<T>;
  AdamLaunch<T> L;
  L.hyper = h;
  L.lr_ptr = lr_ptr;
  L.lr_f64 = lr_ptr != nullptr && a.lr_tensor->scalar_type() == at::kDouble;
  L.capturable = a.capturable;
  L.step_f64 = a.steps[start].scalar_type() == at::kDouble;
  L.counters = a.capturable ? a.counters->data_ptr<int>() + start : nullptr;
  L.n_tensors = int(count);
  int64_t tiles = 0;
  for (size_t k = 0; k < count; ++k) {
    const size_t i = start + k;
    AdamTensor<T>& e = L.tensors[k];
    e.param = ptr<T>(a.params[i]);
    e.grad = ptr<const T>(a.grads[i]);
    e.exp_avg = ptr<A>(a.exp_avgs[i]);
    e.exp_avg_sq = ptr<A>(a.exp_avg_sqs[i]);
    e.max_exp_avg_sq = h.amsgrad ? ptr<A>(a.max_exp_avg_sqs[i]) : nullptr;
    e.numel = a.params[i].numel();
    e.first_tile = tiles;
    e.step = a.capturable ? 0.0 : steps[i];
    e.step_ptr = a.capturable ? a.steps[i].data_ptr() : nullptr;
    tiles += adam_tiles(e.numel, sizeof(A));
  }
  L.total_tiles = tiles;
  check_launch(adam_step<T>(L, stream), kAdamOp);
}

void adam_step_impl(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                    at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                    const std::optional<at::Tensor>& lr_tensor, const std::optional<at::Tensor>& counters,
                    bool capturable, at::ArrayRef<double> hparams) {
  const AdamArgs a(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters,
                   capturable, hparams);
  check_adam(a, /*allow_half=*/true);
  check_adam_counters(a);
  const size_t n = params.size();
  if (n == 0) return;
  check_device(params[0], kAdamOp, "params");
  const at::Tensor& p0 = params[0];
  DeviceGuard guard(p0);
  // Non-capturable: torch.optim's CPU steps advance here, on the host.  Capturable: in the kernel.
  const std::vector<double> steps = capturable ? std::vector<double>() : adam_advance_host_steps(state_steps);
  // A tensor lr on the params' device is read by the kernel (no sync); on the CPU, here.
  const bool lr_on_device = lr_tensor && lr_tensor->device() == p0.device();
  AdamHyper h = a.h;
  if (lr_tensor && !lr_on_device) h.lr = read_scalar(*lr_tensor);
  const void* lr_ptr = lr_on_device ? lr_tensor->const_data_ptr() : nullptr;
  const Stream stream = current_stream(p0);
  dispatch_float(p0.scalar_type(), kAdamOp, [&](auto tag) {
    using T = typename decltype(tag)::type;
    for (size_t start = 0; start < n; start += kAdamMaxTensors)
      launch_table<T>(a, h, steps, lr_ptr, start, std::min<size_t>(kAdamMaxTensors, n - start), stream);
  });
}
static_assert(std::is_same_v<decltype(adam_step_impl), AdamStepSig>);

}  // namespace

PYOPS_LIBRARY_IMPL(PYOPS_CUDA_KEY, m) { m.impl("adam_step", &adam_step_impl); }
// A sparse gradient sends the call to the sparse key: registered so that the checks answer with
// "Adam does not support sparse gradients" instead of the dispatcher's "could not run".
#if defined(PYOPS_SIM)
PYOPS_LIBRARY_IMPL(SparseCPU, m) { m.impl("adam_step", &adam_step_impl); }
#else
PYOPS_LIBRARY_IMPL(SparseCUDA, m) { m.impl("adam_step", &adam_step_impl); }
#endif

}  // namespace pyops::cuda
