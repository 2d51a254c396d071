"""pyops.mlp_train_step: one training step as one op, the autograd step's numbers bit for bit."""
import copy

import pytest
import torch
import torch.nn.functional as F

import pyops
import pyops.optim
from pyops import _ops
from helpers import CPU_BACKENDS, DispatchLog, assert_close

SIZES = (12, 8, 6, 5)
BATCH = 7


def make_params(dtype=torch.float64, bias="all", seed=0):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.nn.Parameter(torch.randn(o, i, generator=g, dtype=dtype) / i ** 0.5)
          for i, o in zip(SIZES[:-1], SIZES[1:])]
    bs = [torch.nn.Parameter(torch.randn(o, generator=g, dtype=dtype) * 0.1) for o in SIZES[1:]]
    if bias == "some":
        bs[1] = None
    elif bias == "none":
        bs = [None] * len(ws)
    return ws, bs


def batches(n, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(BATCH, SIZES[0], generator=g, dtype=dtype), torch.randint(0, SIZES[-1], (BATCH,), generator=g))
            for _ in range(n)]


def optimizer(params, kind, **kw):
    return (pyops.optim.AdamW if kind == "adamw" else pyops.optim.Adam)(params, **kw)


def autograd_step(x, y, ws, bs, opt, loss, backend, **loss_kw):
    """The same step through autograd and optimizer.step()."""
    opt.zero_grad()
    out = pyops.mlp(x, ws, bs, backend=backend)
    if loss == "nll":
        value = pyops.nll_loss(pyops.log_softmax(out, 1, backend=backend), y, backend=backend, **loss_kw)
    else:
        value = pyops.cross_entropy(out, y, backend=backend, **loss_kw)
    value.backward()
    opt.step()
    return value.detach()


def present(ws, bs):
    return [*ws, *[b for b in bs if b is not None]]


def assert_same_state(opt_a, params_a, opt_b, params_b):
    for pa, pb in zip(params_a, params_b):
        assert torch.equal(pa, pb)
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k


CONFIGS = {
    "cross-entropy": dict(loss="cross-entropy", opt=("adam", {})),
    "nll-amsgrad": dict(loss="nll", opt=("adam", dict(amsgrad=True))),
    "weighted-sum-adamw": dict(loss="cross-entropy", bias="some",
                               loss_kw=dict(weight=torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0]), ignore_index=2,
                                            label_smoothing=0.1, reduction="sum"),
                               opt=("adamw", dict(weight_decay=1e-2, maximize=True, lr=torch.tensor(2e-3)))),
    "nll-weighted-l2-capturable": dict(loss="nll", bias="none",
                                       loss_kw=dict(weight=torch.tensor([0.5, 1.0, 2.0, 1.0, 1.5]), ignore_index=0),
                                       opt=("adam", dict(weight_decay=1e-2, capturable=True, betas=(0.8, 0.99)))),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["torch"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_numbers_as_the_autograd_step(backend, config, dtype):
    """Losses, parameters and the optimizer's whole state equal the autograd step's after every step, bit for bit
    (the same kernels with the same arguments in the same order); .grad is never written."""
    c = CONFIGS[config]
    if backend == "torch" and c["opt"][1].get("capturable"):
        pytest.skip("torch.optim's capturable Adam refuses CPU params")
    loss_kw = {k: (v.to(dtype) if torch.is_tensor(v) else v) for k, v in c.get("loss_kw", {}).items()}
    kind, opt_kw = c["opt"]
    ws_a, bs_a = make_params(dtype, c.get("bias", "all"))
    ws_b, bs_b = make_params(dtype, c.get("bias", "all"))
    opt_a = optimizer(present(ws_a, bs_a), kind, backend=backend, **opt_kw)  # (the optimizer's backend: Triton's
    opt_b = optimizer(present(ws_b, bs_b), kind, backend=backend, **opt_kw)  # interpreter does not fuse tl.fma)
    for x, y in batches(3, dtype):
        la = autograd_step(x, y, ws_a, bs_a, opt_a, c["loss"], backend, **loss_kw)
        lb = pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, loss=c["loss"], backend=backend, **loss_kw)
        assert not lb.requires_grad
        assert torch.equal(la, lb), (la, lb)
        assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))
    assert all(p.grad is None for p in present(ws_b, bs_b))


