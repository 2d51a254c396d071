"""``python -m pyops bench mnist|fashion-mnist|synthetic``: the seed MLP's training step, side by side.

Contenders (all from one initial state_dict, all fed the same batches in the same order):
  stock eager, Adam (default)     torch.optim.Adam(lr) -- on CPU tensors its default is the per-tensor loop
  stock eager, Adam (fused=True)  torch.optim.Adam(lr, fused=True)
  torch.compile, Adam (fused)     torch.compile (default mode, Inductor) of the function x, y -> nll_loss(model(x), y),
                                  i.e. forward + loss; AOTAutograd compiles the matching backward graph, which
                                  loss.backward() runs; zero_grad and the fused Adam step stay eager
  pyops <backend> (...)           the pyops model (pyops.nn.LinearReLU/Linear, mlp's log_softmax + pyops.nll_loss or
                                  pyops.cross_entropy, pyops.optim.Adam) on every backend fast enough to time here:
                                  cpu on CPU tensors (triton runs in Triton's interpreter and cuda-sim in the CUDA
                                  emulator on CPU tensors: both correct but far too slow to time, so not run here),
                                  cuda and triton on a GPU
  pyops <backend> (one-op step)   the same pyops model and optimizer, each training step ONE op:
                                  pyops.mlp_train_step (mlp, cross_entropy, its backward and Adam without autograd)
  pyops drop-in                   the stock model and torch.optim.Adam(lr) after one added line,
                                  pyops.optimize(model, optimizer) (the forward fused to one pyops.mlp op with its log_softmax,
                                  the optimizer converted to pyops.optim.Adam in place), trained by the stock loop:
                                  zero_grad, nll_loss(model(x), y), backward, step (the backend: auto)
and the GEMM floor: the step's 11 GEMMs alone -- 4 forward (X W^T), 4 weight gradients (dY^T X),
3 input gradients (dY W; none for the input layer) -- as plain torch.mm into preallocated outputs
(no bias, no addmm) at the model's shapes, timed in the same rounds.

For each batch size, per contender:
  1. steps 0 .. L-1 (L = --loss-steps, default 100): the loss of each step is recorded (the loss
     curves; the largest |loss - stock eager default loss| over them is reported); they also warm up
     (torch.compile compiles during step 0);
  2. step L: the dispatched ops of one whole training step (zero_grad, forward, loss, backward,
     optimizer.step) are counted with a TorchDispatchMode (autograd runs the CPU backward on the
     calling thread, so backward ops are seen); "kernel ops" leaves out view ops (t, view, detach:
     metadata only) and profiler markers -- the proxy for kernel launches on a GPU;
  3. steps L+1 .. L+S (S = --steps): each step timed with time.perf_counter (after
     torch.cuda.synchronize on a GPU), interleaved with the other contenders and the GEMM floor in
     --rounds rounds (default 30, so 10 steps each per round), each round in a new seeded order, so the
     machine's noise hits all alike; reported: the median ms/step;
  4. test accuracy after these L+1+S steps.
Batches: a seeded shuffle of the training set, drawn in order (reshuffled at each pass); step i
uses the same batch for every contender.  Inputs are gathered before the timer starts.
"""
from __future__ import annotations

import collections
import math
import os
import platform
import random
import statistics
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .. import data as D
from . import models, results
from .train import evaluate

#: backends that run on CPU tensors here but are far too slow to time
TOO_SLOW_ON_CPU = {
    "triton": "runs in Triton's interpreter on CPU tensors: correct, far too slow to time",
    "cuda-sim": "the CUDA kernels run by the CPU emulator: correct, far too slow to time",
}
STOCK_KEYS = ("eager", "fused", "compile")


