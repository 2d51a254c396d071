"""Ahead-of-time compilation of pyops' Triton kernels for real GPUs, without a GPU (used by
tests/test_triton_aot.py; runnable by hand).

    TRITON_INTERPRET=0 python tests/triton_aot.py --out build/audit/triton_aot.json [--jobs 2] [--archs 80,90]

Every module kernels/<op>.py (pyops.kernels.<op>) that defines aot_variants() yields dicts
    {"kernel": jitfn, "signature": {arg: type}, "constexprs": {...}, "num_warps": n,
     "expect_vector_loads": bool, "divisible_by_16": [args]  (optional)}
and each is compiled with triton.compile(ASTSource(...), target=GPUTarget("cuda", arch, 32)) for every
arch.  `divisible_by_16` becomes the tt.divisibility attribute Triton's JIT sets at run time for
16-byte-aligned pointers and integers that are multiples of 16.  For each compile the cubin is read
back with cuobjdump (registers, shared memory, stack frame -- where spills go --, local memory) and
the PTX is searched for 128-bit global loads.  The JSON result also lists the @triton.jit kernels of each module
that no variant compiles.

Must run with TRITON_INTERPRET unset or 0: under the interpreter @triton.jit yields InterpretedFunction
objects, which cannot be compiled.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

# 16-byte global loads in PTX: 4 x 32-bit (fp32, and fp16/bf16 pairs) or 2 x 64-bit (fp64) into registers, or
# cp.async.cg into shared memory (the tiles of tl.dot on sm_80+: .cg copies are 16 bytes by definition).
VECTOR_LOAD = re.compile(r"\bld\.global(?:\.[a-z0-9_]+)*\.(?:v4\.(?:b32|f32|u32|s32)|v2\.(?:b64|f64|u64|s64))\b"
                         r"|\bcp\.async\.cg\.shared\.global\b")


def modules():
    import pyops.kernels as pkg

    out = {}
    for m in pkgutil.iter_modules(pkg.__path__):
        mod = importlib.import_module(f"pyops.kernels.{m.name}")
        if hasattr(mod, "aot_variants"):
            out[m.name] = mod
    return out


def variants():
    """[(module name, index, variant dict)] in a stable order."""
    return [(name, i, v) for name, mod in sorted(modules().items()) for i, v in enumerate(mod.aot_variants())]


def describe(v) -> str:
    c = ", ".join(f"{k}={getattr(x, 'name', x)}" for k, x in v["constexprs"].items())
    ptrs = sorted({t for t in v["signature"].values() if t.startswith("*")})
    ints = sorted({t for t in v["signature"].values() if t in ("i32", "i64")})
    aligned = " aligned16" if v.get("divisible_by_16") else ""
    return f"{v['kernel'].__name__}[{'/'.join(ptrs)} {'/'.join(ints)} {c} warps={v['num_warps']}{aligned}]"


def cuobjdump(path, *args):
    import triton

    exe = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    return subprocess.run([exe, *args, path], capture_output=True, text=True, check=True).stdout


def compile_one(task):
    """Compile variant `index` of module `name` for sm_`arch`; a dict of what was found."""
    name, index, arch = task
    import triton
    from triton.backends.compiler import GPUTarget

    v = list(modules()[name].aot_variants())[index]
    fn, sig = v["kernel"], v["signature"]
    names = list(sig)
    attrs = {(names.index(a),): [["tt.divisibility", 16]] for a in v.get("divisible_by_16", [])}
    res = {"module": name, "index": index, "arch": arch, "variant": describe(v),
           "expect_vector_loads": bool(v.get("expect_vector_loads"))}
    t0 = time.time()
    try:
        src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=v["constexprs"], attrs=attrs)
        k = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": v["num_warps"]})
    except Exception as e:  # noqa: BLE001 -- the test reports it
        res["error"] = f"{type(e).__name__}: {e}"
        return res
    res["seconds"] = round(time.time() - t0, 2)
    ptx = k.asm["ptx"]
    res["vector_loads"] = len(VECTOR_LOAD.findall(ptx))
    res["global_loads"] = sorted(set(re.findall(r"\b(?:ld\.global|cp\.async\.c[ag]\.shared\.global)[\w.]*", ptx)))
    res["shared"] = k.metadata.shared
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        # (spilled registers live in the stack frame: STACK > 0; the SASS dump would cost 0.5 s per cubin)
        usage = cuobjdump(f.name, "--dump-resource-usage")
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", usage)
    if not m:
        res["error"] = f"cuobjdump printed no resource usage:\n{usage}"
        return res
    res.update(zip(("REG", "STACK", "SHARED", "LOCAL"), map(int, m.groups())))
    return res


def uncovered():
    """{module: [@triton.jit functions of the module that no variant compiles]}: a kernel is compiled by its
    variants, a @triton.jit helper (a device function) by every compiled function that calls it."""
    from triton.runtime.jit import JITFunction

    out = {}
    for name, mod in modules().items():
        jitted = {n: o for n, o in vars(mod).items() if isinstance(o, JITFunction) and o.__module__ == mod.__name__}
        covered = {v["kernel"].__name__ for v in mod.aot_variants()}
        grew = True
        while grew:  # helpers called from compiled functions, transitively
            calls = {n for n in jitted for c in covered if c in jitted and re.search(rf"\b{n}\(", jitted[c].src)}
            grew = not calls <= covered
            covered |= calls
        out[name] = sorted(set(jitted) - covered)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--archs", default="80,90")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        sys.exit("triton_aot.py: run with TRITON_INTERPRET=0 (the interpreter's kernels cannot be compiled)")
    tasks = [(name, i, int(a)) for name, i, _ in variants() for a in args.archs.split(",")]
    t0 = time.time()
    from triton.runtime.cache import triton_key

    triton_key()  # hashes triton's own sources (~1 s): once here, inherited by the forked workers
    with ProcessPoolExecutor(args.jobs) as ex:
        results = list(ex.map(compile_one, tasks))
    out = {"results": results, "uncovered": uncovered(), "seconds": round(time.time() - t0, 1)}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"{len(results)} compiles in {out['seconds']} s -> {args.out}")


if __name__ == "__main__":
    main()
