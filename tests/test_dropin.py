"""pyops.optim.from_torch and pyops.optimize: a torch optimizer (mid-training, with an LR scheduler made
before) converted in place continues exactly as torch's own would."""
import copy
import warnings

import pytest
import torch
import torch.nn as nn

import pyops
from helpers import DispatchLog, assert_close


def model_and_data(dtype=torch.float64):
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).to(dtype)
    batches = [(torch.randn(4, 6, dtype=dtype), torch.randint(0, 3, (4,))) for _ in range(6)]
    return model, batches


def train(model, opt, sched, batches):
    for x, t in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), t).backward()
        opt.step()
        sched.step()


@pytest.mark.parametrize("cls,kw", [(torch.optim.Adam, dict(lr=0.01, weight_decay=0.1)),
                                    (torch.optim.AdamW, dict(lr=0.02, betas=(0.8, 0.99), amsgrad=True)),
                                    (torch.optim.Adam, dict(lr=torch.tensor(0.01), foreach=False))],
                         ids=["adam", "adamw-amsgrad", "adam-tensor-lr"])
def test_from_torch_continues_as_torch(cls, kw):
    model, batches = model_and_data()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.005}]
    opt = cls(groups, **kw)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    train(model, opt, sched, batches[:3])  # mid-training
    twin, twin_opt = copy.deepcopy((model, opt))
    twin_sched = torch.optim.lr_scheduler.StepLR(twin_opt, step_size=2, gamma=0.5)
    twin_sched.load_state_dict(sched.state_dict())

    group_dicts, state = list(opt.param_groups), opt.state
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scheduler warning about the order of step() calls
        assert pyops.optim.from_torch(opt, backend="cpu") is opt
        assert type(opt) is {torch.optim.Adam: pyops.optim.Adam, torch.optim.AdamW: pyops.optim.AdamW}[cls]
        assert all(a is b for a, b in zip(opt.param_groups, group_dicts)) and opt.state is state
        with pyops.use_backend("cpu"), DispatchLog() as log:
            train(model, opt, sched, batches[3:])
    assert log.names.count("pyops.adam_step") == 2 * 3  # pyops stepped each group, not torch
    train(twin, twin_opt, twin_sched, batches[3:])
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in twin_opt.param_groups]  # the scheduler drove it
    for p, q in zip(model.parameters(), twin.parameters()):
        assert_close(p, q)
        for k in twin_opt.state[q]:
            assert_close(opt.state[p][k], twin_opt.state[q][k])
    # its state_dict loads into torch's, and continues there
    back = cls([{"params": twin[0].parameters()}, {"params": twin[2].parameters()}], **kw)
    back.load_state_dict(opt.state_dict())
    assert back.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    for q, p in zip(twin.parameters(), model.parameters()):
        for k in back.state[q]:
            assert_close(back.state[q][k], opt.state[p][k])


def test_from_torch_leaves_others_alone():
    model, _ = model_and_data()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match=r"left unchanged: torch.optim.sgd.SGD has no pyops kernel"):
        assert pyops.optim.from_torch(sgd) is sgd
    assert type(sgd) is torch.optim.SGD
    diff = torch.optim.Adam(model.parameters(), differentiable=True)
    with pytest.warns(UserWarning, match="differentiable=True"):
        assert type(pyops.optim.from_torch(diff)) is torch.optim.Adam
    ours = pyops.optim.Adam(model.parameters())
    assert pyops.optim.from_torch(ours) is ours
    with pytest.raises(TypeError, match="expected a torch.optim.Optimizer, got Sequential"):
        pyops.optim.from_torch(model)


