"""Test set-up shared by every test file.

Without a GPU, the Triton kernels run in Triton's interpreter on CPU tensors: TRITON_INTERPRET=1 must
be in the environment before triton is first imported (the @triton.jit decorator decides at
decoration time), so it is set here, before anything imports pyops.  With a GPU it is left alone, so
the Triton kernels compile for the device and the gpu-marked tests run them there (the CPU-tensor
Triton tests are then skipped: pyops.available_backends("cpu") no longer lists triton).
A full run (the whole tests folder, no selection) also checks that every __global__ kernel of
kernels/cuda ran through backend cuda-sim (see the end of this file).
"""
import os

import torch  # noqa: E402  (torch does not import triton)

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# The CUDA-on-CPU emulator (backend cuda-sim) treats undefined-behaviour hazards -- a shuffle reading a
# lane outside its mask, __syncthreads after other threads exited -- as errors (csrc/sim/simt.h).
os.environ.setdefault("SIMT_STRICT", "1")

import pytest  # noqa: E402

from helpers import CPU_BACKENDS, HAS_GPU  # noqa: E402  (imports pyops)


def pytest_collection_modifyitems(config, items):
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none here (runs wherever one exists)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    return [f"pyops backends on CPU tensors: {', '.join(CPU_BACKENDS)}; GPU: {'yes' if HAS_GPU else 'no'}; "
            f"TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET')}"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ---------------------------------------------------------------- every CUDA kernel ran through cuda-sim
# When the whole suite runs (no -k/-m, no deselection, the tests folder itself, not stopped early), the
# session fails if a __global__ kernel of kernels/cuda/*.cuh was never launched by the emulator
# (pyops._ops.sim_launch_counts(); names without template arguments).  Tests may reset the counts
# (sim_reset_launch_counts), so the names seen before each reset are kept here.
import re  # noqa: E402
from pathlib import Path  # noqa: E402

from pyops import _ops  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
KERNEL_DIR = TESTS_DIR.parent / "kernels" / "cuda"
_sim_seen: set = set()
_deselected = [0]
_reset_counts = _ops.sim_reset_launch_counts


def _reset_keeping_record():
    _sim_seen.update(_ops.sim_launch_counts())
    _reset_counts()


_ops.sim_reset_launch_counts = _reset_keeping_record

_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_GLOBAL = re.compile(r"\b__global__\s+(?:(?:static|inline)\s+)*void\s+"
                     r"(?:__launch_bounds__\s*\((?:[^()]|\([^()]*\))*\)\s*)?(\w+)\s*\(")


def global_kernels(source: str) -> list:
    """Names of the __global__ functions defined or declared in CUDA source text (comments ignored)."""
    return _GLOBAL.findall(_COMMENT.sub(" ", source))


def cuda_kernels() -> dict:
    """{kernel name: header} for every __global__ in kernels/cuda/*.cuh."""
    return {name: p.name for p in sorted(KERNEL_DIR.glob("*.cuh")) for name in global_kernels(p.read_text())}


def pytest_deselected(items):
    _deselected[0] += len(items)


def _why_not_full_run(session) -> str:
    cfg = session.config
    if cfg.option.keyword or cfg.option.markexpr:
        return "-k/-m selection"
    if _deselected[0]:
        return f"{_deselected[0]} tests deselected"
    for arg in cfg.args:
        if Path(arg.split("::")[0]).resolve() != TESTS_DIR:
            return f"ran {arg}, not the whole tests folder"
    if session.shouldstop or session.shouldfail:
        return "the session stopped early"
    if getattr(cfg.option, "collectonly", False):
        return "--collect-only"
    return ""


_coverage_lines: list = []  # (text, is_problem), printed in the terminal summary


def pytest_sessionfinish(session, exitstatus):
    if _why_not_full_run(session) or exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return
    if "cuda-sim" not in CPU_BACKENDS:
        _coverage_lines.append((f"not checked: backend cuda-sim is not built here "
                                f"({_ops.unavailable_reason('cuda-sim', torch.device('cpu'))})", False))
        return
    seen = _sim_seen | set(_ops.sim_launch_counts())
    kernels = cuda_kernels()
    missing = sorted(f"{k} ({f})" for k, f in kernels.items() if k not in seen)
    if not kernels:
        missing = [f"no __global__ kernel found in {KERNEL_DIR} (pattern or path wrong)"]
    _coverage_lines.append((f"{len(kernels) - len(missing)} of {len(kernels)} __global__ kernels in kernels/cuda "
                            "were launched through backend cuda-sim", False))
    _coverage_lines.extend((f"NEVER LAUNCHED through cuda-sim: {m}", True) for m in missing)
    if missing:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _coverage_lines:
        terminalreporter.write_sep("-", "CUDA kernel coverage (cuda-sim)")
        for text, problem in _coverage_lines:
            terminalreporter.write_line(text, red=problem, bold=problem)
