"""nll_loss / cross_entropy on every backend that runs here: cpu (C++), triton (interpreter), cuda-sim (the CUDA
kernels executed by the emulator); GPU-marked tests for cuda/triton on a real device."""
import itertools
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import pyops
from helpers import (CPU_BACKENDS, GPU_BACKENDS, DispatchLog, assert_close, assert_kernels_registered, needs_backend,
                     opcheck_samples)
from pyops import _ops
from pyops.kernels import LAUNCHES as TRITON_LAUNCHES
from pyops.nn import CrossEntropyLoss, NLLLoss

# The Triton interpreter evaluates masked-off lanes too (exp of -inf - -inf, 0 / 0 of an empty mean) and numpy
# warns about them; the results of those lanes are never stored.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter")

NAMESPACES = {"cpu": "pyops", "cuda-sim": "pyops_sim", "triton": "pyops_triton"}
OPS = ["nll_loss_fwd", "nll_loss_bwd", "cross_entropy_fwd", "cross_entropy_bwd"]
REDUCTIONS = ["mean", "sum", "none"]


def ours(loss, x, t, backend, **kw):
    return (pyops.cross_entropy if loss == "cross_entropy" else pyops.nll_loss)(x, t, backend=backend, **kw)


def ref(loss, x, t, **kw):
    return (F.cross_entropy if loss == "cross_entropy" else F.nll_loss)(x, t, **kw)


def make_case(shape, ignore, weighted, dtype=torch.float64, scale=1.0):
    """Logits, targets and the loss keyword arguments for one combination.
    ignore: 'absent' (default ignore_index, never hit), 'some' (an in-range ignore_index some targets hit),
    'all' (every target is ignore_index)."""
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    x = (torch.randn(shape, dtype=dtype) * scale).requires_grad_()
    t = torch.randint(0, C, tshape)
    kw = {}
    if ignore == "some":
        kw["ignore_index"] = 2
        t.view(-1)[::2] = 2
    elif ignore == "all":
        kw["ignore_index"] = -7
        t.fill_(-7)
    if weighted:
        kw["weight"] = torch.rand(C, dtype=dtype) + 0.5
    return x, t, kw


# ---------------------------------------------------------------- gradcheck, float64, every combination
COMBOS = [("cross_entropy", w, ig, red, ls) for w, ig, red, ls in
          itertools.product([False, True], ["absent", "some", "all"], REDUCTIONS, [0.0, 0.1])]
COMBOS += [("nll_loss", w, ig, red, 0.0) for w, ig, red in
           itertools.product([False, True], ["absent", "some", "all"], REDUCTIONS)]  # no label smoothing in nll_loss


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("loss,weighted,ignore,reduction,smoothing", COMBOS,
                         ids=[f"{l}-{'w' if w else 'nw'}-ign_{i}-{r}-ls{s}" for l, w, i, r, s in COMBOS])
@pytest.mark.parametrize("shape", [(3, 5), (2, 4, 3)])
def test_gradcheck(backend, loss, weighted, ignore, reduction, smoothing, shape):
    x, t, kw = make_case(shape, ignore, weighted)
    kw["reduction"] = reduction
    if loss == "cross_entropy":
        kw["label_smoothing"] = smoothing
    x_in = x if loss == "cross_entropy" else F.log_softmax(x.detach(), 1).requires_grad_()
    out = ours(loss, x_in, t, backend, **kw)
    expected = ref(loss, x_in.detach(), t, **kw)
    assert_close(out, expected)
    if ignore == "all" and reduction == "mean":
        # 0 / 0: the loss is NaN (as PyTorch's), so a numerical Jacobian is NaN and gradcheck cannot apply;
        # PyTorch's gradient is all zeros -- check that instead.
        assert torch.isnan(out) and torch.isnan(expected)
        (g,) = torch.autograd.grad(out, x_in)
        xr = x_in.detach().clone().requires_grad_()
        (gr,) = torch.autograd.grad(ref(loss, xr, t, **kw), xr)
        assert torch.equal(g, gr) and not g.any()
        return
    # triton: fast_mode (a random projection of the Jacobian, a few evaluations instead of one per input
    # element) -- every interpreted launch costs tens of milliseconds; the full Jacobian runs on cpu and cuda-sim
    assert torch.autograd.gradcheck(lambda z: ours(loss, z, t, backend, **kw), (x_in,), fast_mode=backend == "triton")


