"""The Python side of the ops' checks and output shapes: the public API's argument checks, and the fake
(meta) implementations that let torch.compile trace every backend op of every namespace without running it.

The C++ ops check their own arguments (csrc/common.h and csrc/<op>.h) with the same messages; the
Triton glue (kernels/<op>.py) runs the checks below before it launches.
"""
from __future__ import annotations

import torch

from . import _ops

FLOAT_TYPES = (torch.float32, torch.float64)
HALF_TYPES = (torch.float16, torch.bfloat16)
FLOAT_DTYPES = frozenset(FLOAT_TYPES + HALF_TYPES)


# ---------------------------------------------------------------- shared by every op (csrc/common.h)
def check_tensor(x, op: str, name: str = "input") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: expected {name} to be a torch.Tensor, got {type(x).__name__}")


def check_floating(x: torch.Tensor, op: str, name: str = "input") -> None:
    if x.is_complex():
        raise TypeError(f"{op}: complex {name} ({x.dtype}) is not supported; expected a real floating-point tensor "
                        "(view complex data as real with torch.view_as_real)")
    if not x.is_floating_point():
        raise TypeError(f"{op}: expected {name} to be a floating-point tensor (float32, float64, float16 or "
                        f"bfloat16), got {x.dtype}")


# dtypes each backend's kernels take
BACKEND_DTYPES = {
    "cpu": FLOAT_TYPES,
    "cuda": FLOAT_TYPES + HALF_TYPES,
    "cuda-sim": FLOAT_TYPES + HALF_TYPES,
    "triton": FLOAT_TYPES + HALF_TYPES,
}


def check_backend_dtype(x: torch.Tensor, backend: str, op: str, name: str = "input") -> None:
    ok = BACKEND_DTYPES.get(backend)
    if ok is not None and x.dtype not in ok:
        names = ", ".join(str(d).replace("torch.", "") for d in ok)
        hint = " (float16/bfloat16 run on the cuda and triton backends)" if backend == "cpu" else ""
        raise TypeError(f"{op}: backend {backend!r} supports {names}{hint}; got {name} of dtype {x.dtype}")


def wrap_dim(dim: int, ndim: int, op: str) -> int:
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{op}: expected dim to be an int, got {type(dim).__name__}")
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{op}: dim {dim} is out of range for a {ndim}-D tensor (expected a dim in [{-n}, {n - 1}])")
    return dim % n


def same_device(op: str, **tensors) -> None:
    items = [(k, v) for k, v in tensors.items() if v is not None]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise RuntimeError(f"{op}: expected all tensors on one device, but {first_name} is on {first.device} "
                               f"and {name} is on {t.device}")


