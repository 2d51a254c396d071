"""pyops: hand-written CUDA C++ and Triton kernels for the ops that dominate training a small MLP,
as drop-ins for their PyTorch counterparts.

Every op takes a keyword-only ``backend=``: ``auto`` (default: ``cuda`` for CUDA tensors, ``cpu``
for CPU tensors), ``cuda``, ``triton``, ``cpu``, ``cuda-sim`` (the CUDA kernels run on the CPU by
the emulator) or ``torch`` (stock PyTorch).  Choose per call, per block with
``with pyops.use_backend("triton"):``, or per process with ``PYOPS_BACKEND``.
"""
from ._backend import BACKENDS, BackendError, current_backend, use_backend
from ._ops import available_backends
from .softmax import log_softmax, softmax
from . import optim  # noqa: E402  (pyops.optim.Adam, pyops.optim.AdamW)
from .linear_relu import linear, linear_relu
from .mlp import mlp
from . import nn
from .cross_entropy import cross_entropy, nll_loss
from .train_step import mlp_train_step
from ._fuse import fuse, fuse_report, unfuse
from .dropin import optimize

__all__ = [
    "BACKENDS",
    "BackendError",
    "available_backends",
    "current_backend",
    "log_softmax",
    "optim",
    "softmax",
    "use_backend",
    "linear",
    "linear_relu",
    "mlp",
    "nn",
    "cross_entropy",
    "nll_loss",
    "mlp_train_step",
    "fuse",
    "fuse_report",
    "unfuse",
    "optimize",
]
