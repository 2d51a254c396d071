"""softmax / log_softmax: pyops vs stock PyTorch, forward and forward+backward.

    python bench/bench_softmax.py [--threads 2] [--device cpu|cuda] [--out bench/results]

Bytes model (float32, N rows x C columns): forward reads x and writes y -> 2*N*C*4 bytes;
backward reads grad and y and writes grad_x -> 3*N*C*4 bytes.  GB/s = bytes / median time, printed
beside the machine's copy bandwidth (a large tensor copy, read + write).  Both contenders run in the
same process on the same tensors, interleaved call by call (timeit_interleaved: a shared machine's load drift
hits both alike); ratio = stock time / pyops time (> 1: pyops faster).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Table, copy_bandwidth, parser, setup, timeit_interleaved  # noqa: E402

import pyops  # noqa: E402

SHAPES = [(64, 10), (512, 10), (64, 1000), (1024, 1024), (4096, 1024), (1024, 4096), (256, 32000)]


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    dev = setup(args)
    backends = ["cuda", "triton"] if dev.type == "cuda" else ["cpu"]
    bw = copy_bandwidth(dev)
    print(f"device {dev}, threads {torch.get_num_threads()}, copy bandwidth {bw / 1e9:.1f} GB/s")
    table = Table(f"softmax_{dev.type}")
    for name, ours, stock in [("softmax", pyops.softmax, F.softmax), ("log_softmax", pyops.log_softmax, F.log_softmax)]:
        for n, c in SHAPES:
            x = torch.randn(n, c, device=dev)
            xg = x.clone().requires_grad_()
            g = torch.randn(n, c, device=dev)
            fwd_bytes, bwd_bytes = 2 * x.numel() * 4, 3 * x.numel() * 4
            fwd = timeit_interleaved({"stock": lambda: stock(x, 1), **{b: lambda b=b: ours(x, 1, backend=b)
                                                                      for b in backends}}, dev, args.min_time)
            fb = timeit_interleaved({"stock": lambda: stock(xg, 1).backward(g),
                                     **{b: lambda b=b: ours(xg, 1, backend=b).backward(g) for b in backends}},
                                    dev, args.min_time)
            t_stock, t_stock_fb = fwd["stock"], fb["stock"]
            for b in backends:
                t, t_fb = fwd[b], fb[b]
                table.add(op=name, shape=f"{n}x{c}", backend=b,
                          fwd_us=t * 1e6, stock_fwd_us=t_stock * 1e6, fwd_ratio=t_stock / t,
                          fwd_GBs=fwd_bytes / t / 1e9,
                          fwdbwd_us=t_fb * 1e6, stock_fwdbwd_us=t_stock_fb * 1e6, fwdbwd_ratio=t_stock_fb / t_fb,
                          fwdbwd_GBs=(fwd_bytes + bwd_bytes) / t_fb / 1e9)
    table.write_csv(args.out)


if __name__ == "__main__":
    main()