# ---------------------------------------------------------------- parity, float32
PARITY_SHAPES = [(64, 10), (3, 423), (67, 1000), (2, 5, 7, 3), (5,), (2, 3000), (9, 32), (9, 33)]  # 32: CPU lanes path limit


def _check_parity(loss, backend, shape, scale, weighted, ignore, smoothing, reduction, dtype=torch.float32,
                  ref_dtype=None, **tol):
    x, t, kw = make_case(shape, ignore, weighted, dtype=dtype, scale=scale)
    kw.update(reduction=reduction)
    if loss == "cross_entropy":
        kw["label_smoothing"] = smoothing
    out = ours(loss, x, t, backend, **kw)
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, g)
    rd = ref_dtype or dtype
    xr = x.detach().to(rd).requires_grad_()
    kwr = {k: (v.to(rd) if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    expected = ref(loss, xr, t, **kwr)
    (gxr,) = torch.autograd.grad(expected, xr, g.to(rd))
    assert out.shape == expected.shape and out.dtype == dtype and gx.dtype == dtype
    assert_close(out.to(rd), expected, dtype=dtype, **tol)
    assert_close(gx.to(rd), gxr, dtype=dtype, **tol)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", PARITY_SHAPES)
@pytest.mark.parametrize("scale", [1.0, 1e4])
@pytest.mark.parametrize("variant", ["plain", "weighted-ignore-smoothing"])
def test_parity_float32(backend, shape, scale, variant):
    # float32 against PyTorch: rtol 1e-4 (docs/testing.md, "Tolerances": reductions over >= 1000 elements -- the loss
    # sums up to 67 x 1000 terms; with logits x1e4 every row's loss is ~1e4, so its float32 rounding is
    # larger than 1e-6 in absolute terms)
    fancy = variant != "plain"
    _check_parity("cross_entropy", backend, shape, scale, fancy, "some" if fancy else "absent", 0.1 if fancy else 0.0,
                  "mean", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(64, 10), (2, 5, 7, 3)])
def test_parity_reductions(backend, loss, reduction, shape):
    _check_parity(loss, backend, shape, 1.0, True, "some", 0.0, reduction)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_neg_inf_logits(backend):
    x = torch.randn(4, 9)
    x[0, 3] = float("-inf")   # a -inf that is not the target
    x[1, ::2] = float("-inf")
    t = torch.tensor([1, 1, 4, 8])
    for ls in (0.0, 0.2):  # with smoothing the -inf enters the smoothing sum: the loss is inf, as PyTorch's
        xa = x.clone().requires_grad_()
        out = pyops.cross_entropy(xa, t, reduction="none", label_smoothing=ls, backend=backend)
        expected = F.cross_entropy(x, t, reduction="none", label_smoothing=ls)
        assert_close(out, expected)
        if ls == 0.0:
            (g,) = torch.autograd.grad(out.sum(), xa)
            xr = x.clone().requires_grad_()
            (gr,) = torch.autograd.grad(F.cross_entropy(xr, t, reduction="none").sum(), xr)
            assert_close(g, gr)
        else:
            assert torch.isinf(out[:2]).all()


def _rows_and_grads(x, t, backend):
    """Per-row losses (reduction none) and the gradient of their sum: pyops on backend, then stock."""
    xa, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = pyops.cross_entropy(xa, t, reduction="none", backend=backend)
    expected = F.cross_entropy(xr, t, reduction="none")
    return out, torch.autograd.grad(out.sum(), xa)[0], expected, torch.autograd.grad(expected.sum(), xr)[0]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("C", [9, 40])
def test_infinite_lse_rows_are_nan_like_pytorch(backend, C):
    # a row of -inf only and a row holding +inf: lse is -inf / +inf, the loss and every gradient of the row NaN
    x = torch.randn(3, C)
    x[0, :] = float("-inf")
    x[1, 4] = float("inf")
    out, g, expected, gr = _rows_and_grads(x, torch.tensor([1, 4, 2]), backend)
    assert torch.isnan(gr[:2]).all() and torch.isnan(expected[:2]).all()  # PyTorch's answer, which we copy
    assert_close(out, expected)  # (NaN where PyTorch has NaN)
    assert_close(g, gr)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("C", [10, 40])
def test_nan_logits_propagate(backend, C):
    # a NaN in a row makes that row's loss and gradient NaN (PyTorch's behaviour); the other rows are untouched
    x = torch.randn(3, C)
    x[1, 7] = float("nan")
    out, g, expected, gr = _rows_and_grads(x, torch.tensor([0, 2, 5]), backend)
    assert torch.isnan(out[1]) and torch.isnan(g[1]).all()
    assert_close(out, expected)
    assert_close(g, gr)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["transposed", "sliced_rows", "sliced_cols", "permuted_4d", "channels_last"])
