"""A GPU memory profiler that needs no GPU: Nsight-Compute-style memory metrics of pyops' CUDA kernels,
counted exactly by the CUDA-on-CPU emulator's counting build (pyops._C_prof; docs/profiling.md).

    import pyops, pyops.profile as prof
    x = torch.randn(64, 10)
    with prof.record(x) as rec:                 # every cuda-sim launch inside is counted
        pyops.softmax(x, dim=1, backend="cuda-sim")
    for launch in rec.launches:
        print(launch.kernel, launch.sectors_per_request("global_load"), launch.excess_wavefronts)

    python -m pyops profile softmax --shape 64,10 --direction both [--json] [--by-line]

``Counter(path)`` reads any counting module (one built with csrc/sim/profile_rt.h), e.g. a learner's own
kernel; ``record()`` is that counter for pyops' ops.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch

CLASSES = ("global_load", "global_store", "global_atomic", "shared_load", "shared_store")


class ProfileError(RuntimeError):
    """The profiler cannot run here (no counting build) or was given bad input."""


_demangled: dict = {}


def demangle(symbol: str) -> str:
    """c++filt's reading of a mangled name ('' when there is none or c++filt is missing)."""
    if not symbol:
        return ""
    if symbol not in _demangled:
        tool = shutil.which("c++filt")
        _demangled[symbol] = (subprocess.run([tool, symbol], capture_output=True, text=True).stdout.strip()
                              if tool else "")
    return _demangled[symbol]


# ---------------------------------------------------------------- one launch's counts
@dataclass
class Launch:
    """One kernel launch, counted.  ``raw`` is the counting module's record (simt_prof_json)."""

    raw: dict
    lines: dict = field(default_factory=dict)  # site pc -> "file:line" (filled by Counter.launches(by_line=True))

    kernel = property(lambda self: self.raw["kernel"])
    grid = property(lambda self: tuple(self.raw["grid"]))
    block = property(lambda self: tuple(self.raw["block"]))
    dynamic_smem = property(lambda self: self.raw["smem"])

    @property
    def name(self) -> str:
        """The kernel with its template arguments, without namespaces: ``softmax_fwd_warp_kernel<float, 4, false>``
        (demangled from its symbol; the launch's source text when there is none)."""
        full = demangle(self.raw.get("symbol", "")) or self.raw["kernel"]
        full = re.sub(r"^void ", "", full.replace("pyops::cuda::", "").replace("(anonymous namespace)::", ""))
        depth, end = 0, len(full)
        for i, ch in enumerate(full):  # drop the parameter list
            depth += ch == "<"
            depth -= ch == ">"
            if ch == "(" and depth == 0:
                end = i
                break
        return re.sub(r"^(\w+::)+", "", full[:end]).strip()

    @property
    def base_name(self) -> str:
        return self.name.split("<")[0]

    def cls(self, c: str) -> dict:
        return self.raw["classes"][c]

    def requests(self, c: str) -> int:
        return self.cls(c)["requests"]

    def sectors_per_request(self, c: str) -> float:
        q = self.cls(c)
        return q["sectors"] / q["requests"] if q["requests"] else 0.0

    def ideal_sectors_per_request(self, c: str) -> float:
        q = self.cls(c)
        return q["ideal_sectors"] / q["requests"] if q["requests"] else 0.0

    def l1_bytes(self, c: str) -> int:
        """Bytes moved between L1 and L2 for class ``c``: 32 per sector."""
        return 32 * self.cls(c)["sectors"]

    @property
    def unique_bytes(self) -> int:
        """(Distinct 32-byte sectors read + distinct sectors written) x 32: the DRAM-side lower bound (a sector
        read and written, as in an in-place update, moves twice)."""
        return 32 * (self.raw["unique_sectors"]["load"] + self.raw["unique_sectors"]["store"])

    @property
    def excess_sectors(self) -> int:
        return sum(self.cls(c)["sectors"] - self.cls(c)["ideal_sectors"] for c in CLASSES[:3])

    @property
    def wavefronts(self) -> int:
        return self.cls("shared_load")["wavefronts"] + self.cls("shared_store")["wavefronts"]

    @property
    def excess_wavefronts(self) -> int:
        """Shared-memory wavefronts above the minimum: bank conflicts."""
        return sum(self.cls(c)["wavefronts"] - self.cls(c)["ideal_wavefronts"] for c in CLASSES[3:])

    @property
    def warps(self) -> int:
        return self.raw["warps"]

    def per_warp(self, key: str) -> float:
        return self.raw[key] / self.warps if self.warps else 0.0

    @property
    def lanes_per_access(self) -> float:
        """Active lanes per warp-level access: an estimate from the source (blind to nvcc's predication)."""
        req = sum(self.cls(c)["requests"] for c in CLASSES)
        return sum(self.cls(c)["lanes"] for c in CLASSES) / req if req else 0.0

    def sites(self) -> list[dict]:
        """Per program point: class, width, requests, sectors, wavefronts (and ``line`` when resolved)."""
        return [dict(s, line=self.lines.get(s["pc"], "?")) for s in self.raw["sites"]]

    def to_dict(self) -> dict:
        d = {"kernel": self.name, "symbol": self.raw.get("symbol", ""), "grid": list(self.grid), "block": list(self.block),
             "dynamic_smem": self.dynamic_smem, "blocks": self.raw["blocks"], "warps": self.warps}
        for c in CLASSES:
            q = self.cls(c)
            if not q["requests"]:
                continue
            e = {"requests": q["requests"], "lanes_per_request": round(q["lanes"] / q["requests"], 2)}
            if c.startswith("global"):
                e.update(sectors=q["sectors"], ideal_sectors=q["ideal_sectors"], sectors_per_request=round(self.sectors_per_request(c), 2),
                         ideal_sectors_per_request=round(self.ideal_sectors_per_request(c), 2),
                         l1_bytes=self.l1_bytes(c), requested_bytes=q["bytes"])
            else:
                e.update(wavefronts=q["wavefronts"], ideal_wavefronts=q["ideal_wavefronts"],
                         excess_wavefronts=q["wavefronts"] - q["ideal_wavefronts"])
            d[c] = e
        d["unique_bytes"] = {"load": 32 * self.raw["unique_sectors"]["load"],
                             "store": 32 * self.raw["unique_sectors"]["store"], "all": self.unique_bytes,
                             "distinct": 32 * self.raw["unique_sectors"]["all"]}
        d["barriers_per_warp"] = round(self.per_warp("barriers"), 2)
        d["collectives_per_warp"] = {k: round(self.per_warp(k), 2) for k in ("shuffles", "votes", "reduces", "syncwarps")}
        d["lanes_per_access_estimate"] = round(self.lanes_per_access, 2)
        d["access_widths"] = sorted({(s["class"], s["size"]) for s in self.raw["sites"]})
        if self.lines:
            d["sites"] = self.sites()
        return d


