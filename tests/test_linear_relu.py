"""linear_relu / linear on every backend that runs here: cpu (C++ + BLAS), triton (interpreter), cuda-sim
(the CUDA kernels executed by the emulator); GPU-marked tests for cuda/triton on a real device."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import pyops
from helpers import CPU_BACKENDS, GPU_BACKENDS, DispatchLog, assert_close, assert_kernels_registered, needs_backend
from pyops import _ops
from pyops.kernels import LAUNCHES as TRITON_LAUNCHES
from pyops.kernels import linear_relu as triton_linear

FNS = {"linear_relu": (pyops.linear_relu, lambda x, w, b=None: F.relu(F.linear(x, w, b))),
       "linear": (pyops.linear, F.linear)}
NAMESPACES = {"cpu": "pyops", "cuda-sim": "pyops_sim", "triton": "pyops_triton"}
# GEMMs: docs/testing.md, "Tolerances" -- float32 reductions over many products are compared at rtol 1e-4; the
# absolute floor covers outputs near 0 that are sums of products of size ~1 in a different order.
GEMM_TOL = dict(rtol=1e-4, atol=1e-5)


def run(fn, backend, x, w, b, g):
    """Output and the gradients (input, weight, bias) of fn on `backend` and of the PyTorch reference."""
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
    y = FNS[fn][0](x, w, b, backend=backend)
    grads = torch.autograd.grad(y, leaves, g)
    ref_leaves = [t.detach().clone().requires_grad_() for t in leaves]
    sub = dict(zip(map(id, leaves), ref_leaves))
    xr, wr, br = (sub.get(id(t), t) if t is not None else None for t in (x, w, b))
    yr = FNS[fn][1](xr, wr, br)
    ref = torch.autograd.grad(yr, ref_leaves, g)
    return (y, *grads), (yr, *ref)


def make(shape_in, n, dtype=torch.float32, bias=True, transposed_weight=False):
    x = torch.randn(shape_in, dtype=dtype, requires_grad=True)
    k = shape_in[-1]
    w = torch.randn(k, n, dtype=dtype).t() if transposed_weight else torch.randn(n, k, dtype=dtype)
    w = (w / max(k, 1) ** 0.5).requires_grad_()
    b = torch.randn(n, dtype=dtype, requires_grad=True) if bias else None
    return x, w, b


# ---------------------------------------------------------------- gradcheck, float64
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape_in", [(3, 5), (2, 3, 5)])
def test_gradcheck(backend, fn, bias, shape_in):
    x, w, b = make(shape_in, 4, torch.float64, bias)
    args = (x, w, b) if bias else (x, w)
    assert torch.autograd.gradcheck(lambda *a: FNS[fn][0](*a, backend=backend), args)


# ---------------------------------------------------------------- parity, float32
PARITY_SHAPES = [((1, 1), 1), ((67, 45), 129), ((33, 97), 31), ((3, 5, 784), 256), ((64, 64), 10)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("shape_in,n", PARITY_SHAPES)
def test_parity_float32(backend, fn, shape_in, n):
    x, w, b = make(shape_in, n)
    out, ref = run(fn, backend, x, w, b, torch.randn(*shape_in[:-1], n))
    assert out[0].shape == ref[0].shape and out[0].dtype == ref[0].dtype and out[0].is_contiguous()
    for a, e in zip(out, ref):
        assert_close(a, e, **GEMM_TOL)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape_in,n", [((67, 45), 129), ((16, 32), 24)])
def test_transposed_weight(backend, shape_in, n):
    # W = Wt.t(): unit stride along out_features; read in place (no copy), and dW keeps W's layout
    x, w, b = make(shape_in, n, transposed_weight=True)
    assert not w.is_contiguous()
    out, ref = run("linear_relu", backend, x, w, b, torch.randn(*shape_in[:-1], n))
    assert out[2].stride() == w.stride()
    for a, e in zip(out, ref):
        assert_close(a, e, **GEMM_TOL)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_non_contiguous_input_and_grad(backend):
    base = torch.randn(7, 40, 6)
    x = base.permute(2, 0, 1)[:, :, 3:35].requires_grad_()  # (6, 7, 32), leading dims do not collapse
    _, w, b = make((1, 32), 12)
    y = pyops.linear_relu(x, w, b, backend=backend)
    (y * 3).sum().backward()  # the gradient arrives expanded (stride 0)
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    (F.relu(F.linear(xr, wr, br)) * 3).sum().backward()
    assert_close(y, F.relu(F.linear(xr, wr, br)).detach(), **GEMM_TOL)
    for a, e in ((x.grad, xr.grad), (w.grad, wr.grad), (b.grad, br.grad)):
        assert_close(a, e, **GEMM_TOL)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_dim_input(backend):
    x, w, b = make((9,), 5)
    out, ref = run("linear", backend, x, w, b, torch.randn(5))
    assert out[0].shape == (5,)
    for a, e in zip(out, ref):
        assert_close(a, e, **GEMM_TOL)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_preactivation_exactly_zero(backend):
    # integers, so every pre-activation is exact: z == 0 exactly in columns 0 and 2 of some rows.
    # torch.relu's gradient at 0 is 0; the kernels must mask on y > 0, not y >= 0.
    x = torch.tensor([[1.0, -1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]], requires_grad=True)
    w = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 2.0, 1.0], [-1.0, 1.0, 1.0]], requires_grad=True)
    b = torch.tensor([0.0, -3.0, 0.0, 2.0], requires_grad=True)
    g = torch.arange(1.0, 13.0).view(3, 4)
    out, ref = run("linear_relu", backend, x, w, b, g)
    z = F.linear(x, w, b).detach()
    assert (z == 0).sum() >= 4  # the construction really hits 0 (and not only through the bias)
    for a, e in zip(out, ref):
        assert torch.equal(a, e)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("shape_in,n", [((0, 5), 3), ((2, 0, 5), 3), ((4, 0), 3), ((4, 5), 0)])
def test_empty(backend, fn, shape_in, n):
    # empty batch: dW and db are zeros; in_features 0: y = relu(b); out_features 0: empty everything
    x, w, b = make(shape_in, n)
    out, ref = run(fn, backend, x, w, b, torch.randn(*shape_in[:-1], n))
    for a, e in zip(out, ref):
        assert a.shape == e.shape
        assert_close(a, e)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True),
                                   (False, True, True), (True, False, True)])
def test_partial_grads(backend, needs):
    # autograd asks only for some gradients (frozen weight, first layer, ...): the op computes only those
    x, w, b = make((6, 20), 9)
    for t, need in zip((x, w, b), needs):
        t.requires_grad_(need)
    out, ref = run("linear_relu", backend, x, w, b, torch.randn(6, 9))
    for a, e in zip(out, ref):
        assert_close(a, e, **GEMM_TOL)


@pytest.mark.parametrize("n", [192, 200])
def test_cpu_mask_pass_paths_agree_bitwise(n):
    """The CPU backward's ReLU-mask and bias-sum pass has a vector path for whole blocks of 64 contiguous
    columns and a scalar one for a column-strided gradient; both sum each column row by row, so every
    gradient is bit-identical whichever runs (n = 200: three whole blocks and a partial one)."""
    x, w, b = make((96, 40), n)
    y = pyops.linear_relu(x, w, b, backend="cpu")
    g = torch.randn(96, n)
    g_cols = g.t().contiguous().t()  # the same values, column-major
    assert g_cols.stride(1) != 1 and torch.equal(g, g_cols)
    a = torch.autograd.grad(y, (x, w, b), g, retain_graph=True)
    c = torch.autograd.grad(y, (x, w, b), g_cols)
    for ga, gc in zip(a, c):
        assert torch.equal(ga, gc)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_cpu_threads(threads):
    # the fused CPU passes split their work over the threads (here ~16K elements per task)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x, w, b = make((128, 256), 128)
        out, ref = run("linear_relu", "cpu", x, w, b, torch.randn(128, 128))
    finally:
        torch.set_num_threads(prev)
    for a, e in zip(out, ref):
        assert_close(a, e, **GEMM_TOL)


# ---------------------------------------------------------------- the CPU backend's own float32 GEMM
def _cpu_has_avx512f() -> bool:
    """From the kernel's view of the CPU, independently of the extension's own check."""
    try:
        with open("/proc/cpuinfo") as f:
            return any("avx512f" in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


HAS_AVX512 = _cpu_has_avx512f()
needs_avx2_build = pytest.mark.skipif(not _ops.BUILD["cpu_avx2"], reason="a build without the AVX2 CPU kernels")
needs_avx512 = pytest.mark.skipif(not (HAS_AVX512 and _ops.BUILD["cpu_avx2"]),
                                  reason="needs a CPU with AVX-512F (and a build with the AVX2 CPU kernels)")


def assert_gemm_close(actual, expected):
    """GEMM_TOL with the absolute floor scaled by the output's size (its RMS, when above 1): at batch 512 the
    weight gradients are sums of 512 products of N(0, 1) numbers, ~23 in size, and two summation orders differ
    by ~1e-5 where such a sum is near 0."""
    scale = max(1.0, expected.pow(2).mean().sqrt().item()) if expected.numel() else 1.0
    assert_close(actual, expected, rtol=GEMM_TOL["rtol"], atol=GEMM_TOL["atol"] * scale)


def step_gemms(batch, sizes=(784, 256, 128, 64, 10)):
    """(M, N, K) of the 11 GEMMs of the MLP's training step: forward x W^T, weight gradients dz^T x, input
    gradients dz W (none for the first layer)."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    return ([(batch, n, k) for k, n in layers] + [(n, k, batch) for k, n in layers]
            + [(batch, k, n) for k, n in layers[1:]])


