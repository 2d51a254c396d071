"""mlp_train_step: one whole training step of an MLP classifier -- forward, loss, backward, Adam -- as ONE op,
with no autograd graph.

    loss = pyops.mlp_train_step(x, y, weights, biases, optimizer)
      does what
    optimizer.zero_grad(); loss = pyops.cross_entropy(pyops.mlp(x, weights, biases), y)
    loss.backward(); optimizer.step()
      does to the parameters and the optimizer's state, bit for bit (the same kernels in the same order with
      the same arguments), except that no gradient is stored in ``.grad``.

  pyops.mlp_train_step(...)            checks, the optimizer's state lists (created as its step() would),
                                       picks the backend
  -> torch.ops.<ns>.mlp_train_step     csrc/autograd.cpp, a C++ function calling mlp_fwd, cross_entropy_fwd/
                                       _bwd (or log_softmax + nll_loss and their backwards), mlp_bwd and
                                       adam_step of the backend's namespace through the dispatcher
What it removes is what surrounds the kernels in an autograd step: the engine and its nodes, accumulating
the gradients into ``.grad``, the Python of the loss, of backward() and of optimizer.step().  At the MNIST
sizes that is a quarter of the step (docs/train_step.md has the measurements).

The price is generality: the step is this network and this loss, with pyops.optim.Adam / AdamW, and nothing
can run between the backward and the update -- no gradient clipping, no DistributedDataParallel all-reduce,
no optimizer hooks (an optimizer with step hooks is refused).  The gradients are never visible: ``.grad`` is
left as it was.  For anything else use the autograd path, which computes the same numbers.
"""
from __future__ import annotations

import operator
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.optim import optimizer as _torch_optimizer

from . import _backend, _checks, _ops
from .mlp import torch_mlp
from .optim import Adam, _check_numbers, hparams

__all__ = ["mlp_train_step", "LOSSES"]

#: the losses mlp_train_step computes on the MLP's output
LOSSES = ("cross-entropy", "nll")

# ---------------------------------------------------------------- backend "torch": the autograd step of stock ops
def _torch_train_step(input, target, weights, biases, log_softmax_nll, weight, reduction, ignore_index,
                      label_smoothing):
    """(loss, gradients of weights + existing biases) by stock PyTorch ops and autograd."""
    ws = [w.detach().requires_grad_() for w in weights]
    bs = [b if b is None else b.detach().requires_grad_() for b in biases]
    with torch.enable_grad():
        x = torch_mlp(input, ws, bs)
        if log_softmax_nll:
            loss = F.nll_loss(F.log_softmax(x, 1), target, weight, ignore_index=ignore_index, reduction=reduction)
        else:
            loss = F.cross_entropy(x, target, weight, ignore_index=ignore_index, reduction=reduction,
                                   label_smoothing=label_smoothing)
        grads = torch.autograd.grad(loss, ws + [b for b in bs if b is not None])
    return loss.detach(), list(grads)