# ---------------------------------------------------------------- dispatched-op counting
class OpCounter(TorchDispatchMode):
    """Counts every op that reaches the dispatcher's Python mode while active."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))


def is_kernel_op(func_name: str, func=None) -> bool:
    if func_name.startswith("profiler."):
        return False
    return not (func is not None and func.is_view)


def count_ops(step) -> dict:
    """Run ``step()`` once under an OpCounter; totals with and without view ops / profiler markers."""
    counter = OpCounter()
    with counter:
        step()
    views = sorted(name for name in counter.counts if not is_kernel_op(name, _resolve_op(name))
                   and not name.startswith("profiler."))
    kernel = sum(n for name, n in counter.counts.items() if is_kernel_op(name, _resolve_op(name)))
    return dict(kernel_ops=kernel, all_dispatched=sum(counter.counts.values()),
                by_op=dict(sorted(counter.counts.items())), view_ops=views)


def _resolve_op(name: str):
    # "aten.t.default" -> torch.ops.aten.t.default
    ns, *rest = name.split(".")
    obj = getattr(torch.ops, ns, None)
    try:
        for part in rest:
            obj = getattr(obj, part)
    except AttributeError:
        return None
    return obj if isinstance(obj, torch._ops.OpOverload) else None


# ---------------------------------------------------------------- the same batches for everyone
class BatchStream:
    """Batch i of a seeded shuffle of (inputs, labels), identical for every contender."""

    def __init__(self, inputs, labels, batch_size: int, seed: int):
        self.inputs, self.labels, self.batch_size = inputs, labels, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.int64)

    def __getitem__(self, i: int):
        end = (i + 1) * self.batch_size
        while len(self.order) < end:
            self.order = torch.cat([self.order, torch.randperm(len(self.inputs), generator=self.gen)])
        idx = self.order[i * self.batch_size:end].to(self.inputs.device)
        return self.inputs.index_select(0, idx), self.labels.index_select(0, idx)


# ---------------------------------------------------------------- the GEMM floor
def gemm_floor(batch: int, sizes=models.SEED_SIZES, device="cpu"):
    """(run, flops): run() does the step's 11 GEMMs at the model's shapes as torch.mm into
    preallocated outputs, exactly the products autograd's addmm/mm would do, without bias/addmm."""
    g = torch.Generator().manual_seed(1)
    mk = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    layers = list(zip(sizes[:-1], sizes[1:]))
    X = [mk(batch, i) for i, _ in layers]        # layer inputs  [B, in]
    W = [mk(o, i) for i, o in layers]            # weights       [out, in]
    G = [mk(batch, o) for _, o in layers]        # output grads  [B, out]
    Y = [torch.empty(batch, o, device=device) for _, o in layers]
    dW = [torch.empty(o, i, device=device) for i, o in layers]
    dX = [torch.empty(batch, i, device=device) for i, _ in layers]

    def run():
        for k in range(len(layers)):             # forward: Y = X W^T
            torch.mm(X[k], W[k].t(), out=Y[k])
        for k in range(len(layers)):             # weight gradients: dW = dY^T X
            torch.mm(G[k].t(), X[k], out=dW[k])
        for k in range(1, len(layers)):          # input gradients: dX = dY W (not for the input layer)
            torch.mm(G[k], W[k], out=dX[k])

    flops = 2 * batch * sum(i * o for i, o in layers) * 3 - 2 * batch * layers[0][0] * layers[0][1]
    return run, flops


# ---------------------------------------------------------------- contenders
def pyops_backends(device: torch.device) -> tuple[list[str], dict]:
    """(backends timed here, {backend: why not timed})."""
    from .. import _ops

    run, skipped = [], {}
    for b in ("cuda", "triton", "cpu", "cuda-sim"):
        why = _ops.unavailable_reason(b, device)
        if not why and device.type == "cpu" and b in TOO_SLOW_ON_CPU:
            why = TOO_SLOW_ON_CPU[b]
        if why:
            skipped[b] = why
        else:
            run.append(b)
    return run, skipped


def contender_specs(args, device) -> tuple[list[tuple], dict]:
    """[(key, label, factory(state) -> Trainer)], {backend: why not run}."""
    specs = [("eager", "stock eager, Adam (default)", lambda s: models.stock_trainer(s, lr=args.lr, device=device)),
             ("fused", "stock eager, Adam (fused=True)",
              lambda s: models.stock_trainer(s, lr=args.lr, fused=True, device=device))]
    if not args.no_compile:
        specs.append(("compile", "torch.compile, Adam (fused=True)",
                      lambda s: models.stock_trainer(s, lr=args.lr, fused=True, compile=True, device=device)))
    backends, skipped = pyops_backends(device)
    for b in backends:
        for loss, what in (("nll", "log_softmax+nll"), ("cross-entropy", "cross_entropy")):
            specs.append((f"pyops-{b}-{loss}", f"pyops {b} ({what})",
                          lambda s, b=b, loss=loss: models.pyops_trainer(s, backend=b, lr=args.lr, loss=loss,
                                                                         device=device)))
        specs.append((f"pyops-{b}-one-op", f"pyops {b} (one-op step, cross_entropy)",
                      lambda s, b=b: models.pyops_trainer(s, backend=b, lr=args.lr, loss="cross-entropy",
                                                          device=device, one_op=True)))
    specs.append(("pyops-dropin", "pyops drop-in (stock model + pyops.optimize)",
                  lambda s: dropin_trainer(s, lr=args.lr, device=device)))
    if args.only:
        keep = {k.strip() for k in args.only.split(",")}
        unknown = keep - {key for key, _, _ in specs}
        if unknown:
            raise SystemExit(f"--only: unknown contender(s) {', '.join(sorted(unknown))}; the contenders here: "
                             f"{', '.join(key for key, _, _ in specs)}")
        specs = [spec for spec in specs if spec[0] in keep]
    return specs, skipped


