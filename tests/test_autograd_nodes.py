"""The autograd nodes that csrc/autograd.cpp writes out (softmax, log_softmax, linear_relu, mlp: a
torch::autograd::Node each, not a torch::autograd::Function) behave as a Function's node would, on every
backend that runs here: saved tensors released after a backward and version-checked, retain_graph keeping them,
no node without grad mode or without an input that requires grad, a forward-mode tangent refused by name."""
import pytest
import torch
import torch.autograd.forward_ad as fwAD

import pyops
from helpers import CPU_BACKENDS

# case -> (the op's name in its errors, the node's name)
CASES = {
    "mlp": ("mlp", "pyops::MLPBackward"),
    "mlp+log_softmax": ("mlp", "pyops::MLPBackward"),
    "linear_relu": ("linear_relu", "pyops::LinearReluBackward"),
    "linear": ("linear_relu", "pyops::LinearReluBackward"),
    "softmax": ("softmax", "pyops::SoftmaxBackward"),
    "log_softmax": ("log_softmax", "pyops::LogSoftmaxBackward"),
}


def op_call(case, backend):
    """(call(x, params) -> output, x, params): the case's op on fresh float32 tensors, params requiring grad
    (for the softmaxes, which have none, the input requires grad instead)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=g)
    ws = [torch.randn(4, 5, generator=g).requires_grad_(), torch.randn(3, 4, generator=g).requires_grad_()]
    bs = [torch.randn(4, generator=g).requires_grad_(), torch.randn(3, generator=g).requires_grad_()]
    if case.startswith("mlp"):
        dim = 1 if case == "mlp+log_softmax" else None
        return (lambda x, ps: pyops.mlp(x, ps[:2], ps[2:], log_softmax_dim=dim, backend=backend)), x, ws + bs
    if case in ("linear_relu", "linear"):
        op = getattr(pyops, case)
        return (lambda x, ps: op(x, ps[0], ps[1], backend=backend)), x, [ws[0], bs[0]]
    op = getattr(pyops, case)
    return (lambda x, ps: op(x, 1, backend=backend)), x.requires_grad_(), []


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", list(CASES))
def test_written_out_node_keeps_what_an_autograd_function_gives(backend, case):
    name, node = CASES[case]
    call, x, ps = op_call(case, backend)
    leaves = ps or [x]
    y = call(x, ps)
    assert y.grad_fn.name() == node
    y.pow(2).sum().backward(retain_graph=True)
    first = [t.grad.clone() for t in leaves]
    y.pow(2).sum().backward()  # the graph was kept: the same gradients again, accumulated
    assert all(torch.equal(t.grad, 2 * g) for t, g in zip(leaves, first))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()
    # a saved tensor modified in place before the backward: the node's output (the softmaxes, the ReLU mask,
    # mlp's log-softmax) or else a weight -- PyTorch's version check names it
    y = call(x, ps)
    if case in ("mlp", "linear"):
        with torch.no_grad():
            ps[0].mul_(1.0)
    else:
        y.add_(0.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    with torch.no_grad():
        assert call(x, ps).grad_fn is None
    frozen = [p.detach() for p in ps]
    if ps:  # nothing requires grad: no node; only the input does: its gradient alone
        assert call(x, frozen).grad_fn is None
        y = call(x.requires_grad_(), frozen)
        y.sum().backward()
        assert x.grad is not None and all(p.grad is None for p in frozen)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.detach(), torch.ones_like(x))
        with pytest.raises(RuntimeError, match=f"{name}: forward-mode automatic differentiation is not implemented"):
            call(dual, ps)