def layer_gemms(m, k, n):
    """(M, N, K) of a layer's three products: y = x W^T, dx = dz W, dW = dz^T x."""
    return [(m, n, k), (m, k, n), (n, k, m)]


def _intel_with_mkl() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), "")
    except OSError:
        vendor = ""
    return vendor == "GenuineIntel" and torch.backends.mkl.is_available()


def test_cpu_gemm_kernel_is_the_best_this_cpu_runs():
    """auto: PyTorch's BLAS on an Intel CPU when that BLAS is MKL (faster there) and in a build without AVX2;
    elsewhere the avx512 kernel exactly where the CPU has AVX-512F, else avx2."""
    expected = ("blas" if not _ops.BUILD["cpu_avx2"] or _intel_with_mkl() else
                "avx512" if HAS_AVX512 else "avx2")
    with _ops.cpu_gemm_kernel("auto"):
        assert _ops._C.cpu_gemm_kernel() == expected
        assert _ops.environment()["CPU float32 GEMM"].startswith(
            f"own GEMM, {expected} kernel" if expected != "blas" else "PyTorch's BLAS")


@needs_avx2_build
def test_cpu_gemm_paths():
    """Which code each GEMM runs: both kernels take every GEMM of the MLP's step at batch 64 and 512; past
    K = 1024 or 4M floats in an operand, BLAS; PYOPS_CPU_GEMM=blas, BLAS for all."""
    path = _ops._C.cpu_gemm_path
    for kernel in ["avx2"] + (["avx512"] if HAS_AVX512 else []):
        with _ops.cpu_gemm_kernel(kernel):
            assert [path(*g) for g in step_gemms(64) + step_gemms(512)] == [kernel] * 22
            assert path(4096, 3, 1024) == kernel and path(3, 4096, 1024) == kernel
            assert path(4097, 3, 1024) == "blas" and path(3, 4097, 1024) == "blas"  # an operand past 4M floats
            assert path(13, 17, 1025) == "blas"  # past the longest reduction
    with _ops.cpu_gemm_kernel("blas"):
        assert {path(*g) for g in step_gemms(64) + step_gemms(512)} == {"blas"}


