"""Loss modules: drop-ins for torch.nn.NLLLoss and torch.nn.CrossEntropyLoss on a pyops backend.

They subclass the torch modules, so the constructor arguments, their defaults, the deprecated
``size_average`` / ``reduce`` handling and the ``weight`` buffer are exactly PyTorch's; ``forward`` calls
:func:`pyops.nll_loss` / :func:`pyops.cross_entropy`.  ``backend`` (keyword-only) is passed to every call;
None means the backend in effect at call time (``pyops.use_backend`` / ``PYOPS_BACKEND`` / auto).
"""
from __future__ import annotations

import torch

from .cross_entropy import cross_entropy, nll_loss


class NLLLoss(torch.nn.NLLLoss):
    """:class:`torch.nn.NLLLoss` computed by :func:`pyops.nll_loss`."""

    def __init__(self, weight: torch.Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", *, backend: str | None = None) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        self.backend = backend

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                        backend=self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}" if self.backend else ""


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """:class:`torch.nn.CrossEntropyLoss` (class-index targets) computed by the fused :func:`pyops.cross_entropy`."""

    def __init__(self, weight: torch.Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0, *, backend: str | None = None) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction, label_smoothing)
        self.backend = backend

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing, backend=self.backend)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}" if self.backend else ""
