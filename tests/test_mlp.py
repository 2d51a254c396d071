"""pyops.mlp / pyops.nn.MLP: the whole MLP as one op each way, on every backend that runs here (cpu,
cuda-sim, triton in the interpreter)."""
import pytest
import torch
import torch.nn.functional as F

import pyops
from helpers import CPU_BACKENDS, DispatchLog, assert_close
from pyops import _ops

GEMM_TOL = dict(rtol=1e-4, atol=1e-5)  # as tests/test_linear_relu.py


def params(sizes, dtype=torch.float64, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    ws = [(torch.randn(b, a, generator=g, dtype=dtype) / a ** 0.5).requires_grad_()
          for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [torch.randn(b, generator=g, dtype=dtype).requires_grad_() if bias else None for b in sizes[1:]]
    return ws, bs


def reference(x, ws, bs):
    for i, (w, b) in enumerate(zip(ws, bs)):
        x = F.linear(x, w, b)
        x = F.relu(x) if i + 1 < len(ws) else x
    return x


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("sizes,shape", [((5, 4, 3, 2), (6, 5)), ((3, 2), (4, 3)), ((4, 6, 3), (2, 3, 4))])
@pytest.mark.parametrize("bias", [True, False])
def test_gradcheck(backend, sizes, shape, bias):
    ws, bs = params(sizes, bias=bias)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    L = len(ws)
    leaves = (x, *ws, *[b for b in bs if b is not None])

    def fn(x, *p):
        return pyops.mlp(x, p[:L], p[L:] if bias else None, backend=backend)

    assert torch.autograd.gradcheck(fn, leaves)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("batch", [64, 3])
def test_parity_float32_seed_network(backend, batch):
    """The MNIST MLP's shapes, against F.linear/F.relu, and equal to the per-layer pyops ops on the backend."""
    sizes = (784, 256, 128, 64, 10) if backend == "cpu" else (784, 32, 16, 10)  # emulator/interpreter: smaller
    ws, bs = params(sizes, torch.float32)
    x = torch.randn(batch, sizes[0])
    g = torch.randn(batch, sizes[-1])
    y = pyops.mlp(x, ws, bs, backend=backend)
    grads = torch.autograd.grad(y, [*ws, *bs], g)
    yr = reference(x, ws, bs)
    ref = torch.autograd.grad(yr, [*ws, *bs], g)
    assert_close(y, yr, **GEMM_TOL)
    for a, r in zip(grads, ref):
        assert_close(a, r, **GEMM_TOL)
    # the same kernels as chaining linear_relu / linear: bit-identical
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = (pyops.linear_relu if i + 1 < len(ws) else pyops.linear)(h, w, b, backend=backend)
    assert torch.equal(y, h)
    assert torch.equal(torch.autograd.grad(h, ws[0], g)[0], grads[0])


@pytest.mark.parametrize("backend", CPU_BACKENDS + ["torch"])
@pytest.mark.parametrize("shape,dim", [((6, 5), 1), ((6, 5), -1), ((2, 3, 5), 0)])
def test_log_softmax_dim(backend, shape, dim):
    """log_softmax_dim: the log-softmax in the same op and node, the same numbers as pyops.log_softmax after it."""
    ws, bs = params((5, 4, 3), bias=True)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    leaves = (x, *ws, *bs)
    y = pyops.mlp(x, ws, bs, log_softmax_dim=dim, backend=backend)
    ref = pyops.log_softmax(pyops.mlp(x, ws, bs, backend=backend), dim, backend=backend)
    g = torch.randn_like(ref)
    assert torch.equal(y, ref)
    for a, b in zip(torch.autograd.grad(y, leaves, g), torch.autograd.grad(ref, leaves, g)):
        assert torch.equal(a, b)
    assert torch.autograd.gradcheck(lambda x, *p: pyops.mlp(x, p[:2], p[2:], log_softmax_dim=dim, backend=backend),
                                    leaves)
    if backend != "torch":  # one node: its edges go straight to the leaves
        assert {type(f).__name__ for f, _ in y.grad_fn.next_functions} == {"AccumulateGrad"}
        args = (x.detach(), [w.detach() for w in ws], [b.detach() for b in bs])
        with DispatchLog() as log:
            pyops.mlp(*args, log_softmax_dim=dim, backend=backend)
        assert [n.rsplit(".", 1)[1] for n in log.names] == ["mlp_fwd", "log_softmax_fwd"], log.names
    with pytest.raises(IndexError, match=r"mlp \(log_softmax_dim\): dim 3 is out of range for a \d-D tensor"):
        pyops.mlp(x, ws, bs, log_softmax_dim=3, backend=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_partial_grads(backend):
    """Only the gradients asked for: frozen lower layers get none and cost no grad_input below them."""
    ws, bs = params((5, 4, 3, 2))
    x = torch.randn(3, 5, dtype=torch.float64)
    ws[0].requires_grad_(False)
    bs[0].requires_grad_(False)
    y = pyops.mlp(x, ws, bs, backend=backend)
    y.sum().backward()
    assert ws[0].grad is None and bs[0].grad is None
    for w in ws[1:]:
        assert w.grad is not None
    ref = torch.autograd.grad(reference(x, ws, bs).sum(), ws[1:])
    for w, r in zip(ws[1:], ref):
        assert_close(w.grad, r)
    # the op itself: mask false -> empty [0]; the input gradient only when asked
    outs = _ops.ops(backend).mlp_fwd(x, ws, bs)
    mask = [False, False, True, False, False, False, True]
    grads = _ops.ops(backend).mlp_bwd(torch.ones(3, 2, dtype=torch.float64), x, ws, outs[:-1], mask)
    assert [tuple(g.shape) for g in grads] == [(0,), (0,), (3, 4), (0,), (0,), (0,), (2,)]


# every combination of gradients asked for: (input, weights, biases) of a 3-layer network
MASKS = [[True] * 7, [False] * 4 + [True] * 3, [False, True, False, False, False, False, False],
         [False, False, False, True, False, False, True], [True] + [False] * 6, [False] * 7]


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("sizes,batch", [((23, 17, 13, 5), 7), ((784, 256, 128, 10), 64), ((9, 40, 30, 3), 1)])
def test_cpu_backward_is_the_layer_loop_bit_for_bit(mask, sizes, batch):
    """The CPU mlp_bwd is the layer-by-layer backward (linear_relu_bwd per layer) bit for bit, computes nothing
    below the lowest gradient asked for, and leaves its arguments as they were (it masks the gradients between
    the layers in place: its own tensors)."""
    torch.manual_seed(0)
    ops = _ops.ops("cpu")
    ws, bs = params(sizes, torch.float32)
    ws, bs = [w.detach() for w in ws], [b.detach() for b in bs]
    x = torch.randn(batch, sizes[0])
    outs = ops.mlp_fwd(x, ws, bs)
    g0 = torch.randn(outs[-1].shape)
    args = [g0, x, *ws, *outs]
    before = [t.clone() for t in args]
    grads = ops.mlp_bwd(g0, x, ws, outs[:-1], mask)
    assert all(torch.equal(a, b) for a, b in zip(args, before))
    L = len(ws)
    lowest = -1 if mask[0] else next((i for i in range(L) if mask[1 + i] or mask[1 + L + i]), L)
    g = g0
    for i in reversed(range(max(lowest, 0), L)):
        y = outs[i] if i + 1 < L else None
        gx, gw, gb = ops.linear_relu_bwd(g, x if i == 0 else outs[i - 1], ws[i], y, [lowest < i, mask[1 + i],
                                                                                     mask[1 + L + i]])
        for got, want, asked in ((grads[1 + i], gw, mask[1 + i]), (grads[1 + L + i], gb, mask[1 + L + i])):
            assert torch.equal(got, want) if asked else got.numel() == 0
        g = gx
    assert torch.equal(grads[0], g) if mask[0] else grads[0].numel() == 0
    for i in range(L):  # the layers below the lowest gradient asked for computed nothing
        if i < lowest:
            assert grads[1 + i].numel() == 0 and grads[1 + L + i].numel() == 0


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_op_each_way(backend):
    """The point of the op: one dispatched op forward, one backward, whatever the depth."""
    ws, bs = params((6, 5, 4, 3, 2), torch.float32)
    x = torch.randn(4, 6)
    with DispatchLog() as c:
        y = pyops.mlp(x, ws, bs, backend=backend)
        y.backward(torch.ones_like(y))
    ns = _ops.NAMESPACES[backend]
    # (ones_like: the backward's seed; detach: a view, no kernel -- as the pipeline bench counts)
    kernels = [o for o in c.names if o not in ("aten.ones_like", "aten.detach")]
    assert kernels == [f"{ns}.mlp_fwd", f"{ns}.mlp_bwd"], c.names


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_saves_no_preactivation(backend):
    """Saved for backward: the input, the weights and the hidden outputs -- nothing else (the C++ node of
    every backend: the saved-tensor hooks see it)."""
    ws, bs = params((5, 4, 3, 2), torch.float32)
    x = torch.randn(3, 5)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = pyops.mlp(x, ws, bs, backend=backend)
    assert len(saved) == 1 + 3 + 2
    assert saved[0] is x and all(s is w for s, w in zip(saved[1:4], ws))
    assert [tuple(t.shape) for t in saved[4:]] == [(3, 4), (3, 3)]
    y.sum().backward()  # and the backward runs from them


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bias", ["all", "some", "none"])
def test_one_node_to_the_leaves(backend, bias):
    """One autograd node for the whole network, its edges straight to the leaves (input, weights, the biases
    that exist); on every backend the C++ node of csrc/autograd.cpp, no Python autograd.Function."""
    ws, bs = params((5, 4, 3, 2), torch.float32)
    bs = {"all": bs, "some": [bs[0], None, bs[2]], "none": [None] * 3}[bias]
    x = torch.randn(3, 5, requires_grad=True)
    y = pyops.mlp(x, ws, bs, backend=backend)
    leaves = [x, *ws, *[b for b in bs if b is not None]]
    edges = [fn for fn, _ in y.grad_fn.next_functions]
    assert len(edges) == len(leaves)
    assert all(fn.name() == "torch::autograd::AccumulateGrad" and fn.variable is leaf for fn, leaf in zip(edges, leaves))
    assert y.grad_fn.name() == "pyops::MLPBackward", y.grad_fn.name()
    y.sum().backward()
    assert all(t.grad is not None for t in leaves)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    ws, bs = params((5, 4, 3), torch.float32)
    ws, bs = [w.detach() for w in ws], [b.detach() for b in bs]  # the ops have no autograd formula of their own
    x = torch.randn(3, 5)
    ops = _ops.ops(backend)
    torch.library.opcheck(ops.mlp_fwd, (x, ws, bs))
    torch.library.opcheck(ops.mlp_fwd, (x, ws, [None, None]))
    outs = ops.mlp_fwd(x, ws, bs)
    torch.library.opcheck(ops.mlp_bwd, (torch.randn(3, 3), x, ws, outs[:-1], [True, True, True, True, True]))
    # the differentiable op of csrc/autograd.cpp, with everything requiring grad
    grad = [t.clone().requires_grad_() for t in (x, *ws, *bs)]
    torch.library.opcheck(ops.mlp, (grad[0], grad[1:3], grad[3:]))
    torch.library.opcheck(ops.mlp, (grad[0], grad[1:3], [grad[3], None]))
    torch.library.opcheck(ops.mlp, (grad[0], grad[1:3], grad[3:], 1))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    model = pyops.nn.MLP((6, 5, 3), backend=backend)
    x = torch.randn(4, 6)
    compiled = torch.compile(lambda x: pyops.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])), fullgraph=True,
                             backend="aot_eager")
    loss = compiled(x)
    loss.backward()
    ref = F.cross_entropy(reference(x, [l.weight for l in model.layers], [l.bias for l in model.layers]),
                          torch.tensor([0, 1, 2, 0]))
    assert_close(loss, ref, **GEMM_TOL)
    assert all(p.grad is not None for p in model.parameters())


