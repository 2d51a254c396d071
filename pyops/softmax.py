"""softmax and log_softmax: drop-ins for torch.nn.functional.softmax / log_softmax.

One call, top to bottom (docs/architecture.md):
  pyops.log_softmax(x, dim)          checks, picks the backend (pyops/_backend.py)
  -> torch.ops.<ns>.log_softmax      one C++ autograd node (csrc/autograd.cpp); saves only the output y
  -> torch.ops.<ns>.log_softmax_fwd  ns = pyops (cpu/cuda), pyops_sim (cuda-sim), pyops_triton (triton)
  -> cpu: csrc/cpu/softmax.cpp | cuda, cuda-sim: csrc/cuda/softmax.cpp -> kernels/cuda/softmax.cuh
     | triton: csrc/triton.cpp -> kernels/softmax.py
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from . import _backend, _checks, _ops


def _softmax(input, dim, dtype, backend, log):
    op = "log_softmax" if log else "softmax"
    key = _checks.passed_key(op, backend, input) if dtype is None and type(dim) is int else None
    out = _checks.repeat(key, input, dim)  # a repeat with an int dim and no dtype=: the op checks the dim in C++
    if out is not _checks.MISS:
        return out
    _checks.check_tensor(input, op)
    if dim is None:  # torch.nn.functional._get_softmax_dim: the implicit choice PyTorch still makes, with its warning
        warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X "
                      "as an argument.", stacklevel=3)
        dim = 0 if input.dim() in (0, 1, 3) else 1
    if dtype is not None:
        input = input.to(dtype)
    _checks.check_floating(input, op)
    dim = _checks.wrap_dim(dim, input.dim(), op)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        return (F.log_softmax if log else F.softmax)(input, dim)
    _checks.check_backend_dtype(input, name, op)
    run = _checks.passed(key, getattr(_ops.ops(name), op))
    return run(input, dim)


def softmax(input: torch.Tensor, dim: int | None = None, dtype: torch.dtype | None = None, *,
            backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.softmax`, on a pyops backend (see :mod:`pyops`)."""
    return _softmax(input, dim, dtype, backend, False)


def log_softmax(input: torch.Tensor, dim: int | None = None, dtype: torch.dtype | None = None, *,
                backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.log_softmax`, on a pyops backend (see :mod:`pyops`)."""
    return _softmax(input, dim, dtype, backend, True)
