"""Argument checks of the public API, shared by every op: messages name the argument, what was
expected and what arrived (the C++ launchers repeat them for direct torch.ops calls)."""
from __future__ import annotations

import torch

FLOAT_TYPES = (torch.float32, torch.float64)
HALF_TYPES = (torch.float16, torch.bfloat16)


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