@needs_avx2_build
def test_cpu_gemm_kernel_errors():
    with pytest.raises(RuntimeError, match="expected auto, avx512, avx2 or blas, got 'avx3'"):
        _ops._C.set_cpu_gemm_kernel("avx3")
    if not HAS_AVX512:
        with pytest.raises(RuntimeError, match="this CPU has no AVX-512F"):
            _ops._C.set_cpu_gemm_kernel("avx512")
    # a bad PYOPS_CPU_GEMM fails the first CPU linear op with a message naming it
    code = "import torch, pyops; pyops.linear_relu(torch.randn(2, 3), torch.randn(4, 3), backend='cpu')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYOPS_CPU_GEMM="fastest"))
    assert proc.returncode != 0
    assert "PYOPS_CPU_GEMM: expected auto, avx512, avx2 or blas, got 'fastest'" in proc.stderr


@pytest.mark.parametrize("m,k,n", [(1, 1, 10), (7, 5, 17), (13, 1024, 96), (13, 1025, 17),  # 1025: past the
                                   (257, 8, 20), (100, 700, 9), (64, 784, 256),  # longest reduction
                                   (33, 40, 50), (512, 784, 256),  # 33: 1 row past two avx512 tiles
                                   (4096, 1024, 3), (4097, 1024, 3)])  # the operand limit: 4M floats
@pytest.mark.parametrize("transposed_weight", [False, True])
def test_cpu_gemm_edges_and_limits(m, k, n, transposed_weight):
    """Tiles cut at every edge (m not a multiple of 6 or 16, n of 16), both sides of the own GEMM's limits (BLAS
    past them; the backward's GEMMs have other shapes, so each case runs both), both weight layouts, a
    non-contiguous input: the three products of the layer match PyTorch."""
    x, w, b = make((m, k), n, transposed_weight=transposed_weight)
    x_strided = torch.randn(m, 2 * k)[:, ::2].requires_grad_()
    with torch.no_grad():
        x_strided.copy_(x)
    out, ref = run("linear_relu", "cpu", x_strided, w, b, torch.randn(m, n))
    for a, e in zip(out, ref):
        assert_gemm_close(a, e)


