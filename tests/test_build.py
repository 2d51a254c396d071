"""Audits of the build itself, no GPU needed.

GPU build audit -- the device code nvcc put into pyops._C, read back with cuobjdump (from triton's package):
  * nvcc's `--Werror all-warnings` (setup.py) really makes a warning fatal;
  * cubins for sm_80 and sm_90, each holding every __global__ of kernels/cuda;
  * per kernel and architecture: registers, shared memory, stack, local memory, and the local-memory
    instructions in its SASS (STL/LDL: spills) -- written to build/audit/cuda_resource_usage.txt;
    any spill, stack frame or local memory fails;
  * the SASS of the hot kernels holds the instructions they are written for (SASS_EXPECTATIONS:
    128-bit global loads/stores in the vectorized softmax, ...).
Skipped, with the reason, only when pyops._C was built without CUDA kernels (no nvcc at build time).

C++ build -- CMakeLists.txt configures and builds (CPU kernels, emulator, C++ tests) and CTest passes.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import cuda_kernels, global_kernels
from pyops import _C, _ops
from pyops.profile import parse_resource_usage

ROOT = Path(__file__).resolve().parents[1]
AUDIT_DIR = ROOT / "build" / "audit"
ARCHS = ("sm_80", "sm_90")

needs_cuda_build = pytest.mark.skipif(
    not _ops.BUILD["cuda"],
    reason="pyops._C was built without CUDA kernels (no nvcc at build time): there is no device code to audit")


def triton_bin(tool: str) -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / tool


def cuda_home() -> Path:
    return Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


# ---------------------------------------------------------------- what the hot kernels must compile to
# (id, what the kernel intends, regex on the demangled kernel name, regex that its SASS must match).
# Every kernel whose name matches, on every architecture, must match the SASS pattern, and at least
# one kernel must match the name (a renamed kernel cannot pass silently).  One line per intention:
# e.g. linear_relu adds ("linear-relu-hmma", "the half GEMM runs on tensor cores",
#                        r"linear_relu\w*<__half\b", r"\bHMMA\.")
SASS_EXPECTATIONS = [
    ("softmax-vec-loads", "vectorized softmax kernels load 16 bytes per access (LDG.E.128)",
     r"\bsoftmax_(fwd|bwd)_(warp|block)_kernel<(float, 4|double, 2|__half, 8|__nv_bfloat16, 8),", r"\bLDG\.E\.128\b"),
    ("softmax-vec-stores", "vectorized softmax kernels store 16 bytes per access (STG.E.128)",
     r"\bsoftmax_(fwd|bwd)_(warp|block)_kernel<(float, 4|double, 2|__half, 8|__nv_bfloat16, 8),", r"\bSTG\.E\.128\b"),
    ("linear-hmma", "the fp16/bf16 GEMM (and fp32 as TF32) runs on tensor cores (HMMA)",
     r"\blinear_relu_wmma_kernel<(__half|__nv_bfloat16|float)\b", r"\bHMMA\b"),
    ("linear-vec-loads", "the SIMT GEMMs' vectorized variants load 16 bytes per access (LDG.E.128)",
     r"\blinear_relu_simt(128|64|32)_kernel<float, .*, 4>", r"\bLDG\.E\.128\b"),
    ("linear-vec-stores", "the SIMT GEMMs' vectorized variants store C 16 bytes per access (STG.E.128)",
     r"\blinear_relu_simt(128|64|32)_kernel<float, .*, 4>", r"\bSTG\.E\.128\b"),
    ("adam-vec-loads", "the multi-tensor Adam loads 16 bytes per access when aligned (LDG.E.128)",
     r"\badam_multi_tensor_kernel<", r"\bLDG\.E\.128\b"),
    ("adam-vec-stores", "the multi-tensor Adam stores 16 bytes per access when aligned (STG.E.128)",
     r"\badam_multi_tensor_kernel<", r"\bSTG\.E\.128\b"),
    ("xent-vec-loads", "vectorized cross-entropy kernels load 16 bytes per access (LDG.E.128)",
     r"\bcross_entropy_(fwd|bwd)_(warp|block)_kernel<(float, 4|double, 2|__half, 8|__nv_bfloat16, 8),", r"\bLDG\.E\.128\b"),
]


# ---------------------------------------------------------------- cuobjdump parsing
def demangle(names):
    names = list(names)
    if not names or not shutil.which("c++filt"):
        return {n: n for n in names}
    out = run(["c++filt"], input="\n".join(names) + "\n", check=True).stdout.splitlines()
    return dict(zip(names, out))


def parse_sass(text: str) -> dict:
    """{(arch, mangled name): SASS text of that function}"""
    sass, arch, fn, lines = {}, None, None, []

    def flush():
        if fn:
            sass[(arch, fn)] = "\n".join(lines)

    for line in text.splitlines():
        m = re.match(r"\s*code for (sm_\d+)", line)
        if m:
            flush()
            arch, fn, lines = m.group(1), None, []
            continue
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            flush()
            fn, lines = m.group(1), []
            continue
        if fn:
            lines.append(line)
    flush()
    return sass


@pytest.fixture(scope="module")
def audit():
    """Resource usage and SASS of every kernel in pyops._C, and the report file."""
    so = Path(_C.__file__)
    cuobjdump = triton_bin("cuobjdump")
    assert cuobjdump.exists(), f"cuobjdump not found at {cuobjdump} (it ships with triton's NVIDIA backend)"
    elf = run([cuobjdump, "--list-elf", so], check=True).stdout
    usage = parse_resource_usage(run([cuobjdump, "--dump-resource-usage", so], check=True).stdout)
    sass = parse_sass(run([cuobjdump, "--dump-sass", so], check=True).stdout)
    names = demangle({fn for _, fn in usage} | {fn for _, fn in sass})
    rows = []
    for (arch, fn), u in sorted(usage.items(), key=lambda kv: (kv[0][0], names[kv[0][1]])):
        code = sass.get((arch, fn), "")
        counts = {k: len(re.findall(p, code)) for k, p in
                  [("STL", r"\bSTL\b"), ("LDL", r"\bLDL\b"), ("LDG128", r"\bLDG\.E\.128\b"),
                   ("STG128", r"\bSTG\.E\.128\b"), ("HMMA", r"\bHMMA\.")]}
        rows.append(dict(arch=arch, mangled=fn, name=names[fn], sass=code, **u, **counts))
    AUDIT_DIR.mkdir(parents=True, exist_ok=True)
    report = AUDIT_DIR / "cuda_resource_usage.txt"
    with open(report, "w") as f:
        f.write(f"# {so.name}: per kernel and architecture (cuobjdump --dump-resource-usage / --dump-sass)\n")
        f.write("# STL/LDL: local-memory stores/loads in the SASS (spills); LDG128/STG128: 16-byte global "
                "accesses; HMMA: tensor-core instructions\n")
        f.write(f"{'arch':6} {'REG':>4} {'SHARED':>7} {'STACK':>6} {'LOCAL':>6} {'STL':>4} {'LDL':>4} "
                f"{'LDG128':>6} {'STG128':>6} {'HMMA':>5}  kernel\n")
        for r in rows:
            f.write(f"{r['arch']:6} {r['REG']:>4} {r['SHARED']:>7} {r['STACK']:>6} {r['LOCAL']:>6} {r['STL']:>4} "
                    f"{r['LDL']:>4} {r['LDG128']:>6} {r['STG128']:>6} {r['HMMA']:>5}  {r['name']}\n")
    return dict(elf=elf, rows=rows, report=report)


@needs_cuda_build
def test_nvcc_warnings_are_fatal(tmp_path):
    """The nvcc flags setup.py builds with contain `--Werror all-warnings`, and with them a warning
    (an unused variable in device code) fails the compile that succeeds -- warning only -- without."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    lists = [ast.literal_eval(n.value) for n in ast.walk(tree)
             if isinstance(n, ast.Assign) and isinstance(n.value, ast.List)
             and any(isinstance(t, ast.Name) and t.id == "nvcc" for t in n.targets)]
    assert len(lists) == 1, "expected one `nvcc = [...]` flag list in setup.py (update this test if it moved)"
    flags = lists[0]
    assert "--Werror" in flags and flags[flags.index("--Werror") + 1] == "all-warnings", flags
    nvcc = cuda_home() / "bin" / "nvcc"
    assert nvcc.exists(), f"pyops._C has CUDA kernels but there is no nvcc at {nvcc} (set CUDA_HOME)"
    src = tmp_path / "warn.cu"
    src.write_text("__global__ void k(float* y) {\n  int unused;\n  y[0] = 1.f;\n}\n")
    relaxed = [f for f in flags if f not in ("--Werror", "all-warnings")]
    lax = run([nvcc, *relaxed, "-arch=sm_80", "-c", src, "-o", tmp_path / "a.o"])
    assert lax.returncode == 0 and "warning" in lax.stderr and "unused" in lax.stderr, lax.stderr
    strict = run([nvcc, *flags, "-arch=sm_80", "-c", src, "-o", tmp_path / "b.o"])
    assert strict.returncode != 0 and re.search(r"error.*\bunused\b|error #177", strict.stdout + strict.stderr), (
        strict.stdout + strict.stderr)


