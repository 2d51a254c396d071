"""pyops.fuse / unfuse / fuse_report on models written the ways people write them.

Each model is checked against its unfused twin (the same parameters, deep-copied before fusing):
outputs and every gradient equal (float64 tight, float32 at the design tolerances) on each pyops
backend that runs here, and which pyops ops ran is read from the dispatcher (DispatchLog), not assumed.
Shapes are tiny: the Triton kernels run in the interpreter.
"""
import copy
import warnings
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import pyops
from helpers import CPU_BACKENDS, DispatchLog, assert_close


class OpLog(DispatchLog):
    """DispatchLog that tells pyops.linear from pyops.linear_relu: both run linear_relu_fwd, with relu False
    or True (the op's fourth argument); the plain linear's entry is written "<ns>.linear"."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name.endswith(".linear_relu_fwd") and len(args) > 3 and args[3] is False:
            name = name.replace("linear_relu_fwd", "linear")
        self.names.append(name)
        return func(*args, **(kwargs or {}))

BACKENDS = [b for b in ("cpu", "cuda-sim", "triton") if b in CPU_BACKENDS]
IN, H1, H2, OUT = 6, 5, 4, 3


# ---------------------------------------------------------------- the models
class ClassNet(nn.Module):
    """The tutorial net as a class: F.relu after each layer, log_softmax at the end."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(IN, H1), nn.Linear(H1, H2), nn.Linear(H2, OUT)

    def forward(self, x):
        x = x.view(x.shape[0], -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


def sequential():
    return nn.Sequential(OrderedDict([("fc1", nn.Linear(IN, H1)), ("relu1", nn.ReLU()), ("fc2", nn.Linear(H1, H2)),
                                      ("relu2", nn.ReLU()), ("output", nn.Linear(H2, OUT)),
                                      ("softmax", nn.Softmax(dim=1))]))


class Functional(nn.Module):
    """Parameters of its own, F.linear, torch.relu and .relu_() spellings, torch.softmax."""

    def __init__(self):
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(H1, IN)), nn.Parameter(torch.randn(H1))
        self.w2 = nn.Parameter(torch.randn(OUT, H1))

    def forward(self, x):
        h = torch.relu(F.linear(x, self.w1, self.b1))
        y = F.linear(h, self.w2).relu_()
        return torch.softmax(y, -1)


class Twice(nn.Module):
    """One layer used twice: a chain whose two layers share the weight."""

    def __init__(self):
        super().__init__()
        self.fc, self.out = nn.Linear(IN, IN), nn.Linear(IN, OUT)

    def forward(self, x):
        x = F.relu(self.fc(x))
        x = F.relu(self.fc(x))
        return self.out(x)


class Residual(nn.Module):
    """h = relu(fc1(x)) is used twice (no chain through it); fc2 is a lone linear."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(IN, H1), nn.Linear(H1, H1)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        return h + self.fc2(h)


def bias_free():
    return nn.Sequential(nn.Linear(IN, H1, bias=False), nn.ReLU(), nn.Linear(H1, OUT, bias=False))


class ThreeD(nn.Module):
    """(batch, tokens, features) inputs; log_softmax over the last dim."""

    def __init__(self):
        super().__init__()
        self.body = sequential()[:4]  # fc1, relu1, fc2, relu2
        self.head = nn.Linear(H2, OUT)

    def forward(self, x):
        return self.head(self.body(x)).log_softmax(dim=-1)


def hooked():
    m = sequential()
    m.calls = []
    m.fc2.register_forward_hook(lambda mod, inp, out: m.calls.append(out.shape))
    return m


class Dropouts(nn.Module):
    """nn.Dropout and F.dropout(..., self.training) between the layers."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(IN, H1), nn.Linear(H1, H2), nn.Linear(H2, OUT)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = self.drop(F.relu(self.fc1(x)))
        x = F.dropout(F.relu(self.fc2(x)), 0.4, self.training)
        return self.fc3(x)


def gelu():
    return nn.Sequential(nn.Linear(IN, H1), nn.GELU(), nn.Linear(H1, OUT))