@needs_avx512
@pytest.mark.parametrize("m,k,n,strided", [(1, 1, 1, False), (7, 5, 17, True), (13, 64, 33, False),
                                           (17, 100, 10, True), (33, 40, 50, False), (64, 784, 256, False),
                                           (100, 300, 40, True), (250, 256, 7, False), (512, 784, 256, False)])
def test_cpu_gemm_kernels_give_the_same_bits(m, k, n, strided):
    """Both kernels compute each output as one FMA chain over k from +0, so the 16 x 16 avx512 tiles and the
    6 x 16 avx2 tiles give the same bits for all three products of a layer (each run on the own GEMM --
    asserted), and match PyTorch."""
    torch.manual_seed(m * 1000 + n)
    x, w, b = make((m, k), n, transposed_weight=strided)
    if strided:
        x = torch.randn(m, 3 * k)[:, ::3].copy_(x.detach()).requires_grad_()
    g = torch.randn(m, n)
    results = {}
    for kernel in ("avx512", "avx2"):
        with _ops.cpu_gemm_kernel(kernel):
            assert [_ops._C.cpu_gemm_path(*p) for p in layer_gemms(m, k, n)] == [kernel] * 3
            results[kernel] = run("linear_relu", "cpu", x, w, b, g)
    (out, ref), (out2, _) = results["avx512"], results["avx2"]
    for a, e in zip(out, ref):
        assert_gemm_close(a, e)
    for a, c in zip(out, out2):
        assert torch.equal(a, c)


@needs_avx2_build
@pytest.mark.parametrize("m,k,n", [(7, 8, 5), (13, 100, 17), (64, 784, 40), (100, 41, 256)])
def test_cpu_gemm_packing_does_not_change_the_bits(m, k, n):
    """A's panels are packed by 8 x 8 register transposes when its rows are contiguous and element by element
    otherwise (a strided view): the packed panels, and so the outputs, must be the same bits.  k: one whole
    group of 8, groups plus a tail, many groups; m cuts the last 6-row (16-row) panel short."""
    torch.manual_seed(m + k + n)
    x, w, b = make((m, k), n)
    g = torch.randn(m, n)
    x_strided = torch.empty(m, 2 * k)[:, ::2].copy_(x.detach()).requires_grad_()
    for kernel in ["avx2"] + (["avx512"] if HAS_AVX512 else []):
        with _ops.cpu_gemm_kernel(kernel):
            assert [_ops._C.cpu_gemm_path(*p) for p in layer_gemms(m, k, n)] == [kernel] * 3
            (y, gx, gw, gb), _ = run("linear_relu", "cpu", x, w, b, g)
            # dx = dz W packs dz (contiguous rows) either way; the forward's A is x
            (y2, gx2, gw2, gb2), _ = run("linear_relu", "cpu", x_strided, w, b, g)
        assert torch.equal(y, y2), kernel
        assert torch.equal(gw, gw2) and torch.equal(gx, gx2) and torch.equal(gb, gb2), kernel


@pytest.mark.parametrize("m,k,n", [(64, 256, 128),  # every GEMM splits B's column panels between the threads
                                   (300, 200, 40)])  # the forward and dx GEMMs split A's row panels
def test_cpu_gemm_bits_do_not_depend_on_threads(m, k, n):
    """Each output of the own GEMM is one FMA chain over k: the same bits on 1, 2 or 3 threads (on 2 the backward's
    dx and dW GEMMs run at once, one per thread; on 3 one after the other, each on all three)."""
    prev = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            x, w, b = make((m, k), n)
            results.append(run("linear_relu", "cpu", x, w, b, torch.randn(m, n))[0])
    finally:
        torch.set_num_threads(prev)
    for other in results[1:]:
        assert all(torch.equal(a, e) for a, e in zip(results[0], other))


