"""Adam step: pyops.optim.Adam vs torch.optim.Adam (default, foreach=True, fused=True).

    python bench/bench_adam.py [--threads 2] [--device cpu|cuda] [--out bench/results]

Times `opt.step()` -- the Python around the kernel included -- for two parameter sets: the MNIST MLP
of the pipeline (784-256-128-64-10: 8 tensors, 242,762 params) and ~10M params in 4 tensors.  Each
contender owns its copy of the parameters and state, the gradients are the same tensors; median of
many steps after warm-up (which also creates the state), the contenders taking turns step by
step so that all see the same machine load.  torch.optim.Adam's default on CPU is the
per-tensor loop (foreach is the default only for CUDA tensors).

Bytes model (float32): every step reads p, g, m, v and writes p, m, v -> 7 * 4 = 28 bytes per param.
GB/s = bytes / median time, printed beside the machine's copy bandwidth (a large tensor copy, read +
write counted).  ratio_X = time of torch variant X / time of pyops (> 1: pyops faster).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Table, copy_bandwidth, parser, setup, timeit_interleaved  # noqa: E402

import pyops  # noqa: E402

SIZES = {
    "mlp": [(256, 784), (256,), (128, 256), (128,), (64, 128), (64,), (10, 64), (10,)],
    "10M": [(4096, 2048), (2048, 784), (2048,), (10, 2048)],
}
BYTES_PER_PARAM = 7 * 4  # read p, g, m, v; write p, m, v (float32)
LR = 3e-3  # the pipeline's


def make_opt(kind, base, grads, dev):
    params = [b.clone().requires_grad_() for b in base]
    for p, g in zip(params, grads):
        p.grad = g
    if kind == "default":
        return torch.optim.Adam(params, lr=LR)
    if kind in ("foreach", "fused"):
        return torch.optim.Adam(params, lr=LR, **{kind: True})
    return pyops.optim.Adam(params, lr=LR, backend=kind)


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    dev = setup(args)
    backends = ["cuda", "triton"] if dev.type == "cuda" else ["cpu"]
    bw = copy_bandwidth(dev)
    print(f"device {dev}, threads {torch.get_num_threads()}, copy bandwidth {bw / 1e9:.1f} GB/s")
    table = Table(f"adam_{dev.type}")
    for size, shapes in SIZES.items():
        torch.manual_seed(0)
        base = [torch.randn(s, device=dev) for s in shapes]
        grads = [torch.randn(s, device=dev) * 1e-2 for s in shapes]
        n = sum(b.numel() for b in base)
        kinds = ["default", "foreach", "fused"] + backends
        t = timeit_interleaved({k: make_opt(k, base, grads, dev).step for k in kinds}, dev, args.min_time)
        for b in backends:
            gbs = n * BYTES_PER_PARAM / t[b] / 1e9
            table.add(size=size, params=n, tensors=len(shapes), backend=b, pyops_us=t[b] * 1e6,
                      default_us=t["default"] * 1e6, foreach_us=t["foreach"] * 1e6, fused_us=t["fused"] * 1e6,
                      ratio_default=t["default"] / t[b], ratio_foreach=t["foreach"] / t[b],
                      ratio_fused=t["fused"] / t[b], GBs=gbs, pct_copy_bw=100 * gbs * 1e9 / bw,
                      fused_GBs=n * BYTES_PER_PARAM / t["fused"] / 1e9)
    table.write_csv(args.out)


if __name__ == "__main__":
    main()
