"""pyops.optim.Adam / AdamW on every backend that runs here: cpu (C++), triton (interpreter), cuda-sim
(the CUDA kernel executed by the emulator); GPU-marked tests for cuda/triton on a real device.

Reference: torch.optim.Adam / AdamW with foreach=False (_single_tensor_adam, whose order of
floating-point operations the kernels follow).  "Relative difference" of a tensor is
max|ours - torch| / max|torch|: an element-wise ratio is meaningless for parameters that pass near
zero (two results 1 ulp apart at 1e-9 differ by 1e-7 relative to each other, after cancellation).
"""
import itertools
import os
import shutil
import subprocess
import sys

import pytest
import torch

import pyops
from helpers import CPU_BACKENDS, HAS_GPU, DispatchLog, needs_backend, sim_counts
from pyops import _ops
from pyops.kernels import LAUNCHES as TRITON_LAUNCHES

KERNEL_BACKENDS = [b for b in CPU_BACKENDS if b in ("cpu", "cuda-sim", "triton")]
NAMESPACES = {"cpu": "pyops", "cuda-sim": "pyops_sim", "triton": "pyops_triton"}
# the parity bar after 200 steps: 1e-6 in float32, 1e-12 in float64 (relative to the largest element)
REL = {torch.float32: 1e-6, torch.float64: 1e-12}
SHAPES_A = [(3,), (301,)]  # group 0: odd sizes, so every kernel has vector tails
SHAPES_B = [(7, 13)]       # group 1, with a different lr
# Triton's interpreter pays ~10 ms per program (tensor) and launch on this 2-core machine: the long
# runs give it one tensor in group 0 (tests with several tensors per launch: capturable, multi-tile,
# state_dict, launch counts)
SHAPES_A_TRITON = [(301,)]
STATE_KEYS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def rel_diff(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    if b.numel() == 0:
        return 0.0
    scale = b.abs().max()
    return ((a - b).abs().max() / scale).item() if scale > 0 else (a - b).abs().max().item()


def make_params(dtype, shapes, device="cpu"):
    return [torch.randn(s, dtype=dtype, device=device) for s in shapes]


def make_groups(params, lrs, split=len(SHAPES_A)):
    return [{"params": params[:split], "lr": lrs[0]}, {"params": params[split:], "lr": lrs[1]}]


def shapes_a(backend, steps):
    return SHAPES_A_TRITON if backend == "triton" and steps > 50 else SHAPES_A


def lr_values(lr_tensor, dtype, device="cpu"):
    if lr_tensor:  # a tensor lr of the params' dtype (torch.optim computes in the lr tensor's dtype)
        return [torch.tensor(1e-3, dtype=dtype, device=device), torch.tensor(3e-3, dtype=dtype, device=device)]
    return [1e-3, 3e-3]


def train(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = g.clone()
        opt.step()


def compare(ours, ref, params, ref_params, rel):
    """Params, state tensors and steps of two optimizers over the same model, to `rel`."""
    for p, q in zip(params, ref_params):
        assert rel_diff(p.detach(), q.detach()) <= rel
        s, t = ours.state[p], ref.state[q]
        assert set(s) == set(t)
        assert s["step"].item() == t["step"].item()
        for k in STATE_KEYS:
            if k in t:
                assert rel_diff(s[k], t[k]) <= rel, k


def run_pair(backend, dtype, steps, cls_kwargs, lr_tensor=False, capturable=False, seed=0):
    """The same training with pyops and torch.optim: returns both optimizers and parameter lists."""
    torch.manual_seed(seed)
    group_a = shapes_a(backend, steps)
    base = make_params(dtype, group_a + SHAPES_B)
    grads = [[torch.randn_like(b) for b in base] for _ in range(steps)]
    adamw = cls_kwargs.pop("adamw", False)
    ours_p = [b.clone().requires_grad_() for b in base]
    ref_p = [b.clone().requires_grad_() for b in base]
    ours = (pyops.optim.AdamW if adamw else pyops.optim.Adam)(
        make_groups(ours_p, lr_values(lr_tensor, dtype), len(group_a)), backend=backend, capturable=capturable,
        **cls_kwargs)
    ref = (torch.optim.AdamW if adamw else torch.optim.Adam)(
        make_groups(ref_p, lr_values(lr_tensor, dtype), len(group_a)), foreach=False, **cls_kwargs)
    train(ours, ours_p, grads)
    train(ref, ref_p, grads)
    return ours, ref, ours_p, ref_p


# ---------------------------------------------------------------- 200 steps, every combination
COMBOS = list(itertools.product([False, True], [False, True], [0.0, 1e-2], [False, True], [False, True]))
# Triton's interpreter spends ~7 ms of CPU per program and launch (~4 s per 200-step run here), so
# it runs the combinations that differ for the kernel: every (amsgrad, maximize, Adam / AdamW,
# weight_decay 0 / 1e-2) in float32 -- which covers each of its 12 specializations (AMSGRAD x
# MAXIMIZE x no / L2 / decoupled decay) -- with half of them on a tensor lr (a tensor lr changes
# only the launcher's host arithmetic, which reads it), and 6 of those in float64.  cpu and
# cuda-sim run all 32 combinations in both dtypes.
TRITON_F32 = [c for c in COMBOS if c[4] == ((c[0] + c[1] + c[3]) % 2 == 1)]
TRITON_F64 = [(False, False, 0.0, False, False), (True, False, 1e-2, False, True), (False, True, 1e-2, False, False),
              (True, True, 1e-2, True, False), (False, False, 1e-2, True, True), (True, True, 0.0, True, True)]


def combo_id(c):
    amsgrad, maximize, wd, adamw, lr_tensor = c
    return "-".join([("AdamW" if adamw else "Adam"), f"wd{wd:g}", "ams" if amsgrad else "noams",
                     "max" if maximize else "min", "lrT" if lr_tensor else "lrF"])


PARITY_CASES = [pytest.param(b, dt, c, id=f"{b}-{'f32' if dt == torch.float32 else 'f64'}-{combo_id(c)}")
                for b in KERNEL_BACKENDS for dt in (torch.float32, torch.float64) for c in COMBOS
                if b != "triton" or c in (TRITON_F32 if dt == torch.float32 else TRITON_F64)]


@pytest.mark.parametrize("backend,dtype,combo", PARITY_CASES)
def test_parity_200_steps(backend, dtype, combo):
    amsgrad, maximize, wd, adamw, lr_tensor = combo
    ours, ref, ours_p, ref_p = run_pair(backend, dtype, 200, dict(amsgrad=amsgrad, maximize=maximize,
                                                                  weight_decay=wd, adamw=adamw), lr_tensor)
    compare(ours, ref, ours_p, ref_p, REL[dtype])
    assert ours.state[ours_p[0]]["step"].item() == 200


# ---------------------------------------------------------------- capturable: step and lr read by the kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("kw", [dict(amsgrad=True, adamw=True, weight_decay=1e-2, lr_tensor=True),
                                dict(maximize=True, weight_decay=1e-2)], ids=["AdamW-ams-lrT", "Adam-max"])
