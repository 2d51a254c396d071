"""The public API's argument checks: what only Python sees (argument types, the reduction's name, the
backend's dtypes) and a dtype's message in Python's words (TypeError, ``torch.float32``).

Every op checks its own arguments in C++ (csrc/common.h, csrc/<op>.h) on every backend, Triton included, and
its Meta kernel (csrc/meta.cpp) is made of those same checks and output shapes; the public functions leave
shapes, devices and dims of the tensors they pass on to the op.
"""
from __future__ import annotations

import torch

from . import _backend

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
BACKEND_DTYPES = {"cpu": FLOAT_TYPES, **dict.fromkeys(("cuda", "cuda-sim", "triton"), FLOAT_TYPES + HALF_TYPES)}


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


# ---------------------------------------------------------------- calls that passed before
# (op, backend asked, device, dtype) -> the backend op that a call with them ran after passing every check.  A
# repeat goes straight to it: at the MNIST sizes the Python checks cost what the kernels do (several times more in a
# training step, where the optimizer has pushed this code out of the caches).  What the key does not fix -- the
# other arguments -- the op checks again in C++; a repeat that the op rejects goes through the full checks, so its
# error is the one a first call gets.  Not under dynamo, which traces the full checks.
PASSED: dict = {}
MISS = object()  # repeat()'s "run the full checks"


_is_compiling = torch.compiler.is_compiling  # (dynamo knows the function, not the name it is called by)
_backend_stack = _backend._stack  # the innermost use_backend last: current_backend() without a call


def passed_key(op: str, backend, input):
    """``PASSED``'s key of a call of ``op`` on ``input`` with ``backend=``, or None (input is no tensor; dynamo)."""
    if isinstance(input, torch.Tensor) and not _is_compiling():
        if backend is None:
            backend = _backend_stack[-1] if _backend_stack else _backend._PROCESS_DEFAULT
        return op, backend, input.device, input.dtype
    return None


def passed(key, run):
    """``run``, the op of a call that passed every check, remembered for ``key`` (None: not remembered).  An op
    with one overload is remembered as the C function that its calls end in (``OpOverloadPacket.__call__`` and
    ``OpOverload.__call__`` are one Python frame around it each)."""
    if key is not None:
        single = isinstance(run, torch._ops.OpOverloadPacket) and run.overloads() == ["default"]
        PASSED[key] = run.default._op if single else run
    return run


def repeat(key, *args):
    """``PASSED[key](*args)``, or MISS when ``key`` has not passed the checks yet or the op rejects the arguments
    (the caller then runs its full checks, which name the problem, or call the op again to raise its error)."""
    run = PASSED.get(key) if key is not None else None
    if run is None:
        return MISS
    try:
        return run(*args)
    except (RuntimeError, TypeError, ValueError, IndexError):
        return MISS


# ---------------------------------------------------------------- linear family
def check_linear_args(op: str, input, weight, bias, layer=None) -> None:
    """Types and dtypes of (input, weight, bias) -- of mlp's layer ``layer`` when given; the op checks shapes and
    devices (csrc/linear_relu.h).  The common well-formed call costs a few attribute reads; anything unusual goes
    through the checks below for the precise error."""
    dt = input.dtype if isinstance(input, torch.Tensor) else None
    if (dt in FLOAT_DTYPES and isinstance(weight, torch.Tensor) and weight.dtype is dt
            and (bias is None or (isinstance(bias, torch.Tensor) and bias.dtype is dt))):
        return
    op = op if layer is None else f"{op} (layer {layer})"
    check_tensor(input, op)
    check_tensor(weight, op, "weight")
    if bias is not None:
        check_tensor(bias, op, "bias")
    check_floating(input, op)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            raise TypeError(f"{op}: expected input and {name} to have the same dtype, got {input.dtype} and {t.dtype}")


def as_mlp_lists(op: str, weights, biases) -> tuple[list, list]:
    """The public API's weights and biases as lists (biases None: no biases), checked."""
    weights = list(weights) if isinstance(weights, (list, tuple)) else weights
    biases = [None] * len(weights) if biases is None and isinstance(weights, list) else biases
    biases = list(biases) if isinstance(biases, (list, tuple)) else biases
    if not isinstance(weights, list) or not isinstance(biases, list):
        raise TypeError(f"{op}: expected weights and biases as lists of tensors, got {type(weights).__name__} and "
                        f"{type(biases).__name__}")
    if not weights:
        raise ValueError(f"{op}: expected a non-empty list of weights, got {type(weights).__name__} of length 0")
    if len(biases) != len(weights):
        raise ValueError(f"{op}: expected one bias (or None) per weight: {len(weights)} weights, {len(biases)} biases")
    return weights, biases


# ---------------------------------------------------------------- nll_loss, cross_entropy
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
        hint = " (class-probability targets are not supported)" if target.is_floating_point() else ""
        raise TypeError(f"{op}: expected target to hold class indices of dtype int64 (torch.long), got "
                        f"{target.dtype}{hint}")
    return target
