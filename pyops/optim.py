"""pyops.optim.Adam / AdamW: drop-ins for torch.optim.Adam / AdamW whose step is ONE kernel launch
per (device, dtype) of a param group.

One step, top to bottom:
  Adam.step()                    per param group, per (device, dtype) bucket: the cached lists of
                                 params and state, plus this step's grads
  -> torch.ops.<ns>.adam_step    ns = pyops (cpu, cuda), pyops_sim (cuda-sim), pyops_triton (triton);
                                 schema in csrc/ops.cpp
  -> cpu: csrc/cpu/adam.cpp | cuda, cuda-sim: csrc/cuda/adam.cpp -> kernels/cuda/adam.cuh
     | triton: kernels/adam.py

Semantics are torch.optim's, and so is the state: per param ``step`` (a float32 CPU tensor, on the
param's device with capturable=True), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
``max_exp_avg_sq`` -- a state_dict saved by either optimizer loads into the other.  Differences:
  * fp16/bf16 params keep float32 state and the update is computed in float32 (no master copy of
    the weights: the new value is rounded back to the param's dtype).  torch.optim keeps such state
    in the param's dtype; loading a pyops checkpoint into torch.optim casts it down, loading one
    from torch.optim casts it up.
  * sparse gradients, complex params, params of one group on several devices, differentiable=True
    and tensor betas raise errors.
  * capturable=True is accepted for CPU params too (torch.optim refuses): the step is then advanced
    by the kernel, which is how the tests run the CUDA kernels' capturable path in the emulator.
  * foreach/fused are accepted and stored (so state_dicts round-trip) but do not choose the kernel:
    every backend runs its own multi-tensor kernel.  (fused=True still places `step` on the param's
    device, as torch.optim does; the kernel then advances it there, as with capturable=True.)
The backend is resolved at every step, like every pyops op: ``backend=`` of the constructor, else
the enclosing ``with pyops.use_backend(...)`` block of the step() call, else PYOPS_BACKEND / auto.
The optimizer caches, per param group, the lists of state tensors it passes to the kernel; the
cache is rebuilt when the set of params with gradients, amsgrad, capturable or the backend changes,
and on load_state_dict / add_param_group.  Replacing a state tensor object by hand (not in place) needs
``opt.reset_cache()``.
"""
from __future__ import annotations

import functools
import inspect

import torch
from torch import Tensor
from torch.optim import optimizer as _torch_optimizer
from torch.optim.adam import adam as _torch_adam

from . import _backend, _checks, _ops

__all__ = ["Adam", "AdamW", "HPARAMS", "hparams"]


# ---------------------------------------------------------------- the hyperparameters
#: The hyperparameters the adam_step and mlp_train_step ops take in their ``hparams`` list, in its order:
#: (name, "float" or "bool", default, param-group key) each -- declared once, in kernels/cuda/adam_hparams.h.
HPARAMS: tuple = _ops._C.adam_hparams()
_set_grads_none = _ops._C.set_grads_none  # zero_grad's `p.grad = None` loop without wrapping each gradient
# where each is in a param group: (key, None, default) for group[key], ("betas", 0, _) for "betas[0]"
_KEYS = [(base, int(index[:-1]) if index else None, default)
         for base, _, index, default in (h[3].partition("[") + (h[2],) for h in HPARAMS)]
assert _KEYS[0][0] == "lr", "hparams() takes lr to be the first hyperparameter"
# The declared hyperparameters that torch.optim.Adam has not: keyword arguments of Adam(), in a param group only
# when given (so that the state_dict stays torch.optim's), their default otherwise.
_EXTRA = {key for key, i, _ in _KEYS if i is None and key not in inspect.signature(torch.optim.Adam).parameters}
# torch.optim.Adam's group defaults for a state_dict or pickle that lacks them (its __setstate__)
_TORCH_DEFAULTS = {key: default for key, i, default in _KEYS if i is None and key not in _EXTRA}


