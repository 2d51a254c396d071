"""pyops.fuse (this module: pyops._fuse): run a model someone already has on pyops ops, with one added line.

    model = pyops.fuse(model)          # the same object, its forward rewritten
    print(pyops.fuse_report(model))    # what was replaced, what was left alone and why
    pyops.unfuse(model)                # the original forward again

How: ``torch.fx`` traces ``model.forward`` (torch.nn layers, modules with hooks and subclasses of the
layers pyops replaces are leaves, so they are called as they are), the rewrites below run on the
graph, and the graph's Python code becomes the *instance's* ``forward`` (a bound method in the
instance's ``__dict__``).  No GraphModule is made or registered: the parameters, buffers, submodules,
``state_dict`` keys, the class and every other instance are untouched, and the code looks the layers
up on ``self`` at every call, so an optimizer built before ``fuse`` and parameters replaced later keep
working.  ``self.training`` is a constant to a tracer, and so is whether a layer has hooks, so the
forward picks its graph at call time by the state of every submodule: ``train()`` / ``eval()`` (traced
at ``fuse``), and, traced at the first call that meets them, a model whose submodules are in mixed modes
(``model.dropout.eval()`` alone) or a layer that got hooks after ``fuse`` (it is then called as it is,
so the hooks fire).  ``F.dropout(x, p, self.training)`` keeps working.

Rewrites (exact types only: ``type(m) is nn.Linear``, never a subclass such as LoRA or quantized
layers; a module with hooks is never fused away, so its hooks keep firing):
  relu(linear(x))   nn.Linear / F.linear, then nn.ReLU / F.relu / torch.relu / .relu() (in-place ones
                    too), the linear's output used by the ReLU alone      -> pyops.linear_relu
  linear(x)         any other linear                                      -> pyops.linear
  a chain           linear_relu ... linear_relu, linear, each output used only by the next layer
                                                                          -> pyops.mlp (one op each way)
                    and a log_softmax of its output alone (an int dim, no dtype) joins it: one op, one node
                                                                          -> pyops.mlp(log_softmax_dim=dim)
  softmax, log_softmax (nn.Softmax / nn.LogSoftmax, F.*, torch.*, .softmax())  -> pyops.softmax / log_softmax
  nn.NLLLoss, nn.CrossEntropyLoss, F.nll_loss, F.cross_entropy              -> pyops.nll_loss / cross_entropy
                    (cross-entropy with class-probability targets, which pyops has no op for, runs stock)
  nll_loss(log_softmax(x, dim)), the log-probabilities used by the loss alone  -> pyops.cross_entropy
                    (when ``dim`` is the class dim at run time; else the two pyops ops)

When tracing fails (data-dependent control flow, ...), ``fuse`` warns with the tracer's reason and
falls back, per module: the module's own layers of those exact types are swapped in place for their
``pyops.nn`` counterparts (``module.__class__`` reassigned: same parameters and state_dict), and its
other children are fused on their own.  ``strict=True`` raises instead.

Under ``torch.autocast`` the fused ops follow their stock counterparts' casting policy (linear in the
autocast dtype, the losses in float32, softmax / log-softmax in float32 on CUDA and as they come on
the CPU); a backend without kernels for the autocast dtype raises.

A fused layer whose backend cannot run the tensors it gets (a model moved to a device or dtype the
backend has no kernel for) raises the op's error prefixed with the layer's path; it never falls back
to stock PyTorch.
"""
from __future__ import annotations

import itertools
import linecache
import operator
import warnings
from typing import Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from . import _backend, _checks, _ops
from . import nn as pnn
from .cross_entropy import cross_entropy, nll_loss
from .linear_relu import linear, linear_relu
from .mlp import mlp
from .softmax import log_softmax, softmax

__all__ = ["fuse", "unfuse", "fuse_report", "FuseError", "rewrite_graph"]


class FuseError(RuntimeError):
    """``fuse(..., strict=True)`` could not trace a module."""


# ---------------------------------------------------------------- what runs in a fused forward
# Each rewritten node calls one of these: the pyops op, with the layer's path added to any error it raises.

def _located(e: Exception, where: str) -> Exception:
    msg = f"pyops.fuse: layer {where}: {e}"
    try:
        return type(e)(msg)
    except Exception:  # an exception type whose constructor takes other arguments
        return RuntimeError(msg)


