"""The seed tutorial's MLP built twice -- stock PyTorch and pyops -- and one training step for each.

The seed (the classic PyTorch MNIST / Fashion-MNIST tutorial): 784-256-128-64-10, ReLU after each
hidden layer, log_softmax output, NLLLoss, Adam(lr=3e-3), batch 64, inputs (x/255 - 0.5)/0.5.
Inputs arrive flattened, [N, 784] (pyops.data.normalize), so the model has no view/flatten op.

Both models have the same parameter names (``hidden.<i>.weight/bias``, ``out.weight/bias``) and
shapes as nn.Linear, so one state_dict (:func:`init_state`) gives both the same initial weights.

The pyops model runs nothing but pyops ops -- no stock op stands in for a missing one:
  layers          pyops.mlp: the whole 784-256-128-64-10 network (hidden layers linear+ReLU, the
                  output layer linear) as ONE op forward and ONE op backward, over the parameters
                  of pyops.nn.LinearReLU / pyops.nn.Linear modules (the same kernels per layer;
                  the modules give the parameters their names and nn.Linear's init)
  loss            log_softmax (in the same pyops.mlp op, log_softmax_dim=1) + pyops.nll_loss (loss="nll", the seed's)
                  or pyops.cross_entropy on the logits (loss="cross-entropy", the fused equivalent)
  optimizer       pyops.optim.Adam
  or, with one_op=True, each training step is ONE op, pyops.mlp_train_step: the same kernels with the same
  arguments in the same order (so the same numbers) without autograd, .grad or optimizer.step();
and every call runs inside ``pyops.use_backend(backend)``.  If this pyops lacks any of them,
:func:`require_pyops` raises PyopsNotReady naming what is missing.
(The cubic example's MSE loss is stock F.mse_loss in both models: pyops has no MSE op.)
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

SEED_SIZES = (784, 256, 128, 64, 10)
CUBIC_SIZES = (1, 128, 128, 1)
SEED_LR = 3e-3
SEED_BATCH = 64
LOSSES = ("nll", "cross-entropy")

#: what the pyops model calls, by dotted name under the pyops package
PYOPS_REQUIRED = ("mlp", "nn.LinearReLU", "nn.Linear", "log_softmax", "nll_loss", "cross_entropy", "optim.Adam",
                  "mlp_train_step")


class PyopsNotReady(RuntimeError):
    """This pyops lacks an op the pyops model needs (``missing``: their names)."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


def pyops_missing() -> list[str]:
    """Names in PYOPS_REQUIRED that this pyops does not provide."""
    import importlib

    import pyops

    missing = []
    for dotted in PYOPS_REQUIRED:
        obj = pyops
        for part in dotted.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                try:  # a subpackage (pyops.nn, pyops.optim) that __init__ does not import
                    obj = importlib.import_module(f"{obj.__name__}.{part}")
                except (ImportError, AttributeError):
                    missing.append(f"pyops.{dotted}")
                    break
    return missing


def require_pyops() -> None:
    missing = pyops_missing()
    if missing:
        raise PyopsNotReady(
            "the pyops model needs " + ", ".join(missing) + ", which this pyops does not provide yet (they come "
            "with the linear+ReLU, NLL/cross-entropy and Adam ops); use the stock model (--model stock) meanwhile",
            missing)


def _pairs(sizes):
    return list(zip(sizes[:-1], sizes[1:]))


class StockMLP(nn.Module):
    """The seed's classifier in stock PyTorch: nn.Linear + F.relu hidden layers, nn.Linear output,
    then log_softmax when ``log_probs`` (the classifier) or nothing (regression, cross-entropy)."""

    def __init__(self, sizes=SEED_SIZES, log_probs: bool = True):
        super().__init__()
        *hidden, last = _pairs(sizes)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in hidden)
        self.out = nn.Linear(*last)
        self.log_probs = log_probs

    def forward(self, x):
        for layer in self.hidden:
            x = F.relu(layer(x))
        x = self.out(x)
        return F.log_softmax(x, dim=1) if self.log_probs else x


class PyopsMLP(nn.Module):
    """The same network from pyops ops only: parameters held by pyops.nn.LinearReLU hidden layers and
    a pyops.nn.Linear output layer (the stock model's names), run together by pyops.mlp (one op each
    way), with its log_softmax in the same op when ``log_probs``.  The backend is the caller's ``use_backend``."""

    def __init__(self, sizes=SEED_SIZES, log_probs: bool = True):
        require_pyops()
        import pyops
        import pyops.nn as pnn

        super().__init__()
        *hidden, last = _pairs(sizes)
        self.hidden = nn.ModuleList(pnn.LinearReLU(a, b) for a, b in hidden)
        self.out = pnn.Linear(*last)
        self.log_probs = log_probs
        self._mlp, self._train_step = pyops.mlp, pyops.mlp_train_step
        self._layer_parameter_lists = pnn._layer_parameter_lists

    def _parameter_lists(self) -> tuple[list, list]:
        return self._layer_parameter_lists((*self._modules["hidden"]._modules.values(), self._modules["out"]))

    def forward(self, x):
        return self._mlp(x, *self._parameter_lists(), log_softmax_dim=1 if self.log_probs else None)

    def train_step(self, x, y, optimizer, loss: str, backend: str | None = None):
        """One whole training step as one op (pyops.mlp_train_step): what zero_grad, the forward, the loss,
        backward() and optimizer.step() do to the weights and the optimizer's state; .grad stays untouched."""
        return self._train_step(x, y, *self._parameter_lists(), optimizer, loss=loss, backend=backend)


