"""softmax / log_softmax on every backend that runs here: cpu (C++), triton (interpreter), cuda-sim
(the CUDA kernels executed by the emulator); GPU-marked tests for cuda/triton on a real device."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import pyops
from helpers import (CPU_BACKENDS, GPU_BACKENDS, DispatchLog, assert_close, assert_kernels_registered, needs_backend,
                     opcheck_samples)
from pyops import _ops
from pyops.kernels import LAUNCHES as TRITON_LAUNCHES

FNS = {"softmax": (pyops.softmax, F.softmax), "log_softmax": (pyops.log_softmax, F.log_softmax)}
OPS = ["softmax_fwd", "log_softmax_fwd", "softmax_bwd", "log_softmax_bwd"]
NAMESPACES = {"cpu": "pyops", "cuda-sim": "pyops_sim", "triton": "pyops_triton"}


def ref(name, x, dim):
    return FNS[name][1](x, dim)


# ---------------------------------------------------------------- gradcheck, float64
GRAD_CASES = [((5, 7), 1), ((5, 7), 0), ((2, 3, 5), 1), ((2, 3, 5), -1), ((4,), 0), ((1, 1), 1)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("shape,dim", GRAD_CASES)
def test_gradcheck(backend, name, shape, dim):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    fn = FNS[name][0]
    assert torch.autograd.gradcheck(lambda t: fn(t, dim, backend=backend), (x,))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
def test_gradcheck_long_rows(backend, name):
    # rows longer than one warp's / one Triton block's limit: the block-per-row and looped kernels.
    # fast_mode: a full Jacobian of 2x5000 inputs would take 20000 evaluations.
    x = torch.randn(2, 5000, dtype=torch.float64, requires_grad=True)
    fn = FNS[name][0]
    assert torch.autograd.gradcheck(lambda t: fn(t, 1, backend=backend), (x,), fast_mode=True)


# ---------------------------------------------------------------- parity, float32
PARITY_CASES = [((1, 1), 1), ((3, 423), 1), ((67, 1000), 1), ((2, 3, 5), 0), ((2, 3, 5), 1), ((2, 3, 5), 2),
                ((3, 1500), 1), ((2, 5000), 1), ((7,), 0), ((), 0)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("shape,dim", PARITY_CASES)
def test_parity_float32(backend, name, shape, dim):
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    y = FNS[name][0](x, dim, backend=backend)
    (gx,) = torch.autograd.grad(y, x, g)
    xr = x.detach().clone().requires_grad_()
    yr = ref(name, xr, dim)
    (gxr,) = torch.autograd.grad(yr, xr, g)
    assert y.shape == yr.shape and y.dtype == yr.dtype
    assert_close(y, yr)
    assert_close(gx, gxr)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("layout", ["transposed", "sliced_cols", "sliced_rows", "expanded", "permuted_3d"])
def test_non_contiguous(backend, name, layout):
    base = torch.randn(40, 60)
    x = {
        "transposed": base.t(),                    # dim 1 has stride 40
        "sliced_cols": base[:, 3:50],              # unit column stride, row stride 60, unaligned start
        "sliced_rows": base[::3],                  # row stride 180
        "expanded": torch.randn(1, 60).expand(5, 60),  # row stride 0
        "permuted_3d": torch.randn(4, 5, 6).permute(2, 0, 1),
    }[layout]
    assert not x.is_contiguous()
    for dim in range(x.dim()):
        assert_close(FNS[name][0](x, dim, backend=backend), ref(name, x, dim))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
def test_non_contiguous_grad_output(backend, name):
    # the gradient of y.sum() reaches backward as an expanded (stride-0) tensor
    x = torch.randn(6, 33, requires_grad=True)
    (gx,) = torch.autograd.grad((FNS[name][0](x, 1, backend=backend) * 2).sum(), x)
    xr = x.detach().clone().requires_grad_()
    (gxr,) = torch.autograd.grad((ref(name, xr, 1) * 2).sum(), xr)
    assert_close(gx, gxr)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("cols", [10, 1000, 3000])
def test_large_logits(backend, name, cols):
    x = torch.randn(8, cols) * 1e4  # without the max subtraction exp() overflows
    assert_close(FNS[name][0](x, 1, backend=backend), ref(name, x, 1))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("cols", [5, 40, 1500])
def test_neg_inf(backend, name, cols):
    x = torch.randn(4, cols, requires_grad=True)
    with torch.no_grad():
        x[0, 1] = float("-inf")        # one -inf
        x[1, ::2] = float("-inf")      # half -inf
        x[2, :] = float("-inf")        # all -inf: PyTorch gives NaN
    y = FNS[name][0](x, 1, backend=backend)
    expected = ref(name, x.detach(), 1)
    assert torch.isnan(expected[2]).all()  # what PyTorch does, so matching it is meaningful
    assert_close(y, expected)
    g = torch.randn(4, cols)
    (gx,) = torch.autograd.grad(y, x, g)
    xr = x.detach().clone().requires_grad_()
    (gxr,) = torch.autograd.grad(ref(name, xr, 1), xr, g)
    assert_close(gx, gxr)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("shape,dim", [((0, 5), 1), ((5, 0), 1), ((0, 5), 0), ((2, 0, 3), 2)])
def test_empty(backend, name, shape, dim):
    x = torch.randn(shape, requires_grad=True)
    y = FNS[name][0](x, dim, backend=backend)
    assert y.shape == x.shape
    (gx,) = torch.autograd.grad(y.sum(), x)
    assert gx.shape == x.shape


@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@needs_backend("cuda-sim")
def test_half_precision_cuda_kernels(name, dtype):
    # fp16/bf16 storage, fp32 accumulation: the CUDA code path, run by the emulator
    for shape in [(3, 423), (5, 1024), (3, 2000)]:
        x = torch.randn(shape, dtype=dtype, requires_grad=True)
        g = torch.randn(shape, dtype=dtype)
        y = FNS[name][0](x, 1, backend="cuda-sim")
        (gx,) = torch.autograd.grad(y, x, g)
        xr = x.detach().float().requires_grad_()
        yr = ref(name, xr, 1)
        (gxr,) = torch.autograd.grad(yr, xr, g.float())
        assert y.dtype == dtype
        assert_close(y.float(), yr, dtype=dtype)
        assert_close(gx.float(), gxr, dtype=dtype)


@pytest.mark.parametrize("name", FNS)
@needs_backend("triton")
def test_half_precision_triton(name):
    # the interpreter does fp16 (not bf16: it multiplies raw bit patterns), so fp16 only here
    x = torch.randn(3, 423, dtype=torch.float16)
    assert_close(FNS[name][0](x, 1, backend="triton").float(), ref(name, x.float(), 1), dtype=torch.float16)


def test_dtype_argument():
    x = torch.randn(4, 9)
    y = pyops.softmax(x, 1, dtype=torch.float64, backend="cpu")
    assert y.dtype == torch.float64
    assert_close(y, F.softmax(x, 1, dtype=torch.float64))


def test_implicit_dim_warns_like_pytorch():
    x = torch.randn(3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        y = pyops.softmax(x, backend="cpu")
    with pytest.warns(UserWarning):
        expected = F.softmax(x)
    assert_close(y, expected)


# ---------------------------------------------------------------- which kernel variant ran
@needs_backend("cuda-sim")
@pytest.mark.parametrize("cols,variant", [(1000, "warp"), (1024, "warp"), (1025, "block"), (4096, "block")])
def test_cuda_variant(cols, variant):
    _ops.sim_reset_launch_counts()
    x = torch.randn(3, cols, requires_grad=True)
    pyops.log_softmax(x, 1, backend="cuda-sim").sum().backward()
    counts = _ops.sim_launch_counts()
    other = "block" if variant == "warp" else "warp"
    assert counts.get(f"softmax_fwd_{variant}_kernel") == 1 and counts.get(f"softmax_bwd_{variant}_kernel") == 1
    assert f"softmax_fwd_{other}_kernel" not in counts and f"softmax_bwd_{other}_kernel" not in counts


@needs_backend("triton")
@pytest.mark.parametrize("cols,looped", [(423, False), (4096, False), (4097, True)])
def test_triton_variant(cols, looped):
    TRITON_LAUNCHES.clear()
    x = torch.randn(2, cols, requires_grad=True)
    pyops.softmax(x, 1, backend="triton").sum().backward()
    suffix = "_looped_kernel" if looped else "_kernel"
    assert TRITON_LAUNCHES == {f"softmax_fwd{suffix}": 1, f"softmax_bwd{suffix}": 1}


# ---------------------------------------------------------------- registered ops
def _op_samples(op):
    x = torch.randn(6, 37, dtype=torch.float64)
    if op.endswith("_fwd"):
        return [(x, 1), (x.t(), 0), (torch.randn(2, 3, 5), 1)]
    y = F.log_softmax(x, 1) if op.startswith("log") else F.softmax(x, 1)
    return [(torch.randn_like(y), y, 1), (torch.randn(2, 3, 5), torch.rand(2, 3, 5), 0)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", OPS)
def test_opcheck(backend, op):
    opcheck_samples(NAMESPACES[backend], op, _op_samples(op))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_one_cpp_node(backend, op):
    """The differentiable op of csrc/autograd.cpp on every backend: one C++ node saving only the output, and
    opcheck with an input that requires grad (autograd registration, fakes)."""
    x = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = getattr(pyops, op)(x, 1, backend=backend)
    assert y.grad_fn.name() == {"softmax": "pyops::SoftmaxBackward", "log_softmax": "pyops::LogSoftmaxBackward"}[op]
    assert len(saved) == 1 and saved[0] is y
    opcheck_samples(NAMESPACES[backend], op, [(x, 1), (x.detach().t().requires_grad_(), 0)])


def test_cuda_kernels_registered():
    assert_kernels_registered(OPS)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_torch_compile_fullgraph(backend):
    torch._dynamo.reset()

    def f(x, w):
        h = pyops.softmax(x @ w, dim=-1, backend=backend)
        return pyops.log_softmax(h * 3, dim=0, backend=backend).sum()

    x = torch.randn(8, 16, requires_grad=True)
    w = torch.randn(16, 12, requires_grad=True)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x, w)
    out.backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    expected = f(x, w)
    expected.backward()
    assert_close(out, expected)
    assert_close(gx, x.grad)
    assert_close(gw, w.grad)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bad_input(name, backend):
    fn = FNS[name][0]
    with pytest.raises(TypeError, match=rf"{name}: expected input to be a floating-point tensor.*torch.int64"):
        fn(torch.arange(6).view(2, 3), 1, backend=backend)
    with pytest.raises(TypeError, match=rf"{name}: complex input \(torch.complex64\) is not supported"):
        fn(torch.randn(2, 3, dtype=torch.complex64), 1, backend=backend)
    with pytest.raises(IndexError, match=rf"{name}: dim 2 is out of range for a 2-D tensor \(expected a dim in \[-2, 1\]\)"):
        fn(torch.randn(2, 3), 2, backend=backend)
    with pytest.raises(TypeError, match=rf"{name}: expected input to be a torch.Tensor, got list"):
        fn([1.0, 2.0], 0, backend=backend)


@pytest.mark.parametrize("name", FNS)
def test_backend_device_mismatch(name):
    fn = FNS[name][0]
    x = torch.randn(2, 3)
    with pytest.raises(pyops.BackendError, match=rf"{name}: backend 'cuda' cannot run here: it runs on CUDA tensors, "
                                                 r"got a tensor on cpu; use backend='cpu'"):
        fn(x, 1, backend="cuda")
    with pytest.raises(pyops.BackendError, match="unknown backend 'gpu'; expected one of auto, cuda, triton"):
        fn(x, 1, backend="gpu")
    with pytest.raises(TypeError, match=rf"{name}: backend 'cpu' supports float32, float64 .*got input of dtype "
                                        r"torch.float16"):
        fn(x.half(), 1, backend="cpu")


def test_cpp_ops_check_their_arguments():
    # direct torch.ops calls skip the Python checks; the C++ launchers repeat them
    with pytest.raises(RuntimeError, match=r"softmax: expected input to be a floating-point tensor .*Long"):
        torch.ops.pyops.softmax_fwd(torch.arange(4), 0)
    with pytest.raises(RuntimeError, match=r"log_softmax: dim 3 is out of range for a 2-D tensor"):
        torch.ops.pyops.log_softmax_fwd(torch.randn(2, 2), 3)
    with pytest.raises(RuntimeError, match=r"softmax_backward: grad_output shape \[2, 3\] does not match output "
                                           r"shape \[3, 2\]"):
        torch.ops.pyops.softmax_bwd(torch.randn(2, 3), torch.randn(3, 2), 1)
    with pytest.raises(RuntimeError, match=r"softmax_backward: expected grad_output and output to have the same dtype"):
        torch.ops.pyops.softmax_bwd(torch.randn(2, 3).double(), torch.randn(2, 3), 1)


# ---------------------------------------------------------------- backend selection
def test_backend_selection_per_block_and_call():
    x = torch.randn(2, 5)
    assert pyops.current_backend() == "auto"
    with pyops.use_backend("torch"):
        assert pyops.current_backend() == "torch"
        with pyops.use_backend("cuda"):
            with pytest.raises(pyops.BackendError, match="backend 'cuda'"):
                pyops.softmax(x, 1)
            pyops.softmax(x, 1, backend="cpu")  # the call's choice wins over the block's
        assert pyops.current_backend() == "torch"
    assert pyops.current_backend() == "auto"


def test_repeated_call_keeps_every_check_and_choice():
    """A call that passed the checks once goes straight to its op when repeated (pyops/_checks.py): a later call
    with a bad dim, another dtype, another backend or a use_backend block still gets the full path."""
    x = torch.randn(4, 5, dtype=torch.float64)
    for _ in range(2):
        with DispatchLog() as log:
            y = pyops.log_softmax(x, -1)
        assert log.names == ["pyops.log_softmax_fwd"]
        torch.testing.assert_close(y, torch.log_softmax(x, -1), rtol=0, atol=1e-12)
    with pytest.raises(IndexError, match=r"log_softmax: dim 2 is out of range for a 2-D tensor"):
        pyops.log_softmax(x, 2)
    with pytest.raises(TypeError, match=r"log_softmax: expected dim to be an int, got bool"):
        pyops.log_softmax(x, True)
    with pytest.raises(TypeError, match=r"log_softmax: expected input to be a floating-point tensor.*torch.int64"):
        pyops.log_softmax(x.long(), 1)
    for backend, first in (("cuda-sim", "pyops_sim.log_softmax_fwd"), ("torch", "aten._log_softmax")):
        for _ in range(2):
            with DispatchLog() as log, pyops.use_backend(backend):
                pyops.log_softmax(x, -1)
            assert log.names[0] == first, (backend, log.names)
    with pyops.use_backend("cuda"), pytest.raises(pyops.BackendError, match="backend 'cuda'"):
        pyops.log_softmax(x, -1)
    with pytest.warns(UserWarning, match="Implicit dimension choice for log_softmax"):
        pyops.log_softmax(x)


def test_backend_selection_per_process():
    code = "import pyops, torch; print(pyops.current_backend()); pyops.softmax(torch.randn(2, 3), 1)"
    out = subprocess.run([sys.executable, "-c", code], env={**_env(), "PYOPS_BACKEND": "cuda"}, capture_output=True,
                         text=True)
    assert out.stdout.strip() == "cuda" and "backend 'cuda' cannot run here" in out.stderr
    bad = subprocess.run([sys.executable, "-c", "import pyops"], env={**_env(), "PYOPS_BACKEND": "bogus"},
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown PYOPS_BACKEND value 'bogus'" in bad.stderr


def test_triton_on_cpu_needs_interpreter():
    code = "import pyops, torch; pyops.softmax(torch.randn(2, 3), 1, backend='triton')"
    out = subprocess.run([sys.executable, "-c", code], env={**_env(), "TRITON_INTERPRET": "0"}, capture_output=True,
                         text=True)
    assert out.returncode != 0 and "set TRITON_INTERPRET=1 before importing pyops" in out.stderr


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYOPS_BACKEND",)}


# ---------------------------------------------------------------- real GPU
@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
@pytest.mark.parametrize("name", FNS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1), (3, 423), (67, 1000), (64, 1025), (8, 32000)])
def test_gpu_parity(backend, name, dtype, shape):
    x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
    g = torch.randn(shape, device="cuda", dtype=dtype)
    y = FNS[name][0](x, 1, backend=backend)
    (gx,) = torch.autograd.grad(y, x, g)
    xr = x.detach().float().requires_grad_()
    yr = ref(name, xr, 1)
    (gxr,) = torch.autograd.grad(yr, xr, g.float())
    assert_close(y.float(), yr, dtype=dtype)
    assert_close(gx.float(), gxr, dtype=dtype, rtol=2e-2 if dtype != torch.float32 else 1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_gpu_gradcheck(backend):
    x = torch.randn(5, 7, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pyops.log_softmax(t, 1, backend=backend), (x,))