# ---------------------------------------------------------------- a counting module, through its C API
class Counter:
    """The C API of a counting module (csrc/sim/profile_rt.h) at ``path``: any module built with it."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        self.lib = lib = ctypes.CDLL(self.path)
        lib.simt_prof_json.restype = ctypes.c_char_p
        lib.simt_prof_register.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.simt_prof_redirect.restype = ctypes.c_void_p

    def register(self, *objs) -> None:
        """Count accesses to these tensors' storages (or (address, nbytes) pairs) as global memory."""
        for o in objs:
            if isinstance(o, torch.Tensor):
                if o.device.type != "cpu":
                    raise ProfileError(f"profile: expected CPU tensors (the emulator's memory), got one on {o.device}")
                s = o.untyped_storage()
                self.lib.simt_prof_register(s.data_ptr(), s.nbytes())
            else:
                addr, n = o
                self.lib.simt_prof_register(int(addr), int(n))

    def begin(self) -> None:
        self.lib.simt_prof_begin()

    def end(self) -> int:
        return self.lib.simt_prof_end()

    def launches(self, by_line: bool = False) -> list[Launch]:
        out = [Launch(r) for r in json.loads(self.lib.simt_prof_json())]
        if by_line:
            lines = source_lines(self.path, {s["pc"] for L in out for s in L.raw["sites"]})
            for L in out:
                L.lines = lines
        return out


def source_lines(path: str, pcs) -> dict:
    """pc (module offset, hex) -> "file:line" of the innermost frame in kernels/ (addr2line -i on the line table)."""
    pcs = sorted(pcs)
    tool = shutil.which("addr2line")
    if not pcs or not tool:
        return {}
    out = subprocess.run([tool, "-i", "-e", path, *pcs], capture_output=True, text=True).stdout.splitlines()
    # with -i, each address prints its inline chain (innermost first); without -f, one "file:line" per frame.
    # Split the output per address by running one address at a time when the chains' lengths differ.
    res = {}
    if len(out) == len(pcs):
        chains = [[o] for o in out]
    else:
        chains = [subprocess.run([tool, "-i", "-e", path, pc], capture_output=True, text=True).stdout.splitlines()
                  for pc in pcs]
    for pc, chain in zip(pcs, chains):
        pick = next((c for c in chain if "/kernels/" in c or c.startswith("kernels/")), chain[0] if chain else "?")
        m = re.search(r"(kernels/.*|[^/]+)$", pick.split(" (discriminator")[0])
        res[pc] = m.group(1) if m else pick
    return res


