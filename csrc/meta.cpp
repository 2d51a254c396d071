// meta.cpp -- the Meta kernels of the backend ops, in every namespace (pyops; pyops_triton; pyops_sim when this
// file is compiled again with PYOPS_SIM).  Each is made of the op's own checks and output allocation from
// csrc/<op>.h -- the functions the CPU, CUDA and Triton kernels run before theirs -- with no kernel after
// them.  They take symbolic sizes (csrc/common.h), so torch.compile (dynamic shapes included) and
// torch.library.opcheck trace every op through them; there is no second, Python copy of the shapes.
//
// A new op: its <op>_forward_meta / <op>_backward_meta beside its checks in csrc/<op>.h, one m.impl each below.
#include <torch/library.h>

#include "csrc/adam.h"
#include "csrc/common.h"
#include "csrc/cross_entropy.h"
#include "csrc/linear_relu.h"
#include "csrc/softmax.h"

namespace pyops::meta {
namespace {

PYOPS_SOFTMAX_OPS(softmax_forward_meta, softmax_backward_meta)

constexpr auto& linear_relu_fwd = linear_relu_forward_meta;  // the names PYOPS_LINEAR_IMPLS registers
constexpr auto& linear_relu_bwd = linear_relu_backward_meta;

void register_meta(torch::Library& m) {
  PYOPS_SOFTMAX_REGISTER(m);
  PYOPS_LINEAR_IMPLS(m);  // linear_relu_fwd/_bwd and mlp_fwd/_bwd: csrc/linear_relu.h's loop over the layers above
  m.impl("cross_entropy_fwd", &cross_entropy_forward_meta);
  m.impl("cross_entropy_bwd", &cross_entropy_backward_meta);
  m.impl("nll_loss_fwd", &nll_loss_forward_meta);
  m.impl("nll_loss_bwd", &nll_loss_backward_meta);
  m.impl("adam_step", &adam_step_meta);  // the checks alone: the op mutates its arguments, returns nothing
}

}  // namespace
}  // namespace pyops::meta

PYOPS_LIBRARY_IMPL(Meta, m) { pyops::meta::register_meta(m); }
#if !defined(PYOPS_SIM)
TORCH_LIBRARY_IMPL(pyops_triton, Meta, m) { pyops::meta::register_meta(m); }
#endif