_any_autocast = torch._C._is_any_autocast_enabled


# Under torch.autocast the fused ops follow their stock counterparts' casting policy (torch's autocast op lists):
# linear in the autocast dtype; nll_loss / cross_entropy in float32; softmax / log_softmax in float32 on CUDA and
# as they come on the CPU (CPU autocast lists neither).  A backend without kernels for the autocast dtype (cpu:
# no float16/bfloat16) raises its error, with the layer's path -- never a silent float32 result.
def _autocast_dtype(x) -> Optional[torch.dtype]:
    if not _any_autocast():  # (the _f_* wrappers ask this first themselves, at every layer of every step)
        return None
    dev = x.device.type if isinstance(x, torch.Tensor) else "cpu"
    try:
        enabled = torch.is_autocast_enabled(dev)
    except RuntimeError:  # a device type autocast does not know (meta, ...): the op itself says what it cannot run
        return None
    return torch.get_autocast_dtype(dev) if enabled else None


def _cast(t, dtype):
    return t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype else t


# Each first asks _any_autocast() itself: the common case then costs one C call, not a Python frame more.
def _f_linear(x, w, b, relu, backend, where):
    try:
        if _any_autocast():
            dt = _autocast_dtype(x)
            if dt is not None:
                x, w, b = _cast(x, dt), _cast(w, dt), _cast(b, dt)
        return (linear_relu if relu else linear)(x, w, b, backend=backend)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        raise _located(e, where) from e


def _f_mlp(x, weights, biases, backend, where, log_softmax_dim=None):
    try:
        dt = _autocast_dtype(x) if _any_autocast() else None
        if dt is None:  # a repeat goes straight to the op, as in pyops.mlp's first lines, without calling it
            out = _checks.repeat(_checks.passed_key("mlp", backend, x), x, weights, biases, log_softmax_dim)
            if out is _checks.MISS:
                out = mlp(x, weights, biases, log_softmax_dim=log_softmax_dim, backend=backend)
            return out
        x, weights, biases = _cast(x, dt), [_cast(w, dt) for w in weights], [_cast(b, dt) for b in biases]
        y = mlp(x, weights, biases, backend=backend)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        raise _located(e, where) from e
    # under autocast the log-softmax runs apart, with its own casting policy (and its own error's location)
    return y if log_softmax_dim is None else _f_softmax(y, log_softmax_dim, None, True, backend, where)


def _f_softmax(x, dim, dtype, log, backend, where):
    try:
        if dtype is None and _any_autocast() and _autocast_dtype(x) is not None and x.device.type == "cuda":
            x = _cast(x, torch.float32)
        return (log_softmax if log else softmax)(x, dim, dtype, backend=backend)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        raise _located(e, where) from e


def _f_loss(x, target, weight, ignore_index, reduction, label_smoothing, ce, backend, where):
    try:
        if _any_autocast() and _autocast_dtype(x) is not None:
            x, weight = _cast(x, torch.float32), _cast(weight, torch.float32)
        if not ce:
            return nll_loss(x, target, weight, ignore_index=ignore_index, reduction=reduction, backend=backend)
        if isinstance(target, torch.Tensor) and target.is_floating_point():  # class probabilities: no pyops op
            return F.cross_entropy(x, target, weight, ignore_index=ignore_index, reduction=reduction,
                                   label_smoothing=label_smoothing)
        return cross_entropy(x, target, weight, ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=label_smoothing, backend=backend)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        raise _located(e, where) from e


def _f_log_softmax_nll(x, dim, target, weight, ignore_index, reduction, backend, where):
    """nll_loss(log_softmax(x, dim), ...): one pyops.cross_entropy when ``dim`` is the class dim."""
    try:
        if _any_autocast() and _autocast_dtype(x) is not None:  # the loss is float32 under autocast: computed in it
            x, weight = _cast(x, torch.float32), _cast(weight, torch.float32)
        class_dim = 0 if x.dim() == 1 else 1
        if dim is not None and (dim if dim >= 0 else dim + x.dim()) == class_dim:
            return cross_entropy(x, target, weight, ignore_index=ignore_index, reduction=reduction, backend=backend)
        return nll_loss(log_softmax(x, dim, backend=backend), target, weight, ignore_index=ignore_index,
                        reduction=reduction, backend=backend)
    except (RuntimeError, TypeError, ValueError, IndexError) as e:
        raise _located(e, where) from e


