"""Helpers shared by the op tests (import as `from helpers import ...`)."""
import pytest
import torch

import pyops
from pyops import _ops

HAS_GPU = torch.cuda.is_available()
#: backends that execute on CPU tensors here (the reference backend 'torch' excluded)
CPU_BACKENDS = [b for b in pyops.available_backends("cpu") if b != "torch"]
#: backends that execute on CUDA tensors when a GPU exists
GPU_BACKENDS = ["cuda", "triton"]

# Tolerances of DESIGN.md "Numerics", per dtype.
TOL = {
    torch.float64: dict(rtol=1e-7, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float16: dict(rtol=2e-2, atol=1e-3),
    torch.bfloat16: dict(rtol=2e-2, atol=1e-2),
}


def assert_close(actual, expected, dtype=None, **override):
    tol = dict(TOL[dtype or expected.dtype])
    tol.update(override)
    torch.testing.assert_close(actual, expected, equal_nan=True, check_dtype=True, **tol)


def needs_backend(name):
    """Skip marker for a backend that cannot run on CPU tensors here (e.g. _C_sim not built)."""
    return pytest.mark.skipif(name not in CPU_BACKENDS, reason=f"backend {name} does not run here")


def sim_counts():
    return _ops.sim_launch_counts()