# ---------------------------------------------------------------- pyops' own kernels: pyops._C_prof
def _module_path(name: str) -> str:
    import importlib

    try:
        return importlib.import_module(f"pyops.{name}").__file__
    except ImportError as e:
        raise ProfileError(f"profile: pyops.{name} is not built ({e}); build with the CUDA headers "
                           "(make build; PYOPS_SIM and PYOPS_PROF not 0)") from e


_counter: Counter | None = None


def unavailable_reason() -> str:
    """Why pyops' kernels cannot be profiled here ('' when they can)."""
    try:
        counter()
    except (ProfileError, OSError, AttributeError) as e:
        return str(e)
    return ""


def available() -> bool:
    return not unavailable_reason()


def counter() -> Counter:
    """The counter of pyops._C_prof (pyops' kernels in the counting build)."""
    global _counter
    if _counter is None:
        from . import _ops  # noqa: F401  (loads pyops._C_sim)

        c = Counter(_module_path("_C_prof"))
        c.lib.pyops_prof_cpu_allocator.argtypes = [ctypes.c_int]
        c.sim = ctypes.CDLL(_module_path("_C_sim"))
        c.sim.pyops_sim_set_redirect.argtypes = [ctypes.c_void_p]
        _counter = c
    return _counter


@dataclass
class Recording:
    launches: list = field(default_factory=list)


@contextlib.contextmanager
def record(*tensors, by_line: bool = False):
    """Count every cuda-sim launch in the block: they run in the counting build.  The given tensors and every
    CPU tensor allocated inside the block are global memory (each at its own 256-byte aligned virtual base)."""
    c = counter()
    rec = Recording()
    c.lib.pyops_prof_cpu_allocator(1)
    try:
        c.register(*tensors)
        c.begin()
        c.sim.pyops_sim_set_redirect(c.lib.simt_prof_redirect())
        try:
            yield rec
        finally:
            c.sim.pyops_sim_set_redirect(None)
            c.end()
    finally:
        c.lib.pyops_prof_cpu_allocator(0)
        c.lib.simt_prof_clear_ranges()  # the host may reuse this memory: later recordings register their own
    rec.launches = c.launches(by_line=by_line)


# ---------------------------------------------------------------- occupancy from the cubins' resource usage
# Per SM, for the CUDA occupancy calculator's rules (CUDA C++ Programming Guide, compute capabilities table):
# warps, blocks, 32-bit registers (allocated per warp in units of 256), shared memory (carve-out maximum;
# 1 KiB reserved per block, allocated in 128-byte units).
ARCHS = {
    "sm_80": dict(max_warps=64, max_blocks=32, regs=65536, smem=167936, smem_per_block=166912),
    "sm_90": dict(max_warps=64, max_blocks=32, regs=65536, smem=233472, smem_per_block=232448),
}