# ---------------------------------------------------------------- recognising the patterns in a graph
_REPLACED_TYPES = (nn.Linear, nn.ReLU, nn.Softmax, nn.LogSoftmax, nn.NLLLoss, nn.CrossEntropyLoss)
_LINEAR_FNS = {F.linear}  # F.linear is torch._C._nn.linear
_RELU_FNS = {F.relu, torch.relu, torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}
_SOFTMAX_FNS = {F.softmax: False, F.log_softmax: True, torch.softmax: False, torch.log_softmax: True}
_SOFTMAX_METHODS = {"softmax": False, "log_softmax": True}
_NLL_FNS = {F.nll_loss: False, F.cross_entropy: True}


# A module's hook dicts (hooks with kwargs, or always called, are in _forward_hooks too): one list of them for
# has_hooks and for the fused forward's per-call state (_FusedForward.__call__).
_HOOK_DICTS = operator.attrgetter("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def has_hooks(m: nn.Module) -> bool:
    return any(_HOOK_DICTS(m))


def _bind(node: fx.Node, names, defaults: dict, skip_self: bool = False):
    """node's args and kwargs as {name: value} for a function with parameters ``names`` (None if they don't fit)."""
    args = node.args
    if len(args) > len(names):
        return None
    out = dict(defaults)
    out.update(zip(names, args))
    for k, v in node.kwargs.items():
        if k not in names:
            return None
        out[k] = v
    return out if all(n in out for n in names) else None


class _Pattern:
    """One recognised op: its kind, its arguments (fx nodes or constants) and a name for the report."""

    def __init__(self, kind, node, desc, **fields):
        self.kind, self.node, self.desc, self.fields = kind, node, desc, fields


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    where = next(reversed(stack.values()))[0] + "." if stack else ""
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
    kind = "." if node.op == "call_method" else ("F." if getattr(node.target, "__module__", "") ==
                                                "torch.nn.functional" else "torch.")
    return f"{where}{kind}{name}()"


def _classify(node: fx.Node, modules: dict, refusals: list):
    """The _Pattern that ``node`` is, or None."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if not isinstance(m, _REPLACED_TYPES):
            return None
        if type(m) not in _REPLACED_TYPES:
            refusals.append(f"{node.target} ({type(m).__name__}, a subclass of "
                            f"{next(t for t in _REPLACED_TYPES if isinstance(m, t)).__name__}): left alone, only exact "
                            "types are replaced")
            return None
        if has_hooks(m):
            refusals.append(f"{node.target} ({type(m).__name__}): left alone, it has hooks")
            return None
        desc = f"{node.target}"
        if type(m) is nn.Linear and len(node.args) == 1 and not node.kwargs:
            return _Pattern("linear", node, desc, x=node.args[0], w=("attr", f"{node.target}.weight"),
                            b=("attr", f"{node.target}.bias") if m.bias is not None else None)
        if type(m) is nn.ReLU and len(node.args) == 1 and not node.kwargs:
            return _Pattern("relu", node, desc, x=node.args[0])
        if type(m) in (nn.Softmax, nn.LogSoftmax) and len(node.args) == 1 and not node.kwargs:
            return _Pattern("softmax", node, desc, x=node.args[0], dim=m.dim, dtype=None,
                            log=type(m) is nn.LogSoftmax)
        if type(m) in (nn.NLLLoss, nn.CrossEntropyLoss):
            a = _bind(node, ("input", "target"), {})
            if a is None:
                return None
            return _Pattern("loss", node, desc, x=a["input"], target=a["target"],
                            weight=("attr", f"{node.target}.weight") if m.weight is not None else None,
                            ignore_index=m.ignore_index, reduction=m.reduction,
                            label_smoothing=getattr(m, "label_smoothing", 0.0), ce=type(m) is nn.CrossEntropyLoss)
        return None
    if node.op == "call_function":
        t = node.target
        if t in _LINEAR_FNS:
            a = _bind(node, ("input", "weight", "bias"), {"bias": None})
            return a and _Pattern("linear", node, _describe(node), x=a["input"], w=a["weight"], b=a["bias"])
        if t in _RELU_FNS:
            a = _bind(node, ("input", "inplace"), {"inplace": False})
            return a and _Pattern("relu", node, _describe(node), x=a["input"])
        if t in _SOFTMAX_FNS:
            names = ("input", "dim", "_stacklevel", "dtype") if t in (F.softmax, F.log_softmax) else \
                ("input", "dim", "dtype")
            a = _bind(node, names, {"dim": None, "_stacklevel": 3, "dtype": None})
            return a and _Pattern("softmax", node, _describe(node), x=a["input"], dim=a["dim"], dtype=a["dtype"],
                                  log=_SOFTMAX_FNS[t])
        if t in _NLL_FNS:
            ce = _NLL_FNS[t]
            names = ("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction") + \
                (("label_smoothing",) if ce else ())
            a = _bind(node, names, {"weight": None, "size_average": None, "ignore_index": -100, "reduce": None,
                                    "reduction": "mean", "label_smoothing": 0.0})
            if a is None or a["size_average"] is not None or a["reduce"] is not None:
                refusals.append(f"{_describe(node)}: left alone, the deprecated size_average/reduce arguments")
                return None
            return _Pattern("loss", node, _describe(node), x=a["input"], target=a["target"], weight=a["weight"],
                            ignore_index=a["ignore_index"], reduction=a["reduction"],
                            label_smoothing=a["label_smoothing"], ce=ce)
        return None
    if node.op == "call_method":
        if node.target in _RELU_METHODS and len(node.args) == 1 and not node.kwargs:
            return _Pattern("relu", node, _describe(node), x=node.args[0])
        if node.target in _SOFTMAX_METHODS:
            a = _bind(node, ("input", "dim", "dtype"), {"dtype": None})
            return a and _Pattern("softmax", node, _describe(node), x=a["input"], dim=a["dim"], dtype=a["dtype"],
                                  log=_SOFTMAX_METHODS[node.target])
    return None


def _arg(graph: fx.Graph, v, cache: dict, alias: dict):
    """A pattern field as a graph argument: ('attr', path) becomes a get_attr node (one per path); a node
    already replaced becomes its replacement."""
    while isinstance(v, fx.Node) and v in alias:
        v = alias[v]
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "attr":
        if v[1] not in cache:
            cache[v[1]] = graph.get_attr(v[1])
        return cache[v[1]]
    return v


def _sole_user(node: fx.Node) -> Optional[fx.Node]:
    return next(iter(node.users)) if len(node.users) == 1 else None


def rewrite_graph(graph: fx.Graph, modules: dict, backend: Optional[str]) -> tuple[list, list]:
    """Rewrite ``graph`` in place (see the module docstring); ``modules``: {qualified name: module} for its
    call_module / get_attr targets.  Returns (replacements, refusals) as lines for the report."""
    refusals: list = []
    pats = {}
    for node in graph.nodes:
        p = _classify(node, modules, refusals)
        if p is not None:
            pats[node] = p
    done, out = [], []  # (description, new node's target, args, nodes replaced with the last one first)

    def replace(nodes, fn, args, text):
        last = max(nodes, key=order.__getitem__)
        with graph.inserting_before(last):
            cache: dict = {}
            new = graph.call_function(fn, tuple(_arg(graph, a, cache, alias) if not isinstance(a, list)
                                                else [_arg(graph, x, cache, alias) for x in a] for a in args))
        last.replace_all_uses_with(new)
        alias[last] = new
        for n in sorted(nodes, key=order.__getitem__, reverse=True):
            graph.erase_node(n)
        out.append(text)
        return new

    order = {n: i for i, n in enumerate(graph.nodes)}
    alias: dict = {}  # replaced node -> its replacement

    # nll_loss(log_softmax(x)) -> cross_entropy
    for node, p in list(pats.items()):
        if p.kind == "loss" and not p.fields["ce"]:
            src = p.fields["x"]
            q = pats.get(src) if isinstance(src, fx.Node) else None
            if q is not None and q.kind == "softmax" and q.fields["log"] and q.fields["dtype"] is None \
                    and _sole_user(src) is node:
                f = p.fields
                replace([src, node], _f_log_softmax_nll,
                        [q.fields["x"], q.fields["dim"], f["target"], f["weight"], f["ignore_index"], f["reduction"],
                         backend, f"{q.desc} + {p.desc}"],
                        f"{q.desc} + {p.desc} -> pyops.cross_entropy")
                del pats[src], pats[node]

    # relu(linear(x)) -> linear_relu; a lone linear -> linear.  Layers: (new node, x, w, b, relu, description)
    layers = {}
    for node, p in list(pats.items()):
        if p.kind != "relu":
            continue
        src = p.fields["x"]
        q = pats.get(src) if isinstance(src, fx.Node) else None
        if q is not None and q.kind == "linear" and _sole_user(src) is node:
            layers[node] = (q, True, f"{q.desc} + {p.desc}")
            del pats[src], pats[node]
    for node, p in list(pats.items()):
        if p.kind == "linear":
            layers[node] = (p, False, p.desc)
            del pats[node]
    # chains of layers whose outputs feed only the next layer's input, ending in a plain linear -> mlp
    chains: dict = {}
    for node in sorted(layers, key=order.__getitem__):
        q, relu, desc = layers[node]
        src = q.fields["x"]
        if isinstance(src, fx.Node) and src in layers and layers[src][1] and _sole_user(src) is q.node \
                and src in chains and chains[src][-1] is src:
            chain = chains.pop(src)
            chain.append(node)
            if relu:
                chains[node] = chain
            else:
                chains[("done", node)] = chain
        elif relu:
            chains[node] = [node]
    for key, chain in list(chains.items()):
        if not (isinstance(key, tuple) and key[0] == "done"):
            continue
        qs = [layers[n][0] for n in chain]
        descs = [layers[n][2] for n in chain]
        parents = [layers[n][0].node for n in chain]
        # every node of the chain: the layers' relus (the chain's nodes) and their linears
        nodes = set(chain) | set(parents)
        where, text, dim = descs[0] + " ... " + descs[-1], f"{', '.join(descs)} -> pyops.mlp", None
        lsm = pats.get(_sole_user(chain[-1]))  # a log_softmax of the output alone, over a known dim: the same op
        if lsm is not None and lsm.kind == "softmax" and lsm.fields["log"] and lsm.fields["dtype"] is None \
                and type(lsm.fields["dim"]) is int:
            nodes.add(lsm.node)
            dim, where = lsm.fields["dim"], f"{where} + {lsm.desc}"
            text = f"{', '.join(descs)} + {lsm.desc} -> pyops.mlp(log_softmax_dim={dim}) (one op)"
            del pats[lsm.node]
        replace(list(nodes), _f_mlp, [qs[0].fields["x"], [q.fields["w"] for q in qs], [q.fields["b"] for q in qs],
                                       backend, where, dim], text)
        for n in chain:
            del layers[n]
    for node in sorted(layers, key=order.__getitem__):
        q, relu, desc = layers[node]
        nodes = {node, q.node}
        replace(list(nodes), _f_linear, [q.fields["x"], q.fields["w"], q.fields["b"], relu, backend, desc],
                f"{desc} -> pyops.{'linear_relu' if relu else 'linear'}")

    for node, p in list(pats.items()):
        f = p.fields
        if p.kind == "softmax":
            replace([node], _f_softmax, [f["x"], f["dim"], f["dtype"], f["log"], backend, p.desc],
                    f"{p.desc} -> pyops.{'log_softmax' if f['log'] else 'softmax'}")
        elif p.kind == "loss":
            replace([node], _f_loss, [f["x"], f["target"], f["weight"], f["ignore_index"], f["reduction"],
                                      f["label_smoothing"], f["ce"], backend, p.desc],
                    f"{p.desc} -> pyops.{'cross_entropy' if f['ce'] else 'nll_loss'}")
        elif p.kind == "relu":
            refusals.append(f"{p.desc}: stock relu kept (its input is not a linear used by it alone)")
    for node in graph.nodes:
        if node.op == "call_module" and not isinstance(modules.get(node.target), _REPLACED_TYPES):
            m = modules.get(node.target)
            if not has_hooks(m) and not isinstance(m, (nn.Dropout, nn.Identity, nn.Flatten)):
                refusals.append(f"{node.target} ({type(m).__name__}): no pyops op, runs as before")
            elif has_hooks(m):
                refusals.append(f"{node.target} ({type(m).__name__}): left alone, it has hooks")
    graph.lint()
    return out, refusals


# ---------------------------------------------------------------- tracing a module, installing the forward
class _Tracer(fx.Tracer):
    """torch.fx's tracer, with leaves added: modules with hooks (called as they are, so the hooks fire) and
    subclasses of the layers pyops replaces (their forward is theirs; nothing inside is touched)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return has_hooks(m) or isinstance(m, _REPLACED_TYPES) or super().is_leaf_module(m, qualname)


_counter = itertools.count()


def _direct_lookup(module: nn.Module, target: str) -> Optional[str]:
    """``self._modules['fc1']._parameters['weight']`` for the get_attr target ``fc1.weight`` (None when the
    target is not a parameter or buffer of a submodule): dict lookups, where ``self.fc1.weight`` is a Python
    call of nn.Module.__getattr__ per dot (~20 of them per forward of the tutorial net)."""
    *path, name = target.split(".")
    expr, m = "self", module
    for part in path:
        if part not in m._modules:
            return None
        expr, m = f"{expr}._modules[{part!r}]", m._modules[part]
    for store in ("_parameters", "_buffers"):
        if name in getattr(m, store):
            return f"{expr}.{store}[{name!r}]"
    return None


def _compile(graph: fx.Graph, label: str, module: nn.Module):
    """The graph's Python code as a function ``forward(self, ...)`` that reads the layers from ``self`` at every
    call (so parameters replaced later are seen, and a deep copy reads its own)."""
    code = graph.python_code(root_module="self")
    lines = code.src.splitlines(True)
    fast = {n.name: _direct_lookup(module, n.target) for n in graph.nodes if n.op == "get_attr"}
    for i, line in enumerate(lines):
        name, sep, _ = line.strip().partition(" = ")
        if sep and fast.get(name) and line.startswith("    ") and ";" not in line:
            lines[i] = f"    {name} = {fast[name]}\n"
    code.src = "".join(lines)
    filename = f"<pyops.fuse {label} #{next(_counter)}>"
    linecache.cache[filename] = (len(code.src), None, code.src.splitlines(True), filename)  # tracebacks show it
    scope = dict(code.globals)
    exec(compile(code.src, filename, "exec"), scope)
    return scope["forward"], code.src


class _Fused:
    """What fuse did to one module (kept on it as ``_pyops_fused``; ``unfuse`` undoes it)."""

    def __init__(self, backend):
        self.backend = backend
        self.lines: list = []        # the report
        self.swapped: list = []      # (module, original class) of the fallback's class swaps
        self.children: list = []     # submodules fused on their own (fallback)


def _modes(module: nn.Module) -> dict:
    return {m: m.training for m in module.modules()}


def _trace(module: nn.Module, uniform: bool = True):
    """(the graphs of ``module``'s forward in train() and in eval() mode -- or, uniform=False, the one graph of
    its submodules' modes as they are --, {name: submodule}); raises what the tracer raises."""
    if not uniform:
        return [_Tracer().trace(module)], dict(module.named_modules())
    modes = _modes(module)
    modules = dict(module.named_modules())
    results = []
    try:
        for training in (True, False):
            for m in modes:  # the flags themselves: a model's own train() may do more
                m.training = training
            graph = _Tracer().trace(module)
            results.append(graph)
    finally:
        for m, t in modes.items():
            m.training = t
    return results, modules


# A submodule state -- what a traced graph depends on besides the code: (each submodule's mode, whether each has
# hooks, as has_hooks says): tuple(map(_TRAINING, mods)), tuple(map(any, map(_HOOK_DICTS, mods))).
# _FusedForward.__call__ computes it at every call in C (_module_states: the same attribute reads and truth tests,
# no Python tuple per submodule).
_TRAINING = operator.attrgetter("training")
_module_states = _ops._C.module_states


def _rewrite(module: nn.Module, traced, backend: Optional[str]):
    """(forward for train(), forward for eval() or None when it is the same code, report lines)."""
    graphs, modules = traced
    results = []
    for graph in graphs:
        done, refused = rewrite_graph(graph, modules, backend)
        results.append((graph, done, refused))
    label = type(module).__name__
    if len(results) == 1:  # one graph, of the submodules' modes as they are
        graph, done, refused = results[0]
        return _compile(graph, label, module)[0], None, done + [f"left alone: {line}" for line in refused]
    (g_train, d_train, r_train), (g_eval, d_eval, r_eval) = results
    f_train, src_train = _compile(g_train, label + " train", module)
    f_eval, src_eval = _compile(g_eval, label + " eval", module)
    lines = [f"{'' if d_train == d_eval else '(train) '}{line}" for line in d_train] + \
        [f"(eval) {line}" for line in d_eval if d_train != d_eval] + \
        [f"left alone: {line}" for line in dict.fromkeys(r_train + r_eval)]
    if src_train == src_eval:
        return f_train, None, lines
    return f_train, f_eval, lines


_SWAPS = {nn.Linear: pnn.Linear, nn.Softmax: pnn.Softmax, nn.LogSoftmax: pnn.LogSoftmax, nn.NLLLoss: pnn.NLLLoss,
          nn.CrossEntropyLoss: pnn.CrossEntropyLoss}


class _FusedForward:
    """The instance's ``forward``: the code of the graph traced for the submodules' current state (see _TRAINING).

    ``fns`` maps a state to its code.  ``fuse`` traces the two uniform states (all in train(), all in eval(),
    no hooks beyond those present then); any other state is traced and rewritten at the first call that meets
    it (tens of ms, once per state) and noted in the report.  Pickling (``torch.save(model)``) stores only the
    module and the backend: the code is generated per process, so a loaded model traces and rewrites itself
    again at its first call (never the stock forward under a fused marker).  A deep copy shares the code (it
    reads everything from the module it is given) but not the submodule list."""

    __slots__ = ("module", "backend", "fns", "mods")

    def __init__(self, module, backend, fns=None):
        self.module, self.backend, self.fns, self.mods = module, backend, fns, None

    def _retrace(self, state):
        f, _, lines = _rewrite(self.module, _trace(self.module, uniform=False), self.backend)
        self.fns[state] = f
        info = self.module.__dict__.get("_pyops_fused")
        if info is not None:
            info.lines.append("traced again at a call, for the submodules' modes and hooks then: "
                              + ("; ".join(lines) or "nothing fused"))
        return f

    def __call__(self, *args, **kwargs):
        if self.mods is None:  # unpickled or deep-copied: the module is complete now
            self.mods = tuple(self.module.modules())
            if self.fns is None:
                self.fns = _uniform_fns(self.module, self.backend, self.mods)
        mods = self.mods
        if _checks._is_compiling():  # dynamo: the maps (it breaks the graph there quietly, at a C function with a warning)
            state = tuple(map(_TRAINING, mods)), tuple(map(any, map(_HOOK_DICTS, mods)))
        else:
            state = _module_states(mods)  # (see _TRAINING)
        f = self.fns.get(state) or self._retrace(state)
        return f(self.module, *args, **kwargs)

    def __reduce__(self):
        return (_FusedForward, (self.module, self.backend))

    def __deepcopy__(self, memo):
        import copy

        return _FusedForward(copy.deepcopy(self.module, memo), self.backend,
                             None if self.fns is None else dict(self.fns))


def _uniform_fns(module: nn.Module, backend, mods: tuple, rewritten=None) -> dict:
    """{state: code} for the module in train() and in eval() with the hooks it has now."""
    f_train, f_eval, _ = rewritten or _rewrite(module, _trace(module), backend)
    hooks = tuple(map(has_hooks, mods))  # keys as __call__ makes them (see _TRAINING)
    return {((True,) * len(mods), hooks): f_train, ((False,) * len(mods), hooks): f_eval or f_train}


def _install(module: nn.Module, f_train, f_eval, backend) -> None:
    ff = _FusedForward(module, backend)
    ff.mods = tuple(module.modules())
    ff.fns = _uniform_fns(module, backend, ff.mods, (f_train, f_eval, None))
    object.__setattr__(module, "forward", ff)


def _fuse_module(module: nn.Module, path: str, info: _Fused, strict: bool) -> None:
    name = path or type(module).__name__
    try:
        traced = _trace(module)
    except Exception as e:  # noqa: BLE001  (whatever the tracer hit is the reason given)
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        if strict:
            raise FuseError(f"pyops.fuse: cannot trace {name} ({type(module).__name__}) with torch.fx: {reason}") from e
        warnings.warn(f"pyops.fuse: cannot trace {name} ({type(module).__name__}) with torch.fx ({reason}); swapping "
                      "its layers' classes for pyops.nn ones instead (no linear+ReLU or MLP fusion there)",
                      stacklevel=3)
        info.lines.append(f"{name}: not traceable ({reason}); fell back to swapping its layers' classes")
        for child_name, child in module.named_children():
            child_path = f"{path}.{child_name}" if path else child_name
            if type(child) in _SWAPS:
                info.swapped.append((child, type(child)))
                child.__class__ = _SWAPS[type(child)]
                child.backend = info.backend
                info.lines.append(f"{child_path} -> pyops.nn.{child.__class__.__name__} (class swapped)")
            elif isinstance(child, _REPLACED_TYPES) and type(child) not in _REPLACED_TYPES:
                info.lines.append(f"left alone: {child_path} ({type(child).__name__}): only exact types are replaced")
            elif has_hooks(child):
                info.lines.append(f"left alone: {child_path} ({type(child).__name__}): it has hooks")
            elif not (type(child).__module__.startswith("torch.") and not any(True for _ in child.children())):
                _fuse_module(child, child_path, info, strict)  # a block of its own: traced on its own
        return
    f_train, f_eval, lines = _rewrite(module, traced, info.backend)
    _install(module, f_train, f_eval, info.backend)
    if path:  # a child fused on its own: its lines carry its path
        lines = [f"{path}: {line}" for line in lines]
        module.__dict__["_pyops_fused_child"] = True
        info.children.append(module)
    info.lines.extend(lines)


def _check_module(module, op: str) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"pyops.{op}: expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise TypeError(f"pyops.{op}: {type(module).__name__} is a TorchScript module; fuse the nn.Module before "
                        "scripting it")
    if type(module).__name__ == "OptimizedModule" and type(module).__module__.startswith("torch._dynamo"):
        raise TypeError(f"pyops.{op}: got a torch.compile'd module; fuse the model before compiling it, or compile "
                        "it with torch.compile(model, backend=\"pyops\")")
    if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        raise TypeError(f"pyops.{op}: got a {type(module).__name__} wrapper; fuse the model before wrapping it "
                        f"(pyops.{op}(model), then {type(module).__name__}(model))")