def test_the_torch_backend_is_stock_pytorch():
    """backend='torch' is stock autograd and torch.optim's Adam on the same parameters."""
    ws, bs = make_params(torch.float64)
    ref = [p.detach().clone().requires_grad_() for p in present(ws, bs)]
    opt = pyops.optim.Adam(present(ws, bs), lr=1e-2)
    ref_opt = torch.optim.Adam(ref, lr=1e-2)
    for x, y in batches(3, torch.float64):
        loss = pyops.mlp_train_step(x, y, ws, bs, opt, backend="torch")
        ref_opt.zero_grad()
        h = x
        for i in range(3):
            h = F.linear(h, ref[i], ref[3 + i])
            h = F.relu(h) if i < 2 else h
        ref_loss = F.cross_entropy(h, y)
        ref_loss.backward()
        ref_opt.step()
        assert_close(loss, ref_loss.detach())
    for p, r in zip(present(ws, bs), ref):
        assert_close(p.detach(), r.detach())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_takes_turns_with_the_autograd_step(backend):
    """The optimizer's state is the one step() uses: autograd, one-op, autograd equals three autograd steps."""
    ws_a, bs_a = make_params(torch.float32)
    ws_b, bs_b = make_params(torch.float32)
    opt_a = pyops.optim.Adam(present(ws_a, bs_a), backend=backend)
    opt_b = pyops.optim.Adam(present(ws_b, bs_b), backend=backend)
    for i, (x, y) in enumerate(batches(3, torch.float32)):
        autograd_step(x, y, ws_a, bs_a, opt_a, "cross-entropy", backend)
        if i == 1:
            pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, backend=backend)
        else:
            autograd_step(x, y, ws_b, bs_b, opt_b, "cross-entropy", backend)
    assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))


def test_state_dict_round_trip_continues_identically():
    """A checkpoint taken mid-training (torch.optim's format) loads into a fresh optimizer, and the one-op steps
    continue exactly as the uninterrupted run (the cached state lists follow load_state_dict)."""
    ws_a, bs_a = make_params(torch.float32)
    ws_b, bs_b = make_params(torch.float32)
    opt_a, opt_b = pyops.optim.Adam(present(ws_a, bs_a)), pyops.optim.Adam(present(ws_b, bs_b))
    data = batches(4, torch.float32)
    for x, y in data[:2]:
        pyops.mlp_train_step(x, y, ws_a, bs_a, opt_a)
        pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b)
    saved = copy.deepcopy(opt_a.state_dict())  # (as torch.save would: state_dict() holds the live state tensors)
    opt_b.load_state_dict(torch.optim.Adam(present(ws_b, bs_b)).state_dict())  # different state, then back
    opt_b.load_state_dict(saved)
    for x, y in data[2:]:
        pyops.mlp_train_step(x, y, ws_a, bs_a, opt_a)
        pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b)
    assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))


def test_reads_the_group_hyperparameters_at_every_call():
    """A change of lr (a scheduler's) applies at the next call, as with optimizer.step()."""
    ws_a, bs_a = make_params(torch.float32)
    ws_b, bs_b = make_params(torch.float32)
    opt_a, opt_b = pyops.optim.Adam(present(ws_a, bs_a)), pyops.optim.Adam(present(ws_b, bs_b))
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=1, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=1, gamma=0.5)
    for x, y in batches(3, torch.float32):
        autograd_step(x, y, ws_a, bs_a, opt_a, "cross-entropy", "cpu")
        pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, backend="cpu")
        sched_a.step()
        sched_b.step()
    assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))
    # a hyperparameter edited to something that is not a number: the error names it, as optimizer.step()'s does
    opt_b.param_groups[0]["eps"] = "1e-8"
    x, y = next(iter(batches(1, torch.float32)))
    with pytest.raises(TypeError, match="mlp_train_step: the param group's eps must be a number, got str"):
        pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, backend="cpu")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("loss", ["cross-entropy", "nll"])