def test_module():
    torch.manual_seed(0)
    m = pyops.nn.MLP((784, 256, 10))
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    # nn.Linear's init and parameter layout: layer i holds the i-th Linear's weight and bias
    for mine, theirs in zip(m.layers, [ref[0], ref[2]]):
        assert torch.equal(mine.weight, theirs.weight) and torch.equal(mine.bias, theirs.bias)
    x = torch.randn(5, 784)
    assert_close(m(x), ref(x), **GEMM_TOL)
    assert list(m.state_dict()) == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert "sizes=(784, 256, 10)" in repr(m)
    with pytest.raises(ValueError, match=r"MLP: expected sizes .* at least 2 entries"):
        pyops.nn.MLP((5,))


def test_module_parameter_lists():
    """MLP.parameter_lists() reads the layers' parameter dicts: the objects ``layer.weight`` / ``.bias`` return,
    also after a parameter or a whole layer is replaced, and None for a model without biases."""
    m = pyops.nn.MLP((6, 5, 4, 3))
    ws, bs = m.parameter_lists()
    assert all(w is l.weight for w, l in zip(ws, m.layers)) and all(b is l.bias for b, l in zip(bs, m.layers))
    m.layers[1].weight = torch.nn.Parameter(torch.zeros(4, 5))
    m.layers[2] = pyops.nn.Linear(4, 3)
    ws, bs = m.parameter_lists()
    assert ws[1] is m.layers[1].weight and ws[2] is m.layers[2].weight and bs[2] is m.layers[2].bias
    assert pyops.nn.MLP((6, 5, 3), bias=False).parameter_lists()[1] == [None, None]


