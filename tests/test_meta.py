"""The backend ops' Meta kernels (csrc/meta.cpp): one per op in every namespace, made of the op's own C++ checks
and output allocation (csrc/<op>.h) -- no Python fake beside them -- and what torch.compile traces, dynamic
shapes included."""
import pytest
import torch
import torch.nn.functional as F

import pyops
from helpers import CPU_BACKENDS, assert_close
from pyops import _ops

OPS = ["softmax_fwd", "log_softmax_fwd", "softmax_bwd", "log_softmax_bwd", "linear_relu_fwd", "linear_relu_bwd",
       "mlp_fwd", "mlp_bwd", "nll_loss_fwd", "nll_loss_bwd", "cross_entropy_fwd", "cross_entropy_bwd"]
NAMESPACES = sorted({_ops.NAMESPACES[b] for b in CPU_BACKENDS} | {"pyops", "pyops_triton"})


@pytest.mark.parametrize("ns", NAMESPACES)
def test_meta_kernels_are_the_cpp_checks(ns):
    from torch._library import simple_registry

    for op in OPS:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{ns}::{op}", "Meta"), op
        assert simple_registry.singleton.find(f"{ns}::{op}").fake_impl.kernel is None, f"{op} has a Python fake"
    ops = getattr(torch.ops, ns)
    meta = dict(device="meta")
    # the same messages as the kernels', on meta tensors
    with pytest.raises(RuntimeError, match=r"linear: input has 6 features \(last dim of shape \[3, 6\]\)"):
        ops.linear_relu_fwd(torch.empty(3, 6, **meta), torch.empty(4, 5, **meta), None, False)
    with pytest.raises(RuntimeError, match=r"softmax_backward: grad_output shape \[2, 3\] does not match output shape"):
        ops.softmax_bwd(torch.empty(2, 3, **meta), torch.empty(3, 2, **meta), 1)
    with pytest.raises(ValueError, match=r"cross_entropy: expected target of shape \[4\] for input of shape \[4, 3\]"):
        ops.cross_entropy_fwd(torch.empty(4, 3, **meta), torch.empty(5, dtype=torch.long, **meta), None, 1, -100, 0.0)
    # the outputs' shapes, dtypes and strides
    y = ops.softmax_fwd(torch.empty(2, 3, 5, **meta), 1)
    assert y.shape == (2, 3, 5) and y.stride() == (15, 1, 3)  # dim last in memory, as the kernels write it
    loss, lse, tw = ops.cross_entropy_fwd(torch.empty(4, 3, 2, **meta), torch.empty(4, 2, dtype=torch.long, **meta),
                                          None, 0, -100, 0.0)
    assert loss.shape == (4, 2) and lse.shape == (8,) and lse.dtype == torch.float64 and tw.shape == (0,)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_compile_dynamic_shapes(backend):
    """One graph for two batch sizes (symbolic sizes through every Meta kernel), forward and backward as eager."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()

    def make(impl):
        def f(x, ws, bs, t):
            h = impl["mlp"](x, ws, bs)
            return impl["ce"](impl["log_softmax"](impl["softmax"](h, 1) * 4, 1), t) + impl["nll"](h.log_softmax(1), t)
        return f

    ours = {"mlp": lambda x, ws, bs: pyops.mlp(x, ws, bs, backend=backend),
            "softmax": lambda x, d: pyops.softmax(x, d, backend=backend),
            "log_softmax": lambda x, d: pyops.log_softmax(x, d, backend=backend),
            "ce": lambda x, t: pyops.cross_entropy(x, t, backend=backend),
            "nll": lambda x, t: pyops.nll_loss(x, t, backend=backend)}

    def reference(x, ws, bs):
        for i, (w, b) in enumerate(zip(ws, bs)):
            x = F.linear(x, w, b)
            x = F.relu(x) if i + 1 < len(ws) else x
        return x

    stock = {"mlp": reference, "softmax": F.softmax, "log_softmax": F.log_softmax, "ce": F.cross_entropy,
             "nll": F.nll_loss}
    counter = CompileCounterWithBackend("aot_eager")
    compiled, eager = torch.compile(make(ours), backend=counter, dynamic=True, fullgraph=True), make(stock)
    ws = [torch.randn(7, 6, dtype=torch.float64, requires_grad=True), torch.randn(4, 7, dtype=torch.float64,
                                                                                   requires_grad=True)]
    bs = [torch.randn(7, dtype=torch.float64, requires_grad=True), None]
    frames = []
    for n in (5, 9):
        x = torch.randn(n, 6, dtype=torch.float64, requires_grad=True)
        t = torch.randint(0, 4, (n,))
        got = compiled(x, ws, bs, t)
        grads = torch.autograd.grad(got, [x, *ws, bs[0]])
        want = eager(x, ws, bs, t)
        assert_close(got, want)
        for g, e in zip(grads, torch.autograd.grad(want, [x, *ws, bs[0]])):
            assert_close(g, e)
        frames.append(counter.frame_count)
    assert frames[0] >= 1 and frames[1] == frames[0], frames  # the second batch size compiled nothing new
