"""Backend selection: per call (``backend=``), per block (``with pyops.use_backend(...)``), per
process (``PYOPS_BACKEND``), else ``auto``.

A backend that cannot run the given tensors raises :class:`BackendError` saying why and what to
do; pyops never falls back to another backend silently.
"""
from __future__ import annotations

import contextlib
import os

import torch

from . import _ops

#: every name ``backend=`` accepts
BACKENDS = ("auto", "cuda", "triton", "cpu", "cuda-sim", "torch")


class BackendError(RuntimeError):
    """The requested backend cannot run these tensors here."""


def check_name(name: str, where: str = "backend") -> str:
    if name not in BACKENDS:
        raise BackendError(f"unknown {where} {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


_PROCESS_DEFAULT = check_name(os.environ.get("PYOPS_BACKEND", "auto").strip() or "auto", "PYOPS_BACKEND value")
_stack: list[str] = []  # innermost `use_backend` last; changed in place only (pyops._checks holds it too)


@contextlib.contextmanager
def use_backend(name: str):
    """Run the pyops ops inside the block on backend ``name`` (unless a call passes ``backend=``)."""
    _stack.append(check_name(name))
    try:
        yield name
    finally:
        _stack.pop()


def current_backend() -> str:
    """The backend a call without ``backend=`` gets: the innermost ``use_backend``, else ``PYOPS_BACKEND``, else auto."""
    return _stack[-1] if _stack else _PROCESS_DEFAULT


# (requested backend, device) -> the concrete backend that runs it, for every pair resolve() accepted:
# what can run where is fixed for the life of the process, so a repeated call is one dict lookup
# instead of re-deriving it (~2 us per op call at MNIST sizes, where the kernels take a few us).
_RESOLVED: dict = {}


def resolve(backend: str | None, device: torch.device, op: str) -> str:
    """The concrete backend (never 'auto') that runs ``op`` on tensors on ``device``, or BackendError."""
    requested = backend if backend is not None else current_backend()
    if not torch.compiler.is_compiling():  # (dynamo traces the full derivation below instead)
        hit = _RESOLVED.get((requested, device))
        if hit is not None:
            return hit
    name = check_name(requested)
    if name == "auto":  # the device's own backend: cuda or cpu
        if device.type not in ("cuda", "cpu"):
            raise BackendError(f"{op}: no pyops backend runs on {device.type} tensors; use backend='torch'")
        name = device.type
    why = _ops.unavailable_reason(name, device)
    if why:
        raise BackendError(f"{op}: backend {name!r} cannot run here: {why}")
    if not torch.compiler.is_compiling():
        _RESOLVED[(requested, device)] = name
    return name