def dropin_trainer(state: dict, *, lr: float, device) -> models.Trainer:
    """The stock model and its default torch.optim.Adam, then the one line a user adds: pyops.optimize."""
    import pyops

    models.require_pyops()
    tr = models.stock_trainer(state, lr=lr, device=device, name="pyops drop-in (stock model + pyops.optimize)")
    model, optimizer = pyops.optimize(tr.model, tr.optimizer)  # in place: tr's loss and step use them as they are
    assert model is tr.model and optimizer is tr.optimizer
    return tr


def _timed(fn, sync) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def bench_batch_size(args, ds_inputs, specs, batch: int, device, log) -> dict:
    x_train, y_train, x_test, y_test = ds_inputs
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    stream = BatchStream(x_train, y_train, batch, args.seed)
    state = models.init_state(models.SEED_SIZES, args.seed)
    L, S = args.loss_steps, args.steps
    U = args.after_epochs * (len(x_train) // batch)  # untimed training steps between the loss steps and the timing
    rows, live = [], []
    for key, label, factory in specs:
        row = dict(key=key, label=label, kind="pyops" if key.startswith("pyops") else "stock")
        rows.append(row)
        try:
            tr = factory(state)
        except models.PyopsNotReady as e:
            row.update(status="not run", reason=str(e), missing=e.missing)
            log(f"  {label}: NOT RUN: this pyops lacks {', '.join(e.missing)}")
            continue
        t0 = time.perf_counter()
        losses = []
        for i in range(L):
            losses.append(tr.step(*stream[i]).item())
        for i in range(L, L + U):
            tr.step(*stream[i])
        warm = time.perf_counter() - t0
        x, y = stream[L + U]  # gathered outside the counted step
        row.update(status="ok", losses=losses, warmup_seconds=warm, ops_per_step=count_ops(lambda: tr.step(x, y)),
                   times=[])
        if key == "compile":
            row["ops_note"] = ("under a TorchDispatchMode the compiled function runs eagerly, so this counts the "
                               "eager ops; the compiled step's Inductor kernels are not dispatched ops")
        live.append((row, tr))
        log(f"  {label}: {L} loss steps{f' + {U} untimed steps' if U else ''} in {row['warmup_seconds']:.1f} s, "
            f"{row['ops_per_step']['kernel_ops']} kernel ops/step ({row['ops_per_step']['all_dispatched']} dispatched)")
    floor_run, floor_flops = gemm_floor(batch, device=device)
    floor_run()
    floor_times = []
    per_round = math.ceil(S / args.rounds)
    order = random.Random(args.seed)  # each round takes the floor and the contenders in a new order
    for r in range(args.rounds):
        n = min(per_round, S - r * per_round)
        for who in order.sample(range(len(live) + 1), len(live) + 1):
            if who == len(live):
                floor_times += [_timed(floor_run, sync) for _ in range(n)]
                continue
            row, tr = live[who]
            for i in range(L + U + 1 + r * per_round, L + U + 1 + r * per_round + n):
                x, y = stream[i]
                row["times"].append(_timed(lambda: tr.step(x, y), sync))
    floor_ms = statistics.median(floor_times) * 1e3
    ref = {row["key"]: row for row, _ in live if row["key"] in STOCK_KEYS}
    for row, tr in live:
        row["ms_per_step"] = statistics.median(row["times"]) * 1e3
        row["min_ms_per_step"] = min(row["times"]) * 1e3
        row["samples_per_s"] = batch / row["ms_per_step"] * 1e3
        row["timed_steps"] = len(row.pop("times"))
        row["test_loss"], row["test_accuracy"] = evaluate(tr, x_test, y_test)
        row["untimed_steps"] = U
        row["trained_steps"] = L + U + 1 + row["timed_steps"]
        row["x_gemm_floor"] = row["ms_per_step"] / floor_ms
    for row, _ in live:
        row["speedup_vs"] = {k: ref[k]["ms_per_step"] / row["ms_per_step"] for k in ref}
        if "eager" in ref:
            diff = [abs(a - b) for a, b in zip(row["losses"], ref["eager"]["losses"])]
            row["max_abs_loss_diff_vs_stock_eager"] = max(diff, default=0.0)
            row["max_abs_loss_diff_vs_stock_eager_first_10"] = max(diff[:10], default=0.0)
    return dict(batch_size=batch, contenders=rows,
                gemm_floor=dict(ms=floor_ms, min_ms=min(floor_times) * 1e3, gflops=floor_flops / floor_ms / 1e6,
                                samples_per_s=batch / floor_ms * 1e3,
                                flops_per_step=floor_flops, gemms=11, timed_calls=len(floor_times)))


def environment(device) -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return dict(torch=torch.__version__, python=platform.python_version(), cpu=cpu, cpu_count=os.cpu_count(),
                threads=torch.get_num_threads(), device=str(device),
                gpu=torch.cuda.get_device_name(0) if device.type == "cuda" else None,
                load_average_at_start=os.getloadavg())


DEFINITIONS = {
    "contenders": "stock eager, Adam (default): torch.optim.Adam(lr), on CPU its per-tensor loop; stock eager, Adam "
                  "(fused=True); torch.compile: torch.compile(dynamic=False, default Inductor mode) of the function "
                  "(x, y) -> nll_loss(model(x), y), i.e. forward + loss, whose backward AOTAutograd compiles and "
                  "loss.backward() runs, with zero_grad and Adam(fused=True) eager; pyops <backend>: the pyops model "
                  "(pyops.nn.LinearReLU/Linear, mlp's log_softmax + pyops.nll_loss or pyops.cross_entropy, "
                  "pyops.optim.Adam) under pyops.use_backend(<backend>); pyops <backend> (one-op step): each "
                  "training step is one pyops.mlp_train_step(..., backend=<backend>) (the same kernels, no "
                  "autograd graph, no .grad); pyops drop-in: the stock model and torch.optim.Adam(lr) after "
                  "pyops.optimize(model, optimizer), trained by the stock loop",
    "ms_per_step": "median wall time of one whole training step (zero_grad, forward, loss, backward, optimizer.step) "
                   "over the timed steps, time.perf_counter",
    "min_ms_per_step": "the fastest timed step: on a busy machine the least disturbed one (shown in brackets)",
    "samples_per_s": "batch size / ms_per_step",
    "speedup_vs": "stock variant's ms/step divided by this contender's (> 1: this one is faster)",
    "x_gemm_floor": "ms/step divided by the GEMM floor's ms (1.0 = nothing but the 11 GEMMs)",
    "gemm_floor": "the step's 11 GEMMs alone (4 forward, 4 dW, 3 dX) as torch.mm into preallocated outputs",
    "kernel_ops": "ops dispatched during one whole training step, not counting view ops (metadata only) and profiler "
                  "markers: the proxy for kernel launches on a GPU (all_dispatched counts everything)",
    "test_accuracy": "fraction of the test set classified correctly after trained_steps steps (the loss steps, the "
                     "untimed steps of --after-epochs, the op-count step and the timed steps), the same batches for "
                     "every contender",
    "untimed_steps": "--after-epochs: each contender's own training steps between the loss steps and the timing "
                     "(whole epochs of the batch size), so that the timed steps see a trained model's state",
    "max_abs_loss_diff_vs_stock_eager": "largest |loss - stock eager default-Adam loss| over the loss steps (same "
                                        "initial weights, same batches); over many steps Adam amplifies rounding "
                                        "differences chaotically (even stock fused vs default Adam drift apart), so "
                                        "the first 10 steps (_first_10) are the equivalence check",
}


def best_local_dataset(data_dir, log) -> D.Dataset:
    """``auto``: mnist if a local copy exists, else fashion-mnist, else synthetic (never downloads)."""
    why = []
    for name in ("mnist", "fashion-mnist"):
        try:
            return D.load(name, data_dir, download=False, log=log)
        except D.DataError as e:
            why.append(f"{name}: {str(e).splitlines()[0]}")
    log("auto: no local mnist or fashion-mnist (" + "; ".join(why) + "); falling back to SYNTHETIC data")
    return D.synthetic()


def after_epochs_note(epochs: int) -> str:
    return f" + {epochs} untimed epoch{'s' if epochs != 1 else ''} of training" if epochs else ""


def run(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.loss_steps < 1 or args.steps < 1 or args.rounds < 1:
        raise SystemExit("--loss-steps, --steps and --rounds must be at least 1")
    if args.after_epochs < 0:
        raise SystemExit(f"--after-epochs must be 0 or more, got {args.after_epochs}")
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    ds = best_local_dataset(args.data_dir, log) if args.dataset == "auto" else \
        D.load(args.dataset, args.data_dir, download=not args.no_download)
    if ds.synthetic:
        log(f"NOTE: {D.SYNTHETIC_NOTE}")
    inputs = [t.to(device) for t in (D.normalize(ds.train_images), ds.train_labels, D.normalize(ds.test_images),
                                     ds.test_labels)]
    specs, skipped = contender_specs(args, device)
    env = environment(device)
    log(f"bench: {ds.label}\n  data: {ds.source}\n  {env['cpu']}, {env['threads']} threads, torch {env['torch']}, "
        f"device {device}; {args.loss_steps} loss steps{after_epochs_note(args.after_epochs)} + 1 counted + "
        f"{args.steps} timed steps per contender")
    for b, why in skipped.items():
        log(f"  pyops backend {b}: not timed: {why}")
    out = dict(command=" ".join(["python -m pyops bench", *sys.argv[2:]]) if sys.argv[1:2] == ["bench"]
               else " ".join(sys.argv), dataset=ds.label, dataset_name=ds.name, synthetic=ds.synthetic,
               source=ds.source, environment=env, lr=args.lr, seed=args.seed, loss_steps=args.loss_steps,
               after_epochs=args.after_epochs,
               timed_steps=args.steps, rounds=args.rounds, pyops_backends_not_timed=skipped,
               definitions=DEFINITIONS, results=[])
    for batch in batch_sizes:
        log(f"batch {batch}:")
        out["results"].append(bench_batch_size(args, inputs, specs, batch, device, log))
        print(markdown_table(out["results"][-1]), flush=True)
    env["load_average_at_end"] = os.getloadavg()
    if max(env["load_average_at_start"][0], env["load_average_at_end"][0]) > (os.cpu_count() or 1):
        log(f"WARNING: load average {env['load_average_at_end'][0]:.1f} on {os.cpu_count()} CPUs: timings inflated")
    write(args.out or f"results/bench-{ds.name}", out)
    return 0


# ---------------------------------------------------------------- outputs
def markdown_table(res: dict) -> str:
    f = res["gemm_floor"]
    header = ["contender", "ms/step (min)", "samples/s", "vs eager", "vs fused", "vs compile", "x GEMM floor",
              "kernel ops/step (all)", "test acc", "max |dloss| vs eager: 10 steps", "all loss steps"]
    rows = []
    for c in res["contenders"]:
        if c["status"] != "ok":
            rows.append([c["label"], "not run: this pyops lacks " + ", ".join(c["missing"])]
                        + [None] * (len(header) - 2))
            continue
        sp = c["speedup_vs"]
        ops = c["ops_per_step"]
        rows.append([c["label"], f"{c['ms_per_step']:.4g} ({c['min_ms_per_step']:.3g})", round(c["samples_per_s"]),
                     *(sp.get(k) for k in STOCK_KEYS),
                     c["x_gemm_floor"], f"{ops['kernel_ops']} ({ops['all_dispatched']})" +
                     (" *" if "ops_note" in c else ""), c["test_accuracy"],
                     c.get("max_abs_loss_diff_vs_stock_eager_first_10"), c.get("max_abs_loss_diff_vs_stock_eager")])
    rows.append(["GEMM floor (11 torch.mm)", f"{f['ms']:.4g} ({f['min_ms']:.3g})", round(f["samples_per_s"]), None,
                 None, None, 1.0, "11", None, None, None])
    return (f"\n### batch {res['batch_size']}\n\n" + results.md_table(header, rows) +
            f"\n\nGEMM floor: {f['flops_per_step'] / 1e6:.1f} MFLOP/step, {f['gflops']:.1f} GFLOP/s.\n")


def write_markdown(path: str, out: dict) -> None:
    env = out["environment"]
    lines = [f"# MLP training step: pyops vs stock PyTorch on {out['dataset']}", ""]
    if out["synthetic"]:
        lines += [f"**{D.SYNTHETIC_NOTE}.**", ""]
    lines += [f"- command: `{out['command']}`", f"- data: {out['source']}",
              f"- machine: {env['cpu']} ({env['cpu_count']} CPUs), {env['threads']} torch threads, device "
              f"{env['device']}{' (' + env['gpu'] + ')' if env['gpu'] else ''}, torch {env['torch']}; load average "
              f"{env['load_average_at_start'][0]:.2f} at start, {env['load_average_at_end'][0]:.2f} at end",
              f"- model: seed MLP 784-256-128-64-10, Adam lr {out['lr']:g}, seed {out['seed']}; "
              f"{out['loss_steps']} loss steps{after_epochs_note(out.get('after_epochs', 0))} + 1 op-count step + "
              f"{out['timed_steps']} timed steps per contender "
              f"({out['rounds']} interleaved rounds)"]
    busy = max(env["load_average_at_start"][0], env["load_average_at_end"][0])
    if busy > (env["cpu_count"] or 1):
        lines.append(f"- **WARNING: load average {busy:.1f} on {env['cpu_count']} CPUs: other processes competed for "
                     "the CPUs during this run, so the times are inflated (multi-threaded steps suffer most); "
                     "compare ratios within this run only**")
    for b, why in out["pyops_backends_not_timed"].items():
        lines.append(f"- pyops backend `{b}` not timed: {why}")
    for res in out["results"]:
        lines.append(markdown_table(res))
        notes = [c["ops_note"] for c in res["contenders"] if "ops_note" in c]
        if notes:
            lines.append(f"\\* {notes[0]}.\n")
    lines += ["## Definitions", ""] + [f"- **{k}**: {v}" for k, v in out["definitions"].items()]
    lines += ["", "Plots: `throughput.png`, " + ", ".join(f"`loss_curves_b{r['batch_size']}.png`"
                                                         for r in out["results"]), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write(folder: str, out: dict) -> None:
    with results.atomic_dir(folder) as tmp:
        results.write_json(os.path.join(tmp, "results.json"), out)
        write_markdown(os.path.join(tmp, "results.md"), out)
        tag = " (SYNTHETIC data)" if out["synthetic"] else ""
        for res in out["results"]:
            series = {c["label"]: c["losses"] for c in res["contenders"] if c["status"] == "ok"}
            results.plot_loss_curves(os.path.join(tmp, f"loss_curves_b{res['batch_size']}.png"), series,
                                     ref=res["contenders"][0]["label"],
                                     title=f"first {out['loss_steps']} steps, batch {res['batch_size']}, same batches "
                                           f"and initial weights{tag}")
        labels = [c["label"] for c in out["results"][0]["contenders"]]
        bars = {lab: [next(c.get("samples_per_s") for c in r["contenders"] if c["label"] == lab)
                      for r in out["results"]] for lab in labels}
        results.plot_bars(os.path.join(tmp, "throughput.png"), [f"batch {r['batch_size']}" for r in out["results"]],
                          bars, title=f"training throughput on {out['environment']['device']}, "
                                      f"{out['environment']['threads']} threads{tag}", ylabel="samples/s",
                          hlines={"GEMM floor": [r["gemm_floor"]["samples_per_s"] for r in out["results"]]})
    print(f"wrote {folder}/results.json, results.md, throughput.png, "
          + ", ".join(f"loss_curves_b{r['batch_size']}.png" for r in out["results"]))


def add_arguments(p) -> None:
    p.add_argument("--steps", type=int, default=300, help="timed steps per contender and batch size (default 300)")
    p.add_argument("--loss-steps", type=int, default=100,
                   help="first steps, loss recorded and compared with stock; also the warm-up (default 100)")
    p.add_argument("--after-epochs", type=int, default=0, metavar="N",
                   help="train each contender N untimed epochs after the loss steps, then time its steps: a trained "
                   "model's optimizer state (e.g. subnormal exp_avg of dead units, docs/adam.md) instead of a fresh "
                   "model's (default 0)")
    p.add_argument("--rounds", type=int, default=30,
                   help="interleaved timing rounds, each in a new order (default 30: 10 steps per round)")
    p.add_argument("--batch-sizes", default="64,512", help="comma-separated (default 64,512)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--lr", type=float, default=models.SEED_LR, help="Adam learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order (default 0)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument("--only", default="", help="comma-separated contender keys to run (e.g. fused,pyops-dropin; "
                   "default: all)")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile contender (compiling "
                   "takes ~10-60 s here)")
