"""DistributedDataParallel over a fused model: 2 processes (gloo), pyops.optimize before wrapping; every rank
ends with the parameters of one process training on both ranks' batches with torch.optim.Adam."""
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import os, socket, sys
    import torch, torch.distributed as dist, torch.multiprocessing as mp
    import torch.nn as nn
    import pyops

    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3),
                             nn.LogSoftmax(dim=1)).double()

    def batches():
        g = torch.Generator().manual_seed(1)
        return [(torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
                for _ in range(3)]

    def worker(rank, port, out):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=2)
        net = model()
        opt = torch.optim.Adam(net.parameters(), lr=0.01)
        net, opt = pyops.optimize(net, opt, backend="cpu")  # fuse first, then wrap
        ddp = nn.parallel.DistributedDataParallel(net)
        for x, t in batches():
            opt.zero_grad()
            nn.functional.nll_loss(ddp(x[rank * 4:(rank + 1) * 4]), t[rank * 4:(rank + 1) * 4]).backward()
            opt.step()
        assert type(opt) is pyops.optim.Adam and "-> pyops.mlp" in pyops.fuse_report(net)
        torch.save([p.detach() for p in net.parameters()], f"{out}/rank{rank}.pt")
        dist.destroy_process_group()

    if __name__ == "__main__":
        out = sys.argv[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(worker, args=(port, out), nprocs=2)
        ref = model()
        opt = torch.optim.Adam(ref.parameters(), lr=0.01)
        for x, t in batches():  # one process, both ranks' halves: the mean of the two halves' mean losses
            opt.zero_grad()
            (0.5 * (nn.functional.nll_loss(ref(x[:4]), t[:4]) + nn.functional.nll_loss(ref(x[4:]), t[4:]))).backward()
            opt.step()
        for rank in range(2):
            for p, q in zip(torch.load(f"{out}/rank{rank}.pt"), ref.parameters()):
                torch.testing.assert_close(p, q.detach(), rtol=1e-7, atol=1e-10)
        print("ddp-ok")
''')


@pytest.mark.slow  # two spawned processes: ~40 s on the loaded 2-core machine
def test_ddp_over_fused_model(tmp_path):
    script = tmp_path / "ddp_fused.py"
    script.write_text(SCRIPT)
    p = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "ddp-ok" in p.stdout, p.stdout[-2000:] + p.stderr[-4000:]
