"""``python -m pyops train mnist|fashion-mnist``: the seed tutorial's training loop.

Per epoch, as the seed prints it: the training loss (mean of the epoch's batch losses), the test
loss (mean NLL over the test set) and the test accuracy (fraction of test images classified
correctly), e.g. ``Epoch: 1/5.. Training Loss: 0.514.. Test Loss: 0.436.. Test Accuracy: 0.842``.

Under torchrun with ``--ddp`` each process trains on its DistributedSampler shard with
``--batch-size`` examples per step (global batch = batch size x processes); the printed training
loss is the mean over processes; every process evaluates the whole test set and the run checks
that all processes report the same accuracy (their weights must be identical).
"""
from __future__ import annotations

import math
import os
import sys
import time

import torch
import torch.nn.functional as F

from .. import data as D
from . import ddp, models, results


@torch.no_grad()
def evaluate(trainer: models.Trainer, inputs: torch.Tensor, labels: torch.Tensor,
             chunk: int = 2000) -> tuple[float, float]:
    """(mean test loss, accuracy) of ``trainer``'s model.  The model (stock or pyops) produces the
    outputs; the metrics are computed from them by the same stock reductions for both models."""
    total, correct = 0.0, 0
    for x, y in D.batches(inputs, labels, chunk):
        out = trainer.outputs(x)
        logp = out if trainer.loss == "nll" else F.log_softmax(out, dim=1)
        total += F.nll_loss(logp, y, reduction="sum").item()
        correct += (out.argmax(dim=1) == y).sum().item()
    n = max(len(labels), 1)
    return total / n, correct / n


def train_epochs(trainer: models.Trainer, ds: D.Dataset, *, epochs: int, batch_size: int, seed: int = 0,
                 progress: bool = True, distributed: bool = False, rank: int = 0, log=print) -> list[dict]:
    """Train for ``epochs`` and return one dict per epoch (train_loss, test_loss, test_accuracy, seconds)."""
    from tqdm import tqdm

    x_train, y_train = D.normalize(ds.train_images), ds.train_labels
    x_test, y_test = D.normalize(ds.test_images), ds.test_labels
    if distributed:
        sampler = ddp.sampler(len(x_train), seed)
    else:
        sampler = torch.utils.data.RandomSampler(range(len(x_train)), generator=torch.Generator().manual_seed(seed))
    history = []
    for epoch in range(epochs):
        if distributed:
            sampler.set_epoch(epoch)
        steps = math.ceil(len(sampler) / batch_size)
        t0 = time.perf_counter()
        running = 0.0
        bar = tqdm(D.batches(x_train, y_train, batch_size, sampler), total=steps, desc=f"epoch {epoch + 1}/{epochs}",
                   unit="step", leave=False, disable=not progress or rank != 0, file=sys.stderr)
        for i, (x, y) in enumerate(bar):
            running += trainer.step(x, y).item()
            if i % 50 == 0:
                bar.set_postfix(loss=f"{running / (i + 1):.3f}")
        seconds = time.perf_counter() - t0
        train_loss = running / steps
        if distributed:
            train_loss = ddp.mean(train_loss)
        test_loss, acc = evaluate(trainer, x_test, y_test)
        if distributed and not ddp.same_on_all_ranks(acc):
            raise RuntimeError(f"rank {rank}: test accuracy {acc} differs between processes: DDP replicas diverged")
        history.append(dict(epoch=epoch + 1, train_loss=train_loss, test_loss=test_loss, test_accuracy=acc,
                            seconds=seconds, steps=steps))
        if rank == 0:
            log(f"Epoch: {epoch + 1}/{epochs}.. Training Loss: {train_loss:.3f}.. Test Loss: {test_loss:.3f}.. "
                f"Test Accuracy: {acc:.3f}  ({seconds:.1f} s, {steps} steps)")
    return history