def test_non_contiguous_input(backend, layout):
    base = torch.randn(12, 40)
    x = {
        "transposed": base.t()[:, :7],           # class stride 40
        "sliced_rows": base[::3],                # row stride 120
        "sliced_cols": base[:, 3:31],            # unit class stride, unaligned start
        "permuted_4d": torch.randn(3, 4, 5, 6).permute(0, 3, 1, 2),   # (N, C, d1, d2) with odd strides
        "channels_last": torch.randn(2, 6, 3, 4).to(memory_format=torch.channels_last),  # unit class stride, D > 1
    }[layout]
    assert not x.is_contiguous()
    C = x.shape[1]
    t = torch.randint(0, C, (x.shape[0], *x.shape[2:]))
    w = torch.rand(C)
    x0 = x.clone()
    for ls in (0.0, 0.1):
        xa = x.detach().requires_grad_()
        out = pyops.cross_entropy(xa, t, w, reduction="sum", label_smoothing=ls, backend=backend)
        (g,) = torch.autograd.grad(out, xa)
        xr = x.detach().requires_grad_()
        expected = F.cross_entropy(xr, t, w, reduction="sum", label_smoothing=ls)
        (gr,) = torch.autograd.grad(expected, xr)
        assert_close(out, expected, rtol=1e-5, atol=1e-5)
        assert_close(g, gr)
    out = pyops.nll_loss(x, t, w, reduction="none", backend=backend)
    assert_close(out, F.nll_loss(x, t, w, reduction="none"))
    assert torch.equal(x, x0)  # the caller's logits are never written


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_grad_of_none_reduction_is_expanded(backend, loss):
    # out.sum().backward() hands the backward a stride-0 grad_loss
    x, t, kw = make_case((6, 11), "some", True, dtype=torch.float32)
    (g,) = torch.autograd.grad(ours(loss, x, t, backend, reduction="none", **kw).sum() * 3, x)
    xr = x.detach().clone().requires_grad_()
    (gr,) = torch.autograd.grad(ref(loss, xr, t, reduction="none", **kw).sum() * 3, xr)
    assert_close(g, gr)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch(backend, reduction):
    x = torch.randn(0, 5, requires_grad=True)
    t = torch.zeros(0, dtype=torch.long)
    for loss in ("cross_entropy", "nll_loss"):
        out = ours(loss, x, t, backend, reduction=reduction)
        assert_close(out, ref(loss, x.detach(), t, reduction=reduction))  # mean of nothing: NaN, as PyTorch
        (g,) = torch.autograd.grad(out.sum(), x)
        assert g.shape == x.shape


def test_uint8_targets_and_legacy_arguments():
    x = torch.randn(4, 6)
    t = torch.tensor([0, 5, 2, 3])
    assert_close(pyops.cross_entropy(x, t.to(torch.uint8), backend="cpu"), F.cross_entropy(x, t))
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        out = pyops.nll_loss(x, t, size_average=False, backend="cpu")
    assert_close(out, F.nll_loss(x, t, reduction="sum"))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_grad_skips_autograd(backend):
    x, t = torch.randn(5, 7, requires_grad=True), torch.randint(0, 7, (5,))
    with torch.no_grad():
        out = pyops.cross_entropy(x, t, backend=backend)
        out2 = pyops.nll_loss(x, t, backend=backend)
    assert out.grad_fn is None and out2.grad_fn is None
    assert_close(out, F.cross_entropy(x.detach(), t))
    assert_close(out2, F.nll_loss(x.detach(), t))


