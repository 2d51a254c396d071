"""Command line: ``python -m pyops <command>``.

  info     versions, compiled CUDA architectures, which backends run here, Triton interpreter state
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pyops", description="pyops: hand-written CUDA and Triton kernels "
                                "for training a small MLP, as drop-ins for PyTorch ops.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="versions, compiled CUDA architectures, backends that run here")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