def test_capturable(backend, dtype, kw):
    # capturable=True on CPU tensors: the CUDA and Triton kernels read and advance `step` themselves
    # (arrival counters), the path a CUDA graph replays.  torch.optim refuses capturable on the CPU, so
    # the reference is its non-capturable run: the kernels compute the same scalars from the step.
    kw = dict(kw)
    lr_tensor = kw.pop("lr_tensor", False)
    ours, ref, ours_p, ref_p = run_pair(backend, dtype, 30, kw, lr_tensor, capturable=True)
    compare(ours, ref, ours_p, ref_p, REL[dtype])
    for p in ours_p:
        assert ours.state[p]["step"].device == p.device and ours.state[p]["step"].item() == 30
    for plan in ours._plans.values():
        for b in plan.buckets:
            assert b.device_steps and b.counters.eq(0).all()  # every counter reset by the last block/program


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_multi_tile_tensors(backend):
    # tensors spanning several CUDA tiles (4096) / Triton tiles (1024), full tiles without masks,
    # an empty tensor, and in capturable mode several blocks arriving on one tensor's counter
    torch.manual_seed(0)
    shapes = [(9000,), (0,), (1500,), (5,)]
    for capturable in (False, True):
        base = make_params(torch.float32, shapes)
        ours_p = [b.clone().requires_grad_() for b in base]
        ref_p = [b.clone().requires_grad_() for b in base]
        ours = pyops.optim.Adam(ours_p, lr=1e-2, amsgrad=True, backend=backend, capturable=capturable)
        ref = torch.optim.Adam(ref_p, lr=1e-2, amsgrad=True, foreach=False)
        grads = [[torch.randn_like(b) for b in base] for _ in range(3)]
        train(ours, ours_p, grads)
        train(ref, ref_p, grads)
        compare(ours, ref, ours_p, ref_p, REL[torch.float32])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_unaligned_params(backend):
    # params that are views at odd offsets of one buffer: no 16-byte accesses (scalar path)
    torch.manual_seed(0)
    buf = torch.randn(1 + 301 + 45)
    ours_p = [buf[1:302].requires_grad_(), buf[302:].view(5, 9).requires_grad_()]  # 4 and 1212 bytes in
    ref_p = [p.detach().clone().requires_grad_() for p in ours_p]
    base = ref_p
    ours = pyops.optim.AdamW(ours_p, backend=backend)
    ref = torch.optim.AdamW(ref_p, foreach=False)
    grads = [[torch.randn_like(b) for b in base] for _ in range(5)]
    train(ours, ours_p, grads)
    train(ref, ref_p, grads)
    compare(ours, ref, ours_p, ref_p, REL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_split_between_threads(dtype):
    # The CPU kernel cuts the elements of all tensors, numbered one after another, into equal shares per
    # thread, so shares begin and end inside tensors and at odd offsets (not on vector boundaries).  Enough
    # elements for the parallel path (> 32768), odd sizes and an empty tensor: every element is updated
    # exactly once, whatever the thread count -- the same bits with 1, 2 and 3 threads, and torch.optim's values.
    torch.manual_seed(0)
    shapes = [(30011,), (0,), (7, 1001), (3,), (12345,)]
    base = make_params(dtype, shapes)
    grads = [[torch.randn_like(b) for b in base] for _ in range(3)]
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            ours_p = [b.clone().requires_grad_() for b in base]
            ours = pyops.optim.Adam(ours_p, lr=1e-2, amsgrad=True, weight_decay=1e-2, backend="cpu")
            train(ours, ours_p, grads)
            results.append((ours, ours_p))
    finally:
        torch.set_num_threads(threads)
    ref_p = [b.clone().requires_grad_() for b in base]
    ref = torch.optim.Adam(ref_p, lr=1e-2, amsgrad=True, weight_decay=1e-2, foreach=False)
    train(ref, ref_p, grads)
    (one, one_p), others = results[0], results[1:]
    compare(one, ref, one_p, ref_p, REL[dtype])
    for ours, ours_p in others:
        for p, q in zip(ours_p, one_p):
            assert torch.equal(p, q)
            for k in STATE_KEYS:
                assert torch.equal(ours.state[p][k], one.state[q][k]), k


# ---------------------------------------------------------------- the CPU kernel's division without a divider
# csrc/cpu/exact_div.h divides sqrt(v) by sqrt(1 - beta2^t) with a multiply and FMAs instead of vdivps (the
# update's square root and divisions share one slow divider unit).  It must give vdivps' bits.
@pytest.mark.skipif(not _ops.BUILD["cpu_avx2"], reason="the CPU kernels were built without AVX2 (plain division)")
def test_cpu_division_by_the_bias_correction_is_exact(tmp_path):
    # every float x of the FMA path's range (~1e9) against vdivps, for the bias corrections of the default
    # betas at steps 1, 2 and 1000, beta2 = 0.99 at step 1, the range's ends and an all-ones significand
    if shutil.which("g++") is None:
        pytest.skip("no g++ to compile tests/exact_div_check.cpp")
    exe = tmp_path / "exact_div_check"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(["g++", "-std=c++17", "-O2", "-mavx2", "-mfma", "-fopenmp", "-I", root,
                    os.path.join(root, "tests", "exact_div_check.cpp"), "-o", str(exe)], check=True)
    divisors = [float(torch.tensor((1 - 0.999 ** t) ** 0.5, dtype=torch.float32)) for t in (1, 2, 1000)]
    divisors += [(1 - 0.99) ** 0.5, 2.0 ** -40, 2.0 ** 40, float.fromhex("0x1.fffffep+0")]
    out = subprocess.run([str(exe), *map(float.hex, divisors)], capture_output=True, text=True)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == len(divisors), out.stdout + out.stderr
    assert all(": 0 mismatches in 1006632963 x" in line for line in lines), out.stdout


def cpu_and_sim_from_state(cls, p0, state, grads, **kw):
    """``cls(..., **kw)`` on the param ``p0`` with backends cpu and cuda-sim: one step on zero gradients creates
    the state, then ``p0`` and ``state`` (key -> tensor, for the keys the optimizer has) are put in, and
    ``grads`` are trained.  Returns per backend [param, its state tensors in STATE_KEYS order]."""
    results = []
    for backend in ("cpu", "cuda-sim"):
        p = torch.nn.Parameter(p0.clone())
        opt = cls([p], backend=backend, **kw)
        p.grad = torch.zeros_like(p)
        opt.step()
        st = opt.state[p]
        with torch.no_grad():
            p.copy_(p0)  # the zero-gradient step can change it (eps = 0: 0 / 0)
            for k, t in state.items():
                if k in st:
                    st[k].copy_(t)
        train(opt, [p], [[g] for g in grads])
        results.append([p.detach()] + [st[k] for k in STATE_KEYS if k in st])
    return results


@needs_backend("cuda-sim")
@pytest.mark.parametrize("beta2,eps", [(0.999, 1e-8), (0.99, 0.0), (0.5, 1e-8)])
def test_cpu_kernel_matches_the_cuda_kernel_bit_for_bit(beta2, eps):
    # The CPU kernel (vectors, FMA division) and the CUDA kernel run by the emulator (scalars, true division)
    # evaluate the same adam_update: the same bits for exp_avg_sq spread over every binade of float32 --
    # subnormals, zeros of both signs, inf and NaN included -- and zero gradients (v stays put).  eps = 0
    # leaves the quotient sqrt(v) / sqrt(1 - beta2^t) unmasked in the update.
    torch.manual_seed(0)
    e = torch.arange(-149, 128).repeat_interleave(32)
    v = torch.ldexp(1 + torch.rand(e.numel()), e)
    v = torch.cat([v, torch.tensor([0.0, -0.0, float("inf"), float("nan"), 1e-45, 3e-39, 3.4e38])])
    v = v[torch.randperm(v.numel())]
    m = torch.randn(v.numel())
    grads = [torch.randn(v.numel()) * (torch.rand(v.numel()) < 0.7) for _ in range(3)]
    results = cpu_and_sim_from_state(pyops.optim.Adam, torch.linspace(-2, 2, v.numel()),
                                     {"exp_avg_sq": v, "exp_avg": m}, grads, lr=1e-3, betas=(0.9, beta2), eps=eps)
    for a, b in zip(*results):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))
    assert int(results[0][0].isfinite().sum()) > v.numel() // 2  # the params were updated, not NaN'ed


