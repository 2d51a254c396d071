"""Test set-up shared by every test file.

TRITON_INTERPRET=1 must be in the environment before triton is first imported (the @triton.jit
decorator decides at decoration time), so it is set here, before anything imports pyops.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

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


