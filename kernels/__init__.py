"""pyops' Triton kernels, one module per op (installed as ``pyops.kernels``).

Each module holds the ``@triton.jit`` kernels and their launchers, which take the views and outputs the
ops made and only launch.  The ops ``pyops_triton::<op>`` (schemas in csrc/ops.cpp, the same as every
backend's) are C++ (csrc/triton.cpp): the checks, views and output allocation of csrc/<op>.h, as on every
backend, then a call of the launcher (``softmax_forward``, ``linear_backward``, ...); the launcher's module, and
triton with it, is imported at the op's first call.
Triton decides at decoration time whether a kernel runs in its interpreter: set
``TRITON_INTERPRET=1`` before this package's op modules are first imported to run the kernels on CPU tensors.
"""
LAUNCHES: dict = {}  # kernel name -> launches, so tests can assert which variant ran


def launch(kernel, grid, *args, **kwargs) -> None:
    """``kernel[grid](*args, **kwargs)``, counted in LAUNCHES."""
    LAUNCHES[kernel.__name__] = LAUNCHES.get(kernel.__name__, 0) + 1
    kernel[grid](*args, **kwargs)


def interpreted() -> bool:
    """True when the kernels were decorated under TRITON_INTERPRET=1 (they then take CPU tensors)."""
    from triton.runtime.interpreter import InterpretedFunction

    from .softmax import softmax_fwd_kernel
    return isinstance(softmax_fwd_kernel, InterpretedFunction)
