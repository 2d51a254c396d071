// sim_api.cpp -- the emulator's settings and diagnostics for the driver, whose own translation units
// are compiled like the PyTorch glue (without csrc/sim/simt.h).  simt.h's state lives in inline
// functions' statics, shared with csrc/sim/kernels.cpp in the one binary.
#define SIMT_USE_CUDA_HEADERS
#include "simt.h"

namespace simt_api {
void set_strict(bool on) { simt::cfg().strict = on; }
void reset_diagnostics() { simt::reset_diagnostics(); }
std::string diagnostics_report() {
  std::string r;
  for (const auto& [kind, d] : simt::diagnostics())
    r += kind + " x" + std::to_string(d.count) + " (first: " + d.first + "); ";
  return r;
}
}  // namespace simt_api
