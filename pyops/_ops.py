"""Loading of the compiled extensions and what each backend can run.

Operator namespaces, one per backend family, all with the same op names and schemas (csrc/ops.cpp):
  torch.ops.pyops         pyops._C: the C++ CPU kernels (CPU tensors) and CUDA kernels (CUDA tensors)
  torch.ops.pyops_sim     pyops._C_sim: the CUDA kernels run by the CUDA-on-CPU emulator (CPU tensors)
  torch.ops.pyops_triton  pyops._C: the Triton kernels (csrc/triton.cpp calling pyops.kernels.<op>), on CPU
                          tensors in Triton's interpreter and on CUDA tensors
Every backend op also has a Meta kernel in every namespace (csrc/meta.cpp: the op's own C++ checks and output
shapes), so torch.compile traces it without running it.
"""
from __future__ import annotations

import contextlib
import importlib
import os

import torch

try:
    from . import _C  # noqa: F401  (registers torch.ops.pyops.*)
except ImportError as e:  # a source checkout that was never built
    raise ImportError(
        f"pyops: the compiled extension pyops._C is missing or broken ({e}); build it with "
        "`make setup` or `pip install --no-build-isolation -e .`"
    ) from e

_SIM_ERROR = ""  # why pyops._C_sim is missing
try:
    from . import _C_sim  # noqa: F401  (registers torch.ops.pyops_sim.*)
except ImportError as e:
    _C_sim = None
    _SIM_ERROR = str(e)

BUILD = _C.build_info()
NAMESPACES = {"cpu": "pyops", "cuda": "pyops", "cuda-sim": "pyops_sim", "triton": "pyops_triton"}


def ops(backend: str):
    """torch.ops namespace that runs ``backend`` ('cpu', 'cuda', 'cuda-sim' or 'triton')."""
    return getattr(torch.ops, NAMESPACES[backend])


_REASONS: dict = {}


def unavailable_reason(backend: str, device: torch.device) -> str:
    """'' if ``backend`` can run tensors on ``device`` here, else why not and what to do."""
    key = (backend, str(device))
    if key not in _REASONS:
        _REASONS[key] = _unavailable_reason(backend, device.type, str(device))
    return _REASONS[key]


# Fixed for the life of the process, so cached; torch.compile runs it while tracing and keeps the answer as a
# constant (it imports modules, which a traced graph cannot contain).  torch._dynamo.assume_constant_result only
# sets this attribute, but importing torch._dynamo to call it costs more than all of pyops' import (~1.4 s of a
# ~4.4 s `import pyops`); the attribute is set here instead and tests/test_build.py checks that dynamo's
# decorator still means exactly this.
unavailable_reason._dynamo_marked_constant = True


def _unavailable_reason(backend: str, dev: str, device: str) -> str:
    if backend == "torch":
        return ""
    if backend == "cpu":
        return "" if dev == "cpu" else (
            f"it runs on CPU tensors, got a tensor on {device}; use backend='cuda' or 'triton', or move it with .cpu()")
    if backend == "cuda":
        if dev != "cuda":
            return (f"it runs on CUDA tensors, got a tensor on {device}; use backend='cpu' (or 'cuda-sim' to "
                    "execute the CUDA kernels on the CPU), or move it with .cuda()")
        return "" if BUILD["cuda"] else (
            "this pyops was built without CUDA kernels (no nvcc at build time); rebuild with CUDA_HOME set, or use "
            "backend='triton'")
    if backend == "cuda-sim":
        if _C_sim is None:
            return f"the emulation extension pyops._C_sim was not built ({_SIM_ERROR}); rebuild with the CUDA headers"
        return "" if dev == "cpu" else (
            f"it runs the CUDA kernels on CPU tensors, got a tensor on {device}; use backend='cuda' or move it with .cpu()")
    if backend == "triton":
        try:
            importlib.import_module("triton")
        except ImportError as e:
            return f"triton is not installed ({e})"
        if dev == "cuda":
            return ""
        if dev == "cpu":  # only when the kernels were decorated under TRITON_INTERPRET=1
            return "" if importlib.import_module("pyops.kernels").interpreted() else (
                "Triton needs CUDA tensors; CPU tensors run only in Triton's interpreter: set TRITON_INTERPRET=1 "
                "before importing pyops, or use backend='cpu'")
        return f"it runs on CUDA tensors, got a tensor on {device}"
    raise AssertionError(backend)


def available_backends(device: str = "cpu") -> list[str]:
    """Concrete backends that can run tensors on ``device`` here."""
    d = torch.device(device)
    return [b for b in ("cuda", "triton", "cpu", "cuda-sim", "torch") if not unavailable_reason(b, d)]


def sim_launch_counts() -> dict[str, int]:
    """Emulated CUDA kernel launches so far by kernel name (backend cuda-sim)."""
    return dict(_C_sim.launch_counts()) if _C_sim is not None else {}


def sim_reset_launch_counts() -> None:
    if _C_sim is not None:
        _C_sim.reset_launch_counts()


def environment() -> dict:
    """What `python -m pyops info` prints."""
    import platform

    return {
        "pyops": _version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch CUDA": torch.version.cuda or "none (CPU build)",
        "GPU": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "triton": _triton_version(),
        "Triton interpreter": "on" if os.environ.get("TRITON_INTERPRET") == "1" else "off",
        "CUDA kernels": (f"built, nvcc {BUILD['nvcc']}, archs {BUILD['cuda_archs']}" if BUILD["cuda"]
                         else "not built (no nvcc at build time)"),
        "CUDA emulator (cuda-sim)": "built" if _C_sim is not None else f"not built ({_SIM_ERROR})",
        "CPU kernels": "AVX2+FMA" if BUILD["cpu_avx2"] else "baseline x86-64",
        "CPU float32 GEMM": _cpu_gemm(),
        "CPU threads": torch.get_num_threads(),
        "backends for CPU tensors": ", ".join(available_backends("cpu")),
        "backends for CUDA tensors": ("" if torch.cuda.is_available() else "none here (no GPU); built for them: ")
                                     + ", ".join(available_backends("cuda")),
    }


def _cpu_gemm() -> str:
    """The own GEMM's kernel in this process (csrc/cpu/gemm.h), or what stops it."""
    try:
        kernel = _C.cpu_gemm_kernel()
    except RuntimeError as e:  # a bad PYOPS_CPU_GEMM
        return f"error: {e}"
    env = f"PYOPS_CPU_GEMM={os.environ.get('PYOPS_CPU_GEMM', 'auto')}"
    if kernel == "blas":
        why = env if BUILD["cpu_avx2"] else "build without AVX2"
        if BUILD["cpu_avx2"] and env.endswith("=auto"):
            why += ": on an Intel CPU, where MKL is faster than the own kernels"
        return f"PyTorch's BLAS for every GEMM ({why})"
    return f"own GEMM, {kernel} kernel ({env}); BLAS past its limits"


@contextlib.contextmanager
def cpu_gemm_kernel(name: str):
    """Inside the block, float32 CPU GEMMs use kernel ``name`` ("auto", "avx512", "avx2" or "blas", as
    PYOPS_CPU_GEMM names them) -- for the whole process, every thread.  For benchmarks and tests that compare
    the kernels in one process; raises RuntimeError if this build or CPU cannot run ``name``."""
    previous = _C.set_cpu_gemm_kernel(name)
    try:
        yield
    finally:
        _C.set_cpu_gemm_kernel(previous)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pyops-kernels")
    except Exception:
        return "unknown"


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return "not installed"