@pytest.mark.skipif(not _ops.BUILD["cpu_avx2"], reason="the CPU kernels were built without AVX2 (no idle path)")
@pytest.mark.parametrize("blocks", [[], [0], [1], [2, 5], [0, 1, 2], [8], [3, 4, 8], list(range(9))])
def test_cpu_idle_path_takes_exactly_the_blocks_with_a_small_exp_avg(blocks):
    # The CPU kernel sends a block of 16 vectors (128 floats) through its idle-lane path when the block holds an
    # exp_avg below Z, and the ordinary loop tests each block while it updates the one before (csrc/cpu/adam.cpp,
    # Lookahead).  Both give the same bits, so only the count shows that the tests find the blocks: one tensor
    # of 9 whole blocks and a 5-float tail (updated by the ordinary code, never a block), a subnormal exp_avg
    # (with a zero gradient) in each listed block and in the tail.
    n = 9 * 128 + 5
    torch.manual_seed(len(blocks))
    p = torch.nn.Parameter(torch.randn(n))
    opt = pyops.optim.Adam([p], lr=3e-3, backend="cpu")
    p.grad = torch.randn(n)
    opt.step()
    grad = torch.randn(n)
    with torch.no_grad():
        m = opt.state[p]["exp_avg"]
        for b in blocks + [n // 128]:  # n // 128: the tail
            i = min(b * 128 + (37 * b) % 128, n - 1)
            m[i], grad[i] = 1e-40, 0.0
    p.grad = grad
    before = _ops._C.cpu_adam_idle_blocks()
    opt.step()
    assert _ops._C.cpu_adam_idle_blocks() - before == len(blocks)


def same_bits(a, b):
    """Equal bit for bit, except that any two NaNs match (the CPU's vector max and the CUDA kernel's scalar
    max give NaNs of different payloads)."""
    both_nan = a.isnan() & b.isnan()
    return bool(((a.view(torch.int32) == b.view(torch.int32)) | both_nan).all())


@needs_backend("cuda-sim")
@pytest.mark.parametrize("kw", [dict(), dict(adamw=True, amsgrad=True, maximize=True, weight_decay=1e-2),
                                dict(amsgrad=True, maximize=True), dict(eps=0.0, lr=1e5), dict(eps=1e-20, lr=1e8),
                                dict(eps=1e-20), dict(weight_decay=1e-2, amsgrad=True)],
                         ids=["Adam", "AdamW-ams-max", "Adam-ams-max", "eps0-huge-lr", "tiny-eps-huge-lr", "tiny-eps",
                              "Adam-L2-ams"])
def test_cpu_subnormal_exp_avg_matches_the_cuda_kernel(kw):
    # exp_avg of parameters whose gradient stays 0 decays into the subnormal range and stays there; the CPU
    # kernel computes those lanes, and those whose exp_avg is on its way down (a subnormal product with the
    # step size), without subnormal arithmetic (csrc/cpu/adam.cpp, "exp_avg decaying towards 0").  exp_avg
    # from 2^-149 to 2^-110 (subnormal, below and above Z) scattered and in whole vectors, zero and nonzero gradients,
    # params tiny enough that the step does not round away (the ordinary path must take over), zeros,
    # subnormal exp_avg_sq: the same bits as the emulated CUDA kernel (scalars, plain IEEE arithmetic).
    # Elements 2048-2559 are a dead unit's row: zero gradients in every step, so whole vectors are idle (the
    # path that keeps p without computing the step), some with a param too small for that, an inf or NaN
    # exp_avg_sq; in "tiny-eps" (den = eps where exp_avg_sq is 0) params near the threshold for the exp_avg
    # below Z.  "Adam-L2-ams": L2 decay makes the gradient nonzero, the path is off; eps = 0: the whole-vector
    # shortcut is off (its bound needs eps > 0).
    kw = dict(kw)
    cls = pyops.optim.AdamW if kw.pop("adamw", False) else pyops.optim.Adam
    n = 4099
    torch.manual_seed(0)
    p0 = torch.randn(n) * torch.where(torch.rand(n) < 0.1, 1e-30, 1.0)
    p0[::97] = 0.0
    m0 = torch.randn(n) * 1e-3
    sub = torch.rand(n) < 0.5
    k = int(sub.sum())
    m0[sub] = torch.ldexp(torch.rand(k) + 0.5, torch.randint(-149, -110, (k,))) * torch.randn(k).sign()
    m0[4000:4064] = 1e-40
    v0 = torch.rand(n) * (torch.rand(n) > 0.2)
    v0[::13] = 1e-42
    dead = slice(2048, 2560)
    m0[dead] = torch.ldexp(torch.rand(512) + 0.5, torch.randint(-149, -110, (512,))) * torch.randn(512).sign()
    p0[dead] = torch.randn(512) * 10.0 ** (-8 * torch.rand(512))  # "tiny-eps-huge-lr": some need the step
    p0[2048 + 8 * 5: 2048 + 8 * 10] = 0.5 + torch.rand(40)
    near = slice(2048 + 8 * 30, 2048 + 8 * 40)
    p0[near] = torch.randn(80) * 10.0 ** (-10 - 3 * torch.rand(80))
    m0[near] = torch.ldexp(torch.rand(80) + 0.5, torch.randint(-124, -119, (80,)))
    v0[near] = 0.0
    v0[2048 + 8 * 5 + 3] = float("inf")
    v0[2048 + 8 * 9 + 6] = float("nan")
    grads = [torch.randn(n) * (torch.rand(n) < 0.3) for _ in range(3)]
    for g in grads:
        g[dead] = 0.0
        g[2048 + 8 * 20: 2048 + 8 * 22: 3] = -0.0
    results = cpu_and_sim_from_state(cls, p0, {"exp_avg": m0, "exp_avg_sq": v0, "max_exp_avg_sq": v0}, grads, **kw)
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results):
        assert same_bits(a, b)
    # the state kept subnormal and small normal exp_avg to update to the end (the lanes the path is for),
    # except under L2 decay
    m = results[0][1]
    subnormal = int(((m != 0) & (m.abs() < 2.0 ** -126)).sum())
    small = int(((m.abs() >= 2.0 ** -126) & (m.abs() < 2.0 ** -118)).sum())
    if cls is pyops.optim.Adam and kw.get("weight_decay"):
        assert subnormal < 10
    else:
        assert subnormal > 500 and small > 200


