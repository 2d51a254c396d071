"""cross_entropy: pyops (fused) vs F.cross_entropy vs F.log_softmax + F.nll_loss -- forward, backward,
forward+backward and peak memory.

    python bench/bench_cross_entropy.py [--threads 2] [--device cpu|cuda] [--out bench/results]

What is timed (median over many runs after warm-up; the three contenders run interleaved, one call each per
round, on the same tensors, so machine-load drift hits them alike and the ratios come from one run):
  fwd      loss = f(x, target), x requiring grad (as in training: the graph and saved tensors are built)
  bwd      torch.autograd.grad(loss, x) after an untimed forward
  fwd+bwd  both (median and 10th percentile)
Bytes model (float32 logits, N x C): the fused forward reads x once and the backward reads x and writes dx:
3 N C 4 bytes.  Stock (either form): log_softmax reads x and writes log-probabilities (2), nll_loss's backward
writes an N x C gradient of them (1), log_softmax's backward reads that and the log-probabilities and writes
dx (3): 6 N C 4 bytes.  GB/s = model bytes / median time, beside the machine's copy bandwidth.
Peak memory: on the CPU, from the CPU allocator's own allocation/free events (torch.profiler with
profile_memory=True: every CPU tensor allocation, including temporaries inside C++ ops), the running sum's
maximum above its value at the start of fwd+bwd (the returned gradient counts; x and target do not).  For the
largest shape the kernel's view is printed too: the process RSS high-water mark (VmHWM after resetting it
through /proc/self/clear_refs) minus the RSS before.  On a GPU: torch.cuda.max_memory_allocated.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Clock, Table, copy_bandwidth, parser  # noqa: E402

import pyops  # noqa: E402

SHAPES = [(64, 10), (512, 10), (1024, 32000)]


def contenders(backends):
    c = {f"pyops[{b}]": (lambda b: lambda x, t: pyops.cross_entropy(x, t, backend=b))(b) for b in backends}
    c["F.cross_entropy"] = lambda x, t: F.cross_entropy(x, t)
    c["log_softmax+nll_loss"] = lambda x, t: F.nll_loss(F.log_softmax(x, 1), t)
    return c


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _p10(v):
    return sorted(v)[len(v) // 10]


def measure(fns, x, t, dev, min_time, min_runs=15, warmup=3):
    """{name: (fwd, bwd, fwd+bwd median seconds, fwd+bwd 10th percentile)}, the contenders interleaved round
    by round.  The 10th percentile is printed beside the median because on a shared machine a stalled thread
    (an OpenMP region waiting for a descheduled worker) can inflate more than half of the runs of an op."""
    times = {name: ([], [], []) for name in fns}
    for _ in range(warmup):
        for fn in fns.values():
            torch.autograd.grad(fn(x, t), x)
    _sync(dev)
    start, rounds = time.perf_counter(), 0
    while rounds < min_runs or time.perf_counter() - start < min_time:
        for name, fn in fns.items():
            fwd, bwd, both = times[name]
            with Clock(dev) as c:
                loss = fn(x, t)
            fwd.append(c.seconds)
            with Clock(dev) as c:
                torch.autograd.grad(loss, x)
            bwd.append(c.seconds)
            del loss
            with Clock(dev) as c:
                torch.autograd.grad(fn(x, t), x)
            both.append(c.seconds)
        rounds += 1
    return {name: (*(statistics.median(v) for v in ts), _p10(ts[2])) for name, ts in times.items()}


def cpu_peak_bytes(fn) -> int:
    """Peak CPU memory fn() allocates: the running sum of the allocator's events, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU)
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return peak


def _rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def rss_peak_bytes(fn):
    """VmHWM (reset via /proc/self/clear_refs) minus VmRSS before: what the OS saw; None where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - before) * 1024


def peak_bytes(fn, dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return cpu_peak_bytes(fn)


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(f"{n}x{c}" for n, c in SHAPES), help="NxC,NxC,...")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    dev = torch.device(args.device)
    backends = ["cuda", "triton"] if dev.type == "cuda" else ["cpu"]
    bw = copy_bandwidth(dev)
    print(f"device {dev}, threads {torch.get_num_threads()}, copy bandwidth {bw / 1e9:.1f} GB/s")
    table = Table(f"cross_entropy_{dev.type}")
    summary = []
    for shape in args.shapes.split(","):
        n, c = (int(v) for v in shape.split("x"))
        x = torch.randn(n, c, device=dev, requires_grad=True)
        t = torch.randint(0, c, (n,), device=dev)
        fns = contenders(backends)
        times = measure(fns, x, t, dev, args.min_time)
        elem = n * c * 4
        model = {name: (3 if name.startswith("pyops") else 6) * elem for name in fns}
        peaks = {name: peak_bytes(lambda: torch.autograd.grad(fn(x, t), x), dev) for name, fn in fns.items()}
        rss = {}
        if dev.type == "cpu" and elem >= 64 << 20:
            rss = {name: rss_peak_bytes(lambda: torch.autograd.grad(fn(x, t), x)) for name, fn in fns.items()}
        ce = times["F.cross_entropy"]
        for name in fns:
            f, b, fb, fb10 = times[name]
            table.add(shape=f"{n}x{c}", impl=name, fwd_us=f * 1e6, bwd_us=b * 1e6, fwdbwd_us=fb * 1e6,
                      fwdbwd_p10_us=fb10 * 1e6, x_vs_ce_fwdbwd=ce[2] / fb, peak_MB=peaks[name] / 1e6,
                      rss_peak_MB=(rss[name] / 1e6 if rss.get(name) is not None else float("nan")),
                      model_MB=model[name] / 1e6, GBs=model[name] / fb / 1e9)
        for b in backends:
            ours, lsn = times[f"pyops[{b}]"], times["log_softmax+nll_loss"]
            summary.append(
                f"{n}x{c} pyops[{b}]: vs F.cross_entropy fwd {ce[0] / ours[0]:.2f}x bwd {ce[1] / ours[1]:.2f}x "
                f"fwd+bwd {ce[2] / ours[2]:.2f}x (p10 {ce[3] / ours[3]:.2f}x); vs log_softmax+nll_loss fwd "
                f"{lsn[0] / ours[0]:.2f}x bwd {lsn[1] / ours[1]:.2f}x fwd+bwd {lsn[2] / ours[2]:.2f}x "
                f"(p10 {lsn[3] / ours[3]:.2f}x); peak memory "
                f"{peaks[f'pyops[{b}]'] / 1e6:.3g} MB vs {peaks['F.cross_entropy'] / 1e6:.3g} MB (F.cross_entropy), "
                f"{peaks['log_softmax+nll_loss'] / 1e6:.3g} MB (log_softmax+nll_loss)")
    print("\nspeed-ups (stock time / pyops time, same run):")
    for line in summary:
        print("  " + line)
    table.write_csv(args.out)


if __name__ == "__main__":
    main()
