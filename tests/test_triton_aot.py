"""Triton AOT audit: the real Triton compiler accepts every Triton kernel for sm_80 and sm_90, with the
block sizes and dtypes the launchers use, without spills, and with 128-bit loads where intended.

The interpreter (TRITON_INTERPRET=1, set by conftest.py) proves the kernels' semantics on CPU tensors;
this proves they compile for real GPUs.  The kernels are compiled ahead of time in a subprocess with
TRITON_INTERPRET=0 (under the interpreter @triton.jit makes InterpretedFunction objects, which cannot be
compiled) by tests/triton_aot.py, from each kernels/<op>.py's aot_variants(); the results land in
build/audit/triton_aot.json and the per-variant report in build/audit/triton_resource_usage.txt.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AUDIT_DIR = ROOT / "build" / "audit"
KERNEL_MODULES = sorted(p for p in (ROOT / "kernels").glob("*.py") if p.name != "__init__.py")
# modules with Triton kernels; each must define aot_variants()
TRITON_MODULES = [p.stem for p in KERNEL_MODULES if "@triton.jit" in p.read_text()]

pytest.importorskip("triton", reason="triton is not installed: no Triton kernels to audit")


@pytest.fixture(scope="module")
def aot():
    out = AUDIT_DIR / "triton_aot.json"
    env = dict(os.environ, TRITON_INTERPRET="0")
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "triton_aot.py"), "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=1200, cwd=ROOT)
    assert p.returncode == 0, f"tests/triton_aot.py failed:\n{p.stdout}\n{p.stderr}"
    data = json.loads(out.read_text())
    with open(AUDIT_DIR / "triton_resource_usage.txt", "w") as f:
        f.write(f"# Triton AOT compiles ({len(data['results'])} in {data['seconds']} s): cubin resource usage "
                "(cuobjdump; spills would show as STACK), vec: 128-bit global loads in the PTX\n")
        f.write(f"{'arch':5} {'REG':>4} {'SHARED':>7} {'STACK':>6} {'LOCAL':>6} {'vec':>4}  variant\n")
        for r in data["results"]:
            if "error" in r:
                f.write(f"sm_{r['arch']:<3} COMPILE ERROR  {r['variant']}: {r['error']}\n")
            else:
                f.write(f"sm_{r['arch']:<3} {r['REG']:>4} {r['SHARED']:>7} {r['STACK']:>6} {r['LOCAL']:>6} "
                        f"{r['vector_loads']:>4}  {r['variant']}\n")
    return data


def results(aot, module):
    rs = [r for r in aot["results"] if r["module"] == module]
    assert rs, f"kernels/{module}.py: aot_variants() yielded nothing"
    return rs


@pytest.mark.parametrize("module", TRITON_MODULES)
def test_triton_modules_define_aot_variants(module):
    assert "def aot_variants" in (ROOT / "kernels" / f"{module}.py").read_text(), (
        f"kernels/{module}.py has Triton kernels but no aot_variants() for this audit")


@pytest.mark.parametrize("module", TRITON_MODULES)
def test_every_triton_kernel_has_a_variant(aot, module):
    assert module in aot["uncovered"], f"kernels/{module}.py was not audited (no aot_variants()?)"
    assert not aot["uncovered"][module], f"kernels/{module}.py: @triton.jit kernels no variant compiles: " + \
        ", ".join(aot["uncovered"][module])


@pytest.mark.parametrize("module", TRITON_MODULES)
def test_compiles_for_sm80_and_sm90(aot, module):
    rs = results(aot, module)
    errors = [f"sm_{r['arch']} {r['variant']}: {r['error']}" for r in rs if "error" in r]
    assert not errors, "compile errors:\n" + "\n".join(errors)
    assert {r["arch"] for r in rs} == {80, 90}


@pytest.mark.parametrize("module", TRITON_MODULES)
def test_no_spills(aot, module):
    """No stack frame (where ptxas spills registers) and no local memory, in any cubin."""
    bad = [f"sm_{r['arch']} {r['variant']}: STACK {r['STACK']} LOCAL {r['LOCAL']}"
           for r in results(aot, module) if "error" not in r and (r["STACK"] or r["LOCAL"])]
    assert not bad, "spills / local memory:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", TRITON_MODULES)
def test_vector_loads_where_intended(aot, module):
    """Variants marked expect_vector_loads have 128-bit global loads in their PTX (ld.global.v4.b32, or
    ld.global.v2.b64 for fp64)."""
    intended = [r for r in results(aot, module) if r["expect_vector_loads"] and "error" not in r]
    if not intended:
        pytest.skip(f"kernels/{module}.py marks no variant expect_vector_loads")
    scalar = [f"sm_{r['arch']} {r['variant']}: {r['global_loads']}" for r in intended if not r["vector_loads"]]
    assert not scalar, "expected 128-bit loads, PTX has only:\n" + "\n".join(scalar)