def test_dispatched_ops(backend, loss):
    """What one step dispatches: the backend's kernels and the loss's seed, nothing else (the C++ op is
    CompositeImplicitAutograd on every backend: a dispatch mode sees what it calls)."""
    ws, bs = make_params(torch.float32)
    opt = pyops.optim.Adam(present(ws, bs))
    x, y = batches(1, torch.float32)[0]
    pyops.mlp_train_step(x, y, ws, bs, opt, loss=loss, backend=backend)  # state created outside the log
    with DispatchLog() as log:
        pyops.mlp_train_step(x, y, ws, bs, opt, loss=loss, backend=backend)
    ns = _ops.NAMESPACES[backend]
    middle = (["cross_entropy_fwd", "ones_like", "cross_entropy_bwd"] if loss == "cross-entropy" else
              ["log_softmax_fwd", "nll_loss_fwd", "ones_like", "nll_loss_bwd", "log_softmax_bwd"])
    expected = [f"{ns}.mlp_fwd"] + [("aten." if m == "ones_like" else f"{ns}.") + m for m in middle] + \
               [f"{ns}.mlp_bwd", f"{ns}.adam_step"]
    assert log.names == expected, log.names


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    ws, bs = make_params(torch.float32)
    ws, bs = [w.detach().clone() for w in ws], [b.detach().clone() for b in bs]
    zeros = lambda: [torch.zeros_like(p) for p in ws + bs]  # noqa: E731
    x, y = batches(1, torch.float32)[0]
    steps = [torch.tensor(0.0) for _ in ws + bs]
    _, hparams = pyops.optim.hparams(pyops.optim.Adam(ws + bs).param_groups[0])
    args = (x, y, ws, bs, [True] * 3, zeros(), zeros(), [], steps, None, None, False, hparams, False, None, 1, -100,
            0.0)
    # (test_schema runs the op and checks that exactly the (a!) .. (g!) arguments change)
    torch.library.opcheck(_ops.ops(backend).mlp_train_step.default, args,
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    """A compiled training step (no graph break: dynamo traces the op through the optimizer's Python) updates
    the parameters and the state exactly as the eager one."""
    torch._dynamo.reset()
    ws_a, bs_a = make_params(torch.float32)
    ws_b, bs_b = make_params(torch.float32)
    opt_a = pyops.optim.Adam(present(ws_a, bs_a), backend=backend)
    opt_b = pyops.optim.Adam(present(ws_b, bs_b), backend=backend)
    step = torch.compile(lambda x, y: pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b), fullgraph=True,
                         backend="aot_eager")
    data = batches(3, torch.float32)
    x, y = data[0]  # an eager step first: the plan it leaves in opt_b's cache must not matter to the trace
    assert torch.equal(pyops.mlp_train_step(x, y, ws_a, bs_a, opt_a), pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b))
    for x, y in data[1:]:
        assert torch.equal(pyops.mlp_train_step(x, y, ws_a, bs_a, opt_a), step(x, y))
    assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_input(backend):
    ws, bs = make_params(torch.float32)
    opt = pyops.optim.Adam(present(ws, bs))
    x, y = batches(1, torch.float32)[0]
    step = lambda *a, **k: pyops.mlp_train_step(*a, **{"backend": backend, **k})  # noqa: E731
    with pytest.raises(TypeError, match="expected a pyops.optim.Adam or AdamW optimizer, got Adam"):
        step(x, y, ws, bs, torch.optim.Adam(present(ws, bs)))
    with pytest.raises(ValueError, match=r"parameters \[3\] .* are not in this Adam's param groups"):
        step(x, y, ws, bs, pyops.optim.Adam(ws + bs[1:]))
    with pytest.raises(ValueError, match="are in 2 param groups"):
        step(x, y, ws, bs, pyops.optim.Adam([{"params": ws}, {"params": [b for b in bs], "lr": 1e-2}]))
    with pytest.raises(ValueError, match="a training step needs a scalar loss"):
        step(x, y, ws, bs, opt, reduction="none")
    with pytest.raises(ValueError, match="'median' is not a valid value for reduction"):
        step(x, y, ws, bs, opt, reduction="median")
    with pytest.raises(ValueError, match="unknown loss 'mse'"):
        step(x, y, ws, bs, opt, loss="mse")
    with pytest.raises(ValueError, match="label_smoothing applies to loss='cross-entropy'"):
        step(x, y, ws, bs, opt, loss="nll", label_smoothing=0.1)
    with pytest.raises((RuntimeError, ValueError), match=r"expected input of shape \(batch, in_features\)"):
        step(x[None], y, ws, bs, opt)
    with pytest.raises((RuntimeError, ValueError), match="target of shape"):
        step(x, y[:3], ws, bs, opt)
    with pytest.raises(TypeError, match="target"):
        step(x, y.float(), ws, bs, opt)
    with pytest.raises((RuntimeError, TypeError, ValueError), match="in_features|shape"):
        step(x[:, :5], y, ws, bs, opt)
    with pytest.raises((RuntimeError, ValueError, IndexError), match="out of bounds"):
        step(x, torch.full_like(y, SIZES[-1]), ws, bs, opt)
    with pytest.raises(ValueError, match="one bias"):
        step(x, y, ws, bs[:2], opt)
    bs[0].requires_grad_(False)  # a frozen bias: the autograd step would not update it
    with pytest.raises(ValueError, match=r"parameters \[3\] .* do not require grad"):
        step(x, y, ws, bs, opt)
    bs[0].requires_grad_(True)
    hook = opt.register_step_post_hook(lambda *a: None)
    with pytest.raises(RuntimeError, match="step hooks"):
        step(x, y, ws, bs, opt)
    hook.remove()
    before = [p.detach().clone() for p in present(ws, bs)]
    assert all(torch.equal(p, q) for p, q in zip(present(ws, bs), before))  # nothing was updated by a refused call
    step(x, y, ws, bs, opt)  # and a good call still works
    assert not all(torch.equal(p, q) for p, q in zip(present(ws, bs), before))


