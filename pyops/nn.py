"""Modules: drop-ins for torch.nn layers and losses, computed by pyops' kernels.

``Linear`` and ``LinearReLU`` subclass :class:`torch.nn.Linear`: the same constructor, parameter names
(``weight``, ``bias``), initialization (``reset_parameters``, so the same seed draws the same numbers)
and ``state_dict`` -- a model swaps ``nn.Linear`` + ``nn.ReLU`` for ``LinearReLU`` and loads its old
checkpoints unchanged.  ``backend=`` (keyword-only) picks the backend for every call; ``None`` follows
:func:`pyops.use_backend` / ``PYOPS_BACKEND`` at call time.

``Softmax`` / ``LogSoftmax`` and the losses ``NLLLoss`` / ``CrossEntropyLoss`` subclass their torch
modules the same way: PyTorch's constructor arguments, defaults (the deprecated ``size_average`` /
``reduce`` included) and ``weight`` buffer; only ``forward`` differs.
"""
from __future__ import annotations

from typing import Optional

import torch

from .cross_entropy import cross_entropy, nll_loss
from .linear_relu import linear, linear_relu
from .mlp import mlp
from .softmax import log_softmax, softmax
from .train_step import mlp_train_step

__all__ = ["CrossEntropyLoss", "Linear", "LinearReLU", "LogSoftmax", "MLP", "NLLLoss", "Softmax"]


class _Backend:
    """The repr of a module with ``backend=``: its torch class's, plus the backend when one is set."""

    def extra_repr(self) -> str:
        backend = "" if self.backend is None else f"backend={self.backend!r}"
        return ", ".join(s for s in (super().extra_repr(), backend) if s)


class Linear(_Backend, torch.nn.Linear):
    """``torch.nn.Linear`` computed by :func:`pyops.linear`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, *,
                 backend: Optional[str] = None) -> None:
        self.backend = backend  # before super().__init__: reset_parameters may already run on a subclass
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias, backend=self.backend)


class LinearReLU(Linear):
    """``relu(linear(x))`` as one fused op (:func:`pyops.linear_relu`); parameters as ``torch.nn.Linear``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear_relu(input, self.weight, self.bias, backend=self.backend)


def _layer_parameter_lists(layers) -> tuple[list, list]:
    """([l.weight ...], [l.bias ...]) of linear layers, read from their parameter dicts (what the attributes
    return, without nn.Module.__getattr__'s Python call per attribute)."""
    ps = [l._parameters for l in layers]
    return [p["weight"] for p in ps], [p["bias"] for p in ps]


class MLP(torch.nn.Module):
    """A classifier MLP computed by :func:`pyops.mlp`, one op each way for the whole network.

    ``MLP((784, 256, 128, 64, 10))`` has ``layers.0`` .. ``layers.3``, each a :class:`Linear` with
    ``torch.nn.Linear``'s parameters and init; ReLU follows every layer but the last.  The result equals
    ``LinearReLU`` layers followed by a ``Linear`` (the same kernels per layer), with no per-layer
    Python, autograd or dispatch cost."""

    def __init__(self, sizes, bias: bool = True, device=None, dtype=None, *, backend: Optional[str] = None) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP: expected sizes (in_features, ..., out_features) with at least 2 entries, "
                             f"got {sizes}")
        self.sizes, self.backend = sizes, backend
        self.layers = torch.nn.ModuleList(Linear(a, b, bias, device=device, dtype=dtype, backend=backend)
                                          for a, b in zip(sizes[:-1], sizes[1:]))

    def parameter_lists(self) -> tuple[list, list]:
        """(weights, biases) of the layers, in order: ``[l.weight ...]``, ``[l.bias ...]``, read from the modules'
        dicts directly (1.2 instead of 4.9 us: nn.Module's ``__getattr__`` is a Python call per attribute, and at
        the seed network's sizes the one-op step's Python is a visible share of it)."""
        return _layer_parameter_lists(self._modules["layers"]._modules.values())

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return mlp(input, *self.parameter_lists(), backend=self.backend)

    def train_step(self, input: torch.Tensor, target: torch.Tensor, optimizer, **kwargs) -> torch.Tensor:
        """One whole training step as one op, :func:`pyops.mlp_train_step` on this network's parameters:
        what ``zero_grad()``, the loss of ``self(input)``, ``backward()`` and ``optimizer.step()`` would do,
        without autograd.  ``kwargs``: the loss arguments of mlp_train_step (``loss=``, ``weight=``, ...)."""
        kwargs.setdefault("backend", self.backend)
        return mlp_train_step(input, target, *self.parameter_lists(), optimizer, **kwargs)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}" + ("" if self.backend is None else f", backend={self.backend!r}")


class Softmax(_Backend, torch.nn.Softmax):
    """``torch.nn.Softmax`` computed by :func:`pyops.softmax`."""

    def __init__(self, dim: Optional[int] = None, *, backend: Optional[str] = None) -> None:
        super().__init__(dim)
        self.backend = backend

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return softmax(input, self.dim, backend=self.backend)


class LogSoftmax(_Backend, torch.nn.LogSoftmax):
    """``torch.nn.LogSoftmax`` computed by :func:`pyops.log_softmax`."""

    def __init__(self, dim: Optional[int] = None, *, backend: Optional[str] = None) -> None:
        super().__init__(dim)
        self.backend = backend

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return log_softmax(input, self.dim, backend=self.backend)


class NLLLoss(_Backend, torch.nn.NLLLoss):
    """:class:`torch.nn.NLLLoss` computed by :func:`pyops.nll_loss`."""

    def __init__(self, weight: Optional[torch.Tensor] = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", *, backend: Optional[str] = None) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        self.backend = backend

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                        backend=self.backend)


class CrossEntropyLoss(_Backend, torch.nn.CrossEntropyLoss):
    """:class:`torch.nn.CrossEntropyLoss` (class-index targets) computed by the fused :func:`pyops.cross_entropy`."""

    def __init__(self, weight: Optional[torch.Tensor] = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0, *, backend: Optional[str] = None) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.backend = backend

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing, backend=self.backend)
