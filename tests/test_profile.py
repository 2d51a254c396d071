"""The emulator's memory profiler (pyops.profile, csrc/sim/profile_rt.*; docs/profiling.md).

1. Hand-computable kernels (tests/cpp/profile/cases.cpp), built here exactly as a learner's kernel is built
   for profiling, give the numbers known in advance -- exactly.
3. `python -m pyops profile`'s input checks; 4. occupancy rules.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from pyops import profile as prof

ROOT = Path(__file__).resolve().parents[1]
CUDA_HOME = Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda")
FLAGS = ["-std=c++20", "-O2", "-fPIC", "-fsanitize=thread", "-fno-tree-sra", "-fno-tree-vectorize", "-g1",
         "-fvisibility=hidden", "-Wall", f"-I{ROOT / 'csrc' / 'sim'}", f"-I{ROOT}", "-idirafter", str(CUDA_HOME / "include")]


def build_counting_module(sources, out: Path) -> Path:
    """Compile ``sources`` + the counting runtime (instrumented), link WITHOUT libtsan (csrc/sim/profile_rt.h)."""
    srcs = [Path(s) for s in sources] + [ROOT / "csrc" / "sim" / "profile_rt.cpp"]
    deps = srcs + [ROOT / "csrc" / "sim" / "simt.h", ROOT / "csrc" / "sim" / "profile_rt.h"]
    if out.exists() and out.stat().st_mtime > max(d.stat().st_mtime for d in deps):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    objs = []
    procs = []
    for s in srcs:
        o = out.parent / (s.stem + ".o")
        objs.append(o)
        procs.append(subprocess.Popen(["g++", *FLAGS, "-c", str(s), "-o", str(o)], stderr=subprocess.PIPE, text=True))
    for p in procs:
        err = p.communicate()[1]
        assert p.returncode == 0, err
    subprocess.run(["g++", "-shared", *map(str, objs), "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def cases():
    if not (CUDA_HOME / "include" / "cuda_fp16.h").exists():
        pytest.skip(f"no CUDA headers at {CUDA_HOME}/include")
    so = build_counting_module([ROOT / "tests" / "cpp" / "profile" / "cases.cpp"], ROOT / "build" / "prof-cases" / "cases.so")
    c = prof.Counter(so)
    import ctypes

    c.lib.prof_case.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
    n = 1 << 13
    x = np.ones(n * 32 + 64, np.float32)
    y = np.zeros(n * 32 + 64, np.float32)
    c.register((x.ctypes.data, x.nbytes), (y.ctypes.data, y.nbytes))

    def run(name: str) -> prof.Launch:
        c.begin()
        assert c.lib.prof_case(name.encode(), x.ctypes.data, y.ctypes.data, n) == 0, name
        assert c.end() == 1
        return c.launches(by_line=True)[0]

    run.keep = (x, y)
    return run


@pytest.mark.parametrize("case,sectors", [("copy_stride1", 4), ("copy_stride2", 8), ("copy_stride32", 32)])
def test_strided_copy_sectors_per_request(cases, case, sectors):
    L = cases(case)
    assert L.sectors_per_request("global_load") == sectors
    assert L.ideal_sectors_per_request("global_load") == 4  # 32 lanes x 4 bytes
    assert L.sectors_per_request("global_store") == 4
    assert L.cls("global_load")["lanes"] == 32 * L.requests("global_load")  # every lane active
    # stride 2 reads every other float: twice the sectors, twice the unique bytes of the elements used
    assert L.raw["unique_sectors"]["load"] == L.cls("global_load")["sectors"]


def test_vector_copy_16_sectors_per_512_bytes(cases):
    L = cases("copy_vec4")
    for c in ("global_load", "global_store"):
        assert L.sectors_per_request(c) == 16
        assert L.cls(c)["bytes"] / L.requests(c) == 512
        assert {s["size"] for s in L.sites() if s["class"] == c} == {16}  # one 16-byte access, not four


def test_lane_parity_branch_is_two_half_warp_requests(cases):
    L = cases("lane_parity")
    stores = [s for s in L.sites() if s["class"] == "global_store"]
    assert len(stores) == 2  # the if and the else store
    for s in stores:
        assert s["lanes"] == 16 * s["requests"]
        assert s["sectors"] == 4 * s["requests"]  # 16 alternate floats still span 4 sectors
    assert L.lanes_per_access < 32
    assert all(s["line"].startswith("cases.cpp:") for s in stores)  # the line table names the source


@pytest.mark.parametrize("stride,wavefronts", [(1, 1), (2, 2), (32, 32), (33, 1)])
def test_shared_stride_wavefronts(cases, stride, wavefronts):
    L = cases(f"smem_stride{stride}")
    st = L.cls("shared_store")
    assert (st["requests"], st["wavefronts"], st["ideal_wavefronts"]) == (1, wavefronts, 1)
    loads = sorted(s["wavefronts"] for s in L.sites() if s["class"] == "shared_load")
    assert loads == sorted([wavefronts, 1])  # s[t * S], and the broadcast s[0]: 1
    assert L.excess_wavefronts == 2 * (wavefronts - 1)
    assert L.per_warp("barriers") == 1


@pytest.mark.parametrize("case,per_request", [("transpose_unpadded", 32), ("transpose_padded", 1)])
def test_transpose_column_read_wavefronts(cases, case, per_request):
    L = cases(case)
    ld = L.cls("shared_load")
    assert ld["wavefronts"] == per_request * ld["requests"]
    assert L.cls("shared_store")["wavefronts"] == L.cls("shared_store")["requests"]  # row writes: 1 each
    assert L.sectors_per_request("global_load") == 4 and L.sectors_per_request("global_store") == 4


def test_collectives_and_barriers_per_warp(cases):
    L = cases("warp_sum")
    assert L.per_warp("shuffles") == 5 and L.per_warp("barriers") == 1
    st = L.cls("global_store")
    assert st["lanes"] == st["requests"]  # one lane per warp stores


# ---------------------------------------------------------------- 3. the command line
def test_cli_rejects_bad_input():
    import sys

    r = subprocess.run([sys.executable, "-m", "pyops", "profile", "softmax", "--shape", "3,4,5"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "--shape" in r.stderr
    r = subprocess.run([sys.executable, "-m", "pyops", "profile", "softmax", "--shape", "a,b"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "comma-separated integers" in r.stderr


# ---------------------------------------------------------------- 4. occupancy, SASS, docs
def test_occupancy_rules():
    # 256 threads, 32 registers, no smem: 8 warps/block; registers allow 65536 / (32*32) = 64 warps -> 8 blocks
    o = prof.occupancy("sm_90", 256, 32, 0, 0)
    assert (o["blocks_per_sm"], o["occupancy"]) == (8, 1.0)
    o = prof.occupancy("sm_80", 256, 128, 0, 0)  # 128 regs: 4096 per warp -> 16 warps -> 2 blocks
    assert (o["blocks_per_sm"], o["limiter"]) == (2, "registers")
    o = prof.occupancy("sm_80", 128, 32, 48 * 1024, 0)  # 49 KiB + 1 KiB per block of 164 KiB -> 3 blocks
    assert (o["blocks_per_sm"], o["limiter"]) == (3, "shared memory")
    assert prof.occupancy("sm_90", 1024, 32, 0, 0)["limiter"] == "block size"  # 2 blocks of 32 warps
