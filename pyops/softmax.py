"""softmax and log_softmax: drop-ins for torch.nn.functional.softmax / log_softmax.

One call, top to bottom:
  pyops.log_softmax(x, dim)          checks, picks the backend (pyops/_backend.py)
  -> _SoftmaxFunction.apply          the autograd Function; saves only the output y
  -> torch.ops.<ns>.log_softmax_fwd  ns = pyops (cpu/cuda), pyops_sim (cuda-sim), pyops_triton (triton);
                                     schemas in csrc/ops.cpp, fakes below
  -> cpu: csrc/cpu/softmax.cpp | cuda, cuda-sim: csrc/cuda/softmax.cpp -> kernels/cuda/softmax.cuh
     | triton: kernels/softmax.py
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from . import _backend, _checks, _ops


# ---------------------------------------------------------------- the [rows, cols] view (Python twin of csrc/common.h)
def _as_rows(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t as [rows, cols] with dim last and unit column stride; no copy when t already has that layout."""
    if t.dim() == 0:
        return t.reshape(1, 1)
    if t.dim() == 2 and dim == 1 and (t.stride(1) == 1 or t.size(1) <= 1):
        return t
    return t.movedim(dim, -1).contiguous().view(-1, t.size(dim))


def _empty_rows_like(t: torch.Tensor, dim: int) -> torch.Tensor:
    if t.dim() == 0:
        return t.new_empty(1)
    return t.new_empty(t.movedim(dim, -1).shape)


def _restore_layout(out: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    return out.reshape(()) if like.dim() == 0 else out.movedim(-1, dim)


def _fake_fwd(input, dim):
    dim = dim % max(input.dim(), 1)
    return _restore_layout(_empty_rows_like(input, dim), input, dim)


def _fake_bwd(grad_output, output, dim):
    dim = dim % max(output.dim(), 1)
    return _restore_layout(_empty_rows_like(output, dim), output, dim)


for _name in ("softmax_fwd", "log_softmax_fwd"):
    _ops.register_fake(_name, _fake_fwd)
for _name in ("softmax_bwd", "log_softmax_bwd"):
    _ops.register_fake(_name, _fake_bwd)


# ---------------------------------------------------------------- Triton ops (pyops_triton::*)
def _triton_fwd(x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    from .kernels import softmax as k

    dim = _checks.wrap_dim(dim, x.dim(), "log_softmax" if log else "softmax")
    y = _empty_rows_like(x, dim)
    if x.numel() > 0:
        k.softmax_forward(_as_rows(x, dim), y.view(-1, y.shape[-1]) if y.dim() else y.view(1, 1), log)
    return _restore_layout(y, x, dim)


def _triton_bwd(g: torch.Tensor, y: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    from .kernels import softmax as k

    dim = _checks.wrap_dim(dim, y.dim(), "log_softmax_backward" if log else "softmax_backward")
    gx = _empty_rows_like(y, dim)
    if y.numel() > 0:
        k.softmax_backward(_as_rows(g, dim), _as_rows(y, dim), gx.view(-1, gx.shape[-1]) if gx.dim() else gx.view(1, 1),
                           log)
    return _restore_layout(gx, y, dim)


@torch.library.custom_op("pyops_triton::softmax_fwd", mutates_args=())
def _triton_softmax_fwd(input: torch.Tensor, dim: int) -> torch.Tensor:
    return _triton_fwd(input, dim, False)


@torch.library.custom_op("pyops_triton::log_softmax_fwd", mutates_args=())
def _triton_log_softmax_fwd(input: torch.Tensor, dim: int) -> torch.Tensor:
    return _triton_fwd(input, dim, True)


@torch.library.custom_op("pyops_triton::softmax_bwd", mutates_args=())
def _triton_softmax_bwd(grad_output: torch.Tensor, output: torch.Tensor, dim: int) -> torch.Tensor:
    return _triton_bwd(grad_output, output, dim, False)


@torch.library.custom_op("pyops_triton::log_softmax_bwd", mutates_args=())
def _triton_log_softmax_bwd(grad_output: torch.Tensor, output: torch.Tensor, dim: int) -> torch.Tensor:
    return _triton_bwd(grad_output, output, dim, True)


for _op in (_triton_softmax_fwd, _triton_log_softmax_fwd):
    _op.register_fake(_fake_fwd)
for _op in (_triton_softmax_bwd, _triton_log_softmax_bwd):
    _op.register_fake(_fake_bwd)


# ---------------------------------------------------------------- autograd
class _SoftmaxFunction(torch.autograd.Function):
    """y = (log_)softmax(x) along dim; backward needs only y (see kernels/cuda/softmax.cuh).

    forward(ctx, ...) rather than forward + setup_context: the latter makes every apply() bind its
    arguments with inspect.signature, which costs more than the kernel at MNIST sizes."""

    @staticmethod
    def forward(ctx, x, dim, log, backend):
        ns = _ops.ops(backend)
        y = (ns.log_softmax_fwd if log else ns.softmax_fwd)(x, dim)
        ctx.save_for_backward(y)
        ctx.dim, ctx.log, ctx.backend = dim, log, backend
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        ns = _ops.ops(ctx.backend)
        grad_input = (ns.log_softmax_bwd if ctx.log else ns.softmax_bwd)(grad_output, y, ctx.dim)
        return grad_input, None, None, None


# ---------------------------------------------------------------- public API
def _legacy_dim(op: str, ndim: int) -> int:
    # torch.nn.functional._get_softmax_dim: the implicit choice PyTorch still makes, with its warning
    warnings.warn(f"Implicit dimension choice for {op} has been deprecated. Change the call to include dim=X "
                  "as an argument.", stacklevel=4)
    return 0 if ndim in (0, 1, 3) else 1


def _softmax(input, dim, dtype, backend, log):
    op = "log_softmax" if log else "softmax"
    _checks.check_tensor(input, op)
    if dim is None:
        dim = _legacy_dim(op, input.dim())
    if dtype is not None:
        input = input.to(dtype)
    _checks.check_floating(input, op)
    dim = _checks.wrap_dim(dim, input.dim(), op)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        return (F.log_softmax if log else F.softmax)(input, dim)
    _checks.check_backend_dtype(input, name, op)
    return _SoftmaxFunction.apply(input, dim, log, name)


def softmax(input: torch.Tensor, dim: int | None = None, dtype: torch.dtype | None = None, *,
            backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.softmax`, on a pyops backend (see :mod:`pyops`)."""
    return _softmax(input, dim, dtype, backend, log=False)


def log_softmax(input: torch.Tensor, dim: int | None = None, dtype: torch.dtype | None = None, *,
                backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.log_softmax`, on a pyops backend (see :mod:`pyops`)."""
    return _softmax(input, dim, dtype, backend, log=True)
