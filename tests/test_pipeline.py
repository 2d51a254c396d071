"""The MLP pipeline: models, training that learns, the bench command's outputs, DDP with 2 processes.
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import CPU_BACKENDS
from pyops import data as D
from pyops.__main__ import main
from pyops.pipeline import bench, models, results, train

MODELS = ["stock", "pyops"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_pyops_model_has_its_ops():
    assert not models.pyops_missing()


# ---------------------------------------------------------------- data the model can learn
def learnable_arrays(n_train, n_test, seed=0):
    """MNIST-shaped images of 10 classes: a random prototype per class, half of each pixel replaced by noise."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (10, 28, 28))

    def split(n):
        labels = rng.integers(0, 10, n)
        images = (protos[labels] + rng.integers(0, 256, (n, 28, 28))) // 2
        return images.astype(np.uint8), labels.astype(np.uint8)

    return [*split(n_train), *split(n_test)]


@pytest.fixture(scope="module")
def learnable_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("learnable")
    for name, a in zip(D.FILE_NAMES, learnable_arrays(2048, 512)):
        D.write_idx(str(d / (name + ".gz")), a, compress=True)
    return str(d)


def load_learnable(folder):
    return D.load("mnist", folder, cache="/nonexistent/pyops-test-cache", system_dirs=(), download=False,
                  log=lambda m: None)