# ---------------------------------------------------------------- public API
def mlp_train_step(input: Tensor, target: Tensor, weights: Sequence[Tensor],
                   biases: Optional[Sequence[Optional[Tensor]]], optimizer: Adam, *, loss: str = "cross-entropy",
                   weight: Optional[Tensor] = None, ignore_index: int = -100, reduction: str = "mean",
                   label_smoothing: float = 0.0, backend: Optional[str] = None) -> Tensor:
    """One training step of ``pyops.mlp(input, weights, biases)`` under ``loss`` with ``optimizer``; returns the loss.

    ``loss``: ``"cross-entropy"`` (:func:`pyops.cross_entropy` of the output; ``weight``, ``ignore_index``,
    ``label_smoothing`` as there) or ``"nll"`` (:func:`pyops.log_softmax` over dim 1, then
    :func:`pyops.nll_loss`: the seed tutorial's loss).  ``reduction``: ``"mean"`` or ``"sum"``.
    ``optimizer``: a :class:`pyops.optim.Adam` / ``AdamW`` holding every weight and bias in one param group;
    its hyperparameters (a scheduler's lr included) are read at each call and its state is updated exactly as
    ``optimizer.step()`` would, so the autograd path and this one can take turns.  ``input`` is
    ``(batch, in_features)``, ``target`` ``(batch,)`` class indices.  Parameters' ``.grad`` is not touched.
    ``backend``: this call's, else the optimizer's ``backend=``, else the enclosing ``use_backend``."""
    # The fast path: the same arguments as the last call (by identity), so only what can change between calls
    # is checked again -- hooks, requires_grad, the input's device and dtype, the target's dtype -- and the
    # hyperparameters are read from the group.  At the MNIST sizes the full derivation below took ~55 us of a
    # ~0.8 ms step on the development VM (docs/train_step.md); anything off goes the full way, which raises.
    # (torch.compile traces the full path: what the fast path compares is not for dynamo to guard on)
    plan = None if torch.compiler.is_compiling() else getattr(optimizer, "_train_steps", _NO_CACHE).get(_PLAN)
    if (plan is not None and plan.weight is weight and plan.options == (loss, ignore_index, reduction, label_smoothing)
            and plan.backend_key == (backend if backend is not None else (optimizer.backend
                                                                            or _backend.current_backend()))
            and isinstance(weights, (list, tuple)) and len(weights) == plan.n and all(map(_is, weights, plan.weights))
            and (biases is None if plan.biases is None
                 else isinstance(biases, (list, tuple)) and len(biases) == plan.n
                 and all(map(_is, biases, plan.biases)))
            and isinstance(input, Tensor) and input.dtype in plan.dtypes and input.device == plan.device
            and isinstance(target, Tensor) and target.dtype is torch.int64
            and plan.state == (plan.group["amsgrad"], plan.group["capturable"])
            and not _has_step_hooks(optimizer)
            and all(map(_requires_grad, plan.params))):
        return plan(input, target, optimizer)
    plan, target = _prepare(input, target, weights, biases, optimizer, loss, weight, ignore_index, reduction,
                            label_smoothing, backend)
    return plan(input, target, optimizer)


def _has_step_hooks(optimizer) -> bool:
    """Whether step pre/post hooks (the optimizer's or global ones) would run around optimizer.step()."""
    return bool(optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks
                or _torch_optimizer._global_optimizer_pre_hooks or _torch_optimizer._global_optimizer_post_hooks)


_NO_CACHE: dict = {}
_PLAN = "mlp_train_step"  # the key of the last call's _Plan in the optimizer's cache (Adam.reset_cache empties it)
_is = operator.is_
_requires_grad = operator.attrgetter("requires_grad")


class _Plan:
    """What mlp_train_step derives from its arguments other than the batch, kept for the next call."""

    __slots__ = ("weights", "biases", "n", "weight", "options", "backend_key", "dtypes", "device", "group", "state",
                 "params", "name", "run", "static", "tail", "bucket", "call")

    def __call__(self, input: Tensor, target: Tensor, optimizer: Adam) -> Tensor:
        bucket = self.bucket
        lr_tensor, values = hparams(self.group)
        # An LR scheduler checks that the optimizer stepped (its step() wrapper sets the flag).  Set once: a
        # compiled step traced after an eager one then has no attribute write to trace, which torch 2.11's
        # dynamo cannot do on this object.
        if not getattr(optimizer, "_opt_called", False):
            optimizer._opt_called = True
        if self.name == "torch":
            with torch.no_grad():
                value, grads = _torch_train_step(input, target, *self.static)
                bucket.run(self.params, grads, bucket.exp_avgs, bucket.exp_avg_sqs, bucket.max_exp_avg_sqs,
                           bucket.steps, lr_tensor, bucket.counters, bucket.device_steps, values)
            return value
        try:
            if self.call is not None:  # the C++ op with its lists converted once (_C.TrainStepCall)
                return self.call(input, target, lr_tensor, bucket.counters, bucket.device_steps, values)
            # (the op runs its ops below autograd and without grad mode itself)
            return self.run(input, target, *self.static, lr_tensor, bucket.counters, bucket.device_steps, values,
                            *self.tail)
        except (TypeError, RuntimeError):
            _check_numbers("mlp_train_step", values)  # the argument that the op call could not convert
            raise


