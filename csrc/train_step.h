// train_step.h -- the C++ signature of the mlp_train_step op (its schema: csrc/ops.cpp; its kernel:
// csrc/autograd.cpp), for the typed, unboxed call that pyops.mlp_train_step's cached plan makes
// (TrainStepCall in csrc/ops.cpp).  autograd.cpp checks at compile time that its kernel has this type.
#pragma once
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <optional>

namespace pyops {

using MlpTrainStepSig = at::Tensor(
    const at::Tensor& input, const at::Tensor& target, at::TensorList weights, at::TensorList biases,
    const c10::List<bool>& with_bias, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
    at::TensorList max_exp_avg_sqs, at::TensorList state_steps, const std::optional<at::Tensor>& lr_tensor,
    const std::optional<at::Tensor>& counters, bool capturable, at::ArrayRef<double> hparams, bool log_softmax_nll,
    const std::optional<at::Tensor>& weight, int64_t reduction, int64_t ignore_index, double label_smoothing);

}  // namespace pyops