def add_arguments(p) -> None:
    p.add_argument("--model", choices=("pyops", "stock"), default="pyops",
                   help="pyops: every layer, the loss and Adam are pyops ops (default); stock: stock PyTorch")
    p.add_argument("--backend", default=None, help="pyops backend for the pyops model (default auto: cpu on CPU)")
    p.add_argument("--loss", choices=models.LOSSES, default="nll",
                   help="nll: log_softmax + NLL loss, the seed's (default); cross-entropy: the fused equivalent")
    p.add_argument("--one-op-step", action="store_true",
                   help="pyops model: run each training step as one op, pyops.mlp_train_step (the same numbers "
                        "without autograd; not with --ddp or cubic)")
    p.add_argument("--epochs", type=int, default=None, help="default 5 (cubic: 300)")
    p.add_argument("--batch-size", type=int, default=models.SEED_BATCH, help="per process under --ddp (default 64)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 3e-3; cubic: 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="initial weights and shuffling (default 0)")
    p.add_argument("--train-subset", type=int, default=None, metavar="N", help="train on the first N examples")
    p.add_argument("--test-subset", type=int, default=None, metavar="N", help="test on the first N examples")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument("--ddp", action="store_true",
                   help="DistributedDataParallel over gloo; start with torchrun --nproc_per_node=N -m pyops train ...")


def run(args) -> int:
    if args.model == "stock" and (args.backend is not None or args.one_op_step):
        raise SystemExit("--backend and --one-op-step are for the pyops model; the stock model has neither")
    if args.one_op_step and args.ddp:
        raise SystemExit("--one-op-step runs no autograd hooks, so DistributedDataParallel cannot all-reduce its "
                         "gradients: drop --ddp or --one-op-step")
    args.epochs = 5 if args.epochs is None else args.epochs
    args.lr = models.SEED_LR if args.lr is None else args.lr
    rank, world = ddp.init() if args.ddp else (0, 1)
    try:
        threads = args.threads or max(1, (os.cpu_count() or 2) // world if args.ddp else 2)
        torch.set_num_threads(threads)
        ds = D.load(args.dataset, args.data_dir, download=not args.no_download)
        if args.train_subset or args.test_subset:
            ds = ds.subset(args.train_subset, args.test_subset)
        state = models.init_state(models.SEED_SIZES, args.seed)
        kw = dict(lr=args.lr, loss=args.loss, wrap=ddp.wrap if args.ddp else None)
        if args.model == "pyops":
            kw.update(backend=args.backend or "auto", one_op=args.one_op_step)
        trainer = models.make_trainer(args.model, state, **kw)
        if rank == 0:
            print(f"training: {trainer.name} on {ds.label}\n  data: {ds.source}\n"
                  f"  {len(ds.train_labels)} train / {len(ds.test_labels)} test examples; epochs {args.epochs}, "
                  f"batch {args.batch_size}{f' per process x {world} processes (DDP, gloo)' if args.ddp else ''}, "
                  f"Adam lr {args.lr:g}, loss {args.loss}, {threads} thread(s){' per process' if args.ddp else ''}, "
                  f"seed {args.seed}", flush=True)
        history = train_epochs(trainer, ds, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                               progress=not args.no_progress, distributed=args.ddp, rank=rank)
        if args.out and rank == 0:
            write_outputs(args, trainer, ds, history, threads, world)
    finally:
        if args.ddp:
            ddp.shutdown()
    return 0


def write_outputs(args, trainer, ds, history, threads, world) -> None:
    info = dict(command=" ".join(sys.argv), model=trainer.name, dataset=ds.label, source=ds.source,
                epochs=args.epochs, batch_size=args.batch_size, processes=world, lr=args.lr, loss=args.loss,
                threads=threads, seed=args.seed, history=history)
    with results.atomic_dir(args.out) as tmp:
        results.write_json(os.path.join(tmp, "train.json"), info)
        epochs = [h["epoch"] for h in history]
        results.plot_lines(os.path.join(tmp, "losses.png"),
                           {"training loss": (epochs, [h["train_loss"] for h in history]),
                            "test loss": (epochs, [h["test_loss"] for h in history])},
                           title=f"{trainer.name} on {ds.label}", xlabel="epoch", ylabel="loss")
    print(f"wrote {args.out}/train.json, losses.png")