@needs_cuda_build
def test_cubins_for_sm80_and_sm90(audit):
    for arch in ARCHS:
        assert re.search(rf"\bkernels\.{arch}\.cubin\b", audit["elf"]), f"no {arch} cubin in pyops._C:\n{audit['elf']}"
    assert _ops.BUILD["cuda_archs"] == "8.0;9.0", _ops.BUILD["cuda_archs"]


@needs_cuda_build
def test_every_kernel_compiled_for_every_arch(audit):
    """Each __global__ of kernels/cuda has at least one instantiation in each cubin."""
    missing = []
    for kernel, header in cuda_kernels().items():
        for arch in ARCHS:
            if not any(r["arch"] == arch and re.search(rf"\b{kernel}\b", r["name"]) for r in audit["rows"]):
                missing.append(f"{kernel} ({header}) for {arch}")
    assert not missing, "kernels without device code: " + ", ".join(missing)


@needs_cuda_build
def test_no_spills_or_local_memory(audit):
    """No kernel spills registers or uses local memory on any architecture (report in build/audit/)."""
    bad = [f"{r['arch']} {r['name']}: STACK {r['STACK']} LOCAL {r['LOCAL']} STL {r['STL']} LDL {r['LDL']}"
           for r in audit["rows"] if r["STACK"] or r["LOCAL"] or r["STL"] or r["LDL"]]
    assert audit["rows"], "cuobjdump reported no kernels"
    assert not bad, f"spills / local memory (full report: {audit['report']}):\n" + "\n".join(bad)


