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
  -> torch.ops.<ns>.mlp               one C++ autograd node (csrc/autograd.cpp): saves x, the weights and
                                      the hidden outputs (the ReLU masks and the next layers' inputs; never
                                      a pre-activation)
  -> torch.ops.<ns>.mlp_fwd           csrc/linear_relu.h mlp_forward, a C++ loop over the backend's
                                      linear_relu_fwd (Triton too: csrc/triton.cpp)
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


def mlp(input: torch.Tensor, weights: Sequence[torch.Tensor], biases: Optional[Sequence[Optional[torch.Tensor]]] = None,
        *, log_softmax_dim: Optional[int] = None, backend: Optional[str] = None) -> torch.Tensor:
    """``linear(relu(... relu(linear(input, W0, b0)) ...), W_{L-1}, b_{L-1})``: a whole MLP in one op each way.

    ``weights[i]`` is layer i's ``(out_features, in_features)`` weight, as in ``torch.nn.Linear``;
    ``biases`` one bias or None per layer (None: no biases).  ReLU follows every layer but the last.
    Same result as chaining :func:`pyops.linear_relu` and :func:`pyops.linear` on the same backend.
    ``log_softmax_dim``: return ``log_softmax(output, log_softmax_dim)`` instead, computed in the same op
    (the kernels of :func:`pyops.log_softmax`, the same numbers; one autograd node for the classifier)."""
    key = _checks.passed_key("mlp", backend, input) if type(weights) is list and type(biases) is list else None
    out = _checks.repeat(key, input, weights, biases, log_softmax_dim)  # a repeat: the op checks the rest in C++
    if out is not _checks.MISS:
        return out
    weights, biases = _checks.as_mlp_lists("mlp", weights, biases)
    for i, (w, b) in enumerate(zip(weights, biases)):
        _checks.check_linear_args("mlp", input, w, b, i)
    if log_softmax_dim is not None:
        log_softmax_dim = _checks.wrap_dim(log_softmax_dim, input.dim(), "mlp (log_softmax_dim)")
    name = _backend.resolve(backend, input.device, "mlp")
    if name == "torch":
        out = torch_mlp(input, weights, biases)
        return out if log_softmax_dim is None else F.log_softmax(out, log_softmax_dim)
    _checks.check_backend_dtype(input, name, "mlp")
    run = _checks.passed(key, _ops.ops(name).mlp)  # one C++ autograd node (csrc/autograd.cpp)
    return run(input, weights, biases, log_softmax_dim)


def torch_mlp(x: torch.Tensor, weights: list, biases: list) -> torch.Tensor:
    """The same network by stock PyTorch ops (backend "torch"), unchecked."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        x = F.relu(F.linear(x, w, b)) if i + 1 < len(weights) else F.linear(x, w, b)
    return x
