"""On a machine with a GPU (scripts/gpu_check.sh): the emulator's counted memory metrics beside Nsight
Compute's for the same kernels, and the ops and the training step timed with CUDA events.

    python scripts/gpu_compare.py ncu     # per launch: emulator | ncu, for each op at the MNIST and a large shape
    python scripts/gpu_compare.py time    # median of CUDA-event timings per op and for the MLP training step
    python scripts/gpu_compare.py run OP SHAPE DIRECTION   # (internal) the op on CUDA once, for ncu to profile
"""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import torch

import pyops
from pyops import profile as prof

# emulator counter -> Nsight Compute metric (docs/profiling.md has the table)
METRICS = {
    "global_load requests": "l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum",
    "global_load sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum",
    "global_store requests": "l1tex__t_requests_pipe_lsu_mem_global_op_st.sum",
    "global_store sectors": "l1tex__t_sectors_pipe_lsu_mem_global_op_st.sum",
    "shared_load requests": "smsp__inst_executed_op_shared_ld.sum",
    "shared_load wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum",
    "shared_load excess": "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
    "shared_store requests": "smsp__inst_executed_op_shared_st.sum",
    "shared_store wavefronts": "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum",
    "shared_store excess": "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum",
    "unique bytes (DRAM lower bound)": "dram__bytes.sum",
    "occupancy % (theoretical)": "sm__maximum_warps_per_active_cycle_pct",
    "registers per thread": "launch__registers_per_thread",
}
# every op at its MNIST shape, the row-wise ones also at their large shape (ncu replays each kernel: keep it short)
CASES = [(op, v[2]) for op, v in prof.OPS.items()] + [(op, prof.OPS[op][3]) for op in ("softmax", "cross_entropy")]


def emulator_values(L: prof.Launch, arch: str) -> dict:
    out = {}
    for c in ("global_load", "global_store", "shared_load", "shared_store"):
        q = L.cls(c)
        out[f"{c} requests"] = q["requests"]
        if c.startswith("global"):
            out[f"{c} sectors"] = q["sectors"]
        else:
            out[f"{c} wavefronts"] = q["wavefronts"]
            out[f"{c} excess"] = q["wavefronts"] - q["ideal_wavefronts"]
    out["unique bytes (DRAM lower bound)"] = L.unique_bytes
    occ = prof.launch_occupancy(L).get(arch)
    if occ:
        out["occupancy % (theoretical)"] = round(100 * occ["occupancy"], 1)
        out["registers per thread"] = occ["registers"]
    return out


def run_on_gpu(op: str, shape, direction: str) -> None:
    """The op on CUDA tensors, as profile_op runs it on the emulator (same shapes, same calls); ncu profiles
    only what runs between cudaProfilerStart and Stop: the op's own launches."""
    dev = "cuda"
    torch.manual_seed(0)
    bwd = direction == "bwd"
    if op in ("softmax", "log_softmax", "cross_entropy", "nll_loss"):
        n, c = shape
        x = torch.randn(n, c, device=dev)
        if op == "nll_loss":
            x = torch.log_softmax(x, dim=1)
        x.requires_grad_(bwd)
        t = torch.randint(0, c, (n,), device=dev)
        call = (lambda: getattr(pyops, op)(x, t, backend="cuda")) if op in ("cross_entropy", "nll_loss") else \
            (lambda: getattr(pyops, op)(x, dim=1, backend="cuda"))
    elif op == "linear_relu":
        m, k, n = shape
        x, w, b = (torch.randn(*s, device=dev, requires_grad=bwd) for s in ((m, k), (n, k), (n,)))
        call = lambda: pyops.linear_relu(x, w, b, backend="cuda")  # noqa: E731
    else:  # adam
        shapes = prof.MNIST_PARAMS if tuple(shape) == (0,) else [tuple(shape)]
        ps = [torch.randn(s, device=dev, requires_grad=True) for s in shapes]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = pyops.optim.Adam(ps, lr=1e-3, backend="cuda")
        opt.step()
        call = opt.step
    if bwd:
        y = call()
        g = torch.randn_like(y)
        call = lambda: y.backward(g)  # noqa: E731
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def ncu_rows(op: str, shape, direction: str) -> list[dict]:
    """Nsight Compute's metrics for pyops' kernels of one op call: [{metric: value}] in launch order."""
    cmd = ["ncu", "--csv", "--profile-from-start", "off",
           "--kernel-name-base", "demangled", "-k", "regex:pyops::cuda", "--metrics", ",".join(METRICS.values()),
           sys.executable, __file__, "run", op, ",".join(map(str, shape)), direction]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    text = "\n".join(l for l in out.splitlines() if l.startswith('"'))
    launches: dict = {}
    for r in csv.DictReader(io.StringIO(text)):
        d = launches.setdefault(r["ID"], {"kernel": r["Kernel Name"]})
        try:
            d[r["Metric Name"]] = float(r["Metric Value"].replace(",", ""))
        except ValueError:
            d[r["Metric Name"]] = r["Metric Value"]
    return [launches[k] for k in sorted(launches, key=int)]


