// profile_module.cpp -- the Python module pyops._C_prof: the counting build's C API (profile_rt.h) is reached
// through ctypes (pyops/profile.py); this file adds the module object and a CPU allocator that registers
// every tensor allocated while a recording is on as global memory (simt_prof_register), so the outputs and
// workspaces the PyTorch glue allocates are counted like the inputs.
#include "profile_rt.h"

#include <Python.h>
#include <c10/core/CPUAllocator.h>

namespace {
// The allocation keeps its inner DataPtr; freeing it unregisters the range first, so memory the host reuses
// later (the emulator's own data, say) is not taken for a tensor.
struct Held {
  c10::DataPtr inner;
};
void release(void* ctx) {
  auto* h = static_cast<Held*>(ctx);
  simt_prof_unregister(h->inner.get());
  delete h;
}
struct RegisteringAllocator final : c10::Allocator {
  c10::Allocator* inner = nullptr;
  c10::DataPtr allocate(size_t n) override {
    c10::DataPtr d = inner->allocate(n);
    if (!n || !d.get()) return d;
    void* p = d.get();
    const c10::Device dev = d.device();
    simt_prof_register(p, n);
    return c10::DataPtr(p, new Held{std::move(d)}, &release, dev);
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { inner->copy_data(dest, src, count); }
};
RegisteringAllocator registering;
PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C_prof", "pyops' emulator, counting build (see pyops.profile)",
                          -1, nullptr};
}  // namespace

// on != 0: tensors allocated on the CPU from now on are registered; 0: the previous allocator again.
extern "C" __attribute__((visibility("default"))) void pyops_prof_cpu_allocator(int on) {
  if (on) {
    if (registering.inner) return;
    registering.inner = c10::GetCPUAllocator();
    c10::SetCPUAllocator(&registering, /*priority=*/100);
  } else if (registering.inner) {
    c10::SetCPUAllocator(registering.inner, /*priority=*/100);
    registering.inner = nullptr;
  }
}

PyMODINIT_FUNC PyInit__C_prof(void) { return PyModule_Create(&module_def); }