def test_the_cached_plan_follows_every_change():
    """A call with the arguments of the last one skips their checks (a plan cached in the optimizer); each thing
    that can change between calls still takes effect or raises, and the numbers stay the autograd step's."""
    ws_a, bs_a = make_params(torch.float32)
    ws_b, bs_b = make_params(torch.float32)
    opt_a, opt_b = pyops.optim.Adam(present(ws_a, bs_a)), pyops.optim.Adam(present(ws_b, bs_b))
    data = iter(batches(8, torch.float32))

    def both(loss="cross-entropy", target=lambda y: y, **kw):
        x, y = next(data)
        autograd_step(x, y, ws_a, bs_a, opt_a, loss, "cpu", **kw)
        pyops.mlp_train_step(x, target(y), ws_b, bs_b, opt_b, loss=loss, backend="cpu", **kw)
        assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))

    both()
    assert "mlp_train_step" in opt_b._train_steps  # the plan the next calls reuse
    both()
    both(target=lambda y: y.to(torch.uint8))  # byte targets after a cached call: converted (the kernels take int64)
    both(loss="nll")  # other loss arguments: a new plan
    both(weight=torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0]), reduction="sum")
    for opt in (opt_a, opt_b):  # hyperparameters changed in the group: read at every call
        opt.param_groups[0].update(weight_decay=1e-2, maximize=True, eps=1e-6, betas=(0.8, 0.99))
    both()
    x, y = batches(1, torch.float32, seed=3)[0]
    with pytest.raises(RuntimeError, match="dtype|Double|float64"):  # an input the weights do not match
        pyops.mlp_train_step(x.double(), y, ws_b, bs_b, opt_b, backend="cpu")
    other = torch.nn.Parameter(ws_b[1].detach().clone())  # a parameter swapped for one the optimizer lacks
    with pytest.raises(ValueError, match=r"parameters \[1\] .* are not in this Adam's param groups"):
        pyops.mlp_train_step(x, y, [ws_b[0], other, ws_b[2]], bs_b, opt_b, backend="cpu")
    pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, backend="cpu")  # the cached plan again ...
    ws_b[2].requires_grad_(False)  # ... refuses a parameter frozen since
    with pytest.raises(ValueError, match=r"parameters \[2\] .* do not require grad"):
        pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, backend="cpu")
    ws_b[2].requires_grad_(True)
    hook = opt_b.register_step_pre_hook(lambda *a: None)  # ... and an optimizer given a hook since
    with pytest.raises(RuntimeError, match="step hooks"):
        pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, backend="cpu")
    hook.remove()
    with DispatchLog() as log:  # ... and follows the enclosing backend when the call names none
        with pyops.use_backend("torch"):
            pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b)
    assert not any(n.startswith("pyops") for n in log.names), log.names


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "triton"])
def test_the_cached_plan_calls_the_op_from_cpp(backend):
    """On a C++ backend the cached plan calls the op through pyops._C.TrainStepCall, its lists converted once:
    the results of calling torch.ops' op with the same arguments, its errors (type and message) with nothing
    updated, and the op's profiler range."""
    ws_a, bs_a = make_params(torch.float32)
    ws_b, bs_b = make_params(torch.float32)
    opt_a, opt_b = pyops.optim.Adam(present(ws_a, bs_a)), pyops.optim.Adam(present(ws_b, bs_b))
    op = _ops.ops(backend).mlp_train_step.default
    data = batches(4, torch.float32)
    weight = torch.tensor([0.5, 1.0, 2.0, 1.0, 1.5])  # one object: the calls after the first reuse the plan
    for x, y in data:
        loss_a = pyops.mlp_train_step(x, y, ws_a, bs_a, opt_a, loss="nll", backend=backend, weight=weight)
        _, bucket = opt_b._train_step_bucket(present(ws_b, bs_b), backend)
        loss_b = op(x, y, ws_b, bs_b, [True] * 3, bucket.exp_avgs, bucket.exp_avg_sqs, [], bucket.steps, None, None,
                    False, pyops.optim.hparams(opt_b.param_groups[0])[1], True, weight, 1, -100, 0.0)
        assert torch.equal(loss_a, loss_b)
        assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))
    plan = opt_a._train_steps["mlp_train_step"]
    assert isinstance(plan.call, _ops._C.TrainStepCall)
    x, y = data[0]
    bad = torch.full_like(y, SIZES[-1])
    before = [p.detach().clone() for p in present(ws_a, bs_a)]
    with pytest.raises(Exception) as fast:
        pyops.mlp_train_step(x, bad, ws_a, bs_a, opt_a, loss="nll", backend=backend, weight=weight)
    assert opt_a._train_steps["mlp_train_step"] is plan  # the error came from the cached plan's call
    with pytest.raises(Exception) as boxed:
        op(x, bad, *plan.static, None, None, False, pyops.optim.hparams(plan.group)[1], *plan.tail)
    assert fast.type is boxed.type and "out of bounds" in str(fast.value)
    assert str(fast.value).splitlines()[0] == str(boxed.value).splitlines()[0]
    assert all(torch.equal(p, q) for p, q in zip(present(ws_a, bs_a), before))
    calls, call = [], plan.call  # the fast path goes through it
    plan.call = lambda *a: calls.append(a) or call(*a)
    pyops.mlp_train_step(x, y, ws_a, bs_a, opt_a, loss="nll", backend=backend, weight=weight)
    assert len(calls) == 1 and calls[0][0] is x
    plan.call = call
    with torch.profiler.profile() as prof:
        pyops.mlp_train_step(x, y, ws_a, bs_a, opt_a, loss="nll", backend=backend, weight=weight)
    assert f"{_ops.NAMESPACES[backend]}::mlp_train_step" in [e.name for e in prof.events()]
    with pytest.raises(RuntimeError, match="wrong signature"):  # only an op of mlp_train_step's schema
        _ops._C.TrainStepCall(f"{_ops.NAMESPACES[backend]}::mlp_fwd", *plan.static, *plan.tail)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_module_train_step(backend):
    """pyops.nn.MLP.train_step: the module's parameters, its backend, the loss arguments passed through."""
    torch.manual_seed(5)
    a = pyops.nn.MLP(SIZES, backend=backend)
    b = pyops.nn.MLP(SIZES, backend=backend)
    b.load_state_dict(a.state_dict())
    opt_a = pyops.optim.AdamW(a.parameters(), backend=backend)
    opt_b = pyops.optim.AdamW(b.parameters(), backend=backend)
    for x, y in batches(2, torch.float32):
        opt_a.zero_grad()
        ref = pyops.nll_loss(pyops.log_softmax(a(x), 1, backend=backend), y, reduction="sum", backend=backend)
        ref.backward()
        opt_a.step()
        assert torch.equal(b.train_step(x, y, opt_b, loss="nll", reduction="sum"), ref.detach())
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_pipeline_one_op_trainer_matches_the_autograd_trainer():
    """The bench's one-op contender trains the seed model to the same numbers as the autograd pyops model."""
    from pyops.pipeline import models

    sizes = (20, 10, 8, 4)
    state = models.init_state(sizes)
    a = models.pyops_trainer(state, backend="cpu", sizes=sizes, loss="cross-entropy")
    b = models.pyops_trainer(state, backend="cpu", sizes=sizes, loss="cross-entropy", one_op=True)
    assert "one-op step" in b.name
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        x, y = torch.randn(16, 20, generator=g), torch.randint(0, 4, (16,), generator=g)
        assert torch.equal(a.step(x, y), b.step(x, y))
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(ValueError, match="cannot train a wrapped model"):
        models.pyops_trainer(state, sizes=sizes, loss="cross-entropy", one_op=True, wrap=lambda m: m)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_same_numbers_as_the_autograd_step(backend):
    ws_a, bs_a = [[p.cuda() if p is not None else None for p in lst] for lst in make_params(torch.float32)]
    ws_b, bs_b = [[p.cuda() if p is not None else None for p in lst] for lst in make_params(torch.float32)]
    ws_a, bs_a, ws_b, bs_b = ([torch.nn.Parameter(p.detach()) for p in lst] for lst in (ws_a, bs_a, ws_b, bs_b))
    opt_a = pyops.optim.Adam(present(ws_a, bs_a), backend=backend)
    opt_b = pyops.optim.Adam(present(ws_b, bs_b), backend=backend)
    for x, y in batches(3, torch.float32):
        x, y = x.cuda(), y.cuda()
        la = autograd_step(x, y, ws_a, bs_a, opt_a, "cross-entropy", backend)
        lb = pyops.mlp_train_step(x, y, ws_b, bs_b, opt_b, backend=backend)
        assert torch.equal(la, lb)
    assert_same_state(opt_a, present(ws_a, bs_a), opt_b, present(ws_b, bs_b))