# ---------------------------------------------------------------- softmax family (csrc/softmax.h)
def empty_rows_like(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The output of a row op on t along dim: contiguous with dim last (restore_layout gives t's dim order)."""
    return t.new_empty(1) if t.dim() == 0 else t.new_empty(t.movedim(dim, -1).shape)


def restore_layout(out: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    return out.reshape(()) if like.dim() == 0 else out.movedim(-1, dim)


def _softmax_fake(input, dim):
    dim = dim % max(input.dim(), 1)
    return restore_layout(empty_rows_like(input, dim), input, dim)


def _softmax_bwd_fake(grad_output, output, dim):
    return _softmax_fake(output, dim)


# ---------------------------------------------------------------- linear family (csrc/linear_relu.h)
def check_linear_args(op: str, input, weight, bias) -> None:
    """Types, dtypes, devices and shapes of (input (*, in_features), weight (out, in), bias (out,))."""
    check_tensor(input, op)
    check_tensor(weight, op, "weight")
    if bias is not None:
        check_tensor(bias, op, "bias")
    check_floating(input, op)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"{op}: expected input and {name} to have the same dtype, got {input.dtype} and {t.dtype}")
    same_device(op, input=input, weight=weight, bias=bias)
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


def check_linear_backward_args(grad_output, input, weight, output) -> str:
    """The backward's arguments; returns the op's name for messages."""
    op = "linear_relu_backward" if output is not None else "linear_backward"
    check_linear_args(op, input, weight, None)
    out_shape = (*input.shape[:-1], weight.shape[0])
    if tuple(grad_output.shape) != out_shape or (output is not None and output.shape != grad_output.shape):
        raise RuntimeError(f"{op}: grad_output shape {list(grad_output.shape)} does not match the output shape "
                           f"{list(out_shape)}")
    return op


def _linear_fake(input, weight, bias, relu):
    check_linear_args("linear_relu" if relu else "linear", input, weight, bias)
    return input.new_empty((*input.shape[:-1], weight.shape[0]))


def linear_grads(grad_output, input, weight, output, output_mask):
    """The backward's gradient buffers (empty [0] tensors where output_mask is false), as the C++ ops."""
    check_linear_args("linear_relu" if output is not None else "linear", input, weight, None)
    gx = input.new_empty(input.shape) if output_mask[0] else input.new_empty(0)
    gw = torch.empty_like(weight) if output_mask[1] else weight.new_empty(0)  # weight's strides, as the C++ op
    gb = weight.new_empty(weight.shape[0]) if output_mask[2] else weight.new_empty(0)
    return gx, gw, gb


def check_mlp_lists(op: str, weights, biases) -> None:
    if not isinstance(weights, (list, tuple)) or not weights:
        raise ValueError(f"{op}: expected a non-empty list of weights, got {type(weights).__name__}"
                         + (" of length 0" if isinstance(weights, (list, tuple)) else ""))
    if len(biases) != len(weights):
        raise ValueError(f"{op}: expected one bias (or None) per weight: {len(weights)} weights, {len(biases)} biases")


def as_mlp_lists(op: str, weights, biases) -> tuple[list, list]:
    """The public API's weights and biases as lists (biases None: no biases), checked."""
    weights = list(weights) if isinstance(weights, (list, tuple)) else weights
    biases = [None] * len(weights) if biases is None and isinstance(weights, list) else biases
    biases = list(biases) if isinstance(biases, (list, tuple)) else biases
    if not isinstance(weights, list) or not isinstance(biases, list):
        raise TypeError(f"{op}: expected weights and biases as lists of tensors, got {type(weights).__name__} and "
                        f"{type(biases).__name__}")
    check_mlp_lists(op, weights, biases)
    return weights, biases


def check_mlp_layers(op: str, input, weights, biases) -> list:
    """Each layer's arguments, as linear_relu checks them (the layer named in the message); the output shapes."""
    check_mlp_lists(op, weights, biases)
    x, shapes = input, []
    for i, (w, b) in enumerate(zip(weights, biases)):
        check_linear_args(f"{op} (layer {i})", x, w, b)
        shapes.append((*x.shape[:-1], w.shape[0]))
        x = x.new_empty(shapes[-1]) if i + 1 < len(weights) else x
    return shapes


def _mlp_fake(input, weights, biases):
    return [input.new_empty(s) for s in check_mlp_layers("mlp", input, weights, biases)]


def _mlp_bwd_fake(grad_output, input, weights, outputs, output_mask):
    L = len(weights)
    grads = [input.new_empty(input.shape) if output_mask[0] else input.new_empty(0)]
    grads += [torch.empty_like(w) if m else w.new_empty(0) for w, m in zip(weights, output_mask[1:1 + L])]
    grads += [w.new_empty(w.shape[0]) if m else w.new_empty(0) for w, m in zip(weights, output_mask[1 + L:])]
    return grads


# ---------------------------------------------------------------- nll_loss, cross_entropy (csrc/cross_entropy.h)
def check_target_dtype(op: str, target: torch.Tensor) -> None:
    if target.dtype != torch.int64:
        hint = " (class-probability targets are not supported)" if target.is_floating_point() else ""
        raise TypeError(f"{op}: expected target to hold class indices of dtype int64 (torch.long), got "
                        f"{target.dtype}{hint}")


def loss_problem(op: str, input: torch.Tensor, target: torch.Tensor, weight, reduction: int):
    """Checks the arguments as the C++ ops do; returns input as [N, C, D] (a view when possible) and the
    layout (rows, C, D, ld_n, ld_d, ld_c): row r = n*D + j starts at n*ld_n + j*ld_d, class c is c*ld_c further."""
    check_floating(input, op)
    if input.dim() == 0:
        raise ValueError(f"{op}: expected input of shape (C), (N, C) or (N, C, d1, ...), got a 0-D tensor")
    check_target_dtype(op, target)
    if reduction not in (0, 1, 2):
        raise ValueError(f"{op}: reduction {reduction} is not one of 0 (none), 1 (mean), 2 (sum)")
    want = list(input.shape[1:]) if input.dim() == 1 else [input.shape[0], *input.shape[2:]]
    if list(target.shape) != want:
        raise ValueError(f"{op}: expected target of shape {want} for input of shape {list(input.shape)} (input (C) "
                         f"takes a 0-D target, (N, C) takes (N), (N, C, d1, ...) takes (N, d1, ...)), got "
                         f"{list(target.shape)}")
    same_device(op, input=input, target=target)
    C = input.shape[0 if input.dim() == 1 else 1]
    if weight is not None:
        if weight.dim() != 1 or weight.shape[0] != C:
            raise ValueError(f"{op}: expected weight to have one entry per class, shape [{C}], got "
                             f"{list(weight.shape)}")
        if weight.dtype != input.dtype:
            raise TypeError(f"{op}: expected weight to have input's dtype {input.dtype}, got {weight.dtype}")
        same_device(op, input=input, weight=weight)
    if input.dim() == 1:
        return input, (1, C, 1, 0, 0, input.stride(0))
    x = input if input.dim() == 2 else input.flatten(2)
    D = x.shape[2] if x.dim() == 3 else 1
    return x, (x.shape[0] * D, C, D, x.stride(0), x.stride(2) if x.dim() == 3 else 0, x.stride(1))


def check_label_smoothing(op: str, label_smoothing: float) -> None:
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")


def loss_outputs(input, target, reduction, rows, lse=True):
    """(loss, lse, total_weight) as the C++ ops allocate them (csrc/cross_entropy.h)."""
    acc = torch.float64 if input.dtype == torch.float64 else torch.float32
    if reduction == 0:
        loss, total_weight = input.new_empty(target.shape), input.new_empty(0, dtype=acc)
    else:
        loss, total_weight = input.new_empty(()), input.new_empty(2, dtype=acc)  # (W_t, 1 / W_t)
    return loss, (input.new_empty(rows, dtype=torch.float64) if lse else None), total_weight  # lse: float64 always


def loss_grad_rows(op, grad_loss, target, reduction):
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


REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}  # the ops' `int reduction` (at::Reduction's numbering)


def loss_reduction(op, size_average, reduce, reduction):
    """(reduction name, the ops' code) of the public API's arguments."""
    if size_average is not None or reduce is not None:  # the deprecated arguments, with PyTorch's warning
        from torch.nn import _reduction

        reduction = _reduction.legacy_get_string(size_average, reduce)
    code = REDUCTIONS.get(reduction)
    if code is None:
        raise ValueError(f"{op}: {reduction!r} is not a valid value for reduction (expected 'none', 'mean' or 'sum')")
    return reduction, code


def class_targets(op, input, target):
    """The public API's input and target checked (the common case costs a few attribute reads); the target as
    the kernels take it (uint8 targets, which PyTorch takes too, as int64)."""
    if not (isinstance(input, torch.Tensor) and isinstance(target, torch.Tensor) and input.is_floating_point()):
        check_tensor(input, op)
        check_tensor(target, op, "target")
        check_floating(input, op)
    if target.dtype != torch.int64:
        if target.dtype == torch.uint8:
            return target.long()
        check_target_dtype(op, target)
    return target


def _cross_entropy_fake(input, target, weight, reduction, ignore_index, label_smoothing):
    _, layout = loss_problem("cross_entropy", input, target, weight, reduction)
    return loss_outputs(input, target, reduction, layout[0])


def _nll_loss_fake(input, target, weight, reduction, ignore_index):
    _, layout = loss_problem("nll_loss", input, target, weight, reduction)
    loss, _, total_weight = loss_outputs(input, target, reduction, layout[0], lse=False)
    return loss, total_weight


def _loss_bwd_fake(grad_loss, input, *_):
    return input.new_empty(input.shape)


# ---------------------------------------------------------------- the fakes of every namespace
for _name, _fake in {
    "softmax_fwd": _softmax_fake, "log_softmax_fwd": _softmax_fake,
    "softmax_bwd": _softmax_bwd_fake, "log_softmax_bwd": _softmax_bwd_fake,
    "linear_relu_fwd": _linear_fake, "linear_relu_bwd": linear_grads,
    "mlp_fwd": _mlp_fake, "mlp_bwd": _mlp_bwd_fake,
    "cross_entropy_fwd": _cross_entropy_fake, "cross_entropy_bwd": _loss_bwd_fake,
    "nll_loss_fwd": _nll_loss_fake, "nll_loss_bwd": _loss_bwd_fake,
}.items():  # (adam_step mutates its arguments and returns nothing: FakeTensor's trivial fake covers it)
    _ops.register_fake(_name, _fake)
