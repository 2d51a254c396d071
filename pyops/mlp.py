"""mlp: a whole multi-layer perceptron -- hidden layers linear+ReLU, the last layer plain linear -- as
ONE op forward and ONE op backward.

    pyops.mlp(x, [W0, W1, ..., W_{L-1}], [b0, ..., b_{L-1}])
      == F.linear(relu(... relu(F.linear(x, W0, b0)) ...), W_{L-1}, b_{L-1})

Per layer it runs exactly the kernels of :func:`pyops.linear_relu` / :func:`pyops.linear` (the same
fused GEMM + bias + ReLU forward, the same masked backward), so results match a stack of those layers
bit for bit.  What it removes is everything between the layers: one dispatched op and one autograd
node each way for the whole network instead of one per layer, so a small network (the MNIST MLP: four
layers, a few microseconds of GEMM each at batch 64) no longer pays the Python, autograd and
dispatcher costs L times.

  pyops.mlp(x, weights, biases)       checks, picks the backend
  -> cpu / cuda / cuda-sim: torch.ops.<ns>.mlp, a C++ autograd node (csrc/autograd.cpp)
     triton: _MLPFunction.apply, the same node in Python
                                      either saves x, the weights and the hidden outputs (the ReLU masks
                                      and the next layers' inputs; never a pre-activation)
  -> torch.ops.<ns>.mlp_fwd           cpu / cuda / cuda-sim: csrc/linear_relu.h mlp_forward, a C++ loop
                                      over the backend's linear_relu_fwd; triton: a Python loop over
                                      the Triton layer functions (pyops/linear_relu.py)
  backward: torch.ops.<ns>.mlp_bwd, the layers' backward from the last to the first, computing only
  the gradients autograd asks for (no grad_input below the lowest layer that needs one).
The C++ node matters at the MNIST sizes, where the GEMMs take microseconds: a Python autograd.Function
costs tens of microseconds per training step on top of the engine (docs/linear_relu.md, "The whole MLP
in one op").
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from . import _backend, _checks, _ops
from .linear_relu import _FLOAT_DTYPES, check_linear_args, triton_linear_bwd, triton_linear_fwd


def _check_lists(op: str, weights, biases) -> None:
    if not isinstance(weights, (list, tuple)) or not weights:
        raise ValueError(f"{op}: expected a non-empty list of weights, got {type(weights).__name__}"
                         + (" of length 0" if isinstance(weights, (list, tuple)) else ""))
    if len(biases) != len(weights):
        raise ValueError(f"{op}: expected one bias (or None) per weight: {len(weights)} weights, {len(biases)} biases")


def _as_lists(op: str, weights, biases) -> tuple[list, list]:
    """The public API's weights and biases as lists (biases None: no biases), checked by _check_lists."""
    weights = list(weights) if isinstance(weights, (list, tuple)) else weights
    biases = [None] * len(weights) if biases is None and isinstance(weights, list) else biases
    biases = list(biases) if isinstance(biases, (list, tuple)) else biases
    if not isinstance(weights, list) or not isinstance(biases, list):
        raise TypeError(f"{op}: expected weights and biases as lists of tensors, got {type(weights).__name__} and "
                        f"{type(biases).__name__}")
    _check_lists(op, weights, biases)
    return weights, biases


def _check_layers(op: str, input, weights, biases) -> list:
    """Each layer's arguments, as linear_relu checks them (the layer named in the message); the output shapes."""
    _check_lists(op, weights, biases)
    x, shapes = input, []
    for i, (w, b) in enumerate(zip(weights, biases)):
        check_linear_args(f"{op} (layer {i})", x, w, b)
        shapes.append((*x.shape[:-1], w.shape[0]))
        x = x.new_empty(shapes[-1]) if i + 1 < len(weights) else x
    return shapes


# ---------------------------------------------------------------- fakes
def _fake_fwd(input, weights, biases):
    return [input.new_empty(s) for s in _check_layers("mlp", input, weights, biases)]


def _fake_bwd(grad_output, input, weights, outputs, output_mask):
    L = len(weights)
    grads = [input.new_empty(input.shape) if output_mask[0] else input.new_empty(0)]
    grads += [torch.empty_like(w) if m else w.new_empty(0) for w, m in zip(weights, output_mask[1:1 + L])]
    grads += [w.new_empty(w.shape[0]) if m else w.new_empty(0) for w, m in zip(weights, output_mask[1 + L:])]
    return grads


_ops.register_fake("mlp_fwd", _fake_fwd)
_ops.register_fake("mlp_bwd", _fake_bwd)


# ---------------------------------------------------------------- Triton ops: the layers' Triton kernels in a loop
def _triton_mlp_fwd(input, weights, biases):
    _check_lists("mlp", weights, biases)
    outs, L = [], len(weights)
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = outs[-1] if outs else input
        check_linear_args(f"mlp (layer {i})", x, w, b)  # as the C++ ops: the message names the layer
        outs.append(triton_linear_fwd(x, w, b, i + 1 < L))
    return outs