def fuse(module: nn.Module, *, backend: Optional[str] = None, strict: bool = False) -> nn.Module:
    """Rewrite ``module`` in place so that what it computes runs on pyops ops wherever one computes the same
    thing (see the module pyops._fuse); returns the same object.  ``backend``: the pyops backend of every fused op
    (None: the backend in effect at each call, see :func:`pyops.use_backend`).  ``strict=True``: raise
    :class:`FuseError` instead of falling back when the module cannot be traced.  Idempotent; fusing again
    with another backend re-fuses."""
    _check_module(module, "fuse")
    if backend is not None:
        _backend.check_name(backend)
    old = module.__dict__.get("_pyops_fused")
    if old is not None:
        if old.backend == backend:
            return module
        unfuse(module)
    info = _Fused(backend)
    try:
        _fuse_module(module, "", info, strict)
    except BaseException:
        _undo(module, info)
        raise
    module.__dict__["_pyops_fused"] = info
    return module


def _undo(module: nn.Module, info: _Fused) -> None:
    module.__dict__.pop("forward", None)
    for m in info.children:
        m.__dict__.pop("forward", None)
        m.__dict__.pop("_pyops_fused_child", None)
    for m, cls in info.swapped:
        m.__class__ = cls
        m.__dict__.pop("backend", None)


