"""The torch.compile backend "pyops": ``torch.compile(model_or_function, backend="pyops")``.

Registered through the ``torch_dynamo_backends`` entry point (pyproject.toml), so torch finds it by
name without ``import pyops``.  Dynamo hands it each captured graph (torch-level ops: F.linear,
F.relu, F.log_softmax, F.nll_loss, ... with the parameters as graph inputs); the rewrites of
:func:`pyops.fuse` run on it (pyops._fuse.rewrite_graph: relu(linear) -> linear_relu, chains -> mlp,
and -- the one a training-step function that holds the loss gains -- nll_loss(log_softmax(x)) ->
cross_entropy), and the rewritten graph goes to Inductor, which compiles everything else and calls
the pyops ops (registered custom ops with fake implementations) as they are.

Options (``torch.compile(..., backend="pyops", options={...})``):
  backend   the pyops backend of the rewritten ops (default None: the one in effect when they run)
  inner     what compiles the rewritten graph: "inductor" (default), "aot_eager" or "eager"
"""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["pyops_backend"]

_INNER = ("inductor", "aot_eager", "eager")


def pyops_backend(gm: torch.fx.GraphModule, example_inputs, options: Optional[dict] = None):
    """Dynamo backend: the pyops rewrites on ``gm``, then ``options["inner"]`` compiles it."""
    from . import _backend
    from ._fuse import rewrite_graph

    options = dict(options or {})
    backend, inner = options.pop("backend", None), options.pop("inner", "inductor")
    if options:
        raise ValueError(f"torch.compile backend 'pyops': unknown option(s) {', '.join(sorted(options))}; expected "
                         "backend, inner")
    if inner not in _INNER:
        raise ValueError(f"torch.compile backend 'pyops': option inner={inner!r}, expected one of {', '.join(_INNER)}")
    if backend is not None:
        _backend.check_name(backend)
    done, _ = rewrite_graph(gm.graph, dict(gm.named_modules()), backend)
    gm.recompile()
    gm.meta["pyops_rewrites"] = done
    if inner == "eager":
        return gm.forward
    return torch._dynamo.lookup_backend(inner)(gm, example_inputs)
