"""Runs every op benchmark (bench/bench_*.py) in turn, passing the command-line arguments through.

    python bench/run_all.py [--threads 2] [--device cpu|cuda] [--out bench/results]
"""
import glob
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    failed = []
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        print(f"\n=== {os.path.basename(path)}", flush=True)
        if subprocess.call([sys.executable, path, *sys.argv[1:]]) != 0:
            failed.append(os.path.basename(path))
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