# ---------------------------------------------------------------- fp16 / bf16 params: fp32 state and math

def half_reference(base, grads, cls=torch.optim.Adam, **kw):
    """torch.optim on float32 copies whose values are rounded to the half dtype after every step: the
    pyops semantics (fp32 math and state, the param stored in its own dtype)."""
    dtype = base[0].dtype
    p32 = [b.float().requires_grad_() for b in base]
    opt = cls(p32, foreach=False, **kw)
    for gs in grads:
        for p, g in zip(p32, gs):
            p.grad = g.float()
        opt.step()
        with torch.no_grad():
            for p in p32:
                p.copy_(p.to(dtype).float())
    return opt, p32


@pytest.mark.parametrize("backend,dtype", [("cuda-sim", torch.float16), ("cuda-sim", torch.bfloat16),
                                           ("triton", torch.float16)])  # the interpreter cannot do bf16
def test_half_params(backend, dtype):
    if backend not in CPU_BACKENDS:
        pytest.skip(f"backend {backend} does not run here")
    torch.manual_seed(0)
    base = make_params(dtype, SHAPES_A + SHAPES_B)
    grads = [[torch.randn_like(b) for b in base] for _ in range(20)]
    ours_p = [b.clone().requires_grad_() for b in base]
    ours = pyops.optim.Adam(ours_p, lr=1e-2, amsgrad=True, backend=backend)
    train(ours, ours_p, grads)
    ref, ref_p = half_reference(base, grads, lr=1e-2, amsgrad=True)
    for p, q in zip(ours_p, ref_p):
        assert p.dtype == dtype
        st = ours.state[p]
        assert all(st[k].dtype == torch.float32 for k in STATE_KEYS)
        # both round the same fp32 result; a 1-ulp fp32 difference (IEEE vs torch's sqrt) can flip a
        # rounding to the half dtype, so allow one half ulp
        torch.testing.assert_close(p.detach().float(), q.detach(), rtol=2 ** -8 if dtype == torch.bfloat16 else 2 ** -11,
                                   atol=1e-6)
        for k in STATE_KEYS:
            assert rel_diff(st[k], ref.state[q][k]) <= 1e-5


# ---------------------------------------------------------------- one launch per (device, dtype) group and step
MLP_SHAPES = [(256, 784), (256,), (128, 256), (128,), (64, 128), (64,), (10, 64), (10,)]  # the MNIST MLP


@needs_backend("cuda-sim")
def test_one_cuda_launch_per_group_and_step():
    torch.manual_seed(0)
    params = [torch.randn(s, requires_grad=True) for s in MLP_SHAPES]
    opt = pyops.optim.Adam(params, backend="cuda-sim")
    for p in params:
        p.grad = torch.randn_like(p)
    _ops.sim_reset_launch_counts()
    opt.step()
    opt.step()
    assert sim_counts() == {"adam_multi_tensor_kernel": 2}
    # two groups of mixed dtypes: one launch per (group, dtype)
    extra = [torch.randn(5, dtype=torch.float64, requires_grad=True), torch.randn(3, requires_grad=True)]
    opt2 = pyops.optim.Adam([{"params": params[:2] + extra}, {"params": params[2:]}], backend="cuda-sim")
    for p in params + extra:
        p.grad = torch.randn_like(p)
    _ops.sim_reset_launch_counts()
    opt2.step()
    assert sim_counts() == {"adam_multi_tensor_kernel": 3}


@needs_backend("cuda-sim")
def test_cuda_table_split_beyond_capacity():
    # more tensors than one kernel-argument table holds (kAdamMaxTensors = 54): two launches, same result
    torch.manual_seed(0)
    base = [torch.randn(7 + i) for i in range(60)]
    ours_p = [b.clone().requires_grad_() for b in base]
    ref_p = [b.clone().requires_grad_() for b in base]
    ours = pyops.optim.Adam(ours_p, backend="cuda-sim", capturable=True)
    ref = torch.optim.Adam(ref_p, foreach=False)
    grads = [[torch.randn_like(b) for b in base] for _ in range(3)]
    _ops.sim_reset_launch_counts()
    train(ours, ours_p, grads)
    train(ref, ref_p, grads)
    assert sim_counts() == {"adam_multi_tensor_kernel": 2 * 3}
    compare(ours, ref, ours_p, ref_p, REL[torch.float32])


@needs_backend("triton")
def test_one_triton_launch_per_group_and_step():
    params = [torch.randn(s, requires_grad=True) for s in [(3, 5), (17,), (2,)]]
    opt = pyops.optim.AdamW(params, backend="triton")
    for p in params:
        p.grad = torch.randn_like(p)
    TRITON_LAUNCHES.clear()
    opt.step()
    assert TRITON_LAUNCHES == {"adam_multi_tensor_kernel": 1}