def cmd_ncu() -> int:
    arch = "sm_%d%d" % torch.cuda.get_device_capability()
    for op, shape in CASES:
        for direction in prof.OPS[op][4]:
            emu = prof.OPS[op][0](tuple(shape), torch.float32, direction).launches
            gpu = ncu_rows(op, shape, direction)
            print(f"== {op} {direction} {'x'.join(map(str, shape))}: {len(emu)} emulated launch(es), "
                  f"{len(gpu)} profiled by ncu")
            for i, L in enumerate(emu):
                g = gpu[i] if i < len(gpu) else {}
                print(f"  {L.name}   (ncu: {g.get('kernel', 'no matching launch')[:80]})")
                e = emulator_values(L, arch)
                for k, metric in METRICS.items():
                    if k in e or metric in g:
                        print(f"    {k:<34} emulator {e.get(k, '-'):>12}   ncu {g.get(metric, '-'):>12}   ({metric})")
    return 0


def cuda_time(fn, reps: int = 50) -> float:
    """Median milliseconds of fn() over reps, by CUDA events (after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def cmd_time() -> int:
    dev = "cuda"
    print(f"{torch.cuda.get_device_name()}: median of 50 calls, CUDA events, float32")
    for backend in ("cuda", "torch"):
        for op, shape in CASES:
            if op == "adam":
                continue
            if op == "linear_relu":
                m, k, n = shape
                x, w, b = torch.randn(m, k, device=dev), torch.randn(n, k, device=dev), torch.randn(n, device=dev)
                ms = cuda_time(lambda: pyops.linear_relu(x, w, b, backend=backend))
            elif op in ("cross_entropy", "nll_loss"):
                x = torch.randn(*shape, device=dev).log_softmax(dim=1)
                t = torch.randint(0, shape[1], (shape[0],), device=dev)
                ms = cuda_time(lambda: getattr(pyops, op)(x, t, backend=backend))
            else:
                x = torch.randn(*shape, device=dev)
                ms = cuda_time(lambda: getattr(pyops, op)(x, dim=1, backend=backend))
            print(f"  {backend:<6} {op:<14} fwd {'x'.join(map(str, shape)):<14} {1000 * ms:9.1f} us")
    # the MLP training step (784-256-128-64-10, batch 64): pyops' one-op step against stock eager + Adam
    sizes = [784, 256, 128, 64, 10]
    x = torch.randn(64, 784, device=dev)
    t = torch.randint(0, 10, (64,), device=dev)
    model = torch.nn.Sequential(*[m for i in range(4) for m in (torch.nn.Linear(sizes[i], sizes[i + 1]),
                                                                   torch.nn.ReLU())][:-1]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def stock():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), t).backward()
        opt.step()

    print(f"  stock eager training step (batch 64): {1000 * cuda_time(stock):9.1f} us")
    lin = [torch.nn.Linear(sizes[i], sizes[i + 1]).to(dev) for i in range(4)]
    ws = [l.weight.detach().requires_grad_() for l in lin]
    bs = [l.bias.detach().requires_grad_() for l in lin]
    popt = pyops.optim.Adam(ws + bs, lr=3e-3, backend="cuda")

    def pstep():
        popt.zero_grad(set_to_none=True)
        h = x
        for i in range(4):
            h = (pyops.linear_relu if i < 3 else pyops.linear)(h, ws[i], bs[i], backend="cuda")
        pyops.cross_entropy(h, t, backend="cuda").backward()
        popt.step()

    print(f"  pyops training step (batch 64, pyops ops + pyops Adam): {1000 * cuda_time(pstep):9.1f} us")
    if hasattr(pyops, "mlp_train_step"):
        print("  (pyops.mlp_train_step, the one-op step, is timed by `python -m pyops bench`)")
    return 0


def main(argv) -> int:
    if not argv or argv[0] not in ("ncu", "time", "run"):
        print(__doc__)
        return 2
    if argv[0] == "run":
        run_on_gpu(argv[1], tuple(int(v) for v in argv[2].split(",")), argv[3])
        return 0
    if not torch.cuda.is_available():
        print("gpu_compare: no CUDA GPU here")
        return 2
    return cmd_ncu() if argv[0] == "ncu" else cmd_time()


if __name__ == "__main__":
    os.environ.setdefault("PYOPS_BACKEND", "auto")
    sys.exit(main(sys.argv[1:]))