def occupancy(arch: str, threads: int, regs_per_thread: int, static_smem: int, dynamic_smem: int) -> dict:
    """Theoretical occupancy of one kernel launch: active warps per SM / maximum, and what limits it."""
    a = ARCHS[arch]
    warps = -(-threads // 32)
    limits = {"block size": min(a["max_blocks"], a["max_warps"] // warps)}
    per_warp_regs = -(-max(regs_per_thread, 1) * 32 // 256) * 256
    limits["registers"] = (a["regs"] // per_warp_regs) // warps
    smem = static_smem + dynamic_smem
    if smem:
        per_block = -(-(smem + 1024) // 128) * 128
        limits["shared memory"] = a["smem"] // per_block if smem <= a["smem_per_block"] else 0
    blocks = min(limits.values())
    limiter = min(limits, key=lambda k: (limits[k], k != "block size"))
    return {"blocks_per_sm": blocks, "warps_per_sm": blocks * warps, "occupancy": round(blocks * warps / a["max_warps"], 3),
            "limiter": limiter}


def parse_resource_usage(text: str) -> dict:
    """{(arch, mangled kernel name): {"REG": n, "STACK": n, "SHARED": n, "LOCAL": n, ...}} from the text of
    `cuobjdump --dump-resource-usage` (the build audit in tests/test_build.py reads it the same way)."""
    usage, arch, fn = {}, None, None
    for line in text.splitlines():
        m = re.match(r"\s*arch = (sm_\d+)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"\s*Function (\S+):\s*$", line)
        if m:
            fn = m.group(1)
            continue
        if fn and re.match(r"\s*REG:\d+", line):
            usage[(arch, fn)] = {k: int(v) for k, v in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line)}
            fn = None
    return usage


_usage_cache: dict | None = None


def resource_usage() -> dict:
    """{(arch, mangled kernel name): {"REG": n, "SHARED": bytes, ...}} of pyops._C's cubins (cuobjdump), or {}
    when pyops._C has no CUDA device code (a CPU-only build) or cuobjdump is missing."""
    global _usage_cache
    if _usage_cache is None:
        try:
            import triton

            tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
            from . import _C

            text = subprocess.run([str(tool), "--dump-resource-usage", _C.__file__], capture_output=True,
                                  text=True).stdout
        except (ImportError, OSError):
            text = ""
        _usage_cache = parse_resource_usage(text)
    return _usage_cache


def launch_occupancy(L: Launch) -> dict:
    """{arch: occupancy(...) + registers, static smem} for the launch's kernel, from the sm_80/sm_90 cubins."""
    out = {}
    threads = L.block[0] * L.block[1] * L.block[2]
    for arch in ARCHS:
        u = resource_usage().get((arch, L.raw.get("symbol", "")))
        if u is None:
            continue
        out[arch] = dict(occupancy(arch, threads, u["REG"], u.get("SHARED", 0), L.dynamic_smem),
                         registers=u["REG"], static_smem=u.get("SHARED", 0))
    return out


# ---------------------------------------------------------------- pyops' ops, profiled
# Each op: how to parse --shape, the MNIST shape and a large one, how to run it (fwd, bwd), and the minimum
# bytes of its docs' bytes model (docs/<op>.md), with `e` the element size.
def _elt(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _softmax(log):
    def run(shape, dtype, direction):
        n, c = shape
        x = torch.randn(n, c, dtype=dtype)
        fn = (lambda t: __import__("pyops").log_softmax(t, dim=1, backend="cuda-sim")) if log else \
             (lambda t: __import__("pyops").softmax(t, dim=1, backend="cuda-sim"))
        if direction == "fwd":
            with record(x) as r:
                fn(x)
            return r
        xg = x.requires_grad_()
        y = fn(xg)
        g = torch.randn_like(y)
        with record(x, y, g) as r:
            y.backward(g)
        return r
    return run


def _linear(shape, dtype, direction):
    import pyops

    m, k, n = shape
    x = torch.randn(m, k, dtype=dtype) / k ** 0.5
    w = torch.randn(n, k, dtype=dtype) / k ** 0.5
    b = torch.randn(n, dtype=dtype)
    if direction == "fwd":
        with record(x, w, b) as r:
            pyops.linear_relu(x, w, b, backend="cuda-sim")
        return r
    for t in (x, w, b):
        t.requires_grad_()
    y = pyops.linear_relu(x, w, b, backend="cuda-sim")
    g = torch.randn_like(y)
    with record(x, w, b, y, g) as r:
        y.backward(g)
    return r


def _loss(name):
    """The runner of loss ``name`` ("cross_entropy" on logits, "nll_loss" on log-probabilities)."""
    def run(shape, dtype, direction):
        import pyops

        fn = getattr(pyops, name)
        n, c = shape
        x = torch.randn(n, c, dtype=dtype)
        if name == "nll_loss":
            x = torch.log_softmax(x, dim=1)
        t = torch.randint(0, c, (n,))
        if direction == "fwd":
            with record(x, t) as r:
                fn(x, t, backend="cuda-sim")
            return r
        x.requires_grad_()
        loss = fn(x, t, backend="cuda-sim")
        with record(x, t) as r:
            loss.backward()
        return r
    return run


MNIST_PARAMS = [(256, 784), (256,), (128, 256), (128,), (64, 128), (64,), (10, 64), (10,)]


def _adam(shape, dtype, direction):
    import pyops

    shapes = MNIST_PARAMS if shape == (0,) else [shape]
    ps = [torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes]
    for p in ps:
        p.grad = torch.randn_like(p)
    opt = pyops.optim.Adam(ps, lr=1e-3, backend="cuda-sim")
    opt.step()  # the state exists from here on
    state = [t for p in ps for t in opt.state[p].values() if isinstance(t, torch.Tensor)]
    with record(*ps, *[p.grad for p in ps], *state) as r:
        opt.step()
    return r


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


OPS = {
    # name: (runner, shape help, MNIST shape, large shape, directions, minimum bytes (shape, e, direction))
    "softmax": (_softmax(False), "N,C", (64, 10), (16, 8192), ("fwd", "bwd"),
                lambda s, e, d: (2 if d == "fwd" else 3) * s[0] * s[1] * e),
    "log_softmax": (_softmax(True), "N,C", (64, 10), (16, 8192), ("fwd", "bwd"),
                    lambda s, e, d: (2 if d == "fwd" else 3) * s[0] * s[1] * e),
    "linear_relu": (_linear, "M,K,N (x [M,K], W [N,K])", (64, 784, 256), (128, 256, 512), ("fwd", "bwd"),
                    lambda s, e, d: e * (s[0] * s[1] + s[2] * s[1] + s[2] + s[0] * s[2]) if d == "fwd" else
                    e * (2 * s[0] * s[2] + 2 * s[0] * s[1] + 2 * s[2] * s[1] + s[2])),
    # docs/cross_entropy.md's model (x; x and dx) plus its O(N) terms: int64 targets, the double lse per row
    # (written by the forward, read by the backward) and the scalar loss / incoming gradient
    "cross_entropy": (_loss("cross_entropy"), "N,C", (64, 10), (16, 8192), ("fwd", "bwd"),
                      lambda s, e, d: (1 if d == "fwd" else 2) * s[0] * s[1] * e + 16 * s[0] + e),
    # nll_loss: the forward gathers one log-probability per row; the backward writes dx (and reads the targets)
    "nll_loss": (_loss("nll_loss"), "N,C", (64, 10), (16, 8192), ("fwd", "bwd"),
                 lambda s, e, d: (s[0] * e if d == "fwd" else s[0] * s[1] * e) + 8 * s[0] + e),
    "adam": (_adam, "P (one parameter of P elements; 0: the MNIST MLP's eight)", (0,), (1 << 18,), ("fwd",),
             lambda s, e, d: (28 if e == 4 else 28 * e // 4) * (sum(_numel(p) for p in MNIST_PARAMS) if s == (0,) else s[0])),
}


_op_cache: dict = {}


def profile_op(op: str, shape=None, dtype=torch.float32, direction: str = "fwd", by_line: bool = False,
               cache: bool = False) -> dict:
    """Run ``op`` (a key of OPS) on cuda-sim with counting on; its launches, their totals, the bytes model.
    The counts depend only on the arguments (the data is seeded), so ``cache=True`` reuses an earlier result."""
    key = (op, None if shape is None else tuple(shape), dtype, direction, by_line)
    if cache and key in _op_cache:
        return _op_cache[key]
    rep = _profile_op(op, shape, dtype, direction, by_line)
    if cache:
        _op_cache[key] = rep
    return rep


def _profile_op(op: str, shape, dtype, direction: str, by_line: bool) -> dict:
    if op not in OPS:
        raise ProfileError(f"profile: unknown op {op!r}; expected one of {', '.join(OPS)}")
    runner, shape_help, mnist, _, dirs, minimum = OPS[op]
    if direction not in dirs:
        raise ProfileError(f"profile: {op} has no direction {direction!r}; expected one of {', '.join(dirs)}")
    shape = tuple(mnist if shape is None else shape)
    if len(shape) != len(mnist) or any(int(s) < 0 for s in shape):
        raise ProfileError(f"profile: {op} takes --shape {shape_help}, got {','.join(map(str, shape))}")
    torch.manual_seed(0)  # data-dependent accesses (ReLU masks, class gathers) count the same every run
    rec = runner(shape, dtype, direction)
    launches = rec.launches
    if by_line:
        lines = source_lines(counter().path, {s["pc"] for L in launches for s in L.raw["sites"]})
        for L in launches:
            L.lines = lines
    return make_report(op, shape, dtype, direction, launches, minimum(shape, _elt(dtype), direction))


_SUMMED = {"global": ("requests", "sectors", "ideal_sectors", "l1_bytes", "requested_bytes"),
           "shared": ("requests", "wavefronts", "ideal_wavefronts", "excess_wavefronts")}


def totals(launches: list, min_bytes: int | None = None) -> dict:
    """The sum over several launches (``Launch`` objects or their ``to_dict()`` rows), as an op or a training
    step that launches several kernels moves them: per class its requests, sectors (with the ideal) and
    L1-level bytes, or shared wavefronts (with the ideal and the excess); unique bytes summed over the launches
    (each launch is counted from a cold cache, so a tensor one launch writes and the next reads counts in both:
    what DRAM moves when nothing stays in L2 between them); barriers and warps.  With ``min_bytes`` (a bytes
    model's minimum) also the ratio of the unique bytes to it."""
    rows = [L.to_dict() if isinstance(L, Launch) else L for L in launches]
    out: dict = {"launches": len(rows), "kernels": len({r["kernel"] for r in rows})}
    for c in CLASSES:
        present = [r[c] for r in rows if c in r]
        if not present:
            continue
        e = {k: sum(x[k] for x in present) for k in _SUMMED[c.split("_")[0]]}
        if c.startswith("global"):
            e["sectors_per_request"] = round(e["sectors"] / e["requests"], 2) if e["requests"] else 0.0
            e["ideal_sectors_per_request"] = round(e["ideal_sectors"] / e["requests"], 2) if e["requests"] else 0.0
        out[c] = e
    out["unique_bytes"] = {k: sum(r["unique_bytes"][k] for r in rows) for k in ("load", "store", "all")}
    out["warps"] = sum(r["warps"] for r in rows)
    out["barriers"] = round(sum(r["barriers_per_warp"] * r["warps"] for r in rows))
    if min_bytes is not None:
        out["model_min_bytes"] = min_bytes
        out["unique_over_model"] = round(out["unique_bytes"]["all"] / min_bytes, 3) if min_bytes else None
    return out


def make_report(op: str, shape, dtype, direction: str, launches: list, min_bytes: int) -> dict:
    """profile_op's result for these launches: each launch's counts and occupancy, their total (``totals``), the
    op's unique bytes against the bytes model's minimum."""
    unique = sum(L.unique_bytes for L in launches)
    rows = []
    for L in launches:
        d = L.to_dict()
        d["occupancy"] = launch_occupancy(L)
        rows.append(d)
    return {"op": op, "shape": list(shape), "dtype": str(dtype).replace("torch.", ""), "direction": direction,
            "launches": rows, "total": totals(rows, min_bytes), "unique_bytes": unique, "model_min_bytes": min_bytes,
            "unique_over_model": round(unique / min_bytes, 3) if min_bytes else None}


def format_totals(t: dict, indent: str = "  ") -> list[str]:
    """The text lines of ``totals``' result."""
    out = [f"{indent}total over {t['launches']} launch{'es' if t['launches'] != 1 else ''} "
           f"({t['kernels']} kernel{'s' if t['kernels'] != 1 else ''}):"]
    for c in CLASSES:
        e = t.get(c)
        if not e:
            continue
        if c.startswith("global"):
            out.append(f"{indent}  {c:<14} requests {e['requests']:>8}  sectors {e['sectors']:>9} (ideal "
                       f"{e['ideal_sectors']})  sectors/request {e['sectors_per_request']:.2f} (ideal "
                       f"{e['ideal_sectors_per_request']:.2f})  L1 bytes {e['l1_bytes']:>10}")
        else:
            out.append(f"{indent}  {c:<14} requests {e['requests']:>8}  wavefronts {e['wavefronts']:>8}  "
                       f"excess {e['excess_wavefronts']:>7}")
    u = t["unique_bytes"]
    line = f"{indent}  unique bytes {u['all']} (load {u['load']}, store {u['store']})"
    if "model_min_bytes" in t:
        line += f"; bytes model minimum {t['model_min_bytes']} -> ratio {t['unique_over_model']}"
    out.append(line + f";  barriers {t['barriers']} over {t['warps']} warps")
    return out


def format_report(rep: dict, by_line: bool = False) -> str:
    """The text form of profile_op's result (python -m pyops profile)."""
    out = [f"== {rep['op']} {rep['direction']}  shape {'x'.join(map(str, rep['shape']))}  {rep['dtype']}  "
           f"({len(rep['launches'])} launch{'es' if len(rep['launches']) != 1 else ''})"]
    for d in rep["launches"]:
        out.append(f"  {d['kernel']}  grid {'x'.join(map(str, d['grid']))}  block {'x'.join(map(str, d['block']))}"
                   f"  dynamic smem {d['dynamic_smem']} B")
        for c in CLASSES:
            e = d.get(c)
            if not e:
                continue
            if c.startswith("global"):
                out.append(f"    {c:<14} requests {e['requests']:>8}  sectors/request {e['sectors_per_request']:6.2f}"
                           f" (ideal {e['ideal_sectors_per_request']:.2f})  L1 bytes {e['l1_bytes']:>10}"
                           f"  lanes/request {e['lanes_per_request']:5.1f}")
            else:
                out.append(f"    {c:<14} requests {e['requests']:>8}  wavefronts {e['wavefronts']:>8}  "
                           f"excess {e['excess_wavefronts']:>7}  lanes/request {e['lanes_per_request']:5.1f}")
        u = d["unique_bytes"]
        cp = d["collectives_per_warp"]
        out.append(f"    unique bytes {u['all']} (load {u['load']}, store {u['store']});  per warp: barriers "
                   f"{d['barriers_per_warp']}, shuffles {cp['shuffles']}, votes {cp['votes']}, reduces {cp['reduces']};"
                   f"  active lanes/access {d['lanes_per_access_estimate']} (source estimate, blind to predication)")
        for arch, o in d["occupancy"].items():
            out.append(f"    occupancy {arch}: {o['occupancy']:.0%} ({o['warps_per_sm']} warps/SM, {o['blocks_per_sm']} "
                       f"blocks; limiter {o['limiter']}; {o['registers']} registers, {o['static_smem']} B static smem)")
        if by_line:
            for s in d.get("sites", []):
                what = (f"sectors/req {s['sectors'] / s['requests']:.2f}" if s["class"].startswith("global")
                        else f"wavefronts/req {s['wavefronts'] / s['requests']:.2f}")
                out.append(f"      {s['line']:<28} {s['class']:<14} {s['size']:>2} B  requests {s['requests']:>8}  {what}")
    out += format_totals(rep["total"])
    return "\n".join(out)


# ---------------------------------------------------------------- the profile sections of docs/<op>.md
DOC_PAGES = {"softmax.md": ("softmax", "log_softmax"), "linear_relu.md": ("linear_relu",),
             "cross_entropy.md": ("cross_entropy", "nll_loss"), "adam.md": ("adam",)}
BEGIN, END = "<!-- profile:begin -->", "<!-- profile:end -->"


def _shape_str(op: str, shape) -> str:
    return "MNIST MLP params" if op == "adam" and tuple(shape) == (0,) else "x".join(map(str, shape))


def docs_section(page: str) -> str:
    """The generated profile section of docs/<page>: each op of the page at its MNIST and its large shape."""
    rows = []
    occ_rows = []
    for op in DOC_PAGES[page]:
        _, _, mnist, large, dirs, _ = OPS[op]
        for shape in (mnist, large):
            for d in dirs:
                rep = profile_op(op, shape, torch.float32, d, cache=True)
                def spr(L, c):
                    e = L.get(c)
                    return f"{e['sectors_per_request']:.2f} ({e['ideal_sectors_per_request']:.2f})" if e else "-"

                def shared(L):
                    wf = [L[c] for c in ("shared_load", "shared_store") if c in L]
                    return f"{sum(e['wavefronts'] for e in wf)} ({sum(e['excess_wavefronts'] for e in wf)})" if wf else "-"
                for L in rep["launches"]:
                    rows.append(f"| {op} {d} {_shape_str(op, shape)} | `{L['kernel']}` | {'x'.join(map(str, L['grid']))}"
                                f" × {'x'.join(map(str, L['block']))} | {L['dynamic_smem']} | {spr(L, 'global_load')} | "
                                f"{spr(L, 'global_store')} | {shared(L)} | {L['unique_bytes']['all']} | "
                                f"{L['barriers_per_warp']} | {L['lanes_per_access_estimate']} |")
                    o = L["occupancy"]
                    if o:
                        occ_rows.append(f"| `{L['kernel']}` | {L['block'][0] * L['block'][1] * L['block'][2]} | "
                                        + " | ".join(f"{o[a]['registers']} reg, {o[a]['occupancy']:.0%} ({o[a]['limiter']})"
                                                     if a in o else "-" for a in ARCHS) + " |")
                t = rep["total"]
                rows.append(f"| **{op} {d} {_shape_str(op, shape)}: total** | {t['launches']} "
                            f"launch{'es' if t['launches'] != 1 else ''} | | | {spr(t, 'global_load')} | "
                            f"{spr(t, 'global_store')} | {shared(t)} | **{t['unique_bytes']['all']}** = "
                            f"{t['unique_over_model']}× the model's {t['model_min_bytes']} | | |")
    out = [BEGIN, "## Profile on the emulator (generated)", "",
           "Counted by the emulator's counting build (docs/profiling.md), float32; regenerate with "
           "`python -m pyops profile --write-docs` (tests/test_profile.py checks this section is current). "
           "Sectors/request: global loads and stores, the ideal for the access in parentheses; shared: wavefronts "
           "(excess = bank conflicts); unique bytes: distinct 32-byte sectors × 32; lanes: active lanes per access, "
           "a source-level estimate. Each **total** row sums the pass's launches (sectors and requests, wavefronts, "
           "unique bytes) and sets the unique bytes against the bytes model's minimum.", "",
           "| op, pass, shape | kernel | grid × block | dyn. smem | gld sectors/req | gst sectors/req | "
           "shared wavefronts (excess) | unique bytes | barriers/warp | lanes |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows]
    if occ_rows:
        out += ["", "Theoretical occupancy from the cubins' resource usage (cuobjdump) and the launch:", "",
                "| kernel | threads/block | " + " | ".join(ARCHS) + " |", "| --- | ---: | --- | --- |",
                *dict.fromkeys(occ_rows)]
    out.append(END)
    return "\n".join(out) + "\n"


def write_docs(root: Path, check: bool = False) -> list[str]:
    """Write (or with check=True only compare) the generated sections; returns the pages that differ."""
    stale = []
    for page in DOC_PAGES:
        path = root / "docs" / page
        text = path.read_text()
        new = docs_section(page)
        if BEGIN in text and END in text:
            a = text.index(BEGIN)
            b = text.index(END) + len(END) + 1
            updated = text[:a] + new + text[b:]
        else:
            updated = text.rstrip("\n") + "\n\n" + new
        if updated != text:
            stale.append(page)
            if not check:
                path.write_text(updated)
    return stale


# ---------------------------------------------------------------- the SASS's memory instructions
_SASS_OPS = {"LDG": "global_load", "STG": "global_store", "LDS": "shared_load", "STS": "shared_store",
             "RED": "global_atomic", "ATOMG": "global_atomic", "ATOM": "global_atomic"}
_SASS_WIDTH = {"U8": 1, "S8": 1, "U16": 2, "S16": 2, "64": 8, "128": 16}


_STG_RUN = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+STG\.E(\.64)?\s+desc\[\w+\]\[(R\d+)\.64(?:\+0x([0-9a-f]+))?\],")


@functools.lru_cache(maxsize=None)
def sass_dump(arch: str = "sm_90") -> str:
    """`cuobjdump --dump-sass -arch ARCH` of pyops._C ("" when it has no device code for it)."""
    import triton

    from . import _C

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return subprocess.run([str(tool), "--dump-sass", "-arch", arch, _C.__file__], capture_output=True, text=True).stdout


def sass_split_stores(text: str) -> dict:
    """{kernel symbol: n} in `cuobjdump --dump-sass` text: the runs of unpredicated 4-byte (8-byte) STG.E at
    [R], [R+4], [R+8], [R+12] ([R], [R+8]) from a 16-byte-aligned offset: a 16-byte store nvcc split in four
    (two).  (A source that stores four adjacent scalars unconditionally would match too; pyops' kernels store
    adjacent elements with vectors.)"""
    out: dict = {}
    fn, run = None, []
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            fn, run = m.group(1), []
            continue
        if "/*" not in line or line.strip().startswith("/* 0x"):
            continue  # encodings
        m = _STG_RUN.match(line)
        if not m:
            run = []
            continue
        width = 8 if m.group(1) else 4
        reg, off = m.group(2), int(m.group(3) or "0", 16)
        if run and run[-1][:2] == (reg, width) and off == run[-1][2] + width:
            run.append((reg, width, off))
        else:
            run = [(reg, width, off)] if off % 16 == 0 else []
        if run and len(run) * width == 16:
            out[fn] = out.get(fn, 0) + 1
            run = []
    return out


def sass_accesses(arch: str = "sm_90") -> dict:
    """{mangled kernel name: {(class, bytes), ...}}: the global/shared loads and stores (LDG/STG/LDS/STS, and
    global atomics) in pyops._C's cubin for ``arch``, with their widths (cuobjdump --dump-sass)."""
    text = sass_dump(arch)
    out: dict = {}
    fn = None
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            fn = m.group(1)
            out[fn] = set()
            continue
        m = re.search(r"\b(LDG|STG|LDS|STS|RED|ATOMG|ATOM)((?:\.[A-Z0-9_]+)*)\s", line)
        if fn and m:
            mods = m.group(2).split(".")[1:]
            width = next((_SASS_WIDTH[x] for x in mods if x in _SASS_WIDTH), 4)
            out[fn].add((_SASS_OPS[m.group(1)], width))
    return out