# ---------------------------------------------------------------- state_dict: torch.optim's format, both ways
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("amsgrad", [False, True])
def test_state_dict_round_trip(backend, amsgrad):
    # torch -> pyops -> torch, mid-training: the continuation matches 30 steps of torch.optim alone
    torch.manual_seed(0)
    base = make_params(torch.float32, SHAPES_A + SHAPES_B)
    grads = [[torch.randn_like(b) for b in base] for _ in range(30)]
    kw = dict(amsgrad=amsgrad, weight_decay=1e-2)
    ref_p = [b.clone().requires_grad_() for b in base]
    ref = torch.optim.AdamW(make_groups(ref_p, [1e-3, 3e-3]), foreach=False, **kw)
    train(ref, ref_p, grads)

    p = [b.clone().requires_grad_() for b in base]
    t1 = torch.optim.AdamW(make_groups(p, [1e-3, 3e-3]), foreach=False, **kw)
    train(t1, p, grads[:10])
    ours = pyops.optim.AdamW(make_groups(p, [0.5, 0.5]), backend=backend)  # hyperparameters come from the checkpoint
    ours.load_state_dict(t1.state_dict())
    assert ours.param_groups[0]["lr"] == 1e-3 and ours.param_groups[1]["amsgrad"] == amsgrad
    train(ours, p, grads[10:20])
    sd = ours.state_dict()
    assert set(sd["param_groups"][0]) == set(t1.state_dict()["param_groups"][0])
    for st in sd["state"].values():
        assert set(st) == {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
        assert st["step"].dtype == torch.float32 and st["step"].device.type == "cpu" and st["step"].item() == 20
    t2 = torch.optim.AdamW(make_groups(p, [0.5, 0.5]), foreach=False)
    t2.load_state_dict(sd)
    train(t2, p, grads[20:])
    for a, b in zip(p, ref_p):
        assert rel_diff(a.detach(), b.detach()) <= REL[torch.float32]
    for a, b in zip(p, ref_p):
        for k in STATE_KEYS:
            if k in ref.state[b]:
                assert rel_diff(t2.state[a][k], ref.state[b][k]) <= REL[torch.float32]


@needs_backend("cuda-sim")
def test_state_dict_half_params_keep_fp32_state():
    p = [torch.randn(10, dtype=torch.float16, requires_grad=True)]
    p[0].grad = torch.randn_like(p[0])
    t = torch.optim.Adam(p)  # fp16 state
    t.step()
    ours = pyops.optim.Adam(p, backend="cuda-sim")
    ours.load_state_dict(t.state_dict())
    assert ours.state[p[0]]["exp_avg"].dtype == torch.float32
    ours.step()
    assert ours.state[p[0]]["step"].item() == 2


# ---------------------------------------------------------------- grads: None, zero_grad, skipped params
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_zero_grad_and_params_without_grad(backend):
    torch.manual_seed(0)
    a, b = torch.randn(5, requires_grad=True), torch.randn(4, requires_grad=True)
    opt = pyops.optim.Adam([a, b], lr=0.1, backend=backend)
    (a.sum() * 2).backward()
    b0 = b.detach().clone()
    opt.step()  # b has no gradient: skipped, no state
    assert b not in opt.state and torch.equal(b.detach(), b0)
    assert opt.state[a]["step"].item() == 1
    opt.zero_grad(set_to_none=True)
    assert a.grad is None and b.grad is None
    a0 = a.detach().clone()
    opt.step()  # no gradients at all: nothing changes
    assert torch.equal(a.detach(), a0) and opt.state[a]["step"].item() == 1
    ((a.sum() + b.sum()) * 3).backward()  # b gets a gradient: the cached plan is rebuilt
    opt.step()
    assert opt.state[a]["step"].item() == 2 and opt.state[b]["step"].item() == 1
    assert not torch.equal(b.detach(), b0)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(a.grad, torch.zeros_like(a))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_step_reads_the_params_own_gradients_until_one_is_missing(backend):
    """A group whose every param had a gradient when its plan was made is stepped by its prepared call with the
    params' own .grad, read in C++ (AdamStepCall.with_param_grads); a step where one is missing takes the general
    path (that param skipped, as torch.optim skips it), and the next full step the fast one again.  The numbers
    are torch.optim.Adam's at every step, and the op runs once per step either way."""
    torch.manual_seed(0)
    a, b = torch.randn(7, requires_grad=True), torch.randn(3, 2, requires_grad=True)
    ra, rb = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ours = pyops.optim.Adam([a, b], lr=0.05, backend=backend)
    ref = torch.optim.Adam([ra, rb], lr=0.05)
    for both in (True, True, False, True, False, True):
        ga, gb = torch.randn(7), torch.randn(3, 2)
        for (p, q), g in zip(((a, ra), (b, rb)), (ga, gb)):
            p.grad, q.grad = (g.clone(), g.clone()) if both or p is a else (None, None)
        with DispatchLog() as log:
            ours.step()
        ref.step()
        assert log.names.count(f"{_ops.NAMESPACES[backend]}.adam_step") == 1
        plan = ours._plans[id(ours.param_groups[0])]
        assert (plan.own is not None) == both  # the fast path's plan exactly when both had a gradient
        for p, q in ((a, ra), (b, rb)):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-7)
    assert ours.state[a]["step"].item() == 6 and ours.state[b]["step"].item() == 4
    c = torch.randn(2, requires_grad=True)  # a param appended to the group's list by hand: planned and stepped
    ours.param_groups[0]["params"].append(c)
    for p in (a, b, c):
        p.grad = torch.ones_like(p)
    ours.step()
    assert ours.state[c]["step"].item() == 1 and ours.state[a]["step"].item() == 7
    ours.param_groups[0]["params"].pop()
    ours.step()  # and dropped again
    assert ours.state[c]["step"].item() == 1 and ours.state[a]["step"].item() == 8
    plan = ours._plans[id(ours.param_groups[0])]
    bucket = plan.buckets[0]
    a.grad = None  # the prepared call itself: False and nothing done when a param has no gradient
    before = [t.clone() for t in (a, b, ours.state[b]["exp_avg"])]
    assert bucket.call.with_param_grads(None, bucket.counters, bucket.device_steps, pyops.optim.hparams(
        ours.param_groups[0])[1]) is False
    assert all(torch.equal(x, y) for x, y in zip(before, (a, b, ours.state[b]["exp_avg"])))


def test_zero_grad_sets_none_in_cpp_for_plain_tensors_only():
    """zero_grad(set_to_none=True) clears plain tensors' and Parameters' .grad in C++ (_C.set_grads_none, no
    Python object made per gradient); a list with anything else is left to the Python loop -- the helper says
    False and touches nothing -- with the same result."""
    class Tagged(torch.nn.Parameter):  # a subclass: what setting its .grad means is its own
        pass

    plain, param, tagged = torch.zeros(2, requires_grad=True), torch.nn.Parameter(torch.zeros(2)), Tagged(torch.zeros(2))
    for t in (plain, param, tagged):
        t.grad = torch.ones(2)
    assert _ops._C.set_grads_none([plain, tagged]) is False and plain.grad is not None
    assert _ops._C.set_grads_none((plain, param)) is False and plain.grad is not None  # not a list
    assert _ops._C.set_grads_none([plain, param]) is True and plain.grad is None and param.grad is None
    assert _ops._C.set_grads_none([plain, param]) is True  # no gradient: nothing to do
    opt = pyops.optim.Adam([param, tagged], lr=0.1)
    param.grad = torch.ones(2)
    opt.zero_grad()
    assert param.grad is None and tagged.grad is None