def hparams(group: dict) -> tuple[Tensor | None, list]:
    """The ``lr_tensor`` and ``hparams`` arguments of the adam_step op for a param group: the group's lr when it
    is a tensor (else None; its place in the list is then 0), and every hyperparameter of :data:`HPARAMS` in
    order, as the group holds it: the op call takes an int or a bool (a flag) as a float and refuses what is not
    a number."""
    values = [group.get(key, default) if i is None else group[key][i] for key, i, default in _KEYS]
    lr = values[0]
    if isinstance(lr, Tensor):
        values[0] = 0.0
        return lr, values
    return None, values


def _check_numbers(name: str, values: list) -> None:
    """Raise naming the first of :func:`hparams`' values that is not a number (a tensor lr is in place already)."""
    for (key, i, _), v in zip(_KEYS, values):
        if not (isinstance(v, (int, float)) or (isinstance(v, Tensor) and v.numel() == 1)):
            where = key if i is None else f"{key}[{i}]"
            raise TypeError(f"{name}: the param group's {where} must be a number, got {type(v).__name__} ({v!r})")


# ---------------------------------------------------------------- the optimizer
@functools.lru_cache(maxsize=None)
def _cuda_available() -> bool:
    # torch.cuda.is_available() costs microseconds per call; the answer is fixed for the process
    return torch.cuda.is_available()


def _scalar_dtype() -> torch.dtype:
    # torch.optim's dtype for `step` (torch.optim.optimizer._get_scalar_dtype)
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class _Bucket:
    """The params of one group with one (device, dtype) and their state: one op call per step."""

    __slots__ = ("run", "call", "index", "params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs", "steps",
                 "counters", "device_steps")


class _Plan:
    # own: the one bucket's prepared call with the params' own gradients, where every param of the group had one
    # and they form one bucket (Adam.step's fast path); else None
    __slots__ = ("key", "buckets", "own")


