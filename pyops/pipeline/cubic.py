"""``python -m pyops train cubic``: the seed's second example, y = x^3 fitted by an MLP.

1-128-128-1, ReLU after each hidden layer, MSE loss, Adam lr 1e-3.  Training data: N points x
drawn uniformly from [-2, 2] (seeded), y = x^3; the test set is an even grid of 401 points over the
same interval.  Saves ``cubic_loss.png`` (training and test MSE per epoch, log scale),
``cubic_fit.png`` (the fitted curve over the true one) and ``cubic.json`` into --out.

The pyops model uses pyops.nn.LinearReLU / Linear and pyops.optim.Adam; the MSE loss is stock
F.mse_loss in both models (pyops has no MSE op).
"""
from __future__ import annotations

import os
import sys
import time

import torch

from .. import data as D
from . import models, results

X_RANGE = (-2.0, 2.0)


def make_data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, 1).uniform_(*X_RANGE, generator=g)
    grid = torch.linspace(*X_RANGE, 401).unsqueeze(1)
    return x, x ** 3, grid, grid ** 3


def run(args) -> int:
    from tqdm import tqdm

    if args.ddp:
        raise SystemExit("--ddp trains the MNIST-shaped classifiers; the cubic example runs in one process")
    if args.one_op_step:
        raise SystemExit("--one-op-step trains the classifiers (cross-entropy / nll); the cubic example's MSE loss "
                         "runs through autograd")
    if args.model == "stock" and args.backend is not None:
        raise SystemExit("--backend selects the pyops model's backend; the stock model has none (drop --backend)")
    torch.set_num_threads(args.threads or 2)
    epochs = args.epochs if args.epochs is not None else 300
    lr = args.lr if args.lr is not None else 1e-3
    x, y, gx, gy = make_data(args.points, args.seed)
    state = models.init_state(models.CUBIC_SIZES, args.seed)
    kw = dict(sizes=models.CUBIC_SIZES, lr=lr, loss="mse")
    if args.model == "pyops":
        kw["backend"] = args.backend or "auto"
    trainer = models.make_trainer(args.model, state, **kw)
    sampler = torch.utils.data.RandomSampler(range(len(x)), generator=torch.Generator().manual_seed(args.seed))
    print(f"training: {trainer.name}, y = x^3 on [{X_RANGE[0]:g}, {X_RANGE[1]:g}], 1-128-128-1 ReLU MLP, MSE, "
          f"Adam lr {lr:g}; {len(x)} points, batch {args.batch_size}, {epochs} epochs", flush=True)
    train_mse, test_mse = [], []
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), unit="epoch", disable=args.no_progress, file=sys.stderr, leave=False)
    for epoch in bar:
        total = 0.0
        for xb, yb in D.batches(x, y, args.batch_size, sampler):
            total += trainer.step(xb, yb).item() * len(xb)
        train_mse.append(total / len(x))
        test_mse.append(torch.mean((trainer.outputs(gx) - gy) ** 2).item())
        bar.set_postfix(train=f"{train_mse[-1]:.2e}", test=f"{test_mse[-1]:.2e}")
        if (epoch + 1) % max(1, epochs // 10) == 0 or epoch + 1 == epochs:
            print(f"Epoch: {epoch + 1}/{epochs}.. Training MSE: {train_mse[-1]:.2e}.. Test MSE: {test_mse[-1]:.2e}")
    seconds = time.perf_counter() - t0
    pred = trainer.outputs(gx)
    print(f"done in {seconds:.1f} s; test MSE {test_mse[-1]:.3e}, max |error| on the grid "
          f"{(pred - gy).abs().max().item():.3f}")
    out = args.out or "results/cubic"
    with results.atomic_dir(out) as tmp:
        ep = list(range(1, epochs + 1))
        results.plot_lines(os.path.join(tmp, "cubic_loss.png"), {"training MSE": (ep, train_mse),
                                                                  "test MSE (grid)": (ep, test_mse)},
                           title=f"y = x^3: {trainer.name}", xlabel="epoch", ylabel="MSE", logy=True)
        results.plot_lines(os.path.join(tmp, "cubic_fit.png"),
                           {"y = x^3": (gx.squeeze(1).tolist(), gy.squeeze(1).tolist()),
                            f"{trainer.name}": (gx.squeeze(1).tolist(), pred.squeeze(1).tolist())},
                           title="fit after training", xlabel="x", ylabel="y")
        results.write_json(os.path.join(tmp, "cubic.json"),
                           dict(command=" ".join(sys.argv), model=trainer.name, points=len(x), epochs=epochs, lr=lr,
                                batch_size=args.batch_size, seconds=seconds, train_mse=train_mse, test_mse=test_mse))
    print(f"wrote {out}/cubic_loss.png, cubic_fit.png, cubic.json")
    return 0