def _triton_mlp_bwd(grad_output, input, weights, outputs, output_mask):
    L = len(weights)
    _check_lists("mlp_backward", weights, [None] * L)
    if len(outputs) != L - 1 or len(output_mask) != 1 + 2 * L:
        raise ValueError(f"mlp_backward: expected the {L - 1} hidden outputs and an output_mask of length {1 + 2 * L}, "
                         f"got {len(outputs)} and {len(output_mask)}")
    lowest = -1 if output_mask[0] else next((i for i in range(L) if output_mask[1 + i] or output_mask[1 + L + i]), L)
    grads = [None] * (1 + 2 * L)
    g = grad_output
    for i in range(L - 1, max(lowest, 0) - 1, -1):
        x = outputs[i - 1] if i else input
        y = outputs[i] if i + 1 < L else None
        g, grads[1 + i], grads[1 + L + i] = triton_linear_bwd(
            g, x, weights[i], y, [lowest < i, output_mask[1 + i], output_mask[1 + L + i]])
    grads[0] = g if output_mask[0] else None
    return [t if t is not None else grad_output.new_empty(0) for t in grads]


torch.library.custom_op("pyops_triton::mlp_fwd", mutates_args=(),
                        schema="(Tensor input, Tensor[] weights, Tensor?[] biases) -> Tensor[]")(
    _triton_mlp_fwd).register_fake(_fake_fwd)
torch.library.custom_op("pyops_triton::mlp_bwd", mutates_args=(),
                        schema="(Tensor grad_output, Tensor input, Tensor[] weights, Tensor[] outputs, "
                               "bool[] output_mask) -> Tensor[]")(_triton_mlp_bwd).register_fake(_fake_bwd)


# ---------------------------------------------------------------- autograd
def _backward(ctx, grad_output):
    L = ctx.layers
    saved = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[1:])  # input, weights, biases (a None bias never needs one)
    grads = _ops.ops(ctx.backend).mlp_bwd(grad_output, saved[0], saved[1:1 + L], saved[1 + L:], mask)
    return (None, *[g if m else None for g, m in zip(grads, mask)])


_backward_once_differentiable = torch.autograd.function.once_differentiable(_backward)


class _MLPFunction(torch.autograd.Function):
    """The whole MLP as one node (Triton; the C++ backends have MLPFunction in csrc/autograd.cpp): saves x,
    the weights and the hidden layers' outputs."""

    @staticmethod
    def forward(ctx, backend, input, *params):  # params: the L weights, then the L biases (None allowed)
        L = len(params) // 2
        weights, biases = params[:L], params[L:]
        outs = _ops.ops(backend).mlp_fwd(input, weights, biases)
        ctx.save_for_backward(input, *weights, *outs[:-1])
        ctx.backend, ctx.layers = backend, L
        return outs[-1]

    @staticmethod
    def backward(ctx, grad_output):
        # as pyops.linear_relu: once_differentiable's no_grad wrapper only where a double backward could happen
        if torch.is_grad_enabled():
            return _backward_once_differentiable(ctx, grad_output)
        return _backward(ctx, grad_output)


# ---------------------------------------------------------------- public API
def mlp(input: torch.Tensor, weights: Sequence[torch.Tensor], biases: Optional[Sequence[Optional[torch.Tensor]]] = None,
        *, backend: Optional[str] = None) -> torch.Tensor:
    """``linear(relu(... relu(linear(input, W0, b0)) ...), W_{L-1}, b_{L-1})``: a whole MLP in one op each way.

    ``weights[i]`` is layer i's ``(out_features, in_features)`` weight, as in ``torch.nn.Linear``;
    ``biases`` one bias or None per layer (None: no biases).  ReLU follows every layer but the last.
    Same result as chaining :func:`pyops.linear_relu` and :func:`pyops.linear` on the same backend."""
    weights, biases = _as_lists("mlp", weights, biases)
    dt = getattr(input, "dtype", None)
    if not (isinstance(input, torch.Tensor) and dt in _FLOAT_DTYPES
            and all(isinstance(w, torch.Tensor) and w.dtype is dt for w in weights)
            and all(b is None or (isinstance(b, torch.Tensor) and b.dtype is dt) for b in biases)):
        _check_layers("mlp", input, weights, biases)  # raises the precise error
    name = _backend.resolve(backend, input.device, "mlp")
    if name == "torch":
        x = input
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = F.linear(x, w, b)
            x = F.relu(x) if i + 1 < len(weights) else x
        return x
    _checks.check_backend_dtype(input, name, "mlp")
    if name != "triton":  # one C++ autograd node (csrc/autograd.cpp); none when nothing needs a gradient
        return _ops.ops(name).mlp(input, weights, biases)
    if torch.is_grad_enabled() and (input.requires_grad or any(w.requires_grad for w in weights)
                                    or any(b is not None and b.requires_grad for b in biases)):
        return _MLPFunction.apply(name, input, *weights, *biases)
    return _ops.ops(name).mlp_fwd(input, weights, biases)[-1]  # inference: no autograd node