def test_torch_backend_is_stock():
    x, t = torch.randn(5, 7), torch.randint(0, 7, (5,))
    assert torch.equal(pyops.cross_entropy(x, t, label_smoothing=0.3, backend="torch"),
                       F.cross_entropy(x, t, label_smoothing=0.3))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_weight_requires_grad_is_refused_like_pytorch(backend):
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.rand(4, requires_grad=True)
    out = pyops.cross_entropy(x, torch.tensor([0, 1, 3]), w, backend=backend)
    with pytest.raises(RuntimeError, match="derivative for 'weight' is not implemented"):
        out.backward()


# ---------------------------------------------------------------- half precision (emulated CUDA, Triton fp16)
@needs_backend("cuda-sim")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 423), (5, 1024), (3, 2000), (2, 5, 7, 3)])
def test_half_precision_cuda_kernels(dtype, shape):
    # fp16/bf16 storage, fp32 accumulation (the CUDA code path, run by the emulator); reference in float32
    for loss, smoothing in [("cross_entropy", 0.0), ("cross_entropy", 0.1), ("nll_loss", 0.0)]:
        _check_parity(loss, "cuda-sim", shape, 1.0, True, "some", smoothing, "mean", dtype=dtype,
                      ref_dtype=torch.float32)


@needs_backend("triton")
def test_half_precision_triton():
    # the interpreter does fp16, not bf16 (a bf16 tl.dot there multiplies raw bit patterns: docs/testing.md, Tier 2)
    _check_parity("cross_entropy", "triton", (3, 423), 1.0, True, "some", 0.1, "mean", dtype=torch.float16,
                  ref_dtype=torch.float32)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(16, 10), (4, 300)])  # (16, 10): the CPU's lanes-across-rows path
@pytest.mark.parametrize("scale", [40.0, 1e4])
def test_large_logits_keep_float32_precision(backend, shape, scale):
    """The gradient p_c - [c == t] stays as accurate as stock's however large the logits: the forward keeps
    lse in float64 and the backward subtracts it as hi + lo (with a float32 lse, p_c = exp(x_c - lse) was off by
    up to |lse| * 6e-8 relatively: ~6e-4 of the largest gradient at logits ~1e4)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(shape, generator=g) * scale
    t = torch.randint(0, shape[1], (shape[0],), generator=g)
    xd = x.double().requires_grad_()
    F.cross_entropy(xd, t, label_smoothing=0.1).backward()
    xs = x.clone().requires_grad_()
    F.cross_entropy(xs, t, label_smoothing=0.1).backward()
    xo = x.clone().requires_grad_()
    pyops.cross_entropy(xo, t, label_smoothing=0.1, backend=backend).backward()
    err = lambda gx: ((gx.double() - xd.grad).abs().max() / xd.grad.abs().max()).item()  # noqa: E731
    assert err(xo.grad) <= max(2 * err(xs.grad), 5e-7), (err(xo.grad), err(xs.grad))


# ---------------------------------------------------------------- nothing of size N x C besides the gradient
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_saves_only_per_row_statistics(backend):
    N, C = 32, 1000
    x = torch.randn(N, C, requires_grad=True)
    t = torch.randint(0, C, (N,))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda s: saved.append(s) or s, lambda s: s):
        out = pyops.cross_entropy(x, t, label_smoothing=0.1, backend=backend)
    big = [s for s in saved if s.numel() >= N * C]
    # the only N x C tensor kept is the caller's logits themselves (a reference, no copy)
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr() and big[0].shape == x.shape
    assert all(s.numel() <= N for s in saved if s is not big[0])
    lse = [s for s in saved if s.dtype == torch.float64 and s.shape == (N,)]
    assert len(lse) == 1  # the per-row log-sum-exp (float64: see test_large_logits_keep_float32_precision)
    out.backward()


def _big_allocations(fn, nbytes):
    """Sizes of the CPU allocations of at least nbytes that fn() makes (the allocator's own events, via the
    profiler: every CPU tensor allocation, also temporaries inside C++ ops)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.nbytes() >= nbytes]