def test_inference_builds_no_graph():
    ws, bs = params((5, 4, 3), torch.float32)
    with torch.no_grad():
        y = pyops.mlp(torch.randn(2, 5), ws, bs)
    assert y.grad_fn is None and y.shape == (2, 3)


def test_torch_backend_is_the_reference():
    ws, bs = params((5, 4, 3))
    x = torch.randn(2, 5, dtype=torch.float64)
    assert torch.equal(pyops.mlp(x, ws, bs, backend="torch"), reference(x, ws, bs))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_input(backend):
    ws, bs = params((5, 4, 3), torch.float32)
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="mlp: expected a non-empty list of weights"):
        pyops.mlp(x, [], backend=backend)
    with pytest.raises(ValueError, match="mlp: expected one bias .* 2 weights, 1 biases"):
        pyops.mlp(x, ws, bs[:1], backend=backend)
    with pytest.raises(TypeError, match="mlp: expected weights and biases as lists"):
        pyops.mlp(x, ws[0], backend=backend)
    with pytest.raises(RuntimeError, match=r"mlp \(layer 1\): input has 4 features .* in_features = 5 "):
        pyops.mlp(x, [ws[0], ws[0]], backend=backend)
    with pytest.raises(TypeError, match=r"mlp \(layer 1\): expected input and weight to have the same dtype"):
        pyops.mlp(x, [ws[0], ws[1].double()], backend=backend)
    with pytest.raises(RuntimeError, match=r"mlp \(layer 1\): expected bias of shape \[out_features\] = \[3\], got \[4\]"):
        pyops.mlp(x, ws, [bs[0], bs[0]], backend=backend)
    with pytest.raises(TypeError, match="integer|floating"):
        pyops.mlp(x.long(), ws, bs, backend=backend)
    # the registered op checks its lists itself
    with pytest.raises(ValueError, match="expected one bias"):
        _ops.ops(backend).mlp_fwd(x, ws, bs[:1])
    with pytest.raises(ValueError, match="expected the 1 hidden outputs"):
        _ops.ops(backend).mlp_bwd(torch.ones(2, 3), x, ws, [], [True] * 5)
    with pytest.raises(ValueError, match="output_mask of length"):
        _ops.ops(backend).mlp_bwd(torch.ones(2, 3), x, ws, [torch.ones(2, 4)], [True] * 3)