@needs_avx2_build
def test_cpu_gemm_blas_switch(tmp_path):
    """PYOPS_CPU_GEMM=blas sends the float32 GEMMs to PyTorch's BLAS: close to the own GEMM's result, and not
    the same bits (a 784-term sum summed in another order)."""
    torch.manual_seed(0)
    x, w = torch.randn(64, 784), torch.randn(256, 784) / 28
    torch.save((x, w), tmp_path / "xw.pt")
    code = ("import sys, torch, pyops; x, w = torch.load(sys.argv[1]); "
            "torch.save(pyops.linear_relu(x, w, backend='cpu'), sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "xw.pt"), str(tmp_path / "y.pt")], check=True,
                   env=dict(os.environ, PYOPS_CPU_GEMM="blas"))
    with _ops.cpu_gemm_kernel("avx512" if HAS_AVX512 else "avx2"):
        y_own = pyops.linear_relu(x, w, backend="cpu")
    y_blas = torch.load(tmp_path / "y.pt")
    assert_close(y_own, y_blas, **GEMM_TOL)
    assert not torch.equal(y_own, y_blas)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_double_backward_raises(backend):
    # the ops have no derivative: differentiating the gradient must fail loudly, not give zeros
    x, w, b = make((3, 4), 2, torch.float64)
    (gx,) = torch.autograd.grad(pyops.linear_relu(x, w, b, backend=backend).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(gx.sum(), w)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("n", [2, 67])  # (67: a whole 64-column block of the CPU's mask pass, then a partial one)
def test_nan_propagates(backend, n):
    x, w, b = make((3, 4), n)
    with torch.no_grad():
        x[1, 2] = float("nan")
    y = pyops.linear_relu(x, w, b, backend=backend)
    assert torch.isnan(y[1]).all() and not torch.isnan(y[0]).any()
    # backward: like PyTorch's ReLU gradient (threshold_backward: zero where y <= 0), a NaN output
    # passes its gradient on -- the same NaNs in the same places as stock, nothing silently zeroed
    g = torch.randn_like(y)
    ours = torch.autograd.grad(y, (x, w, b), g)
    xr, wr, br = (t.detach().clone().requires_grad_() for t in (x, w, b))
    ref = torch.autograd.grad(F.relu(F.linear(xr, wr, br)), (xr, wr, br), g)
    for a, r in zip(ours, ref):
        assert torch.equal(torch.isnan(a), torch.isnan(r))
        assert_close(a, r, **GEMM_TOL)


# ---------------------------------------------------------------- reduced precision
@needs_backend("cuda-sim")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape_in,n", [((67, 45), 129), ((16, 64), 32), ((3, 5, 24), 8)])
def test_half_precision_cuda_kernels(dtype, shape_in, n):
    # fp16/bf16 storage on tensor cores (wmma, fp32 accumulation), run by the emulator
    _ops.sim_reset_launch_counts()
    x, w, b = make(shape_in, n, dtype)
    g = torch.randn(*shape_in[:-1], n, dtype=dtype)
    out, _ = run("linear_relu", "cuda-sim", x, w, b, g)
    counts = _ops.sim_launch_counts()
    assert counts == {"linear_relu_wmma_kernel": 3}, counts  # forward, dW (+ db), dx
    xr, wr, br = (t.detach().float().requires_grad_() for t in (x, w, b))
    _, ref = run("linear_relu", "torch", xr, wr, br, g.float())
    for a, e in zip(out, ref):
        assert a.dtype == dtype
        assert_close(a.float(), e, dtype=dtype)


@needs_backend("cuda-sim")
def test_tf32_only_when_allowed():
    x, w, b = make((40, 72), 48)
    prev = torch.backends.cuda.matmul.allow_tf32
    try:
        for allow, kernel in ((False, "linear_relu_simt32_kernel"), (True, "linear_relu_wmma_kernel")):
            torch.backends.cuda.matmul.allow_tf32 = allow
            _ops.sim_reset_launch_counts()
            y = pyops.linear_relu(x, w, b, backend="cuda-sim")
            assert _ops.sim_launch_counts() == {kernel: 1}
            # TF32 keeps 10 mantissa bits of each input: ~1e-3 relative per product
            assert_close(y, F.relu(F.linear(x, w, b)), **(dict(rtol=5e-3, atol=5e-3) if allow else GEMM_TOL))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


@needs_backend("triton")
def test_half_precision_triton():
    # the interpreter does fp16 (not bf16: it multiplies raw bit patterns)
    x, w, b = make((9, 40), 24, torch.float16)
    y = pyops.linear_relu(x, w, b, backend="triton")
    assert y.dtype == torch.float16
    assert_close(y.float(), F.relu(F.linear(x.float(), w.float(), b.float())), dtype=torch.float16)


# ---------------------------------------------------------------- which kernel variant ran
@needs_backend("cuda-sim")
@pytest.mark.parametrize("m,k,n,fwd", [(1, 1, 1, "simt32"), (67, 45, 129, "simt64"), (256, 8, 256, "simt128")])
def test_cuda_variant(m, k, n, fwd):
    # the emulator plans for 4 SMs: the largest tile that still gives each SM a block
    _ops.sim_reset_launch_counts()
    x, w, b = make((m, k), n)
    pyops.linear_relu(x, w, b, backend="cuda-sim")
    assert _ops.sim_launch_counts() == {f"linear_relu_{fwd}_kernel": 1}


@needs_backend("cuda-sim")
def test_cuda_backward_launches():
    # backward = dW GEMM (db from the same A tiles) + dx GEMM; db alone when the weight is frozen
    x, w, b = make((8, 16), 12)
    y = pyops.linear_relu(x, w, b, backend="cuda-sim")
    _ops.sim_reset_launch_counts()
    torch.autograd.grad(y, (x, w, b), torch.randn_like(y))
    assert _ops.sim_launch_counts() == {"linear_relu_simt32_kernel": 2}
    w.requires_grad_(False)
    y = pyops.linear_relu(x, w, b, backend="cuda-sim")
    _ops.sim_reset_launch_counts()
    g = torch.randn_like(y)
    gx, gb = torch.autograd.grad(y, (x, b), g)
    assert _ops.sim_launch_counts() == {"linear_relu_simt32_kernel": 1, "linear_relu_bias_grad_kernel": 1}
    assert_close(gb, (g * (y > 0)).sum(0), **GEMM_TOL)


@needs_backend("triton")
def test_triton_launches():
    x, w, b = make((8, 16), 12)
    TRITON_LAUNCHES.clear()
    y = pyops.linear_relu(x, w, b, backend="triton")
    assert TRITON_LAUNCHES == {"linear_gemm_kernel": 1}
    torch.autograd.grad(y, (x, w, b), torch.randn_like(y))
    assert TRITON_LAUNCHES == {"linear_gemm_kernel": 3}
    x.requires_grad_(False)
    w.requires_grad_(False)
    TRITON_LAUNCHES.clear()
    y = pyops.linear_relu(x, w, b, backend="triton")
    torch.autograd.grad(y, (b,), torch.randn_like(y))
    assert TRITON_LAUNCHES == {"linear_gemm_kernel": 1, "linear_bias_grad_kernel": 1}


_AOT_CHECK = """
import triton
from triton.backends.compiler import GPUTarget
from pyops.kernels import linear_relu as k
variants = list(k.aot_variants())
for v in variants:
    assert set(v["signature"]) == set(v["kernel"].arg_names), v["signature"]
    assert set(v["constexprs"]) <= set(v["signature"])
v = next(v for v in variants if v["signature"]["a_ptr"] == "*fp16")
src = triton.compiler.ASTSource(fn=v["kernel"], signature=v["signature"], constexprs=v["constexprs"])
ptx = triton.compile(src, target=GPUTarget("cuda", 80, 32), options={"num_warps": v["num_warps"]}).asm["ptx"]
print(len(variants), "mma.sync" in ptx)
"""


@needs_backend("triton")
def test_triton_aot_variants():
    # every variant names each kernel parameter; one fp16 variant compiles for sm_80 (no GPU needed)
    # to tensor-core mma instructions.  In a subprocess: interpreted kernels cannot be compiled.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", _AOT_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    n, mma = out.stdout.split()
    assert int(n) > 10 and mma == "True"


def test_triton_plan():
    assert triton_linear.gemm_plan(64, 256, 784) == (64, 64, 32, 8)
    assert triton_linear.gemm_plan(64, 256, 784, elem_size=4) == (64, 64, 16, 8)  # fp32/fp64: K steps of 16
    assert triton_linear.gemm_plan(1, 1, 1) == (16, 16, 16, 4)
    assert triton_linear.gemm_plan(4096, 4096, 64) == (128, 128, 32, 8)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_one_op_each_way(backend):
    # one layer = one dispatched op forward and one backward, nothing else on contiguous tensors
    x, w, b = make((2, 3, 8), 5)
    g = torch.randn(2, 3, 5)
    with DispatchLog() as c:
        y = pyops.linear_relu(x, w, b, backend=backend)
        torch.autograd.grad(y, (x, w, b), g)
    ns = NAMESPACES[backend]
    # saving the output for backward shows up as aten.detach under a dispatch mode (stock relu does the same)
    assert [op for op in c.names if op != "aten.detach"] == [f"{ns}.linear_relu_fwd", f"{ns}.linear_relu_bwd"]


# ---------------------------------------------------------------- registered ops
def _op_samples(relu):
    x, w, b = (t.detach() for t in make((6, 7), 5, torch.float64))
    x3 = torch.randn(2, 3, 7, dtype=torch.float64)
    wt = torch.randn(7, 5, dtype=torch.float64).t()
    fwd = [(x, w, b, relu), (x3, w, None, relu), (x, wt, b, relu), (torch.randn(0, 7, dtype=torch.float64), w, b, relu)]
    y = F.relu(F.linear(x, w, b)) if relu else None
    y3 = F.relu(F.linear(x3, w)) if relu else None
    bwd = [(torch.randn(6, 5, dtype=torch.float64), x, w, y, [True, True, True]),
           (torch.randn(2, 3, 5, dtype=torch.float64), x3, w, y3, [False, True, False]),
           (torch.randn(6, 5, dtype=torch.float64), x, wt, y, [True, False, True])]
    return fwd, bwd


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("relu", [True, False])
def test_opcheck(backend, relu):
    ns = getattr(torch.ops, NAMESPACES[backend])
    fwd, bwd = _op_samples(relu)
    for args in fwd:
        torch.library.opcheck(ns.linear_relu_fwd.default, args)
    for args in bwd:
        torch.library.opcheck(ns.linear_relu_bwd.default, args)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
def test_one_cpp_node(backend, bias):
    """The differentiable op of csrc/autograd.cpp on every backend: one C++ node, its edges to input, weight
    and (when given) bias, saving x, W and the output -- never the pre-activation; opcheck with grads."""
    x, w, b = make((3, 4), 5, torch.float64)
    b = b if bias else None
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = pyops.linear_relu(x, w, b, backend=backend)
    assert y.grad_fn.name() == "pyops::LinearReluBackward", y.grad_fn.name()
    assert len(saved) == 3 and saved[0] is x and saved[1] is w and saved[2] is y
    leaves = [x, w] + ([b] if bias else [])
    assert [fn.variable for fn, _ in y.grad_fn.next_functions] == leaves
    ns = getattr(torch.ops, NAMESPACES[backend])
    for relu in (True, False):
        torch.library.opcheck(ns.linear_relu.default, (x, w, b, relu))


def test_cuda_kernels_registered():
    assert_kernels_registered(("linear_relu_fwd", "linear_relu_bwd", "mlp_fwd", "mlp_bwd"))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()
    torch.manual_seed(1)
    model = torch.nn.Sequential(pyops.nn.LinearReLU(12, 16, backend=backend), pyops.nn.Linear(16, 5, backend=backend))
    x = torch.randn(8, 12)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected = model(x)
    expected.square().sum().backward()
    assert_close(out, expected)
    for a, p in zip(grads, model.parameters()):
        assert_close(a, p.grad)


# ---------------------------------------------------------------- nn modules
def test_modules_are_drop_in():
    torch.manual_seed(3)
    ref = torch.nn.Linear(10, 6)
    torch.manual_seed(3)
    lin = pyops.nn.LinearReLU(10, 6, backend="cpu")
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    assert torch.equal(lin.weight, ref.weight) and torch.equal(lin.bias, ref.bias)  # same init
    after_pyops = torch.rand(1)
    torch.manual_seed(3)
    torch.nn.Linear(10, 6)
    assert torch.equal(after_pyops, torch.rand(1))  # and the same RNG stream consumed
    x = torch.randn(4, 10)
    assert_close(lin(x), F.relu(ref(x)), **GEMM_TOL)
    # checkpoints both ways
    other = pyops.nn.LinearReLU(10, 6)
    other.load_state_dict(ref.state_dict())
    assert torch.equal(other.weight, ref.weight)
    back = torch.nn.Linear(10, 6)
    back.load_state_dict(lin.state_dict())
    assert torch.equal(back.bias, lin.bias)
    nob = pyops.nn.Linear(10, 6, bias=False, dtype=torch.float64)
    assert nob.bias is None and nob.weight.dtype == torch.float64
    assert list(nob.state_dict()) == ["weight"]
    assert_close(nob(x.double()), F.linear(x.double(), nob.weight))
    assert "backend='cpu'" in repr(lin) and "in_features=10, out_features=6" in repr(lin)


def test_module_follows_use_backend():
    lin = pyops.nn.Linear(3, 2)
    with pyops.use_backend("cuda"):
        with pytest.raises(pyops.BackendError, match="linear: backend 'cuda' cannot run here"):
            lin(torch.randn(1, 3))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_input(fn, backend):
    f = FNS[fn][0]
    x, w, b = (t.detach() for t in make((3, 5), 4))
    with pytest.raises(RuntimeError, match=rf"{fn}: input has 6 features \(last dim of shape \[3, 6\]\) but weight "
                                           r"expects in_features = 5"):
        f(torch.randn(3, 6), w, b, backend=backend)
    with pytest.raises(RuntimeError, match=rf"{fn}: expected bias of shape \[out_features\] = \[4\], got \[3\]"):
        f(x, w, torch.randn(3), backend=backend)
    with pytest.raises(TypeError, match=rf"{fn}: expected input and weight to have the same dtype, got torch.float32 "
                                        r"and torch.float64"):
        f(x, w.double(), b, backend=backend)
    with pytest.raises(TypeError, match=rf"{fn}: expected input and bias to have the same dtype"):
        f(x, w, b.half(), backend=backend)
    with pytest.raises(RuntimeError, match=rf"{fn}: expected all tensors on one device, but input is on cpu and weight "
                                           r"is on meta"):
        f(x, w.to("meta"), b, backend=backend)
    with pytest.raises(TypeError, match=rf"{fn}: expected input to be a floating-point tensor .*torch.int64"):
        f(torch.ones(3, 5, dtype=torch.int64), w.long(), b.long(), backend=backend)
    with pytest.raises(RuntimeError, match=rf"{fn}: expected weight to be 2-D \(out_features, in_features\), got 1-D"):
        f(x, torch.randn(5), backend=backend)
    with pytest.raises(RuntimeError, match=rf"{fn}: expected input of shape \(\*, in_features\), got a 0-D tensor"):
        f(torch.tensor(1.0), w, backend=backend)
    with pytest.raises(TypeError, match=rf"{fn}: expected weight to be a torch.Tensor, got list"):
        f(x, [[1.0]], backend=backend)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_ops_check_their_arguments(backend):
    # direct torch.ops calls skip the public API's checks; every backend's op, Triton included, runs the same
    # C++ checks (csrc/linear_relu.h), RuntimeError throughout
    ns = getattr(torch.ops, NAMESPACES[backend])
    w = torch.randn(4, 5)
    with pytest.raises(RuntimeError, match=r"linear_relu: expected input to be a floating-point tensor .*Long"):
        ns.linear_relu_fwd(torch.ones(3, 5, dtype=torch.int64), w.long(), None, True)
    with pytest.raises(RuntimeError, match=r"linear: input has 6 features"):
        ns.linear_relu_fwd(torch.randn(3, 6), w, None, False)
    with pytest.raises(RuntimeError, match=r"linear_relu: expected input and weight to have the same dtype"):
        ns.linear_relu_fwd(torch.randn(3, 5), w.double(), None, True)
    with pytest.raises(RuntimeError, match=r"linear: expected all tensors on one device"):
        ns.linear_relu_fwd(torch.randn(3, 5), w.to("meta"), None, False)
    with pytest.raises(RuntimeError, match=r"linear_relu_backward: grad_output shape \[3, 3\] does not match the output "
                                           r"shape \[3, 4\]"):
        ns.linear_relu_bwd(torch.randn(3, 3), torch.randn(3, 5), w, torch.randn(3, 3), [True, True, True])


def test_cpu_backend_rejects_half():
    x, w, b = (t.detach().half() for t in make((3, 5), 4))
    with pytest.raises(TypeError, match=r"linear_relu: backend 'cpu' supports float32, float64 .*got input of dtype "
                                        r"torch.float16"):
        pyops.linear_relu(x, w, b, backend="cpu")


def test_backend_device_mismatch():
    x, w, b = (t.detach() for t in make((3, 5), 4))
    with pytest.raises(pyops.BackendError, match=r"linear_relu: backend 'cuda' cannot run here: it runs on CUDA "
                                                 r"tensors, got a tensor on cpu"):
        pyops.linear_relu(x, w, b, backend="cuda")
    assert_close(pyops.linear_relu(x, w, b, backend="torch"), F.relu(F.linear(x, w, b)))


# ---------------------------------------------------------------- real GPU
@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("fn", FNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape_in,n", PARITY_SHAPES + [((512, 784), 256), ((2048, 1024), 2048)])
def test_gpu_parity(backend, fn, dtype, shape_in, n):
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(shape_in, device="cuda", dtype=dtype, requires_grad=True)
    w = (torch.randn(n, shape_in[-1], device="cuda", dtype=dtype) / shape_in[-1] ** 0.5).requires_grad_()
    b = torch.randn(n, device="cuda", dtype=dtype, requires_grad=True)
    g = torch.randn(*shape_in[:-1], n, device="cuda", dtype=dtype)
    out, _ = run(fn, backend, x, w, b, g)
    xr, wr, br = (t.detach().double().requires_grad_() for t in (x, w, b))
    _, ref = run(fn, "torch", xr, wr, br, g.double())
    for a, e in zip(out, ref):
        if dtype == torch.float64:
            assert_close(a, e)
        else:  # against a float64 reference: the dtype's tolerance (GEMM rtol for float32)
            assert_close(a.double(), e, dtype=dtype, **(GEMM_TOL if dtype == torch.float32 else {}))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_gradcheck(backend):
    x = torch.randn(3, 5, device="cuda", dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, device="cuda", dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: pyops.linear_relu(*a, backend=backend), (x, w, b))