def _hooked_step(step):
    """torch.optim.Optimizer.profile_hook_step's behaviour -- the global and per-optimizer step pre/post
    hooks, the ``Optimizer.step#<class>.step`` profiler range -- at a lower price: the profiler range
    only while a profiler runs (opening one is a dispatched op, ~10 us) and no hook loop when there is
    no hook.  At the MNIST sizes the whole Adam kernel takes ~100 us, so this matters."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        pre = _torch_optimizer._global_optimizer_pre_hooks or self._optimizer_step_pre_hooks
        post = self._optimizer_step_post_hooks or _torch_optimizer._global_optimizer_post_hooks
        if not (pre or post or torch.autograd.profiler._is_profiler_enabled):
            out = step(self, *args, **kwargs)
            self._optimizer_step_code()
            return out
        return _torch_optimizer.Optimizer.profile_hook_step(step)(self, *args, **kwargs)

    wrapper.hooked = True  # torch.optim.Optimizer.__init__ then leaves it alone
    return wrapper


class Adam(torch.optim.Optimizer):
    """Same as :class:`torch.optim.Adam` (same arguments and defaults, same state_dict), with the step
    computed by one pyops kernel launch per (device, dtype) of each param group; ``backend=`` picks
    the kernels (see :mod:`pyops`).  Differences are listed in :mod:`pyops.optim`."""

    def __init__(self, params, lr: float | Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False, backend: str | None = None,
                 **more_hparams):
        name = type(self).__name__
        if isinstance(lr, Tensor):
            if lr.numel() != 1:
                raise ValueError("Tensor lr must be 1-element")
            if lr.is_complex() or not lr.is_floating_point():
                raise ValueError(f"{name}: expected a floating-point lr tensor, got {lr.dtype}")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if any(isinstance(b, Tensor) for b in betas):
            raise ValueError(f"{name}: betas as tensors are not supported; pass floats")
        for i in (0, 1):
            if not 0.0 <= betas[i] < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {betas[i]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if differentiable:
            raise ValueError(f"{name}: differentiable=True is not supported (the step is a fused kernel outside "
                             "autograd); use torch.optim with differentiable=True")
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        if backend is not None:
            _backend.check_name(backend)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, foreach=foreach, capturable=capturable, differentiable=differentiable,
                        fused=fused, decoupled_weight_decay=decoupled_weight_decay)
        unknown = more_hparams.keys() - _EXTRA
        if unknown:
            raise TypeError(f"{name}.__init__() got an unexpected keyword argument {min(unknown)!r}")
        defaults.update(more_hparams)
        self.reset_cache()
        self.backend = backend
        super().__init__(params, defaults)

    # ------------------------------------------------------------ state_dict / pickling
    def __getstate__(self):
        return dict(super().__getstate__(), backend=self.backend)

    def __setstate__(self, state):
        # torch.optim.Adam.__setstate__'s defaults, then: fp32 state for fp16/bf16 params (load_state_dict
        # casts state to the param dtype), and a fresh cache
        super().__setstate__(state)
        for group in self.param_groups:
            for key, default in (*_TORCH_DEFAULTS.items(), ("foreach", None), ("capturable", False),
                                 ("differentiable", False), ("fused", None)):
                group.setdefault(key, default)
            for p in group["params"]:
                st = self.state.get(p, {})
                if st and not torch.is_tensor(st["step"]):
                    on_device = group["capturable"] or group["fused"]
                    st["step"] = torch.tensor(float(st["step"]), dtype=torch.float32 if group["fused"] else
                                              _scalar_dtype(), device=p.device if on_device else "cpu")
                if st and p.dtype in _checks.HALF_TYPES:
                    for k in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                        if k in st and st[k].dtype != torch.float32:
                            st[k] = st[k].float()
        self.reset_cache()

    def reset_cache(self) -> None:
        """Forget the cached per-group tensor lists (rebuilt at the next step)."""
        self._plans: dict[int, _Plan] = {}
        # pyops.mlp_train_step's (group, bucket) per list of params, and its last call's plan (train_step.py)
        self._train_steps: dict = {}

    def add_param_group(self, param_group) -> None:
        super().add_param_group(param_group)
        self.reset_cache()

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As torch.optim.Optimizer.zero_grad, without its per-call overhead (~35 us of the ~1 ms MNIST step)."""
        if torch.autograd.profiler._is_profiler_enabled:
            return super().zero_grad(set_to_none)
        for group in self.param_groups:
            if set_to_none and _set_grads_none(group["params"]):  # the loop below in C++ (plain tensors only)
                continue
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g.zero_()

    # ------------------------------------------------------------ step
    @_hooked_step
    def step(self, closure=None):
        """Perform a single optimization step (one kernel launch per (device, dtype) of each param group).

        Kept lean -- this Python runs at every step: per group one list of grads, one tuple compared
        with the cached plan's, one op call per bucket."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if _cuda_available():
            self._accelerator_graph_capture_health_check()
        grad_mode = torch.is_grad_enabled()
        torch.set_grad_enabled(False)  # the update is not part of any graph (as in torch.optim)
        try:
            backend = self.backend or _backend.current_backend()  # this call's backend= or the block's
            compiling = torch.compiler.is_compiling()
            for group in self.param_groups:
                plan = self._plans.get(id(group))
                if plan is not None and plan.own is not None and not compiling and plan.key[1] == group["amsgrad"] \
                        and plan.key[2] == group["capturable"] and plan.key[3] == backend \
                        and len(group["params"]) == len(plan.key[0]):
                    # the plan of a group whose every param had a gradient, one bucket: its prepared call reads the
                    # gradients itself (False: one is missing now -- the general path below).  A group whose list
                    # of params changed length takes the general path, whose key then differs: a new plan.
                    lr_tensor, values = hparams(group)
                    b = plan.buckets[0]
                    try:
                        if plan.own(lr_tensor, b.counters, b.device_steps, values):
                            continue
                    except (TypeError, RuntimeError):
                        _check_numbers(type(self).__name__, values)
                        raise
                grads = [p.grad for p in group["params"]]
                key = (tuple([g is not None for g in grads]), group["amsgrad"], group["capturable"], backend)
                plan = self._plans.get(id(group))
                if plan is None or plan.key != key:
                    plan = self._plans[id(group)] = self._make_plan(group, grads, key)
                lr_tensor, values = hparams(group)
                try:
                    for b in plan.buckets:
                        bucket_grads = grads if b.index is None else [grads[i] for i in b.index]
                        if b.call is not None and not compiling:
                            b.call(bucket_grads, lr_tensor, b.counters, b.device_steps, values)
                        else:  # (torch.compile traces the op itself)
                            b.run(b.params, bucket_grads, b.exp_avgs, b.exp_avg_sqs, b.max_exp_avg_sqs, b.steps,
                                  lr_tensor, b.counters, b.device_steps, values)
                except (TypeError, RuntimeError):
                    _check_numbers(type(self).__name__, values)  # the argument that the op call could not convert
                    raise
        finally:
            torch.set_grad_enabled(grad_mode)
        return loss

    def _make_plan(self, group, grads, key) -> _Plan:
        """Validate a group, create missing state (torch.optim's format), and sort its params with
        gradients into (device, dtype) buckets."""
        name = type(self).__name__
        self._check_group(group)
        devices = {p.device for p, g in zip(group["params"], grads) if g is not None}
        if len(devices) > 1:
            raise RuntimeError(f"{name}: the params of one param group must be on one device, got "
                               f"{', '.join(sorted(str(d) for d in devices))}; put them in one group per device")
        buckets: dict = {}
        for i, (p, g) in enumerate(zip(group["params"], grads)):
            if g is None:
                continue
            if g.is_sparse:
                raise RuntimeError(f"{name}: sparse gradients are not supported (Adam does not support sparse "
                                   "gradients, please consider SparseAdam instead)")
            self._ready(group, p)
            buckets.setdefault(p.dtype, []).append(i)
        plan = _Plan()
        plan.key, plan.buckets = key, []
        n_all = len(group["params"])
        for dtype, index in buckets.items():
            ps = [group["params"][i] for i in index]
            plan.buckets.append(self._make_bucket(group, ps, None if len(index) == n_all else index, key[3]))
        only = plan.buckets[0] if len(plan.buckets) == 1 else None
        plan.own = only.call.with_param_grads if only is not None and only.index is None and only.call else None
        return plan

    def _check_group(self, group) -> None:
        """What the kernel cannot do with a group's hyperparameters."""
        name = type(self).__name__
        if group["differentiable"]:
            raise RuntimeError(f"{name}: differentiable=True is not supported (the step is a fused kernel)")
        if any(isinstance(b, Tensor) for b in group["betas"]):
            raise RuntimeError(f"{name}: betas as tensors are not supported; pass floats")
        lr = group["lr"]
        if isinstance(lr, Tensor) and (lr.numel() != 1 or not lr.is_floating_point()):
            raise RuntimeError(f"{name}: expected lr to be a float or a one-element floating-point tensor")

    def _make_bucket(self, group, ps, index, backend_key) -> _Bucket:
        """The state lists of ``ps`` (params of ``group`` with one device and dtype, state created) and the
        op that updates them."""
        name = type(self).__name__
        b = _Bucket()
        states = [self.state[p] for p in ps]
        device = ps[0].device
        backend = _backend.resolve(backend_key, device, name)
        b.index = index
        b.params = ps
        b.exp_avgs = [s["exp_avg"] for s in states]
        b.exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        b.max_exp_avg_sqs = [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else []
        b.steps = [s["step"] for s in states]
        on_device = {s.device != torch.device("cpu") or (group["capturable"] and s.device == device) for s in b.steps}
        if len(on_device) > 1:
            raise RuntimeError(f"{name}: the steps of one group must all be on the CPU or all on the params' device")
        b.device_steps = on_device.pop()
        b.counters = torch.zeros(len(ps), dtype=torch.int32, device=device) if b.device_steps else None
        b.call = None
        if backend == "torch":
            b.run = _torch_reference
        else:
            _checks.check_backend_dtype(ps[0], backend, name, "params")
            b.run = _ops.ops(backend).adam_step.default
            # the same op called from C++ with the param and state lists converted once (_C.AdamStepCall):
            # torch.ops converts every element of the five lists at each step
            b.call = _ops._C.AdamStepCall(f"{_ops.NAMESPACES[backend]}::adam_step", ps, b.exp_avgs, b.exp_avg_sqs,
                                          b.max_exp_avg_sqs, b.steps)
        return b

    def _train_step_bucket(self, params: list, backend_key: str):
        """For :func:`pyops.mlp_train_step`: (group, bucket) for ``params`` -- which must all belong to one
        param group -- in the given order, their state created as step() would; cached like the plans."""
        key = (tuple(map(id, params)), backend_key)
        hit = self._train_steps.get(key)
        if hit is not None and hit[2] == (hit[0]["amsgrad"], hit[0]["capturable"]):
            return hit[0], hit[1]
        name = type(self).__name__
        owner = {id(p): group for group in self.param_groups for p in group["params"]}
        groups = {id(owner[id(p)]) for p in params if id(p) in owner}
        missing = [i for i, p in enumerate(params) if id(p) not in owner]
        if missing:
            raise ValueError(f"mlp_train_step: parameters {missing} (weights, then biases) are not in this {name}'s "
                             "param groups")
        if len(groups) > 1:
            raise ValueError(f"mlp_train_step: the parameters are in {len(groups)} param groups of this {name}; the "
                             "step updates them in one kernel with one set of hyperparameters: put them in one group")
        group = owner[id(params[0])]
        self._check_group(group)
        for p in params:
            self._ready(group, p)
        bucket = self._make_bucket(group, list(params), None, backend_key)
        self._train_steps[key] = (group, bucket, (group["amsgrad"], group["capturable"]))
        return group, bucket

    def _ready(self, group, p) -> None:
        """Refuse a complex param; else create its state if it has none: torch.optim.Adam._init_group's lazy
        state, with fp32 moments for fp16/bf16 params."""
        if p.is_complex():
            raise TypeError(f"{type(self).__name__}: complex parameters ({p.dtype}) are not supported; optimize a "
                            "real view (torch.view_as_real) instead")
        state = self.state[p]
        if state:
            return
        if group["capturable"] or group["fused"]:
            state["step"] = torch.zeros((), dtype=torch.float32 if group["fused"] else _scalar_dtype(),
                                        device=p.device)
        else:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
        sdt = torch.float32 if p.dtype in _checks.HALF_TYPES else p.dtype
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq"):
            state[key] = torch.zeros_like(p, dtype=sdt, memory_format=torch.preserve_format)


_TORCH_ADAM_ARGS = inspect.signature(_torch_adam).parameters


def _torch_reference(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters,
                     capturable, values):
    """backend='torch': torch.optim's own functional Adam on the same lists (a hyperparameter it has not must
    keep its default)."""
    kw = {}
    for (name, kind, default, _), v in zip(HPARAMS, values):
        v = bool(v) if kind == "bool" else v
        if name in _TORCH_ADAM_ARGS:
            kw[name] = v
        elif v != default:
            raise NotImplementedError(f"adam_step (backend torch): torch.optim's Adam has no {name}; got {name}={v}")
    if lr_tensor is not None:
        kw["lr"] = lr_tensor
    _torch_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, capturable=capturable, **kw)


class AdamW(Adam):
    """Same as :class:`torch.optim.AdamW` (decoupled weight decay, default 1e-2), on pyops kernels."""

    def __init__(self, params, lr: float | Tensor = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, backend: str | None = None, **more_hparams):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True, backend=backend, **more_hparams)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
from .dropin import from_torch  # noqa: E402,F401  (pyops.optim.from_torch: torch Adam/AdamW -> pyops, in place)