def test_pipeline_model_is_the_stock_model():
    """The pipeline's pyops model (one mlp op each way) gives stock's loss and gradients from one state."""
    from pyops.pipeline import models

    state = models.init_state()
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    losses, grads = [], []
    for t in (models.pyops_trainer(state, backend="cpu", loss="cross-entropy"),
              models.stock_trainer(state, loss="cross-entropy")):
        with t.context():
            loss = t.loss_of(x, y)
            loss.backward()
        losses.append(loss)
        grads.append({n: p.grad for n, p in t.model.named_parameters()})
    assert_close(losses[0], losses[1], **GEMM_TOL)
    assert list(grads[0]) == list(grads[1])  # same parameter names: one state_dict loads into both
    for n in grads[0]:
        assert_close(grads[0][n], grads[1][n], **GEMM_TOL)


def test_repeated_calls_skip_the_python_checks_and_keep_every_error(monkeypatch):
    """A call whose (op, backend asked, device, dtype) passed the checks once goes straight to its op when repeated
    (pyops/_checks.py PASSED); whatever the op rejects then still gets the error a first call gets, and another
    backend, device or dtype still takes the full path."""
    from pyops import _checks

    ws, bs = params((5, 4, 3), torch.float32)
    x, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    logits = torch.randn(4, 3)
    first = {"mlp": pyops.mlp(x, ws, bs), "linear_relu": pyops.linear_relu(x, ws[0], bs[0]),
             "nll_loss": pyops.nll_loss(logits, y), "cross_entropy": pyops.cross_entropy(logits, y, label_smoothing=0.1)}
    broken = lambda *a, **k: pytest.fail("a repeat ran the Python checks")  # noqa: E731
    for name in ("check_linear_args", "as_mlp_lists", "class_targets", "loss_reduction", "check_backend_dtype"):
        monkeypatch.setattr(_checks, name, broken)
    repeats = {"mlp": pyops.mlp(x, ws, bs), "linear_relu": pyops.linear_relu(x, ws[0], bs[0]),
               "nll_loss": pyops.nll_loss(logits, y), "cross_entropy": pyops.cross_entropy(logits, y, label_smoothing=0.1)}
    for name, out in repeats.items():
        assert torch.equal(out, first[name]), name
    monkeypatch.undo()
    # what the op rejects on a repeat: the first call's messages
    with pytest.raises(TypeError, match=r"mlp \(layer 1\): expected input and weight to have the same dtype"):
        pyops.mlp(x, [ws[0], ws[1].double()], bs)
    with pytest.raises(TypeError, match=r"mlp \(layer 0\): expected weight to be a torch.Tensor, got int"):
        pyops.mlp(x, [3, ws[1]], bs)
    with pytest.raises(ValueError, match="mlp: expected one bias .* 2 weights, 1 biases"):
        pyops.mlp(x, ws, bs[:1])
    with pytest.raises(TypeError, match=r"linear_relu: expected input and bias to have the same dtype"):
        pyops.linear_relu(x, ws[0], bs[0].double())
    with pytest.raises(TypeError, match=r"nll_loss: expected target to hold class indices .* \(class-probability"):
        pyops.nll_loss(logits, y.float())
    with pytest.raises(ValueError, match=r"cross_entropy: 'avg' is not a valid value for reduction"):
        pyops.cross_entropy(logits, y, reduction="avg")
    # what the Python path converts: uint8 targets, as PyTorch takes them
    assert torch.equal(pyops.nll_loss(logits, y.to(torch.uint8)), first["nll_loss"])
    # the backend asked and the dtype are in the key
    for backend, want in (("cuda-sim", "pyops_sim.mlp_fwd"), ("torch", "aten.addmm")):
        if backend not in pyops.available_backends("cpu"):
            continue
        with DispatchLog() as log, pyops.use_backend(backend):
            pyops.mlp(x, ws, bs)
        assert want in log.names and not any(n.startswith("pyops.") for n in log.names), (backend, log.names)
    with pytest.raises(TypeError, match="integer|floating"):
        pyops.mlp(x.long(), ws, bs)
