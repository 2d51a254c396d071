"""Helpers shared by the op tests (import as `from helpers import ...`)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pyops
from pyops import _ops

HAS_GPU = torch.cuda.is_available()
#: backends that execute on CPU tensors here (the reference backend 'torch' excluded)
CPU_BACKENDS = [b for b in pyops.available_backends("cpu") if b != "torch"]
#: backends that execute on CUDA tensors when a GPU exists
GPU_BACKENDS = ["cuda", "triton"]

# The tolerances of docs/testing.md ("Tolerances"), per dtype.
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


class DispatchLog(TorchDispatchMode):
    """The ops that reach the dispatcher while active, in order: ``names`` as "ns.op" (overload packets)."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def opcheck_samples(namespace: str, op: str, samples) -> None:
    """torch.library.opcheck of torch.ops.<namespace>.<op> on every sample argument tuple."""
    fn = getattr(getattr(torch.ops, namespace), op).default
    for args in samples:
        torch.library.opcheck(fn, args)


def assert_kernels_registered(ops) -> None:
    """Every op has a CPU kernel, and a CUDA kernel exactly when the build has the CUDA kernels."""
    has_cuda = _ops.BUILD["cuda"]
    for op in ops:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pyops::{op}", "CPU")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"pyops::{op}", "CUDA") == has_cuda
