"""The drop-in path for a model and an optimizer someone already has:

    model, optimizer = pyops.optimize(model, optimizer)   # pyops.fuse(model) + pyops.optim.from_torch(optimizer)

``from_torch`` converts a ``torch.optim.Adam`` / ``AdamW`` *in place* (its class becomes
:class:`pyops.optim.Adam` / ``AdamW``): the same object, so the same param groups (the same dicts),
hyperparameters and state (mid-training too), and whatever holds a reference to it keeps working --
an LR scheduler made before the conversion keeps setting ``lr`` in those groups and counting its
steps.  The state format is torch.optim's, so ``state_dict()`` still loads into a torch optimizer.
An optimizer pyops has no kernel for (SGD, ..., or an Adam with options the pyops one refuses) comes
back unchanged, with a warning that says why.
"""
from __future__ import annotations

import functools
import warnings
import weakref
from typing import Optional

import torch

from . import _backend
from .optim import Adam, AdamW

__all__ = ["from_torch", "optimize"]

_CONVERTIBLE = {torch.optim.Adam: Adam, torch.optim.AdamW: AdamW}


def _refusal(optimizer: torch.optim.Optimizer) -> str:
    """Why ``optimizer`` cannot become a pyops one ('' if it can)."""
    cls = type(optimizer)
    if cls not in _CONVERTIBLE:
        return (f"{cls.__module__}.{cls.__qualname__} has no pyops kernel (pyops converts torch.optim.Adam and "
                "torch.optim.AdamW, exact types only)")
    for i, group in enumerate(optimizer.param_groups):
        if group.get("differentiable"):
            return f"param group {i} has differentiable=True, which the pyops step (a kernel outside autograd) refuses"
        if any(isinstance(b, torch.Tensor) for b in group["betas"]):
            return f"param group {i} has tensor betas, which the pyops step does not take"
        for p in group["params"]:
            if p.is_complex():
                return f"param group {i} has a complex parameter, which the pyops step does not take"
            if p.grad is not None and p.grad.is_sparse:
                return f"param group {i} has a sparse gradient, which Adam does not take"
    return ""


def _rewrap_scheduler_step(optimizer) -> None:
    """An LR scheduler wraps ``optimizer.step`` as an instance attribute bound to the class's step of the
    time (torch.optim.lr_scheduler: the wrapper marks ``_opt_called`` so the scheduler can check the order of
    calls).  After the class changes, that wrapper would still run torch's step: wrap the new class's step
    the same way instead."""
    old = optimizer.__dict__.get("step")
    if old is None:
        return
    if not getattr(old, "_wrapped_by_lr_sched", False):
        raise RuntimeError(f"pyops.optim.from_torch: this optimizer's step was replaced on the instance "
                           f"({old!r}), by something other than an LR scheduler; cannot convert it safely")
    opt_ref = weakref.ref(optimizer)
    func = type(optimizer).step

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        opt = opt_ref()
        opt._opt_called = True
        return func(opt, *args, **kwargs)

    wrapper._wrapped_by_lr_sched = True
    optimizer.step = wrapper


def _convert(optimizer, backend: Optional[str], op: str):
    """(the optimizer, converted in place when it can be; '' or why it was left unchanged)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"{op}: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if backend is not None:
        _backend.check_name(backend)
    if isinstance(optimizer, Adam):
        if backend is not None:
            optimizer.backend = backend
            optimizer.reset_cache()
        return optimizer, ""
    why = _refusal(optimizer)
    if why:
        return optimizer, why
    optimizer.__class__ = _CONVERTIBLE[type(optimizer)]
    optimizer.backend = backend
    # pyops.optim.Adam.__setstate__: torch.optim's group defaults, float32 state for fp16/bf16 params, a fresh
    # cache (nothing to add to the instance's dict, which already has torch.optim.Optimizer's attributes)
    optimizer.__setstate__({})
    _rewrap_scheduler_step(optimizer)
    return optimizer, ""


def from_torch(optimizer, *, backend: Optional[str] = None):
    """``optimizer`` (a ``torch.optim.Adam`` / ``AdamW``) turned into :class:`pyops.optim.Adam` / ``AdamW`` in
    place, with its param groups, hyperparameters and state; returns it.  ``backend``: the pyops backend of
    its steps (None: the one in effect at each step).  A pyops optimizer comes back as it is; any other
    optimizer comes back unchanged, with a warning saying why."""
    optimizer, why = _convert(optimizer, backend, "pyops.optim.from_torch")
    if why:
        warnings.warn(f"pyops.optim.from_torch: left unchanged: {why}", stacklevel=2)
    return optimizer


def optimize(model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer] = None, *,
             backend: Optional[str] = None):
    """``(pyops.fuse(model, backend=backend), pyops.optim.from_torch(optimizer, backend=backend))``: both in
    place, so the returned objects are the ones passed in (the optimizer None when none is given).  What
    happened to each is in :func:`pyops.fuse_report` (the optimizer's line included)."""
    from ._fuse import fuse, note

    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"pyops.optimize: expected a torch.optim.Optimizer or None as optimizer, got "
                        f"{type(optimizer).__name__}")
    fuse(model, backend=backend)
    if optimizer is not None:
        was = type(optimizer)
        optimizer, why = _convert(optimizer, backend, "pyops.optimize")
        if why:
            warnings.warn(f"pyops.optimize: optimizer left unchanged: {why}", stacklevel=2)
            note(model, f"optimizer: left unchanged: {why}")
        elif was is type(optimizer):
            note(model, f"optimizer: already pyops.optim.{was.__name__}")
        else:
            note(model, f"optimizer: {was.__module__}.{was.__qualname__} -> pyops.optim.{type(optimizer).__name__} "
                        "(converted in place: same param groups and state)")
    return model, optimizer
