"""linear and linear_relu: drop-ins for torch.nn.functional.linear and F.relu(F.linear(...)).

One call, top to bottom (docs/architecture.md):
  pyops.linear_relu(x, W, b)          checks, picks the backend (pyops/_backend.py)
  -> torch.ops.<ns>.linear_relu       one C++ autograd node (csrc/autograd.cpp); saves x, W and (ReLU) the
                                      output y -- never the pre-activation
  -> torch.ops.<ns>.linear_relu_fwd   ns = pyops (cpu/cuda), pyops_sim (cuda-sim), pyops_triton (triton)
  -> cpu: csrc/cpu/linear_relu.cpp | cuda, cuda-sim: csrc/cuda/linear_relu.cpp -> kernels/cuda/linear_relu.cuh
     | triton: csrc/triton.cpp -> kernels/linear_relu.py
  backward: ONE op, torch.ops.<ns>.linear_relu_bwd, returns dx, dW and db together (only those that
  autograd asks for), applying the ReLU mask from y while it reads the gradient.
One layer is therefore one dispatched op forward and one backward; on contiguous tensors the path
from here to the op adds no view or copy.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import _backend, _checks, _ops


def _linear(input, weight, bias, backend, relu):
    op = "linear_relu" if relu else "linear"
    key = _checks.passed_key(op, backend, input)
    out = _checks.repeat(key, input, weight, bias, relu)  # a repeat: the op checks weight and bias in C++
    if out is not _checks.MISS:
        return out
    _checks.check_linear_args(op, input, weight, bias)  # shapes and devices: the op checks them (not twice)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        y = F.linear(input, weight, bias)
        return F.relu(y) if relu else y
    _checks.check_backend_dtype(input, name, op)
    run = _checks.passed(key, _ops.ops(name).linear_relu)
    return run(input, weight, bias, relu)


def linear_relu(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
                backend: Optional[str] = None) -> torch.Tensor:
    """``relu(F.linear(input, weight, bias))`` in one fused op, on a pyops backend (see :mod:`pyops`)."""
    return _linear(input, weight, bias, backend, True)


def linear(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
           backend: Optional[str] = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.linear`, on a pyops backend: the linear_relu kernels with the
    ReLU epilogue off (for an output layer)."""
    return _linear(input, weight, bias, backend, False)