# ---------------------------------------------------------------- models
def test_init_state_deterministic_and_loads():
    a, b = models.init_state(seed=3), models.init_state(seed=3)
    assert list(a) == ["hidden.0.weight", "hidden.0.bias", "hidden.1.weight", "hidden.1.bias", "hidden.2.weight",
                       "hidden.2.bias", "out.weight", "out.bias"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["hidden.0.weight"].shape == (256, 784) and a["out.weight"].shape == (10, 64)
    assert not torch.equal(a["out.weight"], models.init_state(seed=4)["out.weight"])
    m = models.StockMLP()
    m.load_state_dict(a)
    out = m(torch.randn(5, 784))
    torch.testing.assert_close(out.exp().sum(1), torch.ones(5))  # log-probabilities


@pytest.mark.parametrize("kind", MODELS)
def test_models_start_identical(kind):
    state = models.init_state()
    tr = models.make_trainer(kind, state)
    got = tr.model.state_dict()
    assert list(got) == list(state) and all(torch.equal(got[k], state[k]) for k in state)


# ---------------------------------------------------------------- training that learns
@pytest.mark.parametrize("kind", MODELS)
def test_short_training_learns(kind, learnable_dir):
    ds = load_learnable(learnable_dir)
    tr = models.make_trainer(kind, models.init_state())
    first = tr.step(D.normalize(ds.train_images[:64]), ds.train_labels[:64]).item()
    assert abs(first - np.log(10)) < 0.3  # an untrained 10-way classifier: loss ~ ln 10
    hist = train.train_epochs(tr, ds, epochs=2, batch_size=64, progress=False, log=lambda m: None)
    assert hist[1]["train_loss"] < hist[0]["train_loss"] < first
    assert hist[-1]["test_loss"] < 0.5 * first
    assert hist[-1]["test_accuracy"] > 0.9  # chance is 0.1


@pytest.mark.parametrize("kind", MODELS)
def test_fashion_mnist_subset_learns(kind):
    try:  # local copies only (data-dir / cache / Debian's dataset-fashion-mnist, which `make setup` installs)
        ds = D.load("fashion-mnist", download=False, log=lambda m: None)
    except D.DataError as e:
        pytest.skip(f"no local Fashion-MNIST: {str(e).splitlines()[0]}")
    ds = ds.subset(6000, 2000)
    tr = models.make_trainer(kind, models.init_state())
    hist = train.train_epochs(tr, ds, epochs=1, batch_size=64, progress=False, log=lambda m: None)
    assert hist[0]["test_accuracy"] > 0.7, hist  # stock: ~0.78 after these 94 steps


def test_stock_losses_match_fused_adam():
    # the bench's loss comparison, on stock variants that must agree: default vs fused Adam
    state = models.init_state()
    a, b = models.stock_trainer(state), models.stock_trainer(state, fused=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        x, y = torch.randn(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)
        torch.testing.assert_close(a.step(x, y), b.step(x, y), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- pyops vs stock
@pytest.mark.parametrize("loss", models.LOSSES)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_pyops_matches_stock_first_steps(backend, loss):
    # cpu: 10 steps of the seed batch; the emulator and Triton's interpreter are slow: 3 steps of 16.
    steps, batch = (10, 64) if backend == "cpu" else (3, 16)
    state = models.init_state()
    stock = models.stock_trainer(state, loss=loss)
    ours = models.pyops_trainer(state, backend=backend, loss=loss)
    g = torch.Generator().manual_seed(0)
    for i in range(steps):
        x, y = torch.randn(batch, 784, generator=g), torch.randint(0, 10, (batch,), generator=g)
        # rtol 1e-4: the losses go through GEMMs with K = 784 (docs/testing.md, "Tolerances": rtol 1e-4 for GEMMs), and each
        # Adam step's update m/sqrt(v) turns tiny gradient rounding differences into lr-sized ones
        torch.testing.assert_close(ours.step(x, y), stock.step(x, y), rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f"step {i}: {m}")
    # The parameters: Adam moves every element by about lr per step whatever its gradient's size, so an element
    # whose gradients are ~0 (a first-layer weight of a nearly constant pixel) turns rounding-level differences
    # into a visible fraction of lr.  All elements stay within the steps' total movement of stock's, and all
    # but 1 in 10^4 within the GEMM tolerance.
    for k, v in stock.model.state_dict().items():
        p = ours.model.state_dict()[k]
        assert (p - v).abs().max() <= steps * models.SEED_LR, k
        close = torch.isclose(p, v, rtol=1e-4, atol=1e-5)
        assert close.sum() >= close.numel() - close.numel() // 10_000, (k, int((~close).sum()), close.numel())


# ---------------------------------------------------------------- dispatched-op counting, GEMM floor
def test_count_ops_sees_forward_backward_and_step():
    tr = models.stock_trainer(models.init_state(), fused=True)
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    tr.step(x, y)
    c = bench.count_ops(lambda: tr.step(x, y))
    ops = c["by_op"]
    assert ops["aten.addmm.default"] == 4 and ops["aten.mm.default"] == 7  # forward; backward dW/dX
    assert ops["aten.threshold_backward.default"] == 3  # ReLU backward: autograd ran on this thread
    assert ops["aten._fused_adam_.default"] == 1
    assert "aten.t.default" in c["view_ops"] and c["kernel_ops"] < c["all_dispatched"]
    assert c["kernel_ops"] == c["all_dispatched"] - sum(ops[v] for v in c["view_ops"]) - sum(
        n for k, n in ops.items() if k.startswith("profiler."))


def test_gemm_floor_is_the_eleven_gemms():
    run, flops = bench.gemm_floor(64)
    c = bench.count_ops(run)
    assert c["by_op"]["aten.mm.out"] == 11 and c["kernel_ops"] == 11, c  # plus the .t() views
    layers = [(784, 256), (256, 128), (128, 64), (64, 10)]
    assert flops == 2 * 64 * (3 * sum(i * o for i, o in layers) - 784 * 256)


# ---------------------------------------------------------------- outputs written atomically
def test_atomic_dir_replaces_and_survives_interruption(tmp_path):
    out = tmp_path / "out"
    with results.atomic_dir(str(out)) as tmp:
        open(os.path.join(tmp, "a.txt"), "w").write("1")
    with pytest.raises(KeyboardInterrupt):
        with results.atomic_dir(str(out)) as tmp:
            open(os.path.join(tmp, "a.txt"), "w").write("2")
            raise KeyboardInterrupt
    assert open(out / "a.txt").read() == "1" and os.listdir(tmp_path) == ["out"]
    with results.atomic_dir(str(out)) as tmp:
        open(os.path.join(tmp, "b.txt"), "w").write("3")
    assert os.listdir(out) == ["b.txt"] and os.listdir(tmp_path) == ["out"]


# ---------------------------------------------------------------- the commands
def test_bench_after_epochs_trains_before_timing():
    # --after-epochs N: each contender trains N whole epochs (untimed) after the loss steps; the counted and
    # timed steps follow on the next batches.  A 96-image set in batches of 32: 3 steps per epoch.
    import argparse
    from pyops.pipeline import bench as B

    p = argparse.ArgumentParser()
    B.add_arguments(p)
    args = p.parse_args(["--steps", "2", "--loss-steps", "2", "--rounds", "1", "--after-epochs", "2",
                         "--only", "fused,pyops-dropin", "--no-compile"])
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(96, 784, generator=g), torch.randint(0, 10, (96,), generator=g),
              torch.randn(20, 784, generator=g), torch.randint(0, 10, (20,), generator=g)]
    specs, _ = B.contender_specs(args, torch.device("cpu"))
    seen = []
    res = B.bench_batch_size(args, inputs, specs, 32, torch.device("cpu"), seen.append)
    rows = {c["key"]: c for c in res["contenders"]}
    for c in rows.values():
        assert c["status"] == "ok" and c["untimed_steps"] == 6 and c["timed_steps"] == 2
        assert c["trained_steps"] == 2 + 6 + 1 + 2
    assert any("2 loss steps + 6 untimed steps" in line for line in seen)
    with pytest.raises(SystemExit, match="--after-epochs must be 0 or more, got -1"):
        main(["bench", "synthetic", "--after-epochs", "-1", "--no-compile"])


def test_bench_synthetic_writes_all_outputs(tmp_path, capsys):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "stale.txt").write_text("previous run")
    # --no-compile: torch.compile takes 30+ s per batch size here; the compile contender runs in `make bench`
    # 3 rounds for 4 steps: 2 + 2 + 0 steps per round, each round in its own order
    rc = main(["bench", "synthetic", "--steps", "4", "--loss-steps", "3", "--rounds", "3", "--batch-sizes", "16,32",
               "--no-compile", "--out", str(out)])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["loss_curves_b16.png", "loss_curves_b32.png", "results.json", "results.md",
                                       "throughput.png"]
    assert os.listdir(tmp_path) == ["bench"]  # no temporary folder left
    for png in ("loss_curves_b16.png", "throughput.png"):
        assert open(out / png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    res = json.load(open(out / "results.json"))
    assert res["synthetic"] and "SYNTHETIC" in res["dataset"]
    assert [r["batch_size"] for r in res["results"]] == [16, 32]
    md = open(out / "results.md").read()
    assert "SYNTHETIC" in md and "GEMM floor" in md and "| stock eager, Adam (fused=True) |" in md
    for r in res["results"]:
        rows = {c["key"]: c for c in r["contenders"]}
        assert rows["eager"]["status"] == rows["fused"]["status"] == "ok" and "compile" not in rows
        assert rows["eager"]["timed_steps"] == 4 and rows["eager"]["trained_steps"] == 8
        assert all(c["timed_steps"] == 4 for c in rows.values())
        assert rows["fused"]["ops_per_step"]["kernel_ops"] < rows["eager"]["ops_per_step"]["kernel_ops"]
        assert rows["eager"]["max_abs_loss_diff_vs_stock_eager"] == 0.0
        assert rows["fused"]["max_abs_loss_diff_vs_stock_eager"] < 1e-4
        assert r["gemm_floor"]["ms"] > 0 and r["gemm_floor"]["gemms"] == 11
        pyops_rows = [c for k, c in rows.items() if k.startswith("pyops-cpu")]
        assert len(pyops_rows) == 3
        # the one-op step computes the autograd step's numbers: the same loss at every step
        assert rows["pyops-cpu-one-op"]["losses"] == rows["pyops-cpu-cross-entropy"]["losses"]
        for c in pyops_rows:
            assert c["status"] == "ok" and c["ms_per_step"] > 0 and c["max_abs_loss_diff_vs_stock_eager"] < 1e-3
            # the budget: <= 14 dispatched kernel ops per training step (mlp op, loss, Adam)
            assert c["ops_per_step"]["kernel_ops"] <= 14, c["ops_per_step"]
        # the stock model after pyops.optimize: trained on the pyops mlp, log_softmax and Adam kernels
        dropin = rows["pyops-dropin"]
        assert dropin["status"] == "ok" and dropin["max_abs_loss_diff_vs_stock_eager"] < 1e-3
        assert {"pyops.mlp_fwd.default", "pyops.mlp_bwd.default", "pyops.log_softmax_fwd.default",
                "pyops.adam_step.default"} <= dropin["ops_per_step"]["by_op"].keys(), dropin["ops_per_step"]
        assert "aten.addmm.default" not in dropin["ops_per_step"]["by_op"]
    assert "pyops backend cuda-sim: not timed" in capsys.readouterr().out


def test_train_command(tmp_path, learnable_dir, capsys):
    rc = main(["train", "mnist", "--model", "stock", "--epochs", "1", "--data-dir", learnable_dir, "--no-progress",
               "--out", str(tmp_path / "t")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Epoch: 1/1.. Training Loss: " in text and ".. Test Loss: " in text and ".. Test Accuracy: " in text
    info = json.load(open(tmp_path / "t" / "train.json"))
    assert info["history"][0]["test_accuracy"] > 0.8 and info["source"].startswith("--data-dir")


def test_train_command_one_op_step(tmp_path, learnable_dir, capsys):
    rc = main(["train", "mnist", "--one-op-step", "--loss", "cross-entropy", "--epochs", "1", "--data-dir",
               learnable_dir, "--no-progress", "--out", str(tmp_path / "t")])
    assert rc == 0
    assert "pyops auto (one-op step, cross-entropy)" in capsys.readouterr().out
    info = json.load(open(tmp_path / "t" / "train.json"))
    assert info["history"][0]["test_accuracy"] > 0.8


def test_train_command_errors(learnable_dir, capsys, monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="the stock model has neither"):
        main(["train", "mnist", "--model", "stock", "--backend", "cpu", "--data-dir", learnable_dir])
    with pytest.raises(SystemExit, match="drop --ddp or --one-op-step"):
        main(["train", "mnist", "--one-op-step", "--ddp", "--data-dir", learnable_dir])
    with pytest.raises(SystemExit, match="runs through autograd"):
        main(["train", "cubic", "--one-op-step"])
    with pytest.raises(SystemExit, match="start the command with torchrun"):
        main(["train", "mnist", "--model", "stock", "--ddp", "--data-dir", learnable_dir])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # an empty cache
    assert main(["train", "mnist", "--model", "stock", "--data-dir", "/nonexistent", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "error: mnist: no usable copy found" in err and "--data-dir /nonexistent: does not exist" in err


@pytest.mark.parametrize("kind", MODELS)
def test_cubic(kind, tmp_path):
    assert main(["train", "cubic", "--model", kind, "--epochs", "25", "--points", "512", "--no-progress",
                 "--out", str(tmp_path / "c")]) == 0
    assert sorted(os.listdir(tmp_path / "c")) == ["cubic.json", "cubic_fit.png", "cubic_loss.png"]
    mse = json.load(open(tmp_path / "c" / "cubic.json"))["test_mse"]
    assert mse[-1] < 0.1 * mse[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# One DDP run (two processes start slowly): the pyops model once it exists, else the stock one.
@pytest.mark.parametrize("kind", MODELS[-1:])
def test_ddp_two_processes(kind, learnable_dir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "pyops", "train", "mnist", "--model", kind, "--ddp", "--epochs",
           "2", "--data-dir", learnable_dir, "--no-progress", "--out", str(tmp_path / "ddp")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "batch 64 per process x 2 processes (DDP, gloo)" in p.stdout
    assert "Epoch: 2/2.. Training Loss:" in p.stdout and p.stdout.count("Epoch: 2/2") == 1  # rank 0 prints
    hist = json.load(open(tmp_path / "ddp" / "train.json"))["history"]
    assert hist[0]["steps"] == 16  # 2048 examples / 2 processes / batch 64
    assert hist[-1]["test_accuracy"] > 0.8