def test_step_hooks_and_profiler_range():
    """The lean step wrapper keeps torch.optim's contract: per-optimizer and global pre/post hooks (a pre
    hook may replace the arguments), and the Optimizer.step#Adam.step range under the profiler."""
    p = torch.nn.Parameter(torch.ones(3))
    opt = pyops.optim.AdamW([p], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o is opt)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o is opt)))
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda o, a, k: calls.append(("global", 1)))
    try:
        p.grad = torch.ones(3)
        opt.step()
    finally:
        handle.remove()
    assert calls == [("pre", True), ("post", True), ("global", 1)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    assert "Optimizer.step#AdamW.step" in {e.name for e in prof.events()}
    p.grad = torch.ones(3, requires_grad=True) * 2  # a grad with a grad_fn: zero_grad(False) detaches it
    opt.zero_grad(set_to_none=False)
    assert p.grad.grad_fn is None and torch.equal(p.grad, torch.zeros(3))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_prepared_call_is_the_op_call(backend):
    """step() calls each bucket's op through its prepared call (_C.AdamStepCall: the param and state lists
    converted once): the same op through the dispatcher -- a dispatch mode sees it, its profiler range opens --
    and the same numbers as the op called through torch.ops, bit for bit; hyperparameters that are ints or
    bools are taken as numbers."""
    torch.manual_seed(0)
    shapes = SHAPES_A_TRITON if backend == "triton" else SHAPES_A + SHAPES_B
    init = make_params(torch.float32, shapes)
    grads = [make_params(torch.float32, shapes) for _ in range(3)]
    pairs = []
    for prepared in (True, False):
        params = [torch.nn.Parameter(t.clone()) for t in init]
        opt = pyops.optim.AdamW(params, lr=3e-3, amsgrad=True, backend=backend)
        train(opt, params, grads[:1])
        buckets = [b for plan in opt._plans.values() for b in plan.buckets]
        assert buckets and all(b.call is not None for b in buckets)
        if not prepared:
            for b in buckets:
                b.call = None  # step() then calls torch.ops.<ns>.adam_step
        for q, g in zip(params, grads[1]):
            q.grad = g.clone()
        log = DispatchLog()
        with log:
            opt.step()
        assert log.names == [f"{NAMESPACES[backend]}.adam_step"]
        opt.param_groups[0]["weight_decay"] = 0  # an int, and a flag as a bool (the constructor's False)
        train(opt, params, grads[2:])
        pairs.append((opt, params))
    (ours, p1), (ref, p2) = pairs
    compare(ours, ref, p1, p2, 0.0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        train(ours, p1, grads[:1])
    assert f"{NAMESPACES[backend]}::adam_step" in {e.name for e in prof.events()}


def test_hyperparameter_as_a_one_element_tensor():
    """A hyperparameter that a param group holds as a one-element tensor counts with its value (it was taken as 0
    once, silently)."""
    torch.manual_seed(0)
    init, grads = make_params(torch.float32, SHAPES_A), [make_params(torch.float32, SHAPES_A) for _ in range(2)]
    runs = []
    for wd in (0.05, torch.tensor(0.05, dtype=torch.float64)):
        params = [torch.nn.Parameter(t.clone()) for t in init]
        opt = pyops.optim.AdamW(params, lr=1e-2)
        opt.param_groups[0]["weight_decay"] = wd
        train(opt, params, grads)
        runs.append((opt, params))
    compare(*[r[0] for r in runs], runs[0][1], runs[1][1], 0.0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_lr_scheduler_and_group_edits(backend):
    # the optimizer reads lr (and the other hyperparameters) from the groups at every step
    torch.manual_seed(0)
    base = make_params(torch.float32, SHAPES_A + SHAPES_B)
    grads = [[torch.randn_like(b) for b in base] for _ in range(6)]
    runs = []
    for cls, kw in [(pyops.optim.Adam, dict(backend=backend)), (torch.optim.Adam, dict(foreach=False))]:
        p = [b.clone().requires_grad_() for b in base]
        opt = cls(p, lr=1e-2, **kw)
        sched = torch.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
        for i, gs in enumerate(grads):
            for q, g in zip(p, gs):
                q.grad = g.clone()
            opt.step()
            sched.step()
            if i == 3:
                opt.param_groups[0]["weight_decay"] = 0.1
                opt.param_groups[0]["maximize"] = True
        runs.append(p)
    for a, b in zip(*runs):
        assert rel_diff(a.detach(), b.detach()) <= REL[torch.float32]


def test_pickle_keeps_backend_and_state():
    import copy

    p = [torch.randn(4, requires_grad=True)]
    p[0].grad = torch.randn(4)
    opt = pyops.optim.AdamW(p, backend="cpu")
    opt.step()
    clone = copy.deepcopy(opt)
    assert clone.backend == "cpu" and clone.param_groups[0]["decoupled_weight_decay"]
    q = clone.param_groups[0]["params"][0]
    assert clone.state[q]["step"].item() == 1
    clone.step()
    assert clone.state[q]["step"].item() == 2 and opt.state[p[0]]["step"].item() == 1


@needs_backend("cuda-sim")
@needs_backend("triton")
def test_backend_from_the_block_around_step():
    # like every pyops op, the backend is resolved when step() runs: backend=, else use_backend
    p = [torch.randn(6, requires_grad=True)]
    p[0].grad = torch.randn(6)
    opt = pyops.optim.Adam(p)
    _ops.sim_reset_launch_counts()
    TRITON_LAUNCHES.clear()
    with pyops.use_backend("cuda-sim"):
        opt.step()
    with pyops.use_backend("triton"):
        opt.step()
    opt.step()  # auto: cpu
    assert sim_counts() == {"adam_multi_tensor_kernel": 1} and TRITON_LAUNCHES == {"adam_multi_tensor_kernel": 1}
    assert opt.state[p[0]]["step"].item() == 3
    with pyops.use_backend("cuda"), pytest.raises(pyops.BackendError, match="backend 'cuda' cannot run here"):
        opt.step()
    pinned = pyops.optim.Adam(p, backend="cpu")
    with pyops.use_backend("cuda"):
        pinned.step()  # the constructor's backend= wins over the block


def test_backend_torch_is_torch_optim():
    torch.manual_seed(0)
    ours, ref, ours_p, ref_p = run_pair("torch", torch.float32, 5, dict(amsgrad=True, weight_decay=1e-2))
    for a, b in zip(ours_p, ref_p):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- bad input
def test_bad_arguments():
    p = [torch.randn(3, requires_grad=True)]
    with pytest.raises(ValueError, match="differentiable=True is not supported"):
        pyops.optim.Adam(p, differentiable=True)
    with pytest.raises(ValueError, match="betas as tensors are not supported"):
        pyops.optim.Adam(p, betas=(torch.tensor(0.9), torch.tensor(0.99)))
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        pyops.optim.Adam(p, lr=-1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1: 1.0"):
        pyops.optim.AdamW(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        pyops.optim.Adam(p, lr=torch.tensor([1e-3, 1e-3]))
    with pytest.raises(pyops.BackendError, match="unknown backend 'gpu'"):
        pyops.optim.Adam(p, backend="gpu")
    # a hyperparameter edited in a param group to something that is not a number
    opt = pyops.optim.Adam(p)
    p[0].grad = torch.ones(3)
    for bad in ("0.1", None, [0.1]):
        opt.param_groups[0]["weight_decay"] = bad
        with pytest.raises(TypeError, match=r"Adam: the param group's weight_decay must be a number, got"):
            opt.step()
    opt.param_groups[0]["weight_decay"] = 0.0
    opt.param_groups[0]["betas"] = (0.9, "0.999")
    with pytest.raises(TypeError, match=r"Adam: the param group's betas\[1\] must be a number, got str"):
        opt.step()


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_bad_params_and_grads(backend):
    sparse = torch.randn(4, 3, requires_grad=True)
    sparse.grad = torch.randn(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradients are not supported.*SparseAdam"):
        pyops.optim.Adam([sparse], backend=backend).step()
    cplx = torch.randn(3, dtype=torch.complex64, requires_grad=True)
    cplx.grad = torch.randn_like(cplx)
    with pytest.raises(TypeError, match=r"complex parameters \(torch.complex64\) are not supported.*view_as_real"):
        pyops.optim.Adam([cplx], backend=backend).step()
    cpu_p, meta_p = torch.randn(3, requires_grad=True), torch.randn(3, device="meta", requires_grad=True)
    cpu_p.grad, meta_p.grad = torch.randn(3), torch.randn(3, device="meta")
    with pytest.raises(RuntimeError, match="the params of one param group must be on one device, got cpu, meta"):
        pyops.optim.Adam([cpu_p, meta_p], backend=backend).step()
    opt = pyops.optim.Adam([cpu_p], backend=backend)
    opt.param_groups[0]["differentiable"] = True
    with pytest.raises(RuntimeError, match="differentiable=True is not supported"):
        opt.step()


def test_backend_cannot_run_here():
    p = torch.randn(3, requires_grad=True)
    p.grad = torch.randn(3)
    with pytest.raises(pyops.BackendError, match="Adam: backend 'cuda' cannot run here: it runs on CUDA tensors"):
        pyops.optim.Adam([p], backend="cuda").step()
    h = torch.randn(3, dtype=torch.float16, requires_grad=True)
    h.grad = torch.randn_like(h)
    with pytest.raises(TypeError, match=r"Adam: backend 'cpu' supports float32, float64 .*torch.float16"):
        pyops.optim.Adam([h], backend="cpu").step()


def _hp(**over):
    """The op's hparams list (kernels/cuda/adam_hparams.h): the declared defaults, ``over`` by name."""
    values = {name: default for name, _, default, _ in pyops.optim.HPARAMS}
    assert set(over) <= set(values), over
    values.update(over)
    return [float(values[name]) for name, _, _, _ in pyops.optim.HPARAMS]


def _op_args(n=2, dtype=torch.float32, amsgrad=False, capturable=False):
    ps = [torch.randn(5 + i, dtype=dtype) for i in range(n)]
    st = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    return dict(params=ps, grads=[torch.randn_like(p) for p in ps], exp_avgs=[torch.zeros_like(p, dtype=st) for p in ps],
                exp_avg_sqs=[torch.rand_like(p, dtype=st) for p in ps],
                max_exp_avg_sqs=[torch.rand_like(p, dtype=st) for p in ps] if amsgrad else [],
                state_steps=[torch.tensor(float(i + 1)) for i in range(n)], lr_tensor=None,
                counters=torch.zeros(n, dtype=torch.int32) if capturable else None, capturable=capturable,
                hparams=_hp(amsgrad=amsgrad))


def test_hparams_declared_once():
    """The hyperparameters of kernels/cuda/adam_hparams.h, as Python reads them: torch's functional adam's
    names, torch.optim.Adam's defaults and group keys (no others: the state_dict is torch's), and a param group
    read into the op's list in their order."""
    names = [name for name, _, _, _ in pyops.optim.HPARAMS]
    assert names[:5] == ["lr", "beta1", "beta2", "eps", "weight_decay"]
    assert {"amsgrad", "maximize", "decoupled_weight_decay"} <= set(names)
    torch_defaults = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults
    group = pyops.optim.Adam([torch.zeros(1, requires_grad=True)]).param_groups[0]
    for name, kind, default, key in pyops.optim.HPARAMS:
        assert kind in ("float", "bool") and isinstance(default, bool) == (kind == "bool")
        base = key.split("[")[0]
        assert group.get(base) == torch_defaults.get(base), key  # one torch.optim.Adam has not: in no group
    lr = torch.tensor(0.5)
    group = dict(group, lr=lr, betas=(0.8, 0.9), eps=1e-6, amsgrad=True)
    lr_tensor, values = pyops.optim.hparams(group)
    assert lr_tensor is lr and values == _hp(lr=0.0, beta1=0.8, beta2=0.9, eps=1e-6, amsgrad=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'gamma'"):
        pyops.optim.Adam([torch.zeros(1, requires_grad=True)], gamma=0.5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_op_checks_its_arguments(backend):
    # direct torch.ops calls skip the optimizer; the op checks every list itself
    op = getattr(torch.ops, NAMESPACES[backend]).adam_step

    def call(**over):
        a = _op_args()
        a.update(over)
        op(**a)

    a = _op_args()
    with pytest.raises(RuntimeError, match=r"adam_step: expected 2 grads \(one per param\), got 1"):
        call(grads=a["grads"][:1])
    with pytest.raises(RuntimeError, match=r"adam_step: .*exp_avgs\[1\]"):
        call(exp_avgs=[a["exp_avgs"][0], torch.zeros(6, dtype=torch.float64)])
    with pytest.raises(RuntimeError, match=r"adam_step: .*grads\[0\].*shape"):
        call(grads=[torch.randn(4), a["grads"][1]])
    with pytest.raises(RuntimeError, match=r"adam_step: expected 2 max_exp_avg_sqs"):
        call(hparams=_hp(amsgrad=True))
    # the hyperparameters: one check per rule of kernels/cuda/adam_hparams.h, the same on every backend
    with pytest.raises(RuntimeError, match=r"adam_step: beta1 must be in \[0, 1\), got 1$"):
        call(hparams=_hp(beta1=1.0))
    with pytest.raises(RuntimeError, match=r"adam_step: lr must be >= 0, got -0.5$"):
        call(hparams=_hp(lr=-0.5))
    with pytest.raises(RuntimeError, match=r"adam_step: eps must be >= 0, got nan$"):
        call(hparams=_hp(eps=float("nan")))
    with pytest.raises(RuntimeError, match=r"adam_step: maximize is a flag and must be 0 or 1, got 0.5$"):
        call(hparams=_hp(maximize=0.5))
    with pytest.raises(RuntimeError, match=r"adam_step: expected \d+ hyperparameters in hparams \(lr, beta1, .*got 3$"):
        call(hparams=[1e-3, 0.9, 0.999])
    strided = torch.randn(5, 2)[:, 0]
    with pytest.raises(RuntimeError, match=r"adam_step: params\[0\] must be dense and non-overlapping"):
        call(params=[strided, a["params"][1]], grads=[torch.randn(5, 2)[:, 0], a["grads"][1]],
             exp_avgs=[torch.zeros(5, 2)[:, 0], a["exp_avgs"][1]], exp_avg_sqs=[torch.zeros(5, 2)[:, 0], a["exp_avg_sqs"][1]])
    if backend != "cpu":  # the CPU kernel advances steps itself, on the host, without counters
        with pytest.raises(RuntimeError, match=r"adam_step: capturable=True needs `counters`"):
            call(capturable=True)
    with pytest.raises(RuntimeError, match=r"adam_step: .*sparse.*SparseAdam"):
        call(grads=[a["grads"][0].to_sparse(), a["grads"][1]])


@pytest.mark.parametrize("ns", sorted(set(NAMESPACES.values())))
def test_meta_kernel_is_the_cpp_checks(ns):
    """adam_step's Meta kernel (csrc/meta.cpp) is the checks of csrc/adam.h, on meta tensors: no Python fake."""
    from torch._library import simple_registry

    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"{ns}::adam_step", "Meta")
    assert simple_registry.singleton.find(f"{ns}::adam_step").fake_impl.kernel is None
    op = getattr(torch.ops, ns).adam_step
    a = _op_args(capturable=True)
    a = {k: [t.to("meta") for t in v] if isinstance(v, list) and k != "hparams" else v for k, v in a.items()}
    assert op(**a) is None  # (no counters needed: the CPU kernel has none, the Meta kernel checks what all share)
    with pytest.raises(RuntimeError, match=r"adam_step: grads\[1\] has shape \[5\] but params\[1\] has shape \[6\]"):
        op(**dict(a, grads=[a["grads"][0], a["grads"][0]]))
    with pytest.raises(RuntimeError, match=r"adam_step: beta2 must be in \[0, 1\), got -1"):
        op(**dict(a, hparams=_hp(beta2=-1.0)))


# ---------------------------------------------------------------- registered ops
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_opcheck(backend):
    op = getattr(torch.ops, NAMESPACES[backend]).adam_step.default
    samples = [_op_args(), _op_args(3, torch.float64, amsgrad=True)]
    if backend != "cpu":
        samples.append(_op_args(2, amsgrad=True, capturable=True))
    for kw in samples:
        kw = dict(kw, lr_tensor=None)
        torch.library.opcheck(op, (), kw)


def test_cuda_kernels_registered():
    assert torch._C._dispatch_has_kernel_for_dispatch_key("pyops::adam_step", "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("pyops::adam_step", "CUDA") == _ops.BUILD["cuda"]


# ---------------------------------------------------------------- Triton ahead-of-time audit (no GPU needed)
def test_triton_aot_compiles_with_vector_loads():
    code = r"""
import re, triton
from triton.backends.compiler import GPUTarget
from pyops.kernels import adam
for i, v in enumerate(adam.aot_variants()):
    for arch in ((80, 90) if i == 0 else (80 + 10 * (i % 2),)):  # both archs once, then alternating
        src = triton.compiler.ASTSource(fn=v["kernel"], signature=v["signature"], constexprs=v["constexprs"])
        k = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": v["num_warps"]})
        vec = bool(re.search(r"ld\.global(\.\w+)*\.v[24]\.b(32|64)", k.asm["ptx"]))
        assert vec == v["expect_vector_loads"], (arch, v["constexprs"])
        assert ".local" not in k.asm["ptx"], "local memory (spills)"
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


# ---------------------------------------------------------------- real GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("adamw", [False, True])
def test_gpu_parity_cuda(dtype, adamw):
    torch.manual_seed(0)
    base = make_params(dtype, MLP_SHAPES, device="cuda")
    grads = [[torch.randn_like(b) for b in base] for _ in range(50)]
    ours_p = [b.clone().requires_grad_() for b in base]
    ours = (pyops.optim.AdamW if adamw else pyops.optim.Adam)(ours_p, lr=1e-2, amsgrad=True, weight_decay=1e-2,
                                                             backend="cuda")
    train(ours, ours_p, grads)
    if dtype == torch.float32:
        ref_p = [b.clone().requires_grad_() for b in base]
        ref = (torch.optim.AdamW if adamw else torch.optim.Adam)(ref_p, lr=1e-2, amsgrad=True, weight_decay=1e-2,
                                                                foreach=False)
        train(ref, ref_p, grads)
        # torch's CUDA kernels divide by a scalar as a multiply by its reciprocal: a few ulps apart
        for a, b in zip(ours_p, ref_p):
            assert rel_diff(a.detach(), b.detach()) <= 1e-5
    else:
        ref, ref_p = half_reference(base, grads, torch.optim.AdamW if adamw else torch.optim.Adam, lr=1e-2,
                                    amsgrad=True, weight_decay=1e-2)
        for a, b in zip(ours_p, ref_p):
            torch.testing.assert_close(a.detach().float(), b.detach(), rtol=1e-2, atol=1e-3)


@pytest.mark.gpu
def test_gpu_cuda_graph_capture():
    # capturable=True: step and lr on the device, no host sync; one step captured and replayed
    torch.manual_seed(0)
    base = make_params(torch.float32, MLP_SHAPES, device="cuda")
    grads = [[torch.randn_like(b) for b in base] for _ in range(8)]
    p = [b.clone().requires_grad_() for b in base]
    lr = torch.tensor(1e-2, device="cuda")
    opt = pyops.optim.AdamW(p, lr=lr, amsgrad=True, capturable=True, backend="cuda")
    static_g = [torch.zeros_like(b) for b in base]
    for q, g in zip(p, static_g):
        q.grad = g
    for q, g in zip(static_g, grads[0]):
        q.copy_(g)
    opt.step()  # warm-up outside the graph: creates the state
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(s), torch.cuda.graph(graph):
        opt.step()
    torch.cuda.current_stream().wait_stream(s)
    for gs in grads[1:]:
        for q, g in zip(static_g, gs):
            q.copy_(g)
        graph.replay()
    ref_p = [b.clone().requires_grad_() for b in base]
    ref = torch.optim.AdamW(ref_p, lr=1e-2, amsgrad=True, foreach=False)
    train(ref, ref_p, grads)
    torch.cuda.synchronize()
    assert opt.state[p[0]]["step"].item() == len(grads)
    for a, b in zip(p, ref_p):
        assert rel_diff(a.detach(), b.detach()) <= 1e-5


@pytest.mark.gpu
def test_gpu_triton():
    # the pointer-table kernel needs compiled Triton (the interpreter copies tensor arguments to the
    # host, the table holds device addresses), so this runs in a subprocess without TRITON_INTERPRET
    code = r"""
import torch, pyops
torch.manual_seed(0)
shapes = [(256, 784), (256,), (10, 64), (10,)]
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    for capturable in (False, True):
        base = [torch.randn(s, device="cuda", dtype=dtype) for s in shapes]
        grads = [[torch.randn_like(b) for b in base] for _ in range(20)]
        a = [b.clone().requires_grad_() for b in base]
        c = [b.clone().requires_grad_() for b in base]
        oa = pyops.optim.AdamW(a, lr=1e-2, amsgrad=True, backend="triton", capturable=capturable)
        oc = pyops.optim.AdamW(c, lr=1e-2, amsgrad=True, backend="cuda", capturable=capturable)
        for gs in grads:
            for x, y, g in zip(a, c, gs):
                x.grad, y.grad = g.clone(), g.clone()
            oa.step(); oc.step()
        for x, y in zip(a, c):
            torch.testing.assert_close(x, y, rtol=1e-5 if dtype == torch.float32 else 1e-2, atol=1e-6)
print("ok")
"""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


@needs_backend("triton")
def test_triton_interpreter_refuses_device_tensors():
    # guard of kernels/adam.py: meta tensors stand in for device tensors
    from pyops.kernels import adam as k

    p = torch.empty(3, device="meta")
    with pytest.raises(RuntimeError, match="interpreter .* runs this pointer-table kernel on CPU tensors only"):
        k.launch([p], [p], [p], [p], [], [torch.tensor(0.0)], None, None, False,
                 {name: default for name, _, default, _ in pyops.optim.HPARAMS})
