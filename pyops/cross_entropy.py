"""nll_loss and cross_entropy: drop-ins for torch.nn.functional.nll_loss / cross_entropy with class-index
targets (class weights, ignore_index, reductions none/mean/sum, label smoothing for cross_entropy).

One call, top to bottom (docs/architecture.md):
  pyops.cross_entropy(x, target)        checks, picks the backend (pyops/_backend.py)
  -> torch.ops.<ns>.cross_entropy       one C++ autograd node (csrc/autograd.cpp); saves x (the caller's
                                        tensor, no copy), target, weight and the per-row log-sum-exp --
                                        nothing of size N x C
  -> torch.ops.<ns>.cross_entropy_fwd   ns = pyops (cpu/cuda), pyops_sim (cuda-sim), pyops_triton (triton)
  -> cpu: csrc/cpu/cross_entropy.cpp | cuda, cuda-sim: csrc/cuda/cross_entropy.cpp
     -> kernels/cuda/cross_entropy.cuh | triton: csrc/triton.cpp -> kernels/cross_entropy.py
The backward is one op too (cross_entropy_bwd): it reads x once and writes dx = g (softmax - one_hot_smoothed).
nll_loss follows the same path with nll_loss_fwd / nll_loss_bwd.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from . import _backend, _checks, _ops


# Every call pays this Python path (MNIST-sized losses are all overhead): the common case costs a few
# attribute reads; the full checks with their messages run only when something is off.
def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  size_average=None, ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0, *, backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.cross_entropy` with class-index targets, on a pyops backend
    (see :mod:`pyops`): log-softmax and NLL fused, nothing of size N x C kept for the backward."""
    op = "cross_entropy"
    code = _checks.REDUCTIONS.get(reduction) if size_average is None and reduce is None else None
    key = _checks.passed_key(op, backend, input) if code is not None else None
    out = _checks.repeat(key, input, target, weight, code, ignore_index, float(label_smoothing))
    if out is not _checks.MISS:  # a repeat: the op checks target, weight and the numbers in C++
        return out
    reduction, code = _checks.loss_reduction(op, size_average, reduce, reduction)
    target = _checks.class_targets(op, input, target)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        return F.cross_entropy(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=label_smoothing)
    _checks.check_backend_dtype(input, name, op)
    run = _checks.passed(key, _ops.ops(name).cross_entropy)
    return run(input, target, weight, code, ignore_index, float(label_smoothing))


def nll_loss(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean", *,
             backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.nll_loss`, on a pyops backend (see :mod:`pyops`)."""
    op = "nll_loss"
    code = _checks.REDUCTIONS.get(reduction) if size_average is None and reduce is None else None
    key = _checks.passed_key(op, backend, input) if code is not None else None
    out = _checks.repeat(key, input, target, weight, code, ignore_index)
    if out is not _checks.MISS:  # a repeat: the op checks target, weight and ignore_index in C++
        return out
    reduction, code = _checks.loss_reduction(op, size_average, reduce, reduction)
    target = _checks.class_targets(op, input, target)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)
    _checks.check_backend_dtype(input, name, op)
    run = _checks.passed(key, _ops.ops(name).nll_loss)
    return run(input, target, weight, code, ignore_index)
