"""Command line: ``python -m pyops <command>``.

  info     versions, compiled CUDA architectures, which backends run here, the CPU GEMM kernel, Triton
           interpreter state
  train    train the seed MLP on mnist or fashion-mnist (also under torchrun with --ddp), or fit y = x^3 (cubic)
  bench    the seed MLP's training step: stock eager, fused Adam, torch.compile and pyops, side by side
  profile  an op's CUDA kernels on the emulator with memory counting: requests, sectors, unique bytes against the
           bytes model, shared-memory wavefronts, barriers, occupancy for sm_80/sm_90, per launch and in total
           (docs/profiling.md)
  tour     the teaching tour: each op's CUDA kernel from the naive one to the shipped one, run on the CPU
"""
from __future__ import annotations

import argparse
import json
import sys


def cmd_info(args) -> int:
    from . import _ops

    info = _ops.environment()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0


def cmd_train(args) -> int:
    if args.dataset == "cubic":
        from .pipeline import cubic

        return cubic.run(args)
    from .pipeline import train

    return train.run(args)


def cmd_bench(args) -> int:
    from .pipeline import bench

    return bench.run(args)


def cmd_profile(args) -> int:
    import torch

    from . import profile

    dtypes = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
    shape = None
    if args.shape:
        try:
            shape = tuple(int(v) for v in args.shape.replace("x", ",").split(","))
        except ValueError:
            print(f"error: --shape {args.shape!r}: expected comma-separated integers", file=sys.stderr)
            return 2
    if args.write_docs:
        from pathlib import Path

        root = Path(__file__).resolve().parents[1]
        if not (root / "docs").is_dir():
            print(f"error: --write-docs: no docs/ folder beside the pyops package ({root})", file=sys.stderr)
            return 2
        changed = profile.write_docs(root)
        print("updated: " + (", ".join(f"docs/{p}" for p in changed) if changed else "nothing (all current)"))
        return 0
    if args.op is None:
        print("error: profile: give an OP (or --write-docs)", file=sys.stderr)
        return 2
    directions = profile.OPS[args.op][4] if args.direction == "both" else (args.direction,)
    try:
        reports = [profile.profile_op(args.op, shape, dtypes[args.dtype], d, by_line=args.by_line, cache=True)
                   for d in directions]
    except profile.ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=1))
    else:
        print("\n".join(profile.format_report(r, by_line=args.by_line) for r in reports))
    return 0


def _data_arguments(p) -> None:
    p.add_argument("--data-dir", default=None, help="folder with the four IDX files (gzip or raw), looked at first")
    p.add_argument("--no-download", action="store_true", help="never download (use local copies only)")


def build_parser() -> argparse.ArgumentParser:
    from .pipeline import bench, train

    p = argparse.ArgumentParser(prog="python -m pyops", description="pyops: hand-written CUDA and Triton kernels "
                                "for training a small MLP, as drop-ins for PyTorch ops.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="versions, compiled CUDA architectures, backends that run here, "
                                       "the CPU GEMM kernel")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=cmd_info)

    tr = sub.add_parser("train", help="train the seed MLP (mnist, fashion-mnist) or fit y = x^3 (cubic)",
                        description="Train the seed MLP on mnist or fashion-mnist and print, per epoch, the training "
                        "loss, test loss and test accuracy; or fit y = x^3 (cubic) and save its plots.")
    tr.add_argument("dataset", choices=("mnist", "fashion-mnist", "cubic"))
    train.add_arguments(tr)
    _data_arguments(tr)
    tr.add_argument("--threads", type=int, default=None,
                    help="torch threads (default 2; under --ddp: CPUs / processes per process)")
    tr.add_argument("--points", type=int, default=1024, help="cubic: number of training points (default 1024)")
    tr.add_argument("--out", default=None, help="folder for train.json and losses.png (cubic: its plots; default "
                    "results/cubic)")
    tr.set_defaults(func=cmd_train)

    be = sub.add_parser("bench", help="time the seed MLP's training step: stock eager, fused Adam, compile, pyops",
                        description="Time the seed MLP's training step through stock eager (default Adam), stock "
                        "eager (Adam fused=True), torch.compile and pyops, on the same batches; write results.json, "
                        "results.md and plots to --out.")
    be.add_argument("dataset", choices=("mnist", "fashion-mnist", "synthetic", "auto"),
                    help="auto: the first of mnist, fashion-mnist with a local copy, else synthetic (no download)")
    bench.add_arguments(be)
    _data_arguments(be)
    be.add_argument("--out", default=None, help="output folder (default results/bench-<dataset>), replaced atomically")
    be.set_defaults(func=cmd_bench)

    # -- tour (pyops/tour.py)
    from . import tour

    to = sub.add_parser("tour", help="the kernels of an op from naive to shipped, step by step, on the emulator",
                        description="List the tour steps (kernels/tour/<op>/), or run one step on a small input "
                        "through the CUDA-on-CPU emulator, check it against PyTorch and print its profile (the "
                        "emulator's counting build) beside the previous step's.")
    tour.add_arguments(to)
    to.set_defaults(func=tour.cmd_tour)

    from .profile import OPS

    pr = sub.add_parser("profile", help="count an op's CUDA kernels' memory traffic on the emulator (no GPU needed)",
                        description="Run an op's CUDA kernels on the CPU emulator's counting build and print, per "
                        "launch: kernel, grid x block, dynamic shared memory; global load/store requests, sectors per "
                        "request (and the ideal), L1-level bytes, unique bytes; shared-memory requests, wavefronts "
                        "and excess wavefronts (bank conflicts); barriers and warp collectives per warp; active lanes "
                        "per access (a source-level estimate); theoretical occupancy on sm_80 and sm_90 from the "
                        "cubins' resource usage; then the total over the launches (requests, sectors, wavefronts, unique "
                        "bytes) against the op's docs' bytes model.  Shapes: "
                        + "; ".join(f"{k} {v[1]} (default {','.join(map(str, v[2]))})" for k, v in OPS.items()) + ".")
    pr.add_argument("op", nargs="?", choices=tuple(OPS))
    pr.add_argument("--shape", default=None, help="the op's shape (see above); default: the MNIST MLP's")
    pr.add_argument("--dtype", default="float32", choices=("float32", "float64", "float16", "bfloat16"))
    pr.add_argument("--direction", default="both", choices=("fwd", "bwd", "both"),
                    help="forward, backward (the backward's kernels alone) or both (default)")
    pr.add_argument("--json", action="store_true", help="print JSON")
    pr.add_argument("--by-line", action="store_true", help="also the counts per source line of kernels/cuda/*.cuh")
    pr.add_argument("--write-docs", action="store_true", help="regenerate the profile sections of docs/<op>.md "
                    "(each op at its MNIST and its large shape)")
    pr.set_defaults(func=cmd_profile)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .data import DataError
    from .pipeline.models import PyopsNotReady

    try:
        return args.func(args)
    except (PyopsNotReady, DataError) as e:  # expected failures: the message says what to do, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
