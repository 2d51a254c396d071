"""Modules: drop-ins for torch.nn layers, computed by pyops' kernels.

``Linear`` and ``LinearReLU`` subclass :class:`torch.nn.Linear`: the same constructor, parameter names
(``weight``, ``bias``), initialization (``reset_parameters``, so the same seed draws the same numbers)
and ``state_dict`` -- a model swaps ``nn.Linear`` + ``nn.ReLU`` for ``LinearReLU`` and loads its old
checkpoints unchanged.  ``backend=`` (keyword-only) picks the backend for every call; ``None`` follows
:func:`pyops.use_backend` / ``PYOPS_BACKEND`` at call time.
"""
from __future__ import annotations

from typing import Optional

import torch

from .linear_relu import linear, linear_relu

__all__ = ["Linear", "LinearReLU"]


class Linear(torch.nn.Linear):
    """``torch.nn.Linear`` computed by :func:`pyops.linear`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None, *,
                 backend: Optional[str] = None) -> None:
        self.backend = backend  # before super().__init__: reset_parameters may already run on a subclass
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear(input, self.weight, self.bias, backend=self.backend)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.backend is None else f", backend={self.backend!r}")


class LinearReLU(Linear):
    """``relu(linear(x))`` as one fused op (:func:`pyops.linear_relu`); parameters as ``torch.nn.Linear``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return linear_relu(input, self.weight, self.bias, backend=self.backend)
