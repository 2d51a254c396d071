"""torch.compile(..., backend="pyops"): registered through the torch_dynamo_backends entry point, the
pyops rewrites on Dynamo's graph, the rest compiled by Inductor.  A TorchDispatchMode around a compiled
call changes what Dynamo runs, so which ops ran is read from torch.profiler's events instead."""
import os
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

import pyops
from helpers import assert_close


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(12, 8), nn.Linear(8, 6), nn.Linear(6, 4)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.log_softmax(self.fc3(x), dim=1)


def test_entry_point_needs_no_import():
    """A fresh interpreter finds the backend by name; pyops is imported by torch, not by the script."""
    code = ("import sys, torch\n"
            "assert 'pyops' not in sys.modules\n"
            "f = torch.compile(lambda x, w: torch.relu(torch.nn.functional.linear(x, w)), backend='pyops', "
            "options={'inner': 'eager', 'backend': 'cpu'})\n"
            "x, w = torch.randn(3, 4), torch.randn(5, 4)\n"
            "torch.testing.assert_close(f(x, w), torch.relu(x @ w.t()))\n"
            "import pyops._compile\n"
            "print(sys.modules['pyops'].__file__)\n")
    env = dict(os.environ, PYTHONPATH="")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == pyops.__file__  # this checkout's pyops, found through the installed metadata


def test_training_step_inductor():
    torch.manual_seed(0)
    model, ref = Net(), Net()
    ref.load_state_dict(model.state_dict())
    crit = nn.NLLLoss()

    def step(net, x, t):
        loss = crit(net(x), t)
        loss.backward()
        return loss

    compiled = torch.compile(step, backend="pyops", options={"backend": "cpu"})
    for batch in (5, 7):  # a new batch size: recompiled (or dynamic), still equal
        x, t = torch.randn(batch, 12), torch.randint(0, 4, (batch,))
        model.zero_grad(), ref.zero_grad()
        loss = compiled(model, x, t)  # compiles
        assert_close(loss, step(ref, x, t))
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            assert_close(p.grad, q.grad, msg=lambda m: f"grad of {name}: {m}")
        with torch.profiler.profile() as prof:  # the compiled code alone
            compiled(model, x, t)
        names = {e.name for e in prof.events()}
        assert {"pyops::mlp_fwd", "pyops::mlp_bwd", "pyops::cross_entropy_fwd", "pyops::cross_entropy_bwd"} <= names
        assert not names & {"aten::nll_loss_forward", "aten::_log_softmax", "aten::addmm"}, sorted(names)
