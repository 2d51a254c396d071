"""pyops' Triton kernels, one module per op (installed as ``pyops.kernels``).

Each module holds the ``@triton.jit`` kernels and a launcher that takes [rows, cols]-shaped tensors
with their strides; the argument checks and the autograd wiring live in ``pyops/<op>.py``.
Triton decides at decoration time whether a kernel runs in its interpreter: set
``TRITON_INTERPRET=1`` before this package is first imported to run the kernels on CPU tensors.
"""
import importlib

LAUNCHES: dict = {}  # kernel name -> launches, so tests can assert which variant ran


def count_launch(name: str) -> None:
    LAUNCHES[name] = LAUNCHES.get(name, 0) + 1


def interpreted() -> bool:
    """True when the kernels were decorated under TRITON_INTERPRET=1 (they then take CPU tensors)."""
    from triton.runtime.interpreter import InterpretedFunction

    softmax = importlib.import_module("pyops.kernels.softmax")
    return isinstance(softmax.softmax_fwd_kernel, InterpretedFunction)
