"""The CPU backend's own float32 GEMM, kernel by kernel, against PyTorch's BLAS (torch.mm).

    python bench/bench_gemm.py [--threads 2] [--min-time 0.2] [--batches 64,512] [--out bench/results]

The GEMMs are the 11 of the MNIST MLP's training step (784-256-128-64-10) at each batch size -- 4 forward
(y = x W^T), 4 weight gradients (dW = dz^T x), 3 input gradients (dx = dz W; none for the first layer) --
with the operands in the layouts the step has (W and x^T read transposed).  Contenders, all in this process,
called round-robin (one call of each per round) so that the machine's load hits all alike:
  torch.mm         PyTorch's BLAS (MKL in the x86-64 wheels) into a new tensor
  pyops avx512     torch.ops.pyops.linear_relu_fwd without bias or ReLU (C = A B) on the own GEMM's
                   16 x 16 AVX-512 kernel (csrc/cpu/gemm.h); only where the CPU has AVX-512F
  pyops avx2       the same op on the 6 x 16 AVX2 kernel
The kernel is switched before each call (pyops._ops.cpu_gemm_kernel's switch, ~0.2 us, inside the timed call).
Where a shape is past the own GEMM's limits (none of these is), a kernel's path column says "blas" and it
times pyops' own call of that BLAS.  Reported per GEMM: median us and GFLOP/s (2MNK / median time) of each, and
ratio = the median over rounds of (torch.mm time / pyops time) -- > 1: pyops faster; then the sum over the
step's 11 GEMMs of each contender's medians.
"""
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Table, parser, samples, setup  # noqa: E402

import pyops  # noqa: E402,F401  (registers torch.ops.pyops)
from pyops import _ops  # noqa: E402

SIZES = (784, 256, 128, 64, 10)


def step_gemms(batch: int):
    """(name, A, B^T) for each GEMM C = A B of the step: A as the step holds it, B given transposed ([N, K]),
    which is what linear_relu_fwd (C = input weight^T) takes."""
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    layers = list(zip(SIZES[:-1], SIZES[1:]))
    xs = [rnd(batch, k) for k, _ in layers]  # layer inputs   [B, in]
    ws = [rnd(n, k) for k, n in layers]      # weights        [out, in]
    gs = [rnd(batch, n) for _, n in layers]  # output grads   [B, out]
    out = [(f"fwd{i} {k}->{n}", xs[i], ws[i]) for i, (k, n) in enumerate(layers)]            # x W^T
    out += [(f"dW{i} {k}->{n}", gs[i].t(), xs[i].t()) for i, (k, n) in enumerate(layers)]   # dz^T x
    out += [(f"dx{i} {k}->{n}", gs[i], ws[i].t()) for i, (k, n) in enumerate(layers) if i]  # dz W
    return out


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--batches", default="64,512", help="comma-separated batch sizes (default 64,512)")
    args = p.parse_args(argv)
    if args.device != "cpu":
        raise SystemExit("bench_gemm.py times the CPU backend's GEMM: --device cpu only")
    dev = setup(args)
    kernels = [k for k in ("avx512", "avx2") if _kernel_runs(k)]
    if not kernels:
        raise SystemExit("this build of pyops has no own CPU GEMM (built without AVX2): nothing to compare")
    print(f"threads {torch.get_num_threads()}; own GEMM kernels here: {', '.join(kernels)}")
    table = Table("gemm_cpu")
    op = torch.ops.pyops.linear_relu_fwd
    for batch in map(int, args.batches.split(",")):
        totals = {"torch.mm": 0.0, **{k: 0.0 for k in kernels}}
        for name, a, bt in step_gemms(batch):
            m, k, n = a.shape[0], a.shape[1], bt.shape[0]
            fns = [lambda a=a, bt=bt: torch.mm(a, bt.t())]
            paths = {}
            for kern in kernels:
                with _ops.cpu_gemm_kernel(kern):
                    paths[kern] = _ops._C.cpu_gemm_path(m, n, k)

                def own(a=a, bt=bt, kern=kern):
                    _ops._C.set_cpu_gemm_kernel(kern)
                    return op(a, bt, None, False)
                fns.append(own)
            with _ops.cpu_gemm_kernel("auto"):
                times = samples(fns, dev, args.min_time * len(fns), min_runs=20, max_runs=20000)
            flops = 2 * m * n * k
            row = {"batch": batch, "gemm": name, "M": m, "N": n, "K": k}
            med = [statistics.median(t) for t in times]
            row["torch.mm_us"], row["torch.mm_GFLOPs"] = med[0] * 1e6, flops / med[0] / 1e9
            totals["torch.mm"] += med[0]
            for kern, t, mt in zip(kernels, times[1:], med[1:]):
                row[f"{kern}_path"] = paths[kern]
                row[f"{kern}_us"], row[f"{kern}_GFLOPs"] = mt * 1e6, flops / mt / 1e9
                row[f"{kern}_ratio"] = statistics.median(s / o for s, o in zip(times[0], t))
                totals[kern] += mt
            table.add(**row)
        print(f"batch {batch}, sum of the 11 medians: "
              + ", ".join(f"{c} {t * 1e6:.0f} us" + (f" ({totals['torch.mm'] / t:.2f}x torch.mm)" if c in kernels
                                                    else "") for c, t in totals.items()))
    table.write_csv(args.out)


def _kernel_runs(name: str) -> bool:
    try:
        with _ops.cpu_gemm_kernel(name):
            return True
    except RuntimeError:
        return False


if __name__ == "__main__":
    main()
