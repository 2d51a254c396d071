"""Output folders written atomically, JSON, markdown tables and plots (matplotlib with the Agg backend).

An output folder is built complete in a temporary sibling folder and then swapped in with one
rename: ``renameat2(RENAME_EXCHANGE)`` on Linux swaps the two folders atomically (the previous
results are removed afterwards); where that call does not exist, the old folder is renamed aside,
the new one renamed in, and the old one removed.  An interrupted run leaves the previous folder as
it was, plus at most a stale ``.<name>.tmp-*`` sibling.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: str, b: str) -> bool:
    """Atomically swap paths a and b (Linux renameat2); False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        if err in (38, 22):  # ENOSYS, EINVAL: the kernel or file system cannot exchange
            return False
        raise OSError(err, os.strerror(err), a)
    return True


@contextlib.contextmanager
def atomic_dir(out: str):
    """``with atomic_dir(out) as tmp:`` write everything into tmp; on normal exit tmp becomes out."""
    out = os.path.abspath(out)
    parent, name = os.path.split(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.tmp-")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, 0o755)
    if not os.path.exists(out):
        os.rename(tmp, out)
    elif _exchange(tmp, out):
        shutil.rmtree(tmp)  # now holds the previous results
    else:
        old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
        os.rename(out, os.path.join(old, name))
        os.rename(tmp, out)
        shutil.rmtree(old)


def write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def md_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_lines(path: str, series: dict, *, title: str, xlabel: str, ylabel: str, logy: bool = False) -> None:
    """One line per entry of ``series`` (label -> (xs, ys)), overlaid."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = ["-", "--", ":", "-."]
    for i, (label, (xs, ys)) in enumerate(series.items()):
        ax.plot(xs, ys, styles[i % len(styles)], label=label, linewidth=1.4)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_loss_curves(path: str, series: dict, ref: str, *, title: str) -> None:
    """Loss per step, one line per entry of ``series`` (label -> losses), overlaid; below, each
    one's |loss - series[ref]| on a log scale (zeros drawn at the bottom)."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), dpi=110, sharex=True, height_ratios=(3, 2))
    styles = ["-", "--", ":", "-."]
    for i, (label, ys) in enumerate(series.items()):
        top.plot(range(len(ys)), ys, styles[i % len(styles)], label=label, linewidth=1.4, color=f"C{i}")
        if label != ref:
            diff = [max(abs(a - b), 1e-9) for a, b in zip(ys, series[ref])]
            bottom.plot(range(len(diff)), diff, styles[i % len(styles)], linewidth=1.2, color=f"C{i}")
    top.set(title=title, ylabel="training loss")
    top.legend(fontsize=8)
    bottom.set(yscale="log", xlabel="step", ylabel=f"|loss - {ref}|", ylim=(5e-10, None))
    bottom.yaxis.label.set_size(7)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_bars(path: str, groups: list[str], bars: dict, *, title: str, ylabel: str, hlines: dict | None = None) -> None:
    """Grouped bars: ``bars`` label -> one value per group (None = not run); ``hlines`` label ->
    one reference value per group, drawn as a short horizontal line over the group."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 4.2), dpi=110, squeeze=False)
    labels = list(bars)
    for g, ax in enumerate(axes[0]):
        vals = [bars[k][g] for k in labels]
        xs = range(len(labels))
        ax.bar(xs, [v or 0 for v in vals], color=[f"C{i}" for i in range(len(labels))])
        for x, v in zip(xs, vals):
            ax.text(x, v or 0, "not run" if v is None else f"{v:,.0f}", ha="center", va="bottom", fontsize=7)
        for k, ref in (hlines or {}).items():
            ax.axhline(ref[g], color="k", linestyle="--", linewidth=1)
            ax.text(len(labels) - 0.5, ref[g], k, ha="right", va="bottom", fontsize=7)
        ax.set_xticks(list(xs), labels, rotation=30, ha="right", fontsize=7)
        ax.set(title=groups[g], ylabel=ylabel if g == 0 else "")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