def init_state(sizes=SEED_SIZES, seed: int = 0) -> dict:
    """Initial weights for both models: nn.Linear's default init under torch.manual_seed(seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {k: v.clone() for k, v in StockMLP(sizes).state_dict().items()}


@dataclasses.dataclass
class Trainer:
    """A model, its optimizer and its loss, with one training step.

    ``loss_of(x, y)`` is the forward pass and loss (possibly torch.compile'd); ``step`` is the whole
    training step: zero_grad, forward, loss, backward, optimizer.step -- all inside
    ``pyops.use_backend(backend)`` for the pyops model."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_of: Callable
    backend: str | None = None  # pyops backend; None for stock models
    kind: str = "stock"          # "stock" or "pyops"
    loss: str = "nll"            # nll: the model outputs log-probabilities; cross-entropy: logits; mse
    one_op: bool = False         # pyops: each step is one pyops.mlp_train_step instead of autograd + optimizer.step

    def context(self):
        if self.backend is None:
            return contextlib.nullcontext()
        import pyops

        return pyops.use_backend(self.backend)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.one_op:  # the backend as an argument: the same as the block below, without entering it
            return self.model.train_step(x, y, self.optimizer, self.loss, self.backend)
        if self.backend is None:  # stock and drop-in: the user's loop as it is, no context entered around it
            return self._step(x, y)
        with self.context():
            return self._step(x, y)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad()
        loss = self.loss_of(x, y)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        with self.context():
            return self.model(x)


def stock_loss(model: nn.Module, loss: str) -> Callable:
    if loss == "nll":
        return lambda x, y: F.nll_loss(model(x), y)
    if loss == "cross-entropy":
        return lambda x, y: F.cross_entropy(model(x), y)
    if loss == "mse":
        return lambda x, y: F.mse_loss(model(x), y)
    raise ValueError(f"unknown loss {loss!r}; expected nll, cross-entropy or mse")


def pyops_loss(model: nn.Module, loss: str) -> Callable:
    import pyops

    if loss == "nll":
        return lambda x, y: pyops.nll_loss(model(x), y)
    if loss == "cross-entropy":
        return lambda x, y: pyops.cross_entropy(model(x), y)
    if loss == "mse":  # pyops has no MSE op: the cubic example's loss is stock in both models
        return lambda x, y: F.mse_loss(model(x), y)
    raise ValueError(f"unknown loss {loss!r}; expected nll, cross-entropy or mse")


def stock_trainer(state: dict, *, sizes=SEED_SIZES, lr: float = SEED_LR, loss: str = "nll", fused: bool = False,
                  compile: bool = False, wrap=None, name: str | None = None, device="cpu") -> Trainer:
    """The stock model from ``state``: torch.optim.Adam (default implementation, or fused=True),
    optionally its forward+loss torch.compile'd (AOTAutograd compiles the matching backward).
    ``wrap`` (e.g. DistributedDataParallel) wraps the model before the optimizer is made."""
    model = StockMLP(sizes, log_probs=(loss == "nll"))
    model.load_state_dict(state)
    model.to(device)
    net = wrap(model) if wrap else model
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=True) if fused else torch.optim.Adam(net.parameters(), lr=lr)
    loss_of = stock_loss(net, loss)
    if compile:
        loss_of = torch.compile(loss_of, dynamic=False)  # static shapes: one specialised graph per batch size
    default = "stock eager, Adam " + ("(fused=True)" if fused else "(default)")
    return Trainer(name or ("torch.compile, Adam (fused=True)" if compile else default), net, opt, loss_of, loss=loss)


def pyops_trainer(state: dict, *, backend: str = "auto", sizes=SEED_SIZES, lr: float = SEED_LR, loss: str = "nll",
                  wrap=None, name: str | None = None, device="cpu", one_op: bool = False) -> Trainer:
    """The pyops model from ``state`` with pyops.optim.Adam, run on pyops ``backend``; ``one_op``: every
    training step is one pyops.mlp_train_step (the same numbers, no autograd graph)."""
    require_pyops()
    if one_op and wrap is not None:
        raise ValueError("the one-op training step (pyops.mlp_train_step) runs no autograd hooks, so it cannot "
                         "train a wrapped model (DistributedDataParallel); use the autograd step")
    if one_op and loss not in LOSSES:
        raise ValueError(f"the one-op training step computes the {' or '.join(LOSSES)} loss, not {loss!r}")
    import pyops.optim

    with pyops.use_backend(backend):  # built inside the backend too, whether they resolve it when built or when run
        model = PyopsMLP(sizes, log_probs=(loss == "nll"))
        model.load_state_dict(state)
        model.to(device)
        net = wrap(model) if wrap else model
        opt = pyops.optim.Adam(net.parameters(), lr=lr)
    what = ("one-op step, " if one_op else "") + ("log_softmax+nll" if loss == "nll" else loss)
    return Trainer(name or f"pyops {backend} ({what})", net, opt, pyops_loss(net, loss), backend=backend,
                   kind="pyops", loss=loss, one_op=one_op)


def make_trainer(kind: str, state: dict, **kw) -> Trainer:
    if kind == "stock":
        kw.pop("backend", None)
        return stock_trainer(state, **kw)
    if kind == "pyops":
        return pyops_trainer(state, **kw)
    raise ValueError(f"unknown model {kind!r}; expected stock or pyops")