class Branchy(nn.Module):
    """Data-dependent control flow: not traceable."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(IN, H1), nn.Linear(H1, OUT)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(OUT, OUT), nn.ReLU(), nn.Linear(OUT, OUT))

    def forward(self, x):
        h = self.fc1(x)
        if h.sum() > 0:
            h = F.relu(h)
        return self.head(self.fc2(h))


class LoRALinear(nn.Linear):
    """A subclass: never replaced."""

    def forward(self, x):
        return super().forward(x) * 2


def subclass():
    return nn.Sequential(LoRALinear(IN, H1), nn.ReLU(), nn.Linear(H1, OUT))


# name: (factory, input shape, pyops ops expected in the forward, stock ops that must not run)
MODELS = {
    "class": (ClassNet, (4, IN), {"mlp", "log_softmax"}, {"addmm", "relu", "_log_softmax"}),
    "sequential": (sequential, (4, IN), {"mlp", "softmax"}, {"addmm", "relu", "_softmax"}),
    "functional": (Functional, (4, IN), {"linear_relu", "softmax"}, {"addmm", "mm", "relu", "_softmax"}),
    "twice": (Twice, (4, IN), {"mlp"}, {"addmm", "relu"}),
    "residual": (Residual, (4, IN), {"linear_relu", "linear"}, {"addmm", "relu"}),
    "bias_free": (bias_free, (4, IN), {"mlp"}, {"mm", "relu"}),
    "3d": (ThreeD, (2, 3, IN), {"mlp", "log_softmax"}, {"addmm", "bmm", "relu", "_log_softmax"}),
    "hook": (hooked, (4, IN), {"linear", "linear_relu", "softmax"}, {"_softmax"}),
    "dropout": (Dropouts, (4, IN), {"linear_relu", "linear"}, {"addmm", "relu"}),
    "gelu": (gelu, (4, IN), {"linear"}, {"addmm"}),
    "branchy": (Branchy, (4, IN), {"linear", "mlp"}, {"addmm"}),
    "subclass": (subclass, (4, IN), {"linear"}, set()),
}


def pyops_ops(names) -> set:
    """{'mlp', 'softmax', ...}: the pyops ops (any backend's namespace) among dispatched op names."""
    out = set()
    for n in names:
        ns, _, op = n.partition(".")
        if ns in ("pyops", "pyops_sim", "pyops_triton"):
            out.add(op[:-4] if op.endswith("_fwd") else op)
    return out


def aten_ops(names) -> set:
    return {n.partition(".")[2] for n in names if n.startswith("aten.")}


def build(name, dtype, backend):
    factory, shape, _, _ = MODELS[name]
    model = factory().to(dtype)
    ref = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the branchy model's fallback warning is checked in its own test
        pyops.fuse(model, backend=backend)
    return model, ref, torch.randn(shape, dtype=dtype)


def run(model, x, train=True):
    """(output, input grad, {param name: grad}, dispatched op names of the forward)."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    torch.manual_seed(1)  # the same dropout masks for both models
    with OpLog() as log:
        y = model(x)
    y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y))
    return y.detach(), x.grad, {k: p.grad for k, p in model.named_parameters()}, log.names


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_fused_equals_stock(name, backend, dtype):
    model, ref, x = build(name, dtype, backend)
    for train in (True, False):
        y, gx, grads, names = run(model, x, train)
        y_ref, gx_ref, grads_ref, names_ref = run(ref, x, train)
        assert_close(y, y_ref)
        assert_close(gx, gx_ref)
        assert grads.keys() == grads_ref.keys()
        for k in grads:
            assert_close(grads[k], grads_ref[k], msg=lambda m: f"grad of {k}: {m}")
        _, _, expected, forbidden = MODELS[name]
        assert pyops_ops(names) == expected, names
        assert not (aten_ops(names) & forbidden), names
        assert not pyops_ops(names_ref)


def test_tutorial_report_and_identity():
    model = ClassNet()
    params = list(model.parameters())
    keys = list(model.state_dict())
    assert pyops.fuse(model) is model
    assert type(model) is ClassNet and all(type(m) is nn.Linear for m in (model.fc1, model.fc2, model.fc3))
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert list(model.state_dict()) == keys
    assert "forward" in model.__dict__ and not any(n.startswith("_pyops") for n, _ in model.named_children())
    report = pyops.fuse_report(model)
    # the network and its log-softmax: one op, one autograd node
    assert "fc1 + F.relu(), fc2 + F.relu(), fc3 + F.log_softmax() -> pyops.mlp(log_softmax_dim=1) (one op)" in report
    forward = model.forward
    pyops.fuse(model)  # idempotent: nothing re-traced
    assert model.forward == forward and pyops.fuse_report(model) == report


def test_report_refusals():
    m = pyops.fuse(subclass())
    assert "0 (LoRALinear, a subclass of Linear): left alone, only exact types are replaced" in pyops.fuse_report(m)
    m = pyops.fuse(hooked())
    rep = pyops.fuse_report(m)
    assert "fc2 (Linear): left alone, it has hooks" in rep and "relu2: stock relu kept" in rep
    m(torch.randn(2, IN))
    assert m.calls == [torch.Size([2, H2])]  # the hook fired
    assert "1 (GELU): no pyops op, runs as before" in pyops.fuse_report(pyops.fuse(gelu()))


def test_hooks_added_after_fuse_fire_and_removed_hooks_fuse_again():
    torch.manual_seed(0)
    model = pyops.fuse(sequential(), backend="cpu")
    x, calls = torch.randn(2, IN), []
    handle = model.fc2.register_forward_hook(lambda mod, inp, out: calls.append(out.shape))
    with OpLog() as log:
        y = model(x)
    assert calls == [torch.Size([2, H2])]  # called as it is, so its hook fired
    assert pyops_ops(log.names) == {"linear_relu", "linear", "softmax"}, log.names  # fc2 + relu2 stock
    assert "traced again at a call" in pyops.fuse_report(model)
    handle.remove()
    with OpLog() as log:
        assert_close(model(x), y)
    assert pyops_ops(log.names) == {"mlp", "softmax"} and calls == [torch.Size([2, H2])]


def test_mixed_modes_follow_each_submodule():
    """model.train() with one dropout in eval(): the dropout is the identity, the other one still drops."""
    torch.manual_seed(0)
    ref = Dropouts()
    model = pyops.fuse(copy.deepcopy(ref), backend="cpu")
    x = torch.randn(64, IN)
    for m in (ref, model):
        m.train()
        m.drop.eval()
    for seed in (1, 2):
        torch.manual_seed(seed)
        y_ref = ref(x)
        torch.manual_seed(seed)
        with OpLog() as log:
            y = model(x)
        assert_close(y, y_ref)
        assert {"linear_relu", "linear"} <= pyops_ops(log.names), log.names
    model.drop.train()  # back to a uniform mode: the graph traced at fuse
    torch.manual_seed(3)
    y_ref = ref.train()(x)
    torch.manual_seed(3)
    assert_close(model(x), y_ref)


def test_untraceable_falls_back_with_warning_and_strict_raises():
    m = Branchy()
    with pytest.warns(UserWarning, match=r"cannot trace Branchy .*control flow"):
        pyops.fuse(m)
    assert type(m.fc1) is pyops.nn.Linear and type(m.fc2) is pyops.nn.Linear
    rep = pyops.fuse_report(m)
    assert "not traceable" in rep and "head: 1 + 2, 3 -> pyops.mlp" in rep
    pyops.unfuse(m)
    assert type(m.fc1) is nn.Linear and "backend" not in m.fc1.__dict__ and "forward" not in m.head.__dict__
    with pytest.raises(pyops._fuse.FuseError, match=r"cannot trace Branchy .*control flow"):
        pyops.fuse(Branchy(), strict=True)


def test_state_dict_both_ways_and_unfuse():
    fused, plain = ClassNet(), ClassNet()
    pyops.fuse(fused)
    fused.load_state_dict(plain.state_dict())  # a stock checkpoint into the fused model
    x = torch.randn(3, IN)
    assert_close(fused(x), plain(x))
    with torch.no_grad():
        for p in fused.parameters():
            p.add_(0.5)
    plain.load_state_dict(fused.state_dict())  # and back
    assert_close(fused(x), plain(x))
    pyops.unfuse(fused)
    assert "forward" not in fused.__dict__ and "_pyops_fused" not in fused.__dict__
    with OpLog() as log:
        fused(x)
    assert not pyops_ops(log.names) and "addmm" in aten_ops(log.names)
    with pytest.raises(ValueError, match="was not fused"):
        pyops.unfuse(fused)


def test_errors():
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got function"):
        pyops.fuse(lambda x: x)
    with pytest.raises(TypeError, match="fuse the model before wrapping it"):
        pyops.fuse(nn.DataParallel(nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="got a torch.compile'd module; fuse the model before compiling it"):
        pyops.fuse(torch.compile(nn.Linear(2, 2)))
    with pytest.raises(pyops.BackendError, match="unknown backend 'gpu'"):
        pyops.fuse(nn.Linear(2, 2), backend="gpu")
    m = pyops.fuse(sequential(), backend="cpu").to(torch.bfloat16)  # a dtype the cpu kernels do not take
    with pytest.raises(TypeError, match=r"layer fc1 \+ relu1 \.\.\. output: mlp: backend 'cpu' supports float32"):
        m(torch.randn(2, IN, dtype=torch.bfloat16))
    m = pyops.fuse(sequential()).to("meta")  # a device no pyops backend runs
    with pytest.raises(pyops.BackendError, match=r"layer fc1 \+ relu1 \.\.\. output: mlp: no pyops backend runs "
                                                  r"on meta tensors"):
        m(torch.randn(2, IN, device="meta"))


def test_parameters_read_at_call_time_and_deepcopy():
    """The fused forward reads the layers' parameters at every call: a replaced parameter is used, and a deep
    copy of a fused model computes with its own parameters."""
    model = pyops.fuse(ClassNet(), backend="cpu")
    twin = copy.deepcopy(model)
    x = torch.randn(3, IN)
    model.fc3.bias = nn.Parameter(model.fc3.bias.detach() + torch.tensor([5.0, 0.0, 0.0]))
    plain = ClassNet()
    plain.load_state_dict(model.state_dict())
    assert_close(model(x), plain(x))
    with torch.no_grad():
        twin.fc1.weight.zero_()
    plain.load_state_dict(twin.state_dict())
    assert_close(twin(x), plain(x))
    assert not torch.equal(twin(x), model(x))


class WithLoss(nn.Module):
    """A model that returns its loss (nn.NLLLoss on log-probabilities from a Sequential)."""

    def __init__(self):
        super().__init__()
        self.net, self.loss = sequential()[:5], nn.NLLLoss()

    def forward(self, x, t):
        return self.loss(F.log_softmax(self.net(x), dim=1), t)


def test_autocast_follows_stock_policy():
    """Under CPU autocast (bfloat16): the layers run in bfloat16 (cuda-sim has bf16 kernels), log_softmax as it
    comes (CPU autocast does not list it), the loss in float32 -- the dtypes stock gives; the cpu backend has no
    bfloat16 kernels and says so, naming the layer."""
    x, t = torch.randn(4, IN), torch.randint(0, OUT, (4,))
    model = ClassNet()
    ref = copy.deepcopy(model)
    lossy = WithLoss()
    lossy_ref = copy.deepcopy(lossy)
    if "cuda-sim" in BACKENDS:
        pyops.fuse(model, backend="cuda-sim")
        pyops.fuse(lossy, backend="cuda-sim")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, y_ref = model(x), ref(x)
            loss, loss_ref = lossy(x, t), lossy_ref(x, t)
        assert y.dtype == y_ref.dtype == torch.bfloat16
        assert loss.dtype == loss_ref.dtype == torch.float32
        assert "+ loss -> pyops.cross_entropy" in pyops.fuse_report(lossy)
        assert_close(y, y_ref, dtype=torch.bfloat16, atol=3e-2)  # bf16 GEMM accumulation orders differ
        assert_close(loss, loss_ref, dtype=torch.bfloat16)
    pyops.fuse(model, backend="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match=r"layer fc1 \+ F.relu\(\) \.\.\. fc3 \+ F.log_softmax\(\): mlp: "
                                            r"backend 'cpu' supports "
                                            r"float32, float64 .*got input of dtype torch.bfloat16"):
            model(x)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_cuda_autocast_follows_stock_policy(backend):
    """CUDA autocast (float16): the layers in float16, log_softmax and the loss in float32 (CUDA's autocast lists
    both as float32 ops), values close to stock's."""
    x, t = torch.randn(4, IN, device="cuda"), torch.randint(0, OUT, (4,), device="cuda")
    model, lossy = ClassNet().cuda(), WithLoss().cuda()
    ref, lossy_ref = copy.deepcopy(model), copy.deepcopy(lossy)
    pyops.fuse(model, backend=backend)
    pyops.fuse(lossy, backend=backend)
    with torch.autocast("cuda", dtype=torch.float16):
        with OpLog() as log:
            y, loss = model(x), lossy(x, t)
        y_ref, loss_ref = ref(x), lossy_ref(x, t)
    assert {"mlp", "log_softmax", "cross_entropy"} <= pyops_ops(log.names), log.names
    assert y.dtype == y_ref.dtype == torch.float32 and loss.dtype == loss_ref.dtype == torch.float32
    assert_close(y, y_ref, dtype=torch.float16)
    assert_close(loss, loss_ref, dtype=torch.float16)


@pytest.mark.gpu
def test_fused_model_on_a_device_its_backend_cannot_run_names_the_layer():
    m = pyops.fuse(sequential(), backend="cpu").cuda()
    with pytest.raises(RuntimeError, match=r"layer fc1 \+ relu1 \.\.\. output: mlp: .*cuda"):
        m(torch.randn(2, IN, device="cuda"))


def test_whole_model_pickle_and_deepcopy_stay_fused():
    """torch.save(model) / torch.load: the loaded model re-fuses itself at its first call (the generated code is
    not pickled); a deep copy shares it.  Both run the pyops ops, never the stock forward under a fused marker."""
    import io

    model = pyops.fuse(sequential(), backend="cpu")
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randn(3, IN)
    for m in (loaded, copy.deepcopy(model)):
        with OpLog() as log:
            y = m(x)
        assert pyops_ops(log.names) == {"mlp", "softmax"}, log.names
        assert_close(y, model(x))
        assert pyops.fuse_report(m) == pyops.fuse_report(model)
        m.eval()
        assert_close(m(x), model(x))


def test_module_states_are_the_maps_they_replace():
    """The fused forward's per-call state, computed in C (_C.module_states): each module's .training and whether
    it has a forward or backward (pre-)hook -- the same tuples as the Python maps over the same modules (the
    code's key), for each kind of hook and a submodule in eval(); an error of an attribute read is raised."""
    from pyops import _fuse, _ops

    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Dropout(), nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    mods = tuple(net.modules())  # net, net[0..4], net[4][0]

    def maps(ms):
        return tuple(map(_fuse._TRAINING, ms)), tuple(map(any, map(_fuse._HOOK_DICTS, ms)))

    assert _ops._C.module_states(mods) == maps(mods) == ((True,) * 7, (False,) * 7)
    net[2].eval()
    handles = [net[0].register_forward_hook(lambda *a: None), net[1].register_forward_pre_hook(lambda *a: None),
               net[3].register_full_backward_hook(lambda *a: None),
               net[4][0].register_full_backward_pre_hook(lambda *a: None)]
    state = _ops._C.module_states(mods)
    assert state == maps(mods)
    assert state == ((True, True, True, False, True, True, True), (False, True, True, False, True, False, True))
    assert all(type(v) is bool for v in state[1])
    for h in handles:
        h.remove()
    assert _ops._C.module_states(mods) == maps(mods) and not any(_ops._C.module_states(mods)[1])
    del net[1].training
    with pytest.raises(AttributeError, match="training"):
        _ops._C.module_states(mods)
    with pytest.raises(TypeError, match="tuple of modules"):
        _ops._C.module_states(list(mods))