def test_optimize():
    model, batches = model_and_data(torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    m, o = pyops.optimize(model, opt, backend="cpu")
    assert m is model and o is opt and type(o) is pyops.optim.Adam
    rep = pyops.fuse_report(model)
    assert "0 + 1, 2 -> pyops.mlp" in rep and "torch.optim.adam.Adam -> pyops.optim.Adam" in rep
    sgd_model, _ = model_and_data(torch.float32)
    with pytest.warns(UserWarning, match="optimizer left unchanged"):
        _, sgd = pyops.optimize(sgd_model, torch.optim.SGD(sgd_model.parameters(), lr=0.1))
    assert type(sgd) is torch.optim.SGD and "optimizer: left unchanged" in pyops.fuse_report(sgd_model)
    assert pyops.optimize(nn.Linear(2, 2)) [1] is None
    with pytest.raises(TypeError, match="expected a torch.optim.Optimizer or None"):
        pyops.optimize(nn.Linear(2, 2), "adam")


def _script(path: str):
    """The repository's script at ``path`` (relative to its root), imported as a module."""
    import importlib.util
    import pathlib

    file = pathlib.Path(__file__).resolve().parent.parent / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("form", ["class", "sequential"])
def test_tutorial_example(form, capsys):
    """examples/train_tutorial.py, a few steps: fused to one mlp op with its log_softmax, the optimizer converted."""
    example = _script("examples/train_tutorial.py")
    example.main(["--steps", "3"] + (["--sequential"] if form == "sequential" else []))
    out = capsys.readouterr().out
    assert "-> pyops.mlp(log_softmax_dim=1) (one op)" in out and "-> pyops.optim.Adam" in out
    assert "Epoch: 1/1.. Training Loss: " in out and "(3 steps," in out


def test_step_breakdown_sorts_perf_samples_by_kind():
    """bench/step_breakdown.py --perf: a perf report's sample counts become µs per step of each kind of code (the
    first matching kind; kernel samples and unknown code are "other")."""
    mod = _script("bench/step_breakdown.py")
    report = "\n".join([
        "# Samples: 1K of event 'cpu-clock:pppH'",
        "    40.00%           400  libtorch_cpu.so                     [.] mkl_blas_avx512_sgemm_kernel_0_b0",
        "    20.00%           200  _C.cpython-311-x86_64-linux-gnu.so  [.] pyops::cpu::(anonymous namespace)::adam_range<float>",
        "    10.00%           100  _C.cpython-311-x86_64-linux-gnu.so  [.] pyops::cpu::(anonymous namespace)::mask_bias_grad_pass",
        "     5.00%            50  _C.cpython-311-x86_64-linux-gnu.so  [.] pyops::(anonymous namespace)::mlp",
        "     5.00%            50  libpython3.11.so.1.0                [.] _PyEval_EvalFrameDefault",
        "     4.00%            40  libc.so.6                           [.] _int_malloc",
        "     4.00%            40  libc.so.6                           [.] __memmove_evex_unaligned_erms",
        "     4.00%            40  libtorch_cpu.so                     [.] torch::autograd::Engine::evaluate_function",
        "     3.00%            30  libtorch_python.so                  [.] torch::jit::toIValue",
        "     3.00%            30  libc10.so                           [.] c10::TensorImpl::TensorImpl",
        "     2.00%            20  [kernel.kallsyms]                   [k] clear_page_erms",
    ])
    kinds = mod.kinds_per_step(report, steps=10)  # a sample: 1e6 / PERF_RATE us, over 10 steps
    per = 1e6 / mod.PERF_RATE / 10
    assert {k: round(v / per) for k, v in kinds.items()} == {
        "GEMM (BLAS)": 400, "Adam kernel": 200, "pyops kernels, other": 100, "pyops glue": 50,
        "Python interpreter": 50, "malloc": 40, "other": 60, "autograd engine and nodes": 40,
        "torch Python bindings": 30, "torch C++, other": 30}


def test_step_breakdown_runs_one_computation(capsys):
    """bench/step_breakdown.py's four ways of training (one-op, ops from Python, autograd, drop-in) train the
    same model, the MLP node hands its gradients to .grad without a copy, and the phases table runs."""
    mod = _script("bench/step_breakdown.py")
    threads = torch.get_num_threads()
    try:
        mod.main(["--batch", "8", "--rounds", "1", "--block", "3"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    diffs = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "max |difference| to one-op's" in line]
    assert len(diffs) == 4 and max(diffs) <= 1e-6, out
    assert out.count("without a copy: True") == 2, out
    for name in ("one-op", "ops+step", "autograd", "drop-in"):
        assert f"  {name}" in out and "us/step" in out, out
    # the stock loop's phases: three ways, and without backward()'s Python the drop-in trains the same model
    for name in ("stock, Adam(fused=True)", "drop-in", "drop-in, engine called directly"):
        assert f"  {name} " in out, out
    assert "backward()'s Python: max |parameter difference| 0.00e+00" in out, out
    with pytest.raises(SystemExit):
        mod.main(["--block", "2"])
