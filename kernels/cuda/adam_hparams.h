// adam_hparams.h -- the hyperparameters of one Adam/AdamW step, declared ONCE.  Torch-free (nvcc, the emulator
// and the CPU kernel include it through adam.cuh).
//
// Everything else is derived from this list:
//   * struct AdamHyper below: the hyperparameters adam.cuh's update math reads (by value in the CUDA launch);
//   * the `float[] hparams` argument of the adam_step and mlp_train_step ops (csrc/ops.cpp): these values in
//     this order, a flag as 0 or 1; parse_adam_hparams (csrc/adam.h) turns it into an AdamHyper and checks
//     each value against its rule ("adam_step: beta1 must be in [0, 1), got 1");
//   * pyops._C.adam_hparams() (csrc/ops.cpp): this list for Python -- pyops.optim reads a param group into the
//     argument with it and takes the defaults of the hyperparameters that torch.optim.Adam has not from it;
//     the Triton launcher (kernels/adam.py) gets the values by name.
// Adding a hyperparameter: a line here, its math in adam.cuh's adam_update (CPU and CUDA) and in
// kernels/adam.py (Triton).  The struct keeps this order, so adding one changes the layout of AdamLaunch, which
// pyops/tour.py mirrors from pyops._C.adam_hparams() by itself.
//
// X(type, name, default, param-group key, valid, rule): `type` double or bool; `name` the struct field, the
// name Python and torch.optim's functional adam() use; the param-group key ("betas[0]": the first element of
// the group's "betas"); `valid`, an expression of the value `v`, and `rule`, its words for the error message.
#pragma once

#define PYOPS_ADAM_HPARAMS(X)                                                      \
  X(double, lr, 1e-3, "lr", v >= 0, ">= 0")                                        \
  X(double, beta1, 0.9, "betas[0]", v >= 0 && v < 1, "in [0, 1)")                  \
  X(double, beta2, 0.999, "betas[1]", v >= 0 && v < 1, "in [0, 1)")                \
  X(double, eps, 1e-8, "eps", v >= 0, ">= 0")                                      \
  X(double, weight_decay, 0.0, "weight_decay", v >= 0, ">= 0")                     \
  X(bool, amsgrad, false, "amsgrad", true, "")                                     \
  X(bool, maximize, false, "maximize", true, "")                                   \
  X(bool, decoupled_weight_decay, false, "decoupled_weight_decay", true, "")

namespace pyops::cuda {

// Hyperparameters of one call (one param group): the fields above, in their order, with their defaults.
struct AdamHyper {
#define PYOPS_ADAM_FIELD(type, name, default_value, key, valid, rule) type name = default_value;
  PYOPS_ADAM_HPARAMS(PYOPS_ADAM_FIELD)
#undef PYOPS_ADAM_FIELD
};

#define PYOPS_ADAM_COUNT(type, name, default_value, key, valid, rule) +1
constexpr int kAdamNumHparams = 0 PYOPS_ADAM_HPARAMS(PYOPS_ADAM_COUNT);
#undef PYOPS_ADAM_COUNT
#define PYOPS_ADAM_NAME(type, name, default_value, key, valid, rule) #name ", "
constexpr const char* kAdamHparamNames = PYOPS_ADAM_HPARAMS(PYOPS_ADAM_NAME);  // "lr, beta1, ..., "
#undef PYOPS_ADAM_NAME

}  // namespace pyops::cuda
