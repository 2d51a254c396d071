"""linear and linear_relu: drop-ins for torch.nn.functional.linear and F.relu(F.linear(...)).

One call, top to bottom:
  pyops.linear_relu(x, W, b)          checks, picks the backend (pyops/_backend.py)
  -> _LinearFunction.apply            the autograd Function; saves x, W and (ReLU) the output y
  -> torch.ops.<ns>.linear_relu_fwd   ns = pyops (cpu/cuda), pyops_sim (cuda-sim), pyops_triton (triton);
                                      schemas in csrc/ops.cpp, fakes below
  -> cpu: csrc/cpu/linear_relu.cpp | cuda, cuda-sim: csrc/cuda/linear_relu.cpp -> kernels/cuda/linear_relu.cuh
     | triton: kernels/linear_relu.py
  backward: ONE op, torch.ops.<ns>.linear_relu_bwd, returns dx, dW and db together (only those that
  autograd asks for), applying the ReLU mask from y while it reads the gradient.
One layer is therefore one dispatched op forward and one backward; on contiguous tensors the path
from here to the op adds no view or copy.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from . import _backend, _checks, _ops


# ---------------------------------------------------------------- argument checks (twin of csrc/linear_relu.h)
def check_linear_args(op: str, input, weight, bias) -> None:
    """Types, dtypes, devices and shapes of (input (*, in_features), weight (out, in), bias (out,))."""
    _checks.check_tensor(input, op)
    _checks.check_tensor(weight, op, "weight")
    if bias is not None:
        _checks.check_tensor(bias, op, "bias")
    _checks.check_floating(input, op)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"{op}: expected input and {name} to have the same dtype, got {input.dtype} and {t.dtype}")
    _checks.same_device(op, input=input, weight=weight, bias=bias)
    if input.dim() == 0:
        raise RuntimeError(f"{op}: expected input of shape (*, in_features), got a 0-D tensor")
    if weight.dim() != 2:
        raise RuntimeError(f"{op}: expected weight to be 2-D (out_features, in_features), got {weight.dim()}-D")
    if input.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"{op}: input has {input.shape[-1]} features (last dim of shape {list(input.shape)}) but "
                           f"weight expects in_features = {weight.shape[1]} (weight shape {list(weight.shape)})")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != weight.shape[0]):
        raise RuntimeError(f"{op}: expected bias of shape [out_features] = [{weight.shape[0]}], got "
                           f"{list(bias.shape)}")


def _name(relu: bool) -> str:
    return "linear_relu" if relu else "linear"


# ---------------------------------------------------------------- fakes (shapes/strides of the C++ and Triton ops)
def _fake_fwd(input, weight, bias, relu):
    check_linear_args(_name(relu), input, weight, bias)
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


def _fake_bwd(grad_output, input, weight, output, output_mask):
    check_linear_args(_name(output is not None), input, weight, None)
    gx = input.new_empty(input.shape) if output_mask[0] else input.new_empty(0)
    gw = torch.empty_like(weight) if output_mask[1] else weight.new_empty(0)  # weight's strides, as the C++ op
    gb = weight.new_empty(weight.shape[0]) if output_mask[2] else weight.new_empty(0)
    return gx, gw, gb


_ops.register_fake("linear_relu_fwd", _fake_fwd)
_ops.register_fake("linear_relu_bwd", _fake_bwd)


# ---------------------------------------------------------------- Triton ops (pyops_triton::*)
def _as_matrix(t: torch.Tensor, rows: int) -> torch.Tensor:
    """t (*, cols) as [rows, cols]: a view when the leading dims collapse, else a copy (as csrc/linear_relu.h)."""
    return t if t.dim() == 2 else t.reshape(rows, t.shape[-1])


def triton_linear_fwd(input, weight, bias, relu):
    """pyops_triton::linear_relu_fwd (also a layer of pyops_triton::mlp_fwd, pyops/mlp.py)."""
    from .kernels import linear_relu as k

    check_linear_args(_name(relu), input, weight, bias)
    y = input.new_empty((*input.shape[:-1], weight.shape[0]))
    if y.numel() > 0:
        rows = math.prod(input.shape[:-1])
        k.linear_forward(_as_matrix(input, rows), weight, bias, _as_matrix(y, rows), relu)
    return y


def triton_linear_bwd(grad_output, input, weight, output, output_mask):
    """pyops_triton::linear_relu_bwd (also a layer of pyops_triton::mlp_bwd)."""
    from .kernels import linear_relu as k

    op = "linear_relu_backward" if output is not None else "linear_backward"
    check_linear_args(op, input, weight, None)
    out_shape = (*input.shape[:-1], weight.shape[0])
    if tuple(grad_output.shape) != out_shape or (output is not None and output.shape != grad_output.shape):
        raise RuntimeError(f"{op}: grad_output shape {list(grad_output.shape)} does not match the output shape "
                           f"{list(out_shape)}")
    gx, gw, gb = _fake_bwd(grad_output, input, weight, output, output_mask)
    rows = math.prod(input.shape[:-1])
    g = _as_matrix(grad_output, rows)
    y = _as_matrix(output, rows) if output is not None else None
    if y is not None and y.stride() != g.stride():  # the mask is read at the gradient's offsets
        g, y = g.contiguous(), y.contiguous()
    k.linear_backward(g, _as_matrix(input, rows), weight, y,
                      gx.view(rows, input.shape[-1]) if output_mask[0] else None,
                      gw if output_mask[1] else None, gb if output_mask[2] else None)
    return gx, gw, gb


_triton_linear_fwd = torch.library.custom_op(
    "pyops_triton::linear_relu_fwd", mutates_args=(),
    schema="(Tensor input, Tensor weight, Tensor? bias, bool relu) -> Tensor")(triton_linear_fwd)
_triton_linear_bwd = torch.library.custom_op(
    "pyops_triton::linear_relu_bwd", mutates_args=(),
    schema="(Tensor grad_output, Tensor input, Tensor weight, Tensor? output, bool[3] output_mask) "
           "-> (Tensor, Tensor, Tensor)")(triton_linear_bwd)
_triton_linear_fwd.register_fake(_fake_fwd)
_triton_linear_bwd.register_fake(_fake_bwd)


# ---------------------------------------------------------------- autograd
def _backward(ctx, grad_output):
    input, weight, out = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx, gw, gb = _ops.ops(ctx.backend).linear_relu_bwd(grad_output, input, weight, out, [need_x, need_w, need_b])
    return gx if need_x else None, gw if need_w else None, gb if need_b else None, None, None


_backward_once_differentiable = torch.autograd.function.once_differentiable(_backward)


class _LinearFunction(torch.autograd.Function):
    """y = relu?(x W^T + b); the backward needs x, W and (ReLU) y -- never the pre-activation."""

    @staticmethod
    def forward(ctx, input, weight, bias, relu, backend):
        out = _ops.ops(backend).linear_relu_fwd(input, weight, bias, relu)
        ctx.save_for_backward(input, weight, out if relu else None)
        ctx.backend = backend
        return out

    @staticmethod
    def backward(ctx, grad_output):
        # The ops have no derivative of their own.  Under create_graph=True (grad mode on here) the
        # once_differentiable version makes a second differentiation raise instead of silently giving
        # zeros; otherwise its torch.no_grad() wrapper is skipped: it costs more than the op at MNIST sizes.
        if torch.is_grad_enabled():
            return _backward_once_differentiable(ctx, grad_output)
        return _backward(ctx, grad_output)


# ---------------------------------------------------------------- public API
_FLOAT_DTYPES = frozenset(_checks.FLOAT_TYPES + _checks.HALF_TYPES)


def _linear(input, weight, bias, backend, relu):
    op = _name(relu)
    # The common well-formed call costs a few attribute reads here; anything unusual goes through
    # check_linear_args for the precise error.  Shapes and devices are checked by the op itself (C++,
    # Triton op or fake: the same messages), so the happy path does not pay for them twice.
    if not (isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor) and input.dtype in _FLOAT_DTYPES
            and weight.dtype is input.dtype
            and (bias is None or (isinstance(bias, torch.Tensor) and bias.dtype is input.dtype))):
        check_linear_args(op, input, weight, bias)
    name = _backend.resolve(backend, input.device, op)
    if name == "torch":
        y = F.linear(input, weight, bias)
        return F.relu(y) if relu else y
    _checks.check_backend_dtype(input, name, op)
    if torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _LinearFunction.apply(input, weight, bias, relu, name)
    return _ops.ops(name).linear_relu_fwd(input, weight, bias, relu)  # inference: no autograd node to build


def linear_relu(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
                backend: Optional[str] = None) -> torch.Tensor:
    """``relu(F.linear(input, weight, bias))`` in one fused op, on a pyops backend (see :mod:`pyops`)."""
    return _linear(input, weight, bias, backend, True)


def linear(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *,
           backend: Optional[str] = None) -> torch.Tensor:
    """Same as :func:`torch.nn.functional.linear`, on a pyops backend: the linear_relu kernels with the
    ReLU epilogue off (for an output layer)."""
    return _linear(input, weight, bias, backend, False)
