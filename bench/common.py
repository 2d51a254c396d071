"""Shared benchmark machinery: timing (warm-up, median of many runs; CUDA events on a GPU), result
tables printed and written as CSV, the machine's copy bandwidth as a yardstick for bytes models."""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from typing import Callable

import torch


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (cuda needs a GPU)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds of timed runs per measurement")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                   help="folder for the CSV (default bench/results)")
    return p


def setup(args) -> torch.device:
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    return torch.device(args.device)


class Clock:
    """Times the block it wraps: wall-clock on the CPU, CUDA events on a GPU (``.seconds`` afterwards)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.a, self.b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.a.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.b.record()
            self.b.synchronize()
            self.seconds = self.a.elapsed_time(self.b) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0


def samples(fns: list, device: torch.device, min_time: float = 0.2, warmup: int = 3, min_runs: int = 10,
            max_runs: int = 10000) -> list:
    """Seconds of every call of each fn in ``fns``, called round-robin -- one call of each per round --
    so that every contender sees the same machine load; rounds go on until min_time has passed (at least
    min_runs, at most max_runs).  Warm-up rounds first."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    rounds = 0
    while (rounds < min_runs or time.perf_counter() - start < min_time) and rounds < max_runs:
        for fn, ts in zip(fns, times):
            with Clock(device) as c:
                fn()
            ts.append(c.seconds)
        rounds += 1
    return times


def timeit(fn: Callable[[], object], device: torch.device, min_time: float = 0.2, warmup: int = 3,
           min_runs: int = 10, max_runs: int = 10000) -> float:
    """Median seconds per call of fn() (see samples)."""
    return statistics.median(samples([fn], device, min_time, warmup, min_runs, max_runs)[0])


def timeit_interleaved(fns: dict, device: torch.device, min_time: float = 0.2, warmup: int = 3,
                       min_runs: int = 10, max_runs: int = 10000) -> dict:
    """Median seconds per call of each fn in ``fns`` (name -> fn), measured round-robin for min_time per
    contender (fairer than timing them one after another on a shared machine)."""
    times = samples(list(fns.values()), device, min_time * len(fns), warmup, min_runs, max_runs)
    return {k: statistics.median(v) for k, v in zip(fns, times)}


def copy_bandwidth(device: torch.device, nbytes: int = 256 << 20) -> float:
    """Bytes/s of a large tensor copy (read + write counted), the machine's practical bandwidth."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = timeit(lambda: dst.copy_(src), device, min_time=0.3)
    return 2 * nbytes / t


class Table:
    """Rows of dicts, printed aligned and written as CSV."""

    def __init__(self, name: str):
        self.name = name
        self.rows: list[dict] = []

    def add(self, **row) -> None:
        if not self.rows:
            print(self._header(row))
        self.rows.append(row)
        print(self._fmt_row(row), flush=True)

    @staticmethod
    def _cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    def _header(self, row) -> str:
        return "  ".join(f"{k:>12}" for k in row)

    def _fmt_row(self, row) -> str:
        return "  ".join(f"{self._cell(v):>12}" for v in row.values())

    def write_csv(self, folder: str) -> str:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{self.name}.csv")
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.rows[0]))
            w.writeheader()
            w.writerows(self.rows)
        print(f"wrote {path}")
        return path
