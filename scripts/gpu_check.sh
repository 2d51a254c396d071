#!/usr/bin/env bash
# gpu_check.sh -- `make gpu-check`: what can only be checked on a machine WITH an NVIDIA GPU, in one go
# (budget: under 8 minutes on one H100 with 16 cores):
#   1. build pyops against the PyTorch found there (only the GPU's own architecture: faster)
#   2. the GPU-marked tests (pytest -m gpu)
#   3. the emulator's counted memory metrics beside Nsight Compute's for the same kernels (ncu), per launch
#   4. the ops and the MLP training step timed with CUDA events
# Usage: scripts/gpu_check.sh [python]   (default: python3 on PATH; it must have torch with CUDA)
# Output: build/gpu-check/{build.log,pytest.log,ncu_compare.txt,timings.txt}; exits non-zero on a failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-${PYTHON:-python3}}
OUT=$ROOT/build/gpu-check
mkdir -p "$OUT"
cd "$ROOT"
start=$SECONDS
step() { echo "== [$((SECONDS - start))s] $*"; }

step "environment"
"$PY" - <<'PYEOF'
import torch, sys
assert torch.cuda.is_available(), "gpu-check needs a CUDA GPU and a CUDA build of torch"
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name()} "
      f"sm_{''.join(map(str, torch.cuda.get_device_capability()))}, python {sys.version.split()[0]}")
PYEOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

step "build against this torch (the GPU's architecture only)"
ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$ARCH} MAX_JOBS=${MAX_JOBS:-$(nproc)}
export CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")}
timeout 300 "$PY" -m pip install -q --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; echo "gpu-check: build failed (log: $OUT/build.log)"; exit 1; }
"$PY" -m pyops info | sed 's/^/   /'

step "GPU-marked tests"
if ! timeout 150 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests > "$OUT/pytest.log" 2>&1; then
  tail -30 "$OUT/pytest.log"; echo "gpu-check: GPU tests failed (log: $OUT/pytest.log)"; exit 1
fi
tail -3 "$OUT/pytest.log"

step "Nsight Compute beside the emulator's counts"
if command -v ncu >/dev/null; then
  timeout 200 "$PY" scripts/gpu_compare.py ncu > "$OUT/ncu_compare.txt" 2>&1 || echo "   (ncu comparison stopped: see the log)"
  cat "$OUT/ncu_compare.txt"
else
  echo "   ncu not on PATH: comparison skipped (install Nsight Compute)" | tee "$OUT/ncu_compare.txt"
fi

step "timings (CUDA events)"
timeout 90 "$PY" scripts/gpu_compare.py time > "$OUT/timings.txt" 2>&1 || echo "   (timings stopped: see the log)"
cat "$OUT/timings.txt"
step "done in $((SECONDS - start)) s"
