// smoke.cpp -- pyops from C++ (CMake target pyops_cpp_smoke, run by CTest): the ops registered by
// libpyops (pyops::*, CPU kernels) and libpyops_sim (pyops_sim::*, the CUDA kernels on the emulator),
// called through the dispatcher as a C++ user would, against ATen's softmax.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <string>

namespace {
int failures = 0;

// float32, rows of 1000: the tolerance for reductions over >= 1000 elements (rtol 1e-4, docs/testing.md).
void check(const std::string& what, const at::Tensor& got, const at::Tensor& want) {
  const bool ok = got.sizes() == want.sizes() && at::allclose(got, want, 1e-4, 1e-6);
  printf("%-40s %s (max abs diff %.3g)\n", what.c_str(), ok ? "ok" : "FAIL", (got - want).abs().max().item<double>());
  failures += !ok;
}

void check_namespace(const std::string& ns) {
  auto& d = c10::Dispatcher::singleton();
  auto fwd = [&](const char* op) {
    return d.findSchemaOrThrow((ns + "::" + op).c_str(), "").typed<at::Tensor(const at::Tensor&, int64_t)>();
  };
  auto bwd = [&](const char* op) {
    return d.findSchemaOrThrow((ns + "::" + op).c_str(), "")
        .typed<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>();
  };
  const at::Tensor x = at::randn({67, 1000}) * 3, g = at::randn({67, 1000});
  const at::Tensor y = at::softmax(x, 1), ly = at::log_softmax(x, 1);
  check(ns + "::softmax_fwd", fwd("softmax_fwd").call(x, 1), y);
  check(ns + "::log_softmax_fwd", fwd("log_softmax_fwd").call(x, 1), ly);
  check(ns + "::softmax_bwd", bwd("softmax_bwd").call(g, y, 1), at::_softmax_backward_data(g, y, 1, x.scalar_type()));
  check(ns + "::log_softmax_bwd", bwd("log_softmax_bwd").call(g, ly, 1),
        at::_log_softmax_backward_data(g, ly, 1, x.scalar_type()));
}
}  // namespace

int main() {
  at::manual_seed(0);
  try {
    check_namespace("pyops");
#if PYOPS_SMOKE_SIM
    check_namespace("pyops_sim");
#endif
  } catch (const std::exception& e) {
    printf("exception: %s\n", e.what());
    return 1;
  }
  return failures ? 1 : 0;
}