@pytest.mark.parametrize("backend", [b for b in CPU_BACKENDS if b != "triton"])  # the interpreter copies its args
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_fused_allocates_only_the_gradient(backend, smoothing):
    N, C = 16, 2048
    nc_bytes = N * C * 4
    x = torch.randn(N, C, requires_grad=True)
    t = torch.randint(0, C, (N,))
    w = torch.rand(C)
    box = {}

    def fwd():
        box["out"] = pyops.cross_entropy(x, t, w, label_smoothing=smoothing, backend=backend)

    def bwd():
        box["g"] = torch.autograd.grad(box["out"], x)[0]

    assert _big_allocations(fwd, nc_bytes // 2) == []          # forward: nothing the size of the logits
    assert _big_allocations(bwd, nc_bytes // 2) == [nc_bytes]  # backward: the gradient, nothing else
    # stock PyTorch, measured the same way, keeps log-probabilities and allocates an N x C gradient of them
    xr = x.detach().requires_grad_()
    stock = _big_allocations(lambda: F.cross_entropy(xr, t, w, label_smoothing=smoothing).backward(), nc_bytes // 2)
    assert len(stock) >= 3


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_dispatched_op_per_direction(backend):
    x = torch.randn(8, 10, requires_grad=True)
    t = torch.randint(0, 10, (8,))
    grad = torch.ones(())
    with DispatchLog() as fwd:
        out = pyops.cross_entropy(x, t, backend=backend)
    with DispatchLog() as bwd:
        torch.autograd.grad(out, x, grad)
    ns = NAMESPACES[backend]
    assert fwd.names == [f"{ns}.cross_entropy_fwd"]
    assert bwd.names == [f"{ns}.cross_entropy_bwd"]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", ["cross_entropy", "nll_loss"])
def test_one_node_to_the_logits(backend, op):
    """One autograd node, its one edge to the logits' producer; a C++ node on every backend."""
    x = torch.randn(8, 10, requires_grad=True)
    h = x * 2  # a producer node: the loss node's edge must lead to it, not to a leaf
    out = getattr(pyops, op)(h, torch.randint(0, 10, (8,)), torch.rand(10), backend=backend)
    assert [fn for fn, _ in out.grad_fn.next_functions if fn is not None] == [h.grad_fn]
    assert "CppNode" in out.grad_fn.name(), out.grad_fn.name()
    out.backward()
    assert x.grad is not None and x.grad.shape == x.shape


# ---------------------------------------------------------------- which kernels ran
@needs_backend("cuda-sim")
@pytest.mark.parametrize("C,variant", [(10, "warp"), (1024, "warp"), (1025, "block"), (4096, "block")])
def test_cuda_variant(C, variant):
    _ops.sim_reset_launch_counts()
    x = torch.randn(3, C, requires_grad=True)
    pyops.cross_entropy(x, torch.randint(0, C, (3,)), backend="cuda-sim").backward()
    counts = _ops.sim_launch_counts()
    other = "block" if variant == "warp" else "warp"
    assert counts == {f"cross_entropy_fwd_{variant}_kernel": 1, "loss_reduce_kernel": 1,
                      f"cross_entropy_bwd_{variant}_kernel": 1}
    assert f"cross_entropy_fwd_{other}_kernel" not in counts


@needs_backend("cuda-sim")
def test_cuda_plan_vectorizes_when_it_can():
    # vector width and variant come from the plan the launch uses (kernels/cuda/cross_entropy.cuh); checked
    # here through the results of aligned / unaligned / strided inputs, which take different code paths
    for x in [torch.randn(4, 16), torch.randn(4, 17)[:, 1:], torch.randn(16, 4).t(), torch.randn(4, 2048)]:
        t = torch.randint(0, x.shape[1], (4,))
        xa = x.detach().requires_grad_()
        out = pyops.cross_entropy(xa, t, label_smoothing=0.1, reduction="none", backend="cuda-sim")
        (g,) = torch.autograd.grad(out.sum(), xa)
        xr = x.detach().requires_grad_()
        (gr,) = torch.autograd.grad(F.cross_entropy(xr, t, label_smoothing=0.1, reduction="none").sum(), xr)
        assert_close(out, F.cross_entropy(x, t, label_smoothing=0.1, reduction="none"))
        assert_close(g, gr)


@needs_backend("cuda-sim")
def test_cuda_nll_kernels():
    _ops.sim_reset_launch_counts()
    x = torch.randn(5, 8, requires_grad=True)
    pyops.nll_loss(x, torch.randint(0, 8, (5,)), reduction="sum", backend="cuda-sim").backward()
    pyops.nll_loss(x, torch.randint(0, 8, (5,)), reduction="none", backend="cuda-sim").sum().backward()
    assert _ops.sim_launch_counts() == {"nll_loss_fwd_kernel": 2, "loss_reduce_kernel": 1, "nll_loss_bwd_kernel": 2}


@needs_backend("triton")
def test_triton_launches():
    TRITON_LAUNCHES.clear()
    x = torch.randn(3, 5000, requires_grad=True)  # C > MAX_BLOCK: the column loop runs twice
    pyops.cross_entropy(x, torch.randint(0, 5000, (3,)), backend="triton").backward()
    pyops.nll_loss(x, torch.randint(0, 5000, (3,)), reduction="none", backend="triton").sum().backward()
    assert TRITON_LAUNCHES == {"cross_entropy_fwd_kernel": 1, "loss_reduce_kernel": 1, "cross_entropy_bwd_kernel": 1,
                               "nll_loss_fwd_kernel": 1, "nll_loss_bwd_kernel": 1}


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_bad_input(backend, loss):
    x = torch.randn(3, 5)
    t = torch.tensor([0, 4, 1])

    def call(*a, **kw):
        return ours(loss, *a, backend=backend, **kw)

    with pytest.raises(TypeError, match=rf"{loss}: expected target to hold class indices of dtype int64 "
                                        r"\(torch.long\), got torch.float32 \(class-probability targets"):
        call(x, t.float())
    with pytest.raises(TypeError, match=rf"{loss}: expected target to hold class indices of dtype int64"):
        call(x, t.int())
    with pytest.raises(ValueError, match=rf"{loss}: expected target of shape \[3\] for input of shape \[3, 5\].*"
                                         r"got \[2\]"):
        call(x, t[:2])
    with pytest.raises(ValueError, match=rf"{loss}: expected target of shape \[3\] .*got \[3, 1\]"):
        call(x, t[:, None])
    with pytest.raises(ValueError, match=rf"{loss}: expected target of shape \[2, 7\] for input of shape "
                                         r"\[2, 5, 7\]"):
        call(torch.randn(2, 5, 7), torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"{loss}: expected weight to have one entry per class, shape \[5\], "
                                         r"got \[4\]"):
        call(x, t, weight=torch.ones(4))
    with pytest.raises(TypeError, match=rf"{loss}: expected weight to have input's dtype"):
        call(x, t, weight=torch.ones(5, dtype=torch.float64))
    with pytest.raises(TypeError, match=rf"{loss}: expected input to be a floating-point tensor .*torch.int64"):
        call(torch.arange(15).view(3, 5), t)
    with pytest.raises(ValueError, match=rf"{loss}: 'avg' is not a valid value for reduction"):
        call(x, t, reduction="avg")
    if loss == "cross_entropy":
        with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be between 0.0 and 1.0, got 1.5"):
            call(x, t, label_smoothing=1.5)


# out-of-range targets: raised synchronously on cpu/triton (IndexError, PyTorch's type and wording); under the
# emulator the kernel's device-side check stops the launch and the glue raises RuntimeError with its message
OUT_OF_RANGE = {
    "cpu": (IndexError, r"Target {v} is out of bounds: expected a class index in \[0, 5\) or ignore_index \(-100\)"),
    "triton": (IndexError, r"Target {v} is out of bounds: expected a class index in \[0, 5\) or ignore_index \(-100\)"),
    "cuda-sim": (RuntimeError, r"target out of bounds \(expected a class index in \[0, C\) or ignore_index\)"),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
@pytest.mark.parametrize("bad", [5, -1, 1 << 40])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_out_of_range_targets(backend, loss, bad, reduction):
    exc, msg = OUT_OF_RANGE[backend]
    x = torch.randn(3, 5, requires_grad=True)
    t = torch.tensor([0, bad, 1])
    with pytest.raises(exc, match=msg.format(v=bad)):
        ours(loss, x, t, backend, reduction=reduction)
    # the backward ops check too (they read w[t]): called directly with a good forward's results
    ns = getattr(torch.ops, NAMESPACES[backend])
    good = torch.tensor([0, 2, 1])
    if loss == "cross_entropy":
        out, lse, tw = ns.cross_entropy_fwd(x.detach(), good, None, 1, -100, 0.0)
        with pytest.raises(exc, match=msg.format(v=bad)):
            ns.cross_entropy_bwd(torch.ones(()), x.detach(), t, None, lse, tw, 1, -100, 0.0)
    else:
        out, tw = ns.nll_loss_fwd(x.detach(), good, None, 1, -100)
        with pytest.raises(exc, match=msg.format(v=bad)):
            ns.nll_loss_bwd(torch.ones(()), x.detach(), t, None, tw, 1, -100)


def test_cpp_ops_check_their_arguments():
    # direct torch.ops calls skip the Python checks; the C++ ops repeat them
    x, t = torch.randn(3, 5), torch.tensor([0, 4, 1])
    with pytest.raises(ValueError, match=r"cross_entropy: reduction 3 is not one of 0 \(none\), 1 \(mean\), 2 \(sum\)"):
        torch.ops.pyops.cross_entropy_fwd(x, t, None, 3, -100, 0.0)
    with pytest.raises(ValueError, match=r"cross_entropy_backward: expected lse to be the contiguous float64 tensor "
                                         r"of shape \[3\]"):
        torch.ops.pyops.cross_entropy_bwd(torch.ones(()), x, t, None, torch.zeros(4), torch.ones(2), 1, -100, 0.0)
    with pytest.raises(ValueError, match=r"expected lse to be the contiguous float64 tensor .* got Float of shape"):
        torch.ops.pyops.cross_entropy_bwd(torch.ones(()), x, t, None, torch.zeros(3), torch.ones(2), 1, -100, 0.0)
    with pytest.raises(ValueError, match=r"nll_loss_backward: expected a 0-D grad_loss \(reduction mean/sum\)"):
        torch.ops.pyops.nll_loss_bwd(torch.ones(3), x, t, None, torch.ones(2), 1, -100)
    with pytest.raises(ValueError, match=r"nll_loss_backward: expected total_weight to be the contiguous Float tensor "
                                         r"of shape \[2\] the forward returned"):
        torch.ops.pyops.nll_loss_bwd(torch.ones(()), x, t, None, torch.ones(()), 1, -100)
    with pytest.raises(ValueError, match=r"nll_loss: expected input of shape \(C\), \(N, C\) or \(N, C, d1, ...\), "
                                         r"got a 0-D tensor"):
        torch.ops.pyops.nll_loss_fwd(torch.tensor(1.0), torch.tensor(0), None, 1, -100)
    with pytest.raises(TypeError, match=r"cross_entropy: backend 'cpu' supports float32, float64"):
        pyops.cross_entropy(x.half(), t, backend="cpu")


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_backend_device_mismatch(loss):
    with pytest.raises(pyops.BackendError, match=rf"{loss}: backend 'cuda' cannot run here: it runs on CUDA tensors"):
        ours(loss, torch.randn(2, 3), torch.tensor([0, 1]), "cuda")


# ---------------------------------------------------------------- registered ops
def _op_samples(op):
    x = torch.randn(6, 7, dtype=torch.float64)
    t = torch.tensor([0, 6, 2, -100, 3, 3])
    w = torch.rand(7, dtype=torch.float64)
    x3, t3 = torch.randn(2, 5, 3), torch.randint(0, 5, (2, 3))
    if op == "cross_entropy_fwd":
        return [(x, t, None, 1, -100, 0.0), (x, t, w, 0, -100, 0.1), (x3, t3, None, 2, 3, 0.2),
                (torch.randn(7, 6, dtype=torch.float64).t(), t.clamp(0), None, 1, -100, 0.0), (torch.randn(5), torch.tensor(2), None, 0, -100, 0.0)]
    if op == "nll_loss_fwd":
        return [(x, t, None, 1, -100), (x, t, w, 0, -100), (x3, t3, None, 2, 3)]
    if op == "cross_entropy_bwd":
        out = []
        for xx, tt, ww, red, ign, ls in _op_samples("cross_entropy_fwd")[:3]:
            loss, lse, tw = torch.ops.pyops.cross_entropy_fwd(xx, tt, ww, red, ign, ls)
            out.append((torch.randn_like(loss), xx, tt, ww, lse, tw, red, ign, ls))
        return out
    out = []
    for xx, tt, ww, red, ign in _op_samples("nll_loss_fwd"):
        loss, tw = torch.ops.pyops.nll_loss_fwd(xx, tt, ww, red, ign)
        out.append((torch.randn_like(loss), xx, tt, ww, tw, red, ign))
    return out


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_opcheck(backend, op):
    opcheck_samples(NAMESPACES[backend], op, _op_samples(op))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", ["cross_entropy", "nll_loss"])
def test_opcheck_autograd_ops(backend, op):
    # the differentiable ops of csrc/autograd.cpp, with logits that require grad (autograd registration, fakes)
    samples = [(x.detach().requires_grad_(), *rest) for x, *rest in _op_samples(op + "_fwd")]
    opcheck_samples(NAMESPACES[backend], op, samples)


def test_cuda_kernels_registered():
    assert_kernels_registered(OPS)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    crit = CrossEntropyLoss(weight=torch.rand(10) + 0.5, label_smoothing=0.1, backend=backend)

    def step(x, t):
        return pyops.cross_entropy(model(x), t, backend=backend) + crit(model(x), t)

    x, t = torch.randn(8, 12), torch.randint(0, 10, (8,))
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    out = compiled(x, t)
    grads = torch.autograd.grad(out, list(model.parameters()))
    expected = step(x, t)
    expected_grads = torch.autograd.grad(expected, list(model.parameters()))
    assert_close(out, expected)
    for g, e in zip(grads, expected_grads):
        assert_close(g, e)


# ---------------------------------------------------------------- nn modules
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_modules_match_torch(backend):
    w = torch.rand(6) + 0.5
    x, t = torch.randn(7, 6), torch.randint(0, 6, (7,))
    t[2] = 4
    for ours_mod, stock in [(CrossEntropyLoss(w, ignore_index=4, label_smoothing=0.05, backend=backend),
                             torch.nn.CrossEntropyLoss(w, ignore_index=4, label_smoothing=0.05)),
                            (NLLLoss(w, reduction="sum", backend=backend), torch.nn.NLLLoss(w, reduction="sum"))]:
        assert isinstance(ours_mod, type(stock))
        assert torch.equal(ours_mod.state_dict()["weight"], stock.state_dict()["weight"])
        xin = F.log_softmax(x, 1) if isinstance(stock, torch.nn.NLLLoss) else x
        assert_close(ours_mod(xin, t), stock(xin, t))
    assert "backend='cpu'" in repr(CrossEntropyLoss(backend="cpu"))
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        assert NLLLoss(size_average=False).reduction == "sum"  # the deprecated arguments, handled by torch


# ---------------------------------------------------------------- real GPU
@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(64, 10), (3, 423), (67, 1000), (64, 1025), (8, 32000), (2, 5, 7, 3)])
def test_gpu_parity(backend, dtype, shape):
    C = shape[1]
    x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    t = torch.randint(0, C, (shape[0], *shape[2:]), device="cuda")
    w = torch.rand(C, device="cuda", dtype=dtype) + 0.5
    out = pyops.cross_entropy(x, t, w, label_smoothing=0.1, backend=backend)
    (g,) = torch.autograd.grad(out, x)
    xr = x.detach().float().requires_grad_()
    expected = F.cross_entropy(xr, t, w.float(), label_smoothing=0.1)
    (gr,) = torch.autograd.grad(expected, xr)
    tol = {} if dtype != torch.float32 else dict(rtol=1e-4, atol=1e-6)
    assert_close(out.float(), expected, dtype=dtype, **tol)
    assert_close(g.float(), gr, dtype=dtype, **tol)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_gradcheck(backend):
    x = torch.randn(5, 7, device="cuda", dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 6, 2, 2, 3], device="cuda")
    assert torch.autograd.gradcheck(lambda z: pyops.cross_entropy(z, t, label_smoothing=0.1, backend=backend), (x,))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_out_of_range_target_is_a_device_assert(backend):
    # a device-side assert leaves the CUDA context unusable: run it in a child process
    code = (f"import torch, pyops; x = torch.randn(4, 5, device='cuda'); t = torch.tensor([0, 9, 1, 2], device='cuda')\n"
            f"pyops.cross_entropy(x, t, backend={backend!r}); torch.cuda.synchronize()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "device-side assert" in out.stderr and "target out of bounds" in (out.stdout + out.stderr)
