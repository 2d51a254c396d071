"""linear_relu: pyops vs stock F.relu(F.linear(...)), forward, backward and forward+backward.

    python bench/bench_linear_relu.py [--threads 2] [--device cpu|cuda] [--min-time 0.2] [--shapes all|mnist]
                                      [--out bench/results]

Shapes: the MNIST MLP's layers (784->256, 256->128, 128->64, 64->10) at batch 64 and 512, plus one
large layer.  Every contender computes all three gradients (input, weight, bias), as a hidden layer does.

FLOPs model (M = batch, K = in, N = out): forward 2MNK (+ 2MN epilogue), backward 4MNK (dx and dW;
+ MN mask and bias sums), forward+backward 6MNK.  GFLOP/s = model FLOPs / median time.  Bytes model
(float32, the minimum traffic): forward reads x, W, b and writes y: 4(MK + NK + N + MN); backward
reads g, y, x, W and writes dx, dW, db: 4(2MN + 2MK + 2NK + N).  FLOP/byte (the arithmetic
intensity) is printed beside the times: below ~10 a layer is bound by memory and per-call overhead,
not by the GEMM.

Timing: warm-up, then many runs (CUDA events on a GPU) of stock and pyops on the same tensors in the
same process, strictly alternating call by call, so that a burst of load on a shared machine hits both
alike.  Reported: the median time of each, and ratio = the median over the pairs of
(stock time / pyops time) -- > 1: pyops faster.  The backward is timed alone by replaying it on a
retained graph.
"""
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Table, parser, samples, setup  # noqa: E402

import pyops  # noqa: E402

MNIST = [(784, 256), (256, 128), (128, 64), (64, 10)]
SHAPES = [(m, k, n) for m in (64, 512) for k, n in MNIST] + [(4096, 1024, 1024)]


def stock(x, w, b):
    return F.relu(F.linear(x, w, b))


def contender_fns(fn, x, w, b, g):
    """(forward, backward on a retained graph, forward+backward) of fn."""
    leaves = (x, w, b)
    y = fn(x, w, b)

    def fwd():
        with torch.no_grad():
            return fn(x, w, b)

    def bwd():
        return torch.autograd.grad(y, leaves, g, retain_graph=True)

    def fwd_bwd():
        return torch.autograd.grad(fn(x, w, b), leaves, g)

    return fwd, bwd, fwd_bwd


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--shapes", default="all", choices=["all", "mnist"], help="mnist: only the MNIST layers")
    args = p.parse_args(argv)
    dev = setup(args)
    backends = ["cuda", "triton"] if dev.type == "cuda" else ["cpu"]
    print(f"device {dev}{' (' + torch.cuda.get_device_name() + ')' if dev.type == 'cuda' else ''}, "
          f"threads {torch.get_num_threads()}")
    table = Table(f"linear_relu_{dev.type}")
    shapes = SHAPES if args.shapes == "all" else SHAPES[:-1]
    for m, k, n in shapes:
        torch.manual_seed(0)
        x = torch.randn(m, k, device=dev, requires_grad=True)
        w = (torch.randn(n, k, device=dev) / k ** 0.5).requires_grad_()
        b = torch.randn(n, device=dev, requires_grad=True)
        g = torch.randn(m, n, device=dev)
        flops = {"fwd": 2 * m * n * k, "bwd": 4 * m * n * k, "fwdbwd": 6 * m * n * k}
        nbytes = {"fwd": 4 * (m * k + n * k + n + m * n), "bwd": 4 * (2 * m * n + 2 * m * k + 2 * n * k + n)}
        nbytes["fwdbwd"] = nbytes["fwd"] + nbytes["bwd"]
        contenders = {"stock": contender_fns(stock, x, w, b, g)}
        for be in backends:
            contenders[be] = contender_fns(lambda x_, w_, b_, be=be: pyops.linear_relu(x_, w_, b_, backend=be),
                                           x, w, b, g)
        for be in backends:
            row = {"layer": f"{k}->{n}", "batch": m, "backend": be}
            for i, pass_ in enumerate(flops):
                # strict alternation, at least 20 pairs: the ratio is the median of paired ratios
                ts, t = samples([contenders["stock"][i], contenders[be][i]], dev, args.min_time, min_runs=20,
                                max_runs=20000)
                row[f"{pass_}_us"] = statistics.median(t) * 1e6
                row[f"{pass_}_stock_us"] = statistics.median(ts) * 1e6
                row[f"{pass_}_GFLOPs"] = flops[pass_] / statistics.median(t) / 1e9
                row[f"{pass_}_stock_GFLOPs"] = flops[pass_] / statistics.median(ts) / 1e9
                row[f"{pass_}_ratio"] = statistics.median(a / b for a, b in zip(ts, t))
            row["FLOP_per_byte"] = flops["fwdbwd"] / nbytes["fwdbwd"]
            table.add(**row)
    table.write_csv(args.out)
    print("ratio = stock time / pyops time; fwd+bwd ratios: "
          + ", ".join(f"{r['layer']}@{r['batch']} {r['fwdbwd_ratio']:.2f}x" for r in table.rows))


if __name__ == "__main__":
    main()
