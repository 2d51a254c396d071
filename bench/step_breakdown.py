"""Where a training step's time goes between pyops' one-op step and the drop-in path, on the CPU.

The same tutorial MLP (784-256-128-64-10, Adam lr 3e-3) and the same batch, trained four ways that run the
same backend kernels (pyops.mlp_fwd, the loss, pyops.mlp_bwd, pyops.adam_step):

  one-op      pyops.mlp_train_step: the whole step as one op, no autograd graph
  ops+step    the same backend ops called one by one from Python, the gradients put in .grad, then
              pyops.optim.Adam.step() -- adds the Python between the ops and the optimizer's step()
  autograd    pyops.mlp(..., log_softmax_dim=1) (one C++ autograd node), stock nll_loss, loss.backward(),
              Adam.step() -- adds the autograd graph and engine
  drop-in     the stock model after pyops.optimize, trained by the stock loop -- adds the fused
              forward's Python (module call, graph choice, wrappers)

Each contender runs blocks of --block steps on its own copy of the model (the first two of each block are
not timed, so that every timed step finds its own parameters in the cache, as a training loop does); the
contenders and the GEMM floor (the step's 11 GEMMs alone, as in ``python -m pyops bench``) take turns in a
new random order each round.  Medians in microseconds, each as a multiple of the floor, and each row's
difference to the row above.  Then the MLP's autograd node alone: ``backward()`` through it against
``mlp_bwd`` called directly, at the MNIST sizes and at 4-wide layers (what the engine costs at any size).
Last, the stock loop's phases (zero_grad, model(x), loss, backward, step) timed one by one inside the steps,
for stock PyTorch with Adam(fused=True), the drop-in, and the drop-in with ``loss.backward()`` replaced by the
engine call that ``torch.autograd.backward`` ends in (what the Python of ``backward()`` costs within a step,
where the optimizer's pass has pushed that code out of the caches: several times what it costs in a loop).
Last, the drop-in step with its forward entered at each layer in turn -- model(x), the fused forward, its
code, pyops.mlp, the torch.ops op -- so that each layer's Python is priced inside a step too.

With ``--perf DIR`` it instead samples each of the one-op step and the drop-in with ``perf record`` (Linux perf,
attached to this process for --perf-steps steps after a warm-up, so that imports and setup are not counted) and
prints where each one's time goes, by kind of code (GEMMs, Adam's kernel, pyops' other kernels and glue, the
Python interpreter, torch's Python bindings, the autograd engine and nodes, torch's other C++, malloc, the OpenMP
runtime), in microseconds per step, and the drop-in's excess over the one-op step (CPU time summed over the
threads: use --threads 1 for the time of a step).

    python bench/step_breakdown.py [--batch 64] [--threads 1] [--rounds 40] [--block 10]
    python bench/step_breakdown.py --perf DIR [--perf-steps 4000] [--batch 64] [--threads 1]
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

import pyops
import pyops._ops
from pyops.pipeline import bench, models


def contenders(state: dict, x: torch.Tensor, y: torch.Tensor) -> dict:
    """{name: (one training step, the parameters it trains in ``state``'s order)}."""
    cpu = torch.device("cpu")
    one = models.pyops_trainer(state, backend="cpu", lr=models.SEED_LR, loss="nll", device=cpu, one_op=True)
    ops = torch.ops.pyops

    def model_and_adam():
        params = [torch.nn.Parameter(state[k].clone()) for k in state]
        weights = [p for k, p in zip(state, params) if k.endswith("weight")]
        biases = [p for k, p in zip(state, params) if k.endswith("bias")]
        return params, weights, biases, pyops.optim.Adam(weights + biases, lr=models.SEED_LR)

    p1, w1, b1, opt1 = model_and_adam()
    mask = [False] + [True] * (len(w1) + len(b1))  # no gradient for the input

    def ops_and_step():
        opt1.zero_grad()
        with torch.no_grad():
            outs = ops.mlp_fwd(x, w1, b1)
            log_probs = ops.log_softmax_fwd(outs[-1], 1)
            loss, total_weight = ops.nll_loss_fwd(log_probs, y, None, 1, -100)
            grad = ops.nll_loss_bwd(torch.ones_like(loss), log_probs, y, None, total_weight, 1, -100)
            grads = ops.mlp_bwd(ops.log_softmax_bwd(grad, log_probs, 1), x, w1, outs[:-1], mask)
        for p, g in zip(w1 + b1, grads[1:]):
            p.grad = g
        opt1.step()

    p2, w2, b2, opt2 = model_and_adam()

    def autograd():
        opt2.zero_grad()
        F.nll_loss(pyops.mlp(x, w2, b2, log_softmax_dim=1, backend="cpu"), y).backward()
        opt2.step()

    drop = bench.dropin_trainer(state, lr=models.SEED_LR, device=cpu)
    return {"one-op": (lambda: one.step(x, y), list(one.model.state_dict(keep_vars=True).values())),
            "ops+step": (ops_and_step, p1), "autograd": (autograd, p2),
            "drop-in": (lambda: drop.step(x, y), list(drop.model.state_dict(keep_vars=True).values()))}


def node_overhead(batch: int, sizes, rounds: int) -> tuple[float, float, bool]:
    """(µs of mlp_bwd called directly, µs of loss.backward() through the MLP's autograd node, whether the
    gradients the node returns are the tensors that end in .grad) for an MLP of ``sizes`` at ``batch``."""
    ops = torch.ops.pyops
    gen = torch.Generator().manual_seed(0)
    w = [torch.nn.Parameter(torch.randn(o, i, generator=gen) * 0.05) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [torch.nn.Parameter(torch.randn(o, generator=gen) * 0.05) for o in sizes[1:]]
    x, g = torch.randn(batch, sizes[0], generator=gen), torch.randn(batch, sizes[-1], generator=gen)
    mask = [False] + [True] * (len(w) + len(b))
    times = ([], [])
    for _ in range(rounds):
        for way in (0, 1):
            for i in range(10):
                for p in w + b:
                    p.grad = None
                if way == 0:
                    with torch.no_grad():
                        outs = ops.mlp_fwd(x, w, b)
                    t0 = time.perf_counter()
                    grads = ops.mlp_bwd(g, x, w, outs[:-1], mask)
                else:
                    out = ops.mlp(x, w, b)
                    t0 = time.perf_counter()
                    out.backward(g)
                if i >= 2:
                    times[way].append((time.perf_counter() - t0) * 1e6)
    seen = {}  # the node's gradients, caught on their way to .grad by tensor hooks
    for p in w + b:
        p.grad = None
        p.register_hook(lambda t, p=p: seen.__setitem__(p, t.data_ptr()))
    ops.mlp(x, w, b).backward(g)
    taken_over = all(p.grad.data_ptr() == seen[p] for p in w + b)
    return statistics.median(times[0]), statistics.median(times[1]), taken_over


PHASES = ("zero_grad", "model(x)", "loss", "backward", "step")


def blocks(runs: dict, rounds: int, block: int, order: random.Random) -> dict:
    """{name: [what runs[name]() returned, per timed step]}: every way runs ``block`` steps in a row (the first
    two not kept), the ways in a new random order each round."""
    out = {k: [] for k in runs}
    for _ in range(rounds):
        for name in order.sample(list(runs), len(runs)):
            for i in range(block):
                result = runs[name]()
                if i >= 2:
                    out[name].append(result)
    return out


def timed(step):
    """``step`` as a run of blocks() that returns its µs."""
    def run():
        t0 = time.perf_counter()
        step()
        return (time.perf_counter() - t0) * 1e6
    return run


def max_difference(params, ref) -> float:
    return max((a - b).abs().max().item() for a, b in zip(params, ref))


def phases(state: dict, x: torch.Tensor, y: torch.Tensor, rounds: int, block: int, order: random.Random):
    """({way: [[µs of each of PHASES] per timed step]}, {way: its parameters}) for the stock loop's ways."""
    cpu = torch.device("cpu")
    engine = torch.autograd.Variable._execution_engine  # where torch.autograd.backward ends

    def engine_direct(loss):
        engine.run_backward((loss,), (torch.ones_like(loss),), False, False, (), True, True)

    def phased(tr, backward):
        model, opt = tr.model, tr.optimizer

        def run():
            t = [time.perf_counter()]
            opt.zero_grad()
            t.append(time.perf_counter())
            out = model(x)
            t.append(time.perf_counter())
            loss = F.nll_loss(out, y)
            t.append(time.perf_counter())
            backward(loss)
            t.append(time.perf_counter())
            opt.step()
            t.append(time.perf_counter())
            return [(b - a) * 1e6 for a, b in zip(t, t[1:])]
        return run

    ways = {"stock, Adam(fused=True)": (models.stock_trainer(state, lr=models.SEED_LR, fused=True),
                                       torch.Tensor.backward),
            "drop-in": (bench.dropin_trainer(state, lr=models.SEED_LR, device=cpu), torch.Tensor.backward),
            "drop-in, engine called directly": (bench.dropin_trainer(state, lr=models.SEED_LR, device=cpu),
                                                engine_direct)}
    times = blocks({k: phased(*way) for k, way in ways.items()}, rounds, block, order)
    return times, {k: list(tr.model.parameters()) for k, (tr, _) in ways.items()}


# The drop-in step with its forward entered at a lower layer each time: what each layer of the fused forward's
# Python costs inside a step (where the kernels have pushed that code out of the caches), not in a loop.
FORWARD_LAYERS = ("model(x)", "model.forward(x)", "the fused code", "pyops.mlp", "torch.ops op")


def forward_layers(state: dict, x: torch.Tensor, y: torch.Tensor, rounds: int, block: int, order: random.Random):
    """({layer: [µs per timed step]}, {layer: its parameters}): the drop-in step, its forward called as
    FORWARD_LAYERS name it -- the module call; the fused forward (_FusedForward: the submodules' state, the code
    for it); that code (the parameters looked up on the module, pyops._fuse._f_mlp); pyops.mlp with the lists
    made once; the namespace's mlp op itself."""
    cpu = torch.device("cpu")

    def way(layer):
        tr = bench.dropin_trainer(state, lr=models.SEED_LR, device=cpu)
        model, opt = tr.model, tr.optimizer
        linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
        ws, bs = [m.weight for m in linears], [m.bias for m in linears]
        code = next(iter(model.forward.fns.values()))  # the code for train() without hooks (what runs here)
        op = pyops._ops.ops("cpu").mlp
        forward = {"model(x)": lambda: model(x), "model.forward(x)": lambda: model.forward(x),
                   "the fused code": lambda: code(model, x),
                   "pyops.mlp": lambda: pyops.mlp(x, ws, bs, log_softmax_dim=1),
                   "torch.ops op": lambda: op(x, ws, bs, 1)}[layer]

        def step():
            opt.zero_grad()
            F.nll_loss(forward(), y).backward()
            opt.step()
        return tr, step

    ways = {layer: way(layer) for layer in FORWARD_LAYERS}
    times = blocks({k: timed(step) for k, (_, step) in ways.items()}, rounds, block, order)
    return times, {k: list(tr.model.parameters()) for k, (tr, _) in ways.items()}


# perf's "dso symbol" of a sample -> the kind of code it is in; the first match wins
KINDS = (("GEMM (BLAS)", r"mkl_|sgemm|dgemm|openblas"), ("Adam kernel", r"pyops::.*adam"),
         ("pyops kernels, other", r"pyops::cpu::"), ("pyops glue", r"^_C\."),
         ("Python interpreter", r"^libpython"), ("malloc", r"^libc\.so.*(malloc|free|memalign|unlink_chunk|consolidate)"),
         ("autograd engine and nodes", r"autograd|Engine|Node"), ("torch Python bindings", r"^libtorch_python"),
         ("torch C++, other", r"^libtorch|^libc10"), ("OpenMP runtime", r"^libgomp|^libiomp"))
PERF_RATE = 10000  # samples per second


def perf_profile(step, steps: int, path: str) -> tuple[float, collections.Counter]:
    """(µs per step, {kind: µs per step}) of ``steps`` calls of ``step``, sampled by perf record into ``path``."""
    for _ in range(50):
        step()
    rec = subprocess.Popen(["perf", "record", "-F", str(PERF_RATE), "-p", str(os.getpid()), "-o", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # perf attached
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - t0
    rec.send_signal(signal.SIGINT)
    rec.wait()
    report = subprocess.run(["perf", "report", "-i", path, "-n", "--no-children", "--sort", "dso,symbol",
                             "--stdio"], capture_output=True, text=True, check=True).stdout
    return elapsed / steps * 1e6, kinds_per_step(report, steps)


def kinds_per_step(report: str, steps: int) -> collections.Counter:
    """{kind of code: µs per step} from ``perf report -n --sort dso,symbol --stdio`` over ``steps`` steps, sampled
    at PERF_RATE (a sample is 1/PERF_RATE s); kernel samples ([k]) count as "other"."""
    kinds = collections.Counter()
    for line in report.splitlines():
        m = re.match(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[([.k])\]\s+(.*)", line)
        if m is None:
            continue
        where = f"{m.group(2)} {m.group(4)}"
        kind = "other" if m.group(3) == "k" else next((k for k, pat in KINDS if re.search(pat, where)), "other")
        kinds[kind] += int(m.group(1)) * 1e6 / PERF_RATE / steps
    return kinds


def perf_main(args, both: dict) -> None:
    if shutil.which("perf") is None:
        raise SystemExit("--perf needs Linux perf (the `perf` command) on PATH")
    os.makedirs(args.perf, exist_ok=True)
    out = {}
    for name in ("one-op", "drop-in"):
        out[name] = perf_profile(both[name][0], args.perf_steps, os.path.join(args.perf, f"{name}.data"))
        print(f"  {name}: {out[name][0]:.1f} us/step while sampled")
    if not sum(out["drop-in"][1].values()):
        raise SystemExit("perf recorded no samples (perf_event_paranoid?)")
    if args.threads > 1:
        print(f"  (with {args.threads} threads the samples are CPU time summed over the threads, waiting threads "
              "included: 1 thread gives the time of a step)")
    names = [k for k, _ in KINDS] + ["other"]
    print(f"  {'us per step':28s}{'one-op':>10s}{'drop-in':>10s}{'excess':>10s}")
    for kind in names:
        a, b = out["one-op"][1][kind], out["drop-in"][1][kind]
        print(f"  {kind:28s}{a:10.1f}{b:10.1f}{b - a:+10.1f}")
    a, b = sum(out["one-op"][1].values()), sum(out["drop-in"][1].values())
    print(f"  {'all samples':28s}{a:10.1f}{b:10.1f}{b - a:+10.1f}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--block", type=int, default=10, help="steps per contender per round (>= 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--perf", metavar="DIR", help="sample the one-op step and the drop-in with perf record (data "
                   "files into DIR) and print where each one's time goes, instead of the timings")
    p.add_argument("--perf-steps", type=int, default=4000, help="steps sampled per way with --perf (default 4000)")
    args = p.parse_args(argv)
    if args.block < 3:
        p.error(f"--block must be at least 3 (the first two steps of a block are not timed), got {args.block}")
    torch.set_num_threads(args.threads)
    state = models.init_state(models.SEED_SIZES, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, models.SEED_SIZES[0], generator=gen)
    y = torch.randint(0, models.SEED_SIZES[-1], (args.batch,), generator=gen)
    both = contenders(state, x, y)
    if args.perf:
        print(f"batch {args.batch}, {args.threads} thread(s), {args.perf_steps} steps sampled per way; CPU float32 "
              f"GEMM: {pyops._ops.environment()['CPU float32 GEMM']}")
        return perf_main(args, both)
    runs = {name: timed(step) for name, (step, _) in both.items()}
    runs["GEMM floor"] = timed(bench.gemm_floor(args.batch)[0])  # the step's 11 GEMMs alone (python -m pyops bench)
    order = random.Random(args.seed)
    times = blocks(runs, args.rounds, args.block, order)
    print(f"batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds x {args.block - 2} timed steps; "
          f"CPU float32 GEMM: {pyops._ops.environment()['CPU float32 GEMM']}")
    floor = statistics.median(times.pop("GEMM floor"))
    prev = None
    for name, t in times.items():
        med = statistics.median(t)
        step = "" if prev is None else f"{med - prev:+8.1f}"
        print(f"  {name:9s} {med:9.1f} us/step  {med / floor:5.2f}x the GEMM floor  {step}")
        prev = med
    print(f"  GEMM floor {floor:8.1f} us")
    # every contender trained the same number of steps on the same batch from the same state: the same model
    ref = both["one-op"][1]
    for name, (_, params) in both.items():
        print(f"  {name:9s} parameters after {args.rounds * args.block} steps: max |difference| to one-op's "
              f"{max_difference(params, ref):.2e}")
    print("the MLP's autograd node alone: loss.backward() through it vs pyops.mlp_bwd called directly")
    for batch, sizes in ((args.batch, models.SEED_SIZES), (args.batch, (4, 4, 4, 4, 4))):
        direct, node, taken_over = node_overhead(batch, sizes, max(3, args.rounds // 2))
        print(f"  batch {batch}, sizes {'-'.join(map(str, sizes))}: direct {direct:8.1f} us, through the node "
              f"{node:8.1f} us ({node - direct:+.1f}); gradients taken over by .grad without a copy: {taken_over}")
    print("the stock loop's phases within the steps, medians in us:")
    times, params = phases(state, x, y, args.rounds, args.block, order)
    print("  " + f"{'':32s}" + "".join(f"{p:>11s}" for p in PHASES + ("step total",)))
    for name, rows in times.items():
        cols = [statistics.median(c) for c in zip(*rows)] + [statistics.median(map(sum, rows))]
        print(f"  {name:32s}" + "".join(f"{c:11.1f}" for c in cols))
    print(f"  drop-in with and without backward()'s Python: max |parameter difference| "
          f"{max_difference(params['drop-in'], params['drop-in, engine called directly']):.2e}")
    print("the drop-in step with its forward entered at each layer (10th percentile and median, us; each row's "
          "difference to the row below: what that layer costs)")
    times, params = forward_layers(state, x, y, args.rounds, args.block, order)
    stats = {k: (sorted(t)[len(t) // 10], statistics.median(t)) for k, t in times.items()}
    for upper, lower in zip(FORWARD_LAYERS, FORWARD_LAYERS[1:] + (None,)):
        (p10, med), diff = stats[upper], ""
        if lower is not None:
            diff = f"  {p10 - stats[lower][0]:+7.1f} {med - stats[lower][1]:+7.1f}"
        print(f"  {upper:18s}{p10:9.1f}{med:9.1f}{diff}")
    ref = params[FORWARD_LAYERS[0]]
    print(f"  the five ways' parameters after the same steps: max |difference| "
          f"{max(max_difference(params[k], ref) for k in FORWARD_LAYERS):.2e}")


if __name__ == "__main__":
    main()
