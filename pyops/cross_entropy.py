"""nll_loss and cross_entropy: drop-ins for torch.nn.functional.nll_loss / cross_entropy with class-index
targets (class weights, ignore_index, reductions none/mean/sum, label smoothing for cross_entropy).

One call, top to bottom:
  pyops.cross_entropy(x, target)        checks, picks the backend (pyops/_backend.py)
  -> cpu, cuda, cuda-sim: torch.ops.<ns>.cross_entropy, a C++ autograd node (csrc/autograd.cpp);
     triton: _CrossEntropyFunction.apply, the same node in Python.  Either saves x (the caller's tensor,
     no copy), target, weight and the per-row log-sum-exp -- nothing of size N x C
  -> torch.ops.<ns>.cross_entropy_fwd   ns = pyops (cpu/cuda), pyops_sim (cuda-sim), pyops_triton (triton);
                                        schemas in csrc/ops.cpp, fakes below
  -> cpu: csrc/cpu/cross_entropy.cpp | cuda, cuda-sim: csrc/cuda/cross_entropy.cpp
     -> kernels/cuda/cross_entropy.cuh | triton: kernels/cross_entropy.py
The backward is one op too (cross_entropy_bwd): it reads x once and writes dx = g (softmax - one_hot_smoothed).
nll_loss follows the same path with nll_loss_fwd / nll_loss_bwd.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn import _reduction as _Reduction

from . import _backend, _checks, _ops

REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # the ops' `int reduction` (at::Reduction's numbering)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------- checks and layout (Python twin of csrc/cross_entropy.h)
def _problem(op: str, input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor], reduction: int):
    """Checks the arguments as the C++ ops do; returns input as [N, C, D] (a view when possible) and the
    layout (rows, C, D, ld_n, ld_d, ld_c): row r = n*D + j starts at n*ld_n + j*ld_d, class c is c*ld_c further."""
    _checks.check_floating(input, op)
    if input.dim() == 0:
        raise ValueError(f"{op}: expected input of shape (C), (N, C) or (N, C, d1, ...), got a 0-D tensor")
    _check_target_dtype(op, target)
    if reduction not in (0, 1, 2):
        raise ValueError(f"{op}: reduction {reduction} is not one of 0 (none), 1 (mean), 2 (sum)")
    want = list(input.shape[1:]) if input.dim() == 1 else [input.shape[0], *input.shape[2:]]
    if list(target.shape) != want:
        raise ValueError(f"{op}: expected target of shape {want} for input of shape {list(input.shape)} (input (C) "
                         f"takes a 0-D target, (N, C) takes (N), (N, C, d1, ...) takes (N, d1, ...)), got "
                         f"{list(target.shape)}")
    _checks.same_device(op, input=input, target=target)
    C = input.shape[0 if input.dim() == 1 else 1]
    if weight is not None:
        _check_weight(op, input, weight, C)
    if input.dim() == 1:
        return input, (1, C, 1, 0, 0, input.stride(0))
    x = input if input.dim() == 2 else input.flatten(2)
    D = x.shape[2] if x.dim() == 3 else 1
    return x, (x.shape[0] * D, C, D, x.stride(0), x.stride(2) if x.dim() == 3 else 0, x.stride(1))


def _check_target_dtype(op: str, target: torch.Tensor) -> None:
    if target.dtype != torch.int64:
        hint = " (class-probability targets are not supported)" if target.is_floating_point() else ""
        raise TypeError(f"{op}: expected target to hold class indices of dtype int64 (torch.long), got "
                        f"{target.dtype}{hint}")


def _check_weight(op: str, input: torch.Tensor, weight: torch.Tensor, C: int) -> None:
    if weight.dim() != 1 or weight.shape[0] != C:
        raise ValueError(f"{op}: expected weight to have one entry per class, shape [{C}], got {list(weight.shape)}")
    if weight.dtype != input.dtype:
        raise TypeError(f"{op}: expected weight to have input's dtype {input.dtype}, got {weight.dtype}")
    _checks.same_device(op, input=input, weight=weight)


def _check_label_smoothing(op: str, label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")


def _forward_outputs(input, target, reduction, rows, lse=True):
    """(loss, lse, total_weight) as the C++ ops allocate them (csrc/cross_entropy.h)."""
    acc = _acc_dtype(input.dtype)
    if reduction == 0:
        loss, total_weight = input.new_empty(target.shape), input.new_empty(0, dtype=acc)
    else:
        loss, total_weight = input.new_empty(()), input.new_empty(2, dtype=acc)  # (W_t, 1 / W_t)
    return loss, (input.new_empty(rows, dtype=torch.float64) if lse else None), total_weight  # lse: float64 always


def _grad_rows(op, grad_loss, target, reduction):
    """grad_loss as [rows] with its stride (reduction none), else as it is with stride 0."""
    if reduction == 0:
        if grad_loss.shape != target.shape:
            raise ValueError(f"{op}: expected grad_loss of shape {list(target.shape)} (reduction none), got "
                             f"{list(grad_loss.shape)}")
        g = grad_loss.reshape(-1)
        return g, (g.stride(0) if g.numel() > 1 else 1)
    if grad_loss.dim() != 0:
        raise ValueError(f"{op}: expected a 0-D grad_loss (reduction mean/sum), got shape {list(grad_loss.shape)}")
    return grad_loss, 0


# ---------------------------------------------------------------- fakes of the C++ ops (pyops::, pyops_sim::)
def _fake_cross_entropy_fwd(input, target, weight, reduction, ignore_index, label_smoothing):
    _, layout = _problem("cross_entropy", input, target, weight, reduction)
    return _forward_outputs(input, target, reduction, layout[0])


def _fake_nll_loss_fwd(input, target, weight, reduction, ignore_index):
    _, layout = _problem("nll_loss", input, target, weight, reduction)
    loss, _, total_weight = _forward_outputs(input, target, reduction, layout[0], lse=False)
    return loss, total_weight


def _fake_cross_entropy_bwd(grad_loss, input, target, weight, lse, total_weight, reduction, ignore_index,
                            label_smoothing):
    return input.new_empty(input.shape)


def _fake_nll_loss_bwd(grad_loss, input, target, weight, total_weight, reduction, ignore_index):
    return input.new_empty(input.shape)


_ops.register_fake("cross_entropy_fwd", _fake_cross_entropy_fwd)
_ops.register_fake("cross_entropy_bwd", _fake_cross_entropy_bwd)
_ops.register_fake("nll_loss_fwd", _fake_nll_loss_fwd)
_ops.register_fake("nll_loss_bwd", _fake_nll_loss_bwd)


# ---------------------------------------------------------------- Triton ops (pyops_triton::*)
def _check_targets_on_host(op: str, target: torch.Tensor, C: int, ignore_index: int) -> None:
    # The interpreter does not run tl.device_assert; CPU tensors can be checked here without any device sync.
    # (CUDA tensors: the kernels' device asserts, see kernels/cross_entropy.py.)
    if target.device.type != "cpu" or target.numel() == 0:
        return
    bad = (target != ignore_index) & ((target < 0) | (target >= C))
    if bool(bad.any()):
        raise IndexError(f"{op}: Target {int(target[bad][0])} is out of bounds: expected a class index in [0, {C}) "
                         f"or ignore_index ({ignore_index})")


def _triton_inputs(op, input, target, weight, reduction, ignore_index):
    x, layout = _problem(op, input, target, weight, reduction)
    _check_targets_on_host(op, target, layout[1], ignore_index)
    return x, layout, target.contiguous(), (weight.contiguous() if weight is not None else None)


@torch.library.custom_op("pyops_triton::cross_entropy_fwd", mutates_args=())
def _triton_cross_entropy_fwd(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor],
                              reduction: int, ignore_index: int,
                              label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from .kernels import cross_entropy as k

    op = "cross_entropy"
    x, layout, t, w = _triton_inputs(op, input, target, weight, reduction, ignore_index)
    _check_label_smoothing(op, label_smoothing)
    loss, lse, total_weight = _forward_outputs(input, target, reduction, layout[0])
    partials = input.new_empty((2, layout[0]), dtype=total_weight.dtype) if reduction else None
    k.cross_entropy_forward(x, layout, t, w, ignore_index, label_smoothing, loss, partials, lse, total_weight,
                            reduction == 1)
    return loss, lse, total_weight


@torch.library.custom_op("pyops_triton::cross_entropy_bwd", mutates_args=())
def _triton_cross_entropy_bwd(grad_loss: torch.Tensor, input: torch.Tensor, target: torch.Tensor,
                              weight: Optional[torch.Tensor], lse: torch.Tensor, total_weight: torch.Tensor,
                              reduction: int, ignore_index: int, label_smoothing: float) -> torch.Tensor:
    from .kernels import cross_entropy as k

    op = "cross_entropy_backward"
    x, layout, t, w = _triton_inputs(op, input, target, weight, reduction, ignore_index)
    _check_label_smoothing(op, label_smoothing)
    g, ld_grad = _grad_rows(op, grad_loss, target, reduction)
    gx = input.new_empty(input.shape)
    k.cross_entropy_backward(g, ld_grad, total_weight, x, layout, t, w, ignore_index, label_smoothing, lse, gx,
                             reduction == 1)
    return gx


@torch.library.custom_op("pyops_triton::nll_loss_fwd", mutates_args=())
def _triton_nll_loss_fwd(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor], reduction: int,
                         ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    from .kernels import cross_entropy as k

    x, layout, t, w = _triton_inputs("nll_loss", input, target, weight, reduction, ignore_index)
    loss, _, total_weight = _forward_outputs(input, target, reduction, layout[0], lse=False)
    partials = input.new_empty((2, layout[0]), dtype=total_weight.dtype) if reduction else None
    k.nll_loss_forward(x, layout, t, w, ignore_index, loss, partials, total_weight, reduction == 1)
    return loss, total_weight


@torch.library.custom_op("pyops_triton::nll_loss_bwd", mutates_args=())
def _triton_nll_loss_bwd(grad_loss: torch.Tensor, input: torch.Tensor, target: torch.Tensor,
                         weight: Optional[torch.Tensor], total_weight: torch.Tensor, reduction: int,
                         ignore_index: int) -> torch.Tensor:
    from .kernels import cross_entropy as k

    op = "nll_loss_backward"
    _, layout, t, w = _triton_inputs(op, input, target, weight, reduction, ignore_index)
    g, ld_grad = _grad_rows(op, grad_loss, target, reduction)
    gx = input.new_empty(input.shape)
    k.nll_loss_backward(g, ld_grad, total_weight, layout, t, w, ignore_index, gx, reduction == 1)
    return gx


_triton_cross_entropy_fwd.register_fake(_fake_cross_entropy_fwd)
_triton_cross_entropy_bwd.register_fake(_fake_cross_entropy_bwd)
_triton_nll_loss_fwd.register_fake(_fake_nll_loss_fwd)
_triton_nll_loss_bwd.register_fake(_fake_nll_loss_bwd)


# ---------------------------------------------------------------- autograd
def _no_weight_grad(ctx, op):
    if ctx.needs_input_grad[2]:
        raise RuntimeError(f"{op}: the derivative for 'weight' is not implemented (as in PyTorch)")


# The Triton backend's autograd nodes (the C++ backends' are in csrc/autograd.cpp).
# Old-style forward(ctx, ...) on purpose: with a separate setup_context, Function.apply binds the arguments
# through inspect.signature on every call (measured: ~90 us per call here, several times the whole op at
# MNIST sizes); torch.compile traces both styles.
class _CrossEntropyFunction(torch.autograd.Function):
    """loss = cross_entropy(x, target); the backward needs x and the per-row lse (kernels/cuda/cross_entropy.cuh)."""

    @staticmethod
    def forward(ctx, x, target, weight, reduction, ignore_index, label_smoothing, backend):
        loss, lse, total_weight = _ops.ops(backend).cross_entropy_fwd(x, target, weight, reduction, ignore_index,
                                                                       label_smoothing)
        ctx.save_for_backward(x, target, weight, lse, total_weight)
        ctx.args = (reduction, ignore_index, label_smoothing, backend)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        _no_weight_grad(ctx, "cross_entropy")
        x, target, weight, lse, total_weight = ctx.saved_tensors
        reduction, ignore_index, label_smoothing, backend = ctx.args
        grad_x = _ops.ops(backend).cross_entropy_bwd(grad_loss, x, target, weight, lse, total_weight, reduction,
                                                     ignore_index, label_smoothing)
        return grad_x, None, None, None, None, None, None


class _NLLLossFunction(torch.autograd.Function):
    """loss = nll_loss(x, target); the backward needs only target, weight and the total weight."""

    @staticmethod
    def forward(ctx, x, target, weight, reduction, ignore_index, backend):
        loss, total_weight = _ops.ops(backend).nll_loss_fwd(x, target, weight, reduction, ignore_index)
        ctx.save_for_backward(x, target, weight, total_weight)
        ctx.args = (reduction, ignore_index, backend)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        _no_weight_grad(ctx, "nll_loss")
        x, target, weight, total_weight = ctx.saved_tensors
        reduction, ignore_index, backend = ctx.args
        grad_x = _ops.ops(backend).nll_loss_bwd(grad_loss, x, target, weight, total_weight, reduction, ignore_index)
        return grad_x, None, None, None, None, None


# ---------------------------------------------------------------- public API
# Every call pays this Python path (MNIST-sized losses are all overhead): the common case costs a few
# attribute reads; the full checks with their messages run only when something is off.
def _reduction_code(op, size_average, reduce, reduction):
    if size_average is not None or reduce is not None:  # the deprecated arguments, with PyTorch's warning
        reduction = _Reduction.legacy_get_string(size_average, reduce)
    code = REDUCTIONS.get(reduction)
    if code is None:
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction (expected 'none', 'mean' or 'sum')")
    return reduction, code


def _class_targets(op, input, target):
    if not (isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor) and input.is_floating_point()):
        _checks.check_tensor(input, op)
        _checks.check_tensor(target, op, "target")
        _checks.check_floating(input, op)
    if target.dtype != torch.int64:
        if target.dtype == torch.uint8:  # PyTorch takes Byte targets too
            return target.long()
        _check_target_dtype(op, target)
    return target


def cross_entropy(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                  size_average=None, ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0, *, backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.cross_entropy` with class-index targets, on a pyops backend
    (see :mod:`pyops`): log-softmax and NLL fused, nothing of size N x C kept for the backward."""
    op = "cross_entropy"
    reduction, code = _reduction_code(op, size_average, reduce, reduction)
    target = _class_targets(op, input, target)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        return F.cross_entropy(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                               label_smoothing=label_smoothing)
    _checks.check_backend_dtype(input, name, op)
    if name != "triton":  # one C++ autograd node (csrc/autograd.cpp); none when nothing needs a gradient
        return _ops.ops(name).cross_entropy(input, target, weight, code, ignore_index, float(label_smoothing))
    if not (input.requires_grad and torch.is_grad_enabled()):  # evaluation: no autograd node to build
        return _ops.ops(name).cross_entropy_fwd(input, target, weight, code, ignore_index, float(label_smoothing))[0]
    return _CrossEntropyFunction.apply(input, target, weight, code, ignore_index, float(label_smoothing), name)


def nll_loss(input: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean", *,
             backend: str | None = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.nll_loss`, on a pyops backend (see :mod:`pyops`)."""
    op = "nll_loss"
    reduction, code = _reduction_code(op, size_average, reduce, reduction)
    target = _class_targets(op, input, target)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)
    _checks.check_backend_dtype(input, name, op)
    if name != "triton":  # one C++ autograd node (csrc/autograd.cpp)
        return _ops.ops(name).nll_loss(input, target, weight, code, ignore_index)
    if not (input.requires_grad and torch.is_grad_enabled()):
        return _ops.ops(name).nll_loss_fwd(input, target, weight, code, ignore_index)[0]
    return _NLLLossFunction.apply(input, target, weight, code, ignore_index, name)
