"""The emulator's memory profiler (pyops.profile, csrc/sim/profile_rt.*; docs/profiling.md).

1. Hand-computable kernels (tests/cpp/profile/cases.cpp), built here exactly as a learner's kernel is built
   for profiling, give the numbers known in advance -- exactly.
2. Every __global__ kernel of kernels/cuda, through its op at shapes that reach each launch plan, meets its
   budgets (or carries a profile-exception comment beside it), and the SASS agrees on the access widths.
3. `python -m pyops profile` on each op, text and JSON; 4. occupancy rules; the docs' generated sections.
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


def test_totals_over_launches(cases):
    """An op's total over several launches: a stride-1 copy (4 sectors per request) and a stride-2 copy (8) sum
    their requests and sectors (ideal 4 per request), their unique bytes add up; shared wavefronts likewise."""
    a, b = cases("copy_stride1"), cases("copy_stride2")
    ra, rb = a.requests("global_load"), b.requests("global_load")
    assert ra > 0 and rb > 0
    t = prof.totals([a, b], min_bytes=a.unique_bytes)
    assert t["launches"] == 2 and t["kernels"] == 2
    ld = t["global_load"]
    assert (ld["requests"], ld["sectors"], ld["ideal_sectors"]) == (ra + rb, 4 * ra + 8 * rb, 4 * (ra + rb))
    assert ld["sectors_per_request"] == round((4 * ra + 8 * rb) / (ra + rb), 2)
    assert ld["ideal_sectors_per_request"] == 4.0
    assert ld["l1_bytes"] == a.l1_bytes("global_load") + b.l1_bytes("global_load")
    assert t["unique_bytes"]["all"] == a.unique_bytes + b.unique_bytes
    assert t["unique_over_model"] == round((a.unique_bytes + b.unique_bytes) / a.unique_bytes, 3) > 1
    t = prof.totals([cases("transpose_unpadded"), cases("transpose_padded")])  # column reads: 32 + 1 wavefronts
    assert t["shared_load"]["excess_wavefronts"] == 31 * t["shared_load"]["requests"] // 2


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


# ---------------------------------------------------------------- 2. pyops' kernels, through their ops
needs_prof = pytest.mark.skipif(not prof.available(), reason=prof.unavailable_reason())

# Shapes that take every __global__ of kernels/cuda through its launch plans on the emulator (which plans GEMMs
# for a 4-SM device): softmax warp-per-row (C <= 1024) and block-per-row; the SIMT GEMM's 32, 64 and 128 tiles,
# the tensor-core GEMM (float16), the bias-gradient kernel (bias_only_backward); cross-entropy's warp and block
# kernels and its loss reduction, nll_loss's gather and gradient kernels; Adam's multi-tensor kernel.
# The docs' shapes (each op's MNIST and large shape) come first: test_docs_profile_sections_current reuses them.
BUDGET_CASES = [(op, shape, "float32") for op, v in prof.OPS.items() for shape in (v[2], v[3])] + [
    ("log_softmax", (64, 12), "float32"),
    ("linear_relu", (64, 64, 64), "float32"), ("linear_relu", (256, 64, 256), "float32"),
    ("linear_relu", (64, 64, 64), "float16"), ("linear_relu", (64, 64, 64), "float64"),
]
CHECKS = ("sectors", "unique", "wavefronts")


def kernel_exceptions() -> dict:
    """{(kernel base name, check): reason} from the `// profile-exception KERNEL CHECK: reason (measured ...)`
    comments next to the kernels in kernels/cuda/*.cuh."""
    out = {}
    for f in sorted((ROOT / "kernels" / "cuda").glob("*.cuh")):
        for m in re.finditer(r"//\s*profile-exception (\w+) (\w+): (.*)", f.read_text()):
            assert m.group(2) in CHECKS, f"{f.name}: unknown check {m.group(2)!r} in a profile-exception"
            out[(m.group(1), m.group(2))] = m.group(3)
    return out


def bias_only_backward(m: int, n: int) -> dict:
    """linear_relu's backward when only the bias needs a gradient: the bias-gradient kernel alone (reads g and
    the ReLU mask y, writes db)."""
    import pyops

    torch.manual_seed(0)
    x, w = torch.randn(m, 32), torch.randn(n, 32)
    b = torch.randn(n, requires_grad=True)
    y = pyops.linear_relu(x, w, b, backend="cuda-sim")
    g = torch.randn_like(y)
    with prof.record(y, g, b) as r:
        y.backward(g)
    return prof.make_report("linear_relu (bias only)", (m, 32, n), torch.float32, "bwd", r.launches, 4 * (2 * m * n + n))


@pytest.fixture(scope="module")
def budget_reports():
    dt = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}
    reps = []
    for op, shape, dtype in BUDGET_CASES:
        for d in prof.OPS[op][4]:
            reps.append(prof.profile_op(op, shape, dt[dtype], d, cache=True))
    reps.append(bias_only_backward(64, 256))
    return reps


@needs_prof
def test_every_kernel_profiled(budget_reports):
    """The budget cases launch every __global__ kernel of kernels/cuda."""
    src = "\n".join(f.read_text() for f in (ROOT / "kernels" / "cuda").glob("*.cuh"))
    declared = set(re.findall(r"__global__ void(?: __launch_bounds__\([^)]*\))?\s+(\w+)\(", src))
    assert len(declared) >= 15, declared
    ran = {L["kernel"].split("<")[0] for r in budget_reports for L in r["launches"]}
    assert declared <= ran, f"never profiled: {sorted(declared - ran)}"


@needs_prof
def test_budgets(budget_reports):
    """Every kernel at its launch plans: global accesses at the ideal sectors/request, the op's unique bytes
    <= 1.1x its bytes model's minimum, no excess shared wavefronts -- or a profile-exception beside the kernel
    (and an exception must still be needed)."""
    exc = kernel_exceptions()
    used, failures = set(), []
    for r in budget_reports:
        tag = f"{r['op']} {r['direction']} {'x'.join(map(str, r['shape']))} {r['dtype']}"
        names = [L["kernel"].split("<")[0] for L in r["launches"]]
        for L, name in zip(r["launches"], names):
            excess = sum(L[c]["sectors"] - L[c]["ideal_sectors"]
                         for c in ("global_load", "global_store") if c in L)
            if excess > 0:
                (used.add((name, "sectors")) if (name, "sectors") in exc else
                 failures.append(f"{tag}: {name}: {excess} sectors above the ideal"))
            wf = sum(L[c]["excess_wavefronts"] for c in ("shared_load", "shared_store") if c in L)
            if wf > 0:
                (used.add((name, "wavefronts")) if (name, "wavefronts") in exc else
                 failures.append(f"{tag}: {name}: {wf} excess shared wavefronts (bank conflicts)"))
        if r["unique_over_model"] > 1.1:
            hit = [n for n in names if (n, "unique") in exc]
            if hit:
                used.update((n, "unique") for n in hit)
            else:
                failures.append(f"{tag}: unique bytes {r['unique_bytes']} = {r['unique_over_model']}x the bytes "
                                f"model's {r['model_min_bytes']}")
    assert not failures, "\n".join(failures)
    stale = set(exc) - used
    assert not stale, f"profile-exceptions no longer needed: {sorted(stale)}"


@needs_prof
def test_gemm_transposed_stores_conflict_free(budget_reports):
    """The GEMM's transposed (Red-direction) shared stores reach all 32 banks: the SIMT 32 and 64 tiles (float,
    double) and the tensor-core tile (half) took 2, 4 and 4 wavefronts per store before their stores were
    reordered."""
    seen = set()
    for r in budget_reports:
        for L in r["launches"]:
            m = re.match(r"linear_relu_(simt32|simt64|simt128|wmma)_kernel<(float|double|__half)", L["kernel"])
            if m and "shared_store" in L:
                seen.add(m.groups())
                st = L["shared_store"]
                assert st["excess_wavefronts"] == 0, (r["shape"], L["kernel"], st)
    assert {("simt32", "float"), ("simt64", "float"), ("wmma", "__half")} <= seen, seen
    assert {t for t, d in seen if d == "double"} & {"simt32", "simt64"}, seen


# ---------------------------------------------------------------- 3. the command line
def cli(capsys, *argv) -> tuple[int, str, str]:
    """`python -m pyops profile ARGV` in this process (its profiles are cached with the budget cases')."""
    from pyops.__main__ import main

    rc = main(["profile", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@needs_prof
@pytest.mark.parametrize("op", list(prof.OPS))
def test_cli_text_and_json(op, capsys, budget_reports):
    import json

    rc, out, err = cli(capsys, op)  # text, fwd and bwd, the MNIST shape
    assert rc == 0, err
    dirs = prof.OPS[op][4]
    assert out.count(f"== {op} ") == len(dirs)
    assert "sectors/request" in out and "bytes model minimum" in out and "occupancy sm_90" in out
    assert out.count("  total over ") == len(dirs)
    rc, out, err = cli(capsys, op, "--json")
    assert rc == 0, err
    reps = json.loads(out)
    reps = reps if isinstance(reps, list) else [reps]
    assert [r["direction"] for r in reps] == list(dirs)
    for r in reps:
        assert r["op"] == op and r["launches"] and r["model_min_bytes"] > 0
        for L in r["launches"]:
            assert L["global_load"]["requests"] > 0 and L["unique_bytes"]["all"] > 0
        t = r["total"]  # the sum over the pass's launches
        assert t["launches"] == len(r["launches"]) and t["unique_bytes"]["all"] == r["unique_bytes"]
        assert t["global_load"]["sectors"] == sum(L["global_load"]["sectors"] for L in r["launches"])
        assert t["unique_over_model"] == r["unique_over_model"]


@needs_prof
def test_cli_by_line_as_a_command():
    """`python -m pyops profile` as a process, with --by-line: sites named by their kernels/cuda source line."""
    import json
    import sys

    r = subprocess.run([sys.executable, "-m", "pyops", "profile", "softmax", "--direction", "fwd", "--json",
                        "--by-line"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    (L,) = json.loads(r.stdout)["launches"]
    assert {s["line"].split(":")[0] for s in L["sites"]} <= {"kernels/cuda/softmax.cuh", "kernels/cuda/common.cuh"}
    assert any(s["class"] == "global_store" for s in L["sites"])


def test_cli_rejects_bad_input(capsys):
    rc, _, err = cli(capsys, "softmax", "--shape", "3,4,5")
    assert rc == 2 and "--shape" in err
    rc, _, err = cli(capsys, "softmax", "--shape", "a,b")
    assert rc == 2 and "comma-separated integers" in err
    rc, _, err = cli(capsys, "adam", "--direction", "bwd")
    assert rc == 2 and "no direction" in err


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


@needs_prof
def test_docs_profile_sections_current(budget_reports):
    """docs/<op>.md's generated profile sections are what `python -m pyops profile --write-docs` writes now
    (the profiles come from the budget cases' cache)."""
    stale = prof.write_docs(ROOT, check=True)
    assert not stale, f"regenerate with `python -m pyops profile --write-docs`: {stale}"



@needs_prof
def test_sass_access_widths_agree(budget_reports):
    """The access kinds and widths the profiler sees in each kernel are the LDG/STG/LDS/STS (and global atomic)
    instructions and widths of the kernel in the sm_90 cubin.  (This found nvcc compiling the SIMT GEMM's 32/64
    tile epilogue and Adam's 16-byte stores as four STG.E each; global vector stores now go through
    store_vec_global, kernels/cuda/common.cuh.)"""
    if not prof.resource_usage():
        pytest.skip("pyops._C has no CUDA device code (CPU-only build)")
    sass = prof.sass_accesses("sm_90")
    checked, diffs = 0, []
    for r in budget_reports:
        for L in r["launches"]:
            if L["symbol"] not in sass:
                diffs.append(f"{L['kernel']}: not in the sm_90 cubin ({L['symbol']})")
                continue
            mine = {tuple(w) for w in L["access_widths"]}
            theirs = sass[L["symbol"]]
            if "wmma" in L["kernel"]:  # fragments: element-wise in the stand-in, LDSM/LDS.128 in the SASS
                mine = {w for w in mine if not w[0].startswith("shared")}
            checked += 1
            # every access the profiler saw is an instruction of that width in the SASS (the SASS also holds
            # the paths these shapes do not take: scalar tails, unaligned fallbacks)
            extra = mine - theirs
            if extra:
                diffs.append(f"{L['kernel']}: profiler {sorted(extra)} not in the SASS {sorted(theirs)}")
            mnist = r["op"] in prof.OPS and r["shape"] == list(prof.OPS[r["op"]][2])
            vec = {w for w in theirs if w[0].startswith("global") and w[1] == 16}
            if mnist and vec and r["op"] not in ("nll_loss",) and not vec & mine:  # MNIST rows are vectorizable
                diffs.append(f"{L['kernel']}: the SASS has 16-byte global accesses, the profiler saw none")
    assert checked >= 15 and not diffs, "\n".join(dict.fromkeys(diffs))


def test_sass_split_store_runs():
    """prof.sass_split_stores finds a 16-byte store split into four STG.E (as nvcc split the SIMT GEMM's 32/64
    tile epilogue, Adam's and some softmax stores before store_vec_global) and not scalar or predicated ones."""
    fn = "\t\tFunction : k\n"
    split = "".join(f"        /*{a:04x}*/                   STG.E desc[UR16][R10.64{o}], R{r} ;\n"
                    for a, o, r in ((0x3ba0, "", 41), (0x3bb0, "+0x4", 21), (0x3bc0, "+0x8", 43), (0x3bd0, "+0xc", 23)))
    assert prof.sass_split_stores(fn + split) == {"k": 1}
    pair = "".join(f"        /*{a:04x}*/                   STG.E.64 desc[UR16][R8.64{o}], R{r} ;\n"
                   for a, o, r in ((0x100, "+0x20", 2), (0x110, "+0x28", 4)))
    assert prof.sass_split_stores(fn + pair) == {"k": 1}  # two doubles: 16 bytes in two stores
    assert prof.sass_split_stores(fn + pair.replace("+0x20", "+0x18").replace("+0x28", "+0x20")) == {}  # unaligned
    pred = split.replace("                   STG", "               @P0 STG")
    assert prof.sass_split_stores(fn + pred) == {}
    assert prof.sass_split_stores(fn + split.replace("+0x8", "+0x18")) == {}


@needs_prof
def test_sass_no_split_16_byte_stores():
    """No kernel of pyops._C has a 16-byte global store split into 4-byte (8-byte) STG.E, on sm_80 or sm_90."""
    if not prof.resource_usage():
        pytest.skip("pyops._C has no CUDA device code (CPU-only build)")
    for arch in ("sm_80", "sm_90"):
        text = prof.sass_dump(arch)
        assert "STG.E.128" in text, arch
        split = prof.sass_split_stores(text)
        assert not split, f"{arch}: split 16-byte stores: " + ", ".join(f"{prof.demangle(k)} ({n})" for k, n in split.items())
