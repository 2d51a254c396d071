"""pyops' Triton kernels, one module per op (installed as ``pyops.kernels``).

Each module holds the ``@triton.jit`` kernels and their launchers, which take the views and outputs the
ops made and only launch.  The ops ``pyops_triton::<op>`` (schemas in csrc/ops.cpp, the same as every
backend's) are C++ (csrc/triton.cpp): the checks, views and output allocation of csrc/<op>.h, as on every
backend, then a call of the launcher (``softmax_forward``, ``linear_backward``, ...); the launcher's module, and
triton with it, is imported at the op's first call.  adam_step is still registered from Python: register()
below makes ``adam.adam_step`` its CPU (interpreter) and CUDA kernel.
Triton decides at decoration time whether a kernel runs in its interpreter: set
``TRITON_INTERPRET=1`` before this package's op modules are first imported to run the kernels on CPU tensors.
"""
import importlib

LAUNCHES: dict = {}  # kernel name -> launches, so tests can assert which variant ran

#: pyops_triton op -> the module of this package whose function of the same name implements it
OPS = {"adam_step": "adam"}

_library = None


def count_launch(name: str) -> None:
    LAUNCHES[name] = LAUNCHES.get(name, 0) + 1


def interpreted() -> bool:
    """True when the kernels were decorated under TRITON_INTERPRET=1 (they then take CPU tensors)."""
    from triton.runtime.interpreter import InterpretedFunction

    softmax = importlib.import_module("pyops.kernels.softmax")
    return isinstance(softmax.softmax_fwd_kernel, InterpretedFunction)


def _kernel(op: str, module: str):
    # The op's module (and triton with it) is imported at the first call, not at `import pyops`.
    def run(*args):
        return getattr(importlib.import_module(f"pyops.kernels.{module}"), op)(*args)

    run.__name__ = op
    return run


def register() -> None:
    """Make every function of OPS the CPU and CUDA kernel of its pyops_triton op (once per process)."""
    global _library
    if _library is not None:
        return
    import torch

    _library = torch.library.Library("pyops_triton", "IMPL")
    for op, module in OPS.items():
        # a sparse gradient sends adam_step to the Sparse keys: registered there so that its checks answer
        # (with "sparse gradients are not supported"), as on the C++ backends
        for key in ("CPU", "CUDA") + (("SparseCPU", "SparseCUDA") if op == "adam_step" else ()):
            _library.impl(op, _kernel(op, module), key)