def _prepare(input, target, weights, biases, optimizer, loss, weight, ignore_index, reduction, label_smoothing,
             backend) -> tuple[_Plan, Tensor]:
    """Every check of mlp_train_step's arguments (the errors it raises); the _Plan that runs the step and the
    target as the kernels take it.  The plan is kept in the optimizer's cache for the fast path (not while
    torch.compile traces)."""
    op = "mlp_train_step"
    if not isinstance(optimizer, Adam):
        raise TypeError(f"{op}: expected a pyops.optim.Adam or AdamW optimizer, got {type(optimizer).__name__} (the "
                        "update runs as pyops' Adam kernel inside the step)")
    if _has_step_hooks(optimizer):
        raise RuntimeError(f"{op}: the optimizer has step hooks, which a fused step cannot run between the backward "
                           "and the update; use loss.backward() and optimizer.step()")
    if loss not in LOSSES:
        raise ValueError(f"{op}: unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    given_biases = biases
    weights, biases = _checks.as_mlp_lists(op, weights, biases)
    reduction_name, code = _checks.loss_reduction(op, None, None, reduction)
    if code == 0:
        raise ValueError(f"{op}: reduction 'none' gives a loss per sample; a training step needs a scalar loss "
                         "(expected 'mean' or 'sum')")
    target = _checks.class_targets(op, input, target)
    nll = loss == "nll"
    if nll and label_smoothing:
        raise ValueError(f"{op}: label_smoothing applies to loss='cross-entropy', not to 'nll'")
    present = [b for b in biases if b is not None]
    params = [*weights, *present]
    if not all(p.requires_grad for p in params):
        frozen = [i for i, p in enumerate(params) if not p.requires_grad]
        raise ValueError(f"{op}: parameters {frozen} (weights, then biases) do not require grad: backward() would "
                         "leave them without a gradient and optimizer.step() unchanged, while this step updates "
                         "every weight and bias; use the autograd path to train a partly frozen network")
    backend_key = backend if backend is not None else (optimizer.backend or _backend.current_backend())
    name = _backend.resolve(backend_key, input.device, op)
    group, bucket = optimizer._train_step_bucket(params, name)
    _checks.check_backend_dtype(input, name, op)  # (backend "torch" takes every dtype)
    plan = _Plan()
    plan.weights, plan.biases, plan.n = weights, None if given_biases is None else biases, len(weights)
    plan.weight, plan.options, plan.backend_key = weight, (loss, ignore_index, reduction, label_smoothing), backend_key
    plan.dtypes = _checks.BACKEND_DTYPES.get(name, (input.dtype,))
    plan.device, plan.group, plan.bucket, plan.params, plan.name = input.device, group, bucket, params, name
    plan.state = (group["amsgrad"], group["capturable"])
    plan.call = None
    if name == "torch":
        plan.static = (weights, biases, nll, weight, reduction_name, ignore_index, label_smoothing)
    else:
        plan.run = _ops.ops(name).mlp_train_step.default
        plan.static = (weights, present, [b is not None for b in biases], bucket.exp_avgs, bucket.exp_avg_sqs,
                       bucket.max_exp_avg_sqs, bucket.steps)
        plan.tail = (nll, weight, code, ignore_index, float(label_smoothing))
    if not torch.compiler.is_compiling():
        if name != "torch":
            # the same op called from C++ with the lists converted once: torch.ops converts every element of
            # every list at each call (~16 us a step); torch.compile traces plan.run instead
            plan.call = _ops._C.TrainStepCall(f"{_ops.NAMESPACES[name]}::mlp_train_step", *plan.static,
                                              *plan.tail)
        optimizer._train_steps[_PLAN] = plan
    return plan, target