@needs_cuda_build
@pytest.mark.parametrize("ident,intent,name_re,sass_re", SASS_EXPECTATIONS, ids=[e[0] for e in SASS_EXPECTATIONS])
def test_sass_expectations(audit, ident, intent, name_re, sass_re):
    for arch in ARCHS:
        matched = [r for r in audit["rows"] if r["arch"] == arch and re.search(name_re, r["name"])]
        assert matched, f"{ident}: no {arch} kernel name matches {name_re!r}"
        lacking = [r["name"] for r in matched if not re.search(sass_re, r["sass"])]
        assert not lacking, f"{intent}: {arch} SASS without {sass_re!r} in:\n" + "\n".join(lacking)


def test_global_kernel_parser():
    """The parser behind the kernel-coverage checks (conftest, tests/cpp/main.cpp uses the same rules)."""
    src = """
    // __global__ void in_a_comment(int*) {}
    /* __global__ void in_a_block_comment() {} */
    template <class T, int N>
    __global__ void __launch_bounds__(1024, 1)
    two_lines(const T* x) {}
    __global__ void plain(float* y);
    __global__ static void __launch_bounds__(kThreads * (2)) nested_parens(int) {}
    """
    assert global_kernels(src) == ["two_lines", "plain", "nested_parens"]


# ---------------------------------------------------------------- what `import pyops` loads
def test_import_leaves_compile_support_and_triton_unloaded():
    """`import pyops` costs little over `import torch`: torch._dynamo, torch._inductor and triton (seconds
    between them) load only when something uses them -- torch.compile, a Triton kernel."""
    import subprocess
    import sys

    heavy = ("torch._dynamo", "torch._inductor", "triton")
    code = f"import sys, pyops; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_constant_result_mark_is_dynamos():
    """pyops/_ops.py marks unavailable_reason as dynamo's assume_constant_result does, without importing
    dynamo: the decorator must still set exactly that attribute (else torch.compile would trace the function)."""
    import torch._dynamo

    def f():
        return ""

    before = dict(f.__dict__)
    torch._dynamo.assume_constant_result(f)
    assert {k: v for k, v in f.__dict__.items() if k not in before} == {"_dynamo_marked_constant": True}
    assert _ops.unavailable_reason._dynamo_marked_constant is True


# ---------------------------------------------------------------- the CMake build for C++ users
@pytest.mark.slow
def test_cmake_build_and_ctest():
    """CMakeLists.txt configures against the pip torch, builds libpyops (CPU kernels), libpyops_sim (the
    emulator) and the C++ tests, and CTest passes.  CUDA kernels and the sanitizer builds are left out
    to bound the time: nvcc compiles the CUDA kernels in every `make build`, and `make test-cpp` runs
    the sanitizer builds.  Incremental: the build folder build/cmake-test is kept between runs."""
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed")
    import sys

    import torch

    build = ROOT / "build" / "cmake-test"
    configure = run(["cmake", "-S", ROOT, "-B", build, "-DPYOPS_CUDA=OFF", "-DPYOPS_SANITIZER_TESTS=OFF",
                     f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DPython3_EXECUTABLE={sys.executable}"],
                    timeout=600)
    assert configure.returncode == 0, configure.stdout[-3000:] + configure.stderr[-3000:]
    compiled = run(["cmake", "--build", build, "-j", str(os.cpu_count() or 2)], timeout=1200)
    assert compiled.returncode == 0, compiled.stdout[-5000:] + compiled.stderr[-5000:]
    ctest = run(["ctest", "--test-dir", build, "--output-on-failure"], timeout=600)
    assert ctest.returncode == 0, ctest.stdout[-5000:] + ctest.stderr[-3000:]
    for name in ("driver_plain", "driver_plain_reverse_order", "pyops_cpp_smoke"):
        assert re.search(rf"Test\s+#\d+: {name} \.+\s+Passed", ctest.stdout), f"ctest did not pass {name}:\n{ctest.stdout}"