def unfuse(module: nn.Module) -> nn.Module:
    """Undo :func:`fuse`: the module's own forward again (and its layers' own classes); returns the module."""
    _check_module(module, "unfuse")
    info = module.__dict__.pop("_pyops_fused", None)
    if info is None:
        raise ValueError(f"pyops.unfuse: this {type(module).__name__} was not fused by pyops.fuse")
    _undo(module, info)
    return module


def fuse_report(module: nn.Module) -> str:
    """Every replacement :func:`fuse` made in ``module`` (e.g. ``fc1 + relu1 -> pyops.linear_relu``) and every
    candidate it left alone, with the reason."""
    _check_module(module, "fuse_report")
    info = module.__dict__.get("_pyops_fused")
    if info is None:
        raise ValueError(f"pyops.fuse_report: this {type(module).__name__} was not fused (call pyops.fuse first)")
    head = f"pyops.fuse({type(module).__name__}, backend={info.backend!r}):"
    return "\n".join([head] + [f"  {line}" for line in info.lines] + ([] if info.lines else ["  nothing to fuse"]))


def note(module: nn.Module, line: str) -> None:
    """Add a line to a fused module's report (pyops.optimize: what happened to the optimizer)."""
    info = module.__dict__.get("_pyops_fused")
    if info is not None:
        info.lines.append(line)
