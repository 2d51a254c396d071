"""The teaching tour: each op's CUDA kernel from the naive one to the shipped one, one idea per step.

The steps are plain CUDA files under kernels/tour/<op>/NN_<idea>.cu (the shipped kernels' folder,
kernels/cuda, stays what the library runs; a tour's last step instantiates the shipped kernels from
their header).  Each runs on the CPU through :func:`pyops.sim.load`; this module knows, per step,
how to launch it, what input to give it and which PyTorch expression is its reference.

    python -m pyops tour                    # the tours and their steps
    python -m pyops tour softmax --step 3   # run step 3 on a small input, check it against torch
"""
from __future__ import annotations

import ctypes
import math
import os
from dataclasses import dataclass, field
from typing import Callable

from . import sim
from ._C import adam_hparams

TOUR_DIR = os.path.join(sim.ROOT, "kernels", "tour")


@dataclass
class Step:
    number: int
    file: str                    # relative to kernels/tour/<op>
    title: str
    kernel: str                  # the __global__ the step launches (per dtype for the shipped GEMM)
    launch: Callable             # launch(module, inputs) -> output tensor
    needs: Callable = None       # needs(shape) -> None or the reason the step cannot take the shape

    def path(self, op: str) -> str:
        return os.path.join(TOUR_DIR, op, self.file)

    def header(self, op: str) -> str:
        """The step file's opening comment, without the comment markers (the step's text)."""
        lines = []
        for line in open(self.path(op), encoding="utf-8"):
            if not line.startswith("//"):
                break
            lines.append(line[3:].rstrip() if line.startswith("// ") else line[2:].rstrip())
        return "\n".join(lines)


@dataclass
class Tour:
    op: str
    summary: str
    steps: list[Step]
    make_inputs: Callable        # make_inputs(shape, seed, dtype) -> dict of tensors
    reference: Callable          # reference(inputs) -> tensor
    default_shape: tuple
    tolerance: Callable = None   # tolerance(dtype) -> (rtol, atol)
    extra: dict = field(default_factory=dict)

    def step(self, n: int) -> Step:
        for s in self.steps:
            if s.number == n:
                return s
        raise ValueError(f"{self.op} tour: no step {n} (steps 1 to {len(self.steps)})")


def _cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


# ---------------------------------------------------------------- softmax
def _softmax_inputs(shape, seed=0, dtype=None):
    import torch

    rows, cols = shape
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(rows, cols, generator=g, dtype=torch.float32) * 3}


def _softmax_reference(inp):
    import torch

    return torch.softmax(inp["x"], dim=-1)


def _softmax_simple(grid_block):
    def launch(mod, inp):
        import torch

        x = inp["x"]
        rows, cols = x.shape
        y = torch.empty_like(x)
        grid, block = grid_block(rows, cols)
        k = next(iter(mod.kernels.values()))
        k[grid, block](x, y, rows, cols)
        return y
    return launch


def _softmax_shipped(mod, inp):
    """The launch softmax_forward makes for float rows with 16-byte loads (row_plan of common.cuh)."""
    import torch

    x = inp["x"]
    rows, cols = x.shape
    y = torch.empty_like(x)
    if cols <= 1024:
        mod.softmax_fwd_warp_kernel[_cdiv(rows, 4), (32, 4)](x, cols, y, cols, rows, cols)
    else:
        t = 1 << max(0, math.ceil(math.log2(_cdiv(cols, 4 * 8))))
        mod.softmax_fwd_block_kernel[rows, min(1024, max(128, t))](x, cols, y, cols, rows, cols)
    return y


def _vec4_cols(shape):
    return None if shape[-1] % 4 == 0 else f"16-byte loads need cols % 4 == 0, got cols = {shape[-1]}"


SOFTMAX = Tour(
    op="softmax",
    summary="softmax over the rows of a [rows, cols] float matrix",
    steps=[
        Step(1, "01_three_pass.cu", "three passes", "softmax_three_pass",
             _softmax_simple(lambda r, c: (_cdiv(r, 128), 128))),
        Step(2, "02_online.cu", "online max and sum", "softmax_online",
             _softmax_simple(lambda r, c: (_cdiv(r, 128), 128))),
        Step(3, "03_warp_row.cu", "a warp per row, shuffles", "softmax_warp_row",
             _softmax_simple(lambda r, c: (_cdiv(r, 4), (32, 4)))),
        Step(4, "04_block_row.cu", "a block per row", "softmax_block_row",
             _softmax_simple(lambda r, c: (r, 256))),
        Step(5, "05_shipped.cu", "16-byte loads (shipped)", "softmax_fwd_block_kernel", _softmax_shipped,
             needs=_vec4_cols),
    ],
    make_inputs=_softmax_inputs,
    reference=_softmax_reference,
    default_shape=(32, 2048),
    tolerance=lambda dtype: (1e-5, 1e-6),
)


# ---------------------------------------------------------------- GEMM (linear + ReLU forward)
class GemmOperand(ctypes.Structure):  # kernels/cuda/linear_relu.cuh: GemmOperand<T>
    _fields_ = [("ptr", ctypes.c_void_p), ("s_out", ctypes.c_int64), ("s_red", ctypes.c_int64),
                ("relu_out", ctypes.c_void_p)]


class GemmArgs(ctypes.Structure):  # kernels/cuda/linear_relu.cuh: GemmArgs<T>
    _fields_ = [("a", GemmOperand), ("b", GemmOperand), ("c", ctypes.c_void_p), ("c_rs", ctypes.c_int64),
                ("c_cs", ctypes.c_int64), ("bias", ctypes.c_void_p), ("relu", ctypes.c_bool),
                ("a_row_sums", ctypes.c_void_p), ("M", ctypes.c_int64), ("N", ctypes.c_int64),
                ("K", ctypes.c_int64)]


def _gemm_inputs(shape, seed=0, dtype=None):
    import torch

    M, N, K = shape
    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(M, K, generator=g).to(dtype), "w": (torch.randn(N, K, generator=g) / K ** 0.5).to(dtype),
            "b": torch.randn(N, generator=g).to(dtype)}


def _gemm_reference(inp):
    import torch

    x, w, b = (inp[k].float() for k in ("x", "w", "b"))
    return torch.relu(x @ w.T + b).to(inp["x"].dtype)


def _gemm_simple(grid_block):
    def launch(mod, inp):
        import torch

        x, w, b = inp["x"], inp["w"], inp["b"]
        M, K = x.shape
        N = w.shape[0]
        y = torch.empty(M, N, dtype=x.dtype)
        grid, block = grid_block(M, N)
        k = next(iter(mod.kernels.values()))
        k[grid, block](x, w, b, y, M, N, K)
        return y
    return launch


def _gemm_shipped(mod, inp):
    """The launch linear_gemm makes for the forward pass with 16-byte loads (linear_gemm_plan):
    float32 on the 64 x 64 CUDA-core tile, float16 on tensor cores."""
    import torch

    x, w, b = inp["x"], inp["w"], inp["b"]
    M, K = x.shape
    N = w.shape[0]
    y = torch.empty(M, N, dtype=x.dtype)
    args = GemmArgs(a=GemmOperand(x.data_ptr(), K, 1, None), b=GemmOperand(w.data_ptr(), K, 1, None),
                    c=y.data_ptr(), c_rs=N, c_cs=1, bias=b.data_ptr(), relu=True, a_row_sums=None, M=M, N=N, K=K)
    tiles = _cdiv(M, 64) * _cdiv(N, 64)
    if x.dtype == torch.float32:  # simt_smem_bytes<SimtTile64>(4): BK (BM + BN + 2 pad) floats
        mod.linear_relu_simt64_kernel[tiles, 256, 16 * (64 + 64 + 2 * 4) * 4](args, memory=(x, w, b, y))
    elif x.dtype == torch.float16:
        if K % 8:  # the launcher takes 16-byte loads only when a vector is all in or all out of range
            raise ValueError(f"gemm step 6 in float16: 16-byte loads need K % 8 == 0, got K = {K}")
        # wmma_smem_bytes(2): max(A/B tiles, fp32 staging of C) + 32
        smem = max(32 * (64 + 64 + 2 * 8) * 2, 64 * (64 + 4) * 4) + 32
        mod.linear_relu_wmma_kernel[tiles, 128, smem](args, memory=(x, w, b, y))
    else:
        raise ValueError(f"gemm step 6 runs float32 (CUDA cores) or float16 (tensor cores), got {x.dtype}")
    # keep the tensors alive until here: the struct holds bare pointers
    del x, w, b
    return y


def _vec4_k(shape):
    return None if shape[2] % 4 == 0 else f"16-byte loads need K % 4 == 0, got K = {shape[2]}"


GEMM = Tour(
    op="gemm",
    summary="the linear+ReLU forward GEMM, y = relu(x w^T + b), x [M, K], w [N, K]",
    steps=[
        Step(1, "01_naive.cu", "one thread per output", "gemm_naive",
             _gemm_simple(lambda M, N: ((_cdiv(N, 16), _cdiv(M, 16)), (16, 16)))),
        Step(2, "02_smem_tiles.cu", "shared-memory tiles", "gemm_smem_tiles",
             _gemm_simple(lambda M, N: ((_cdiv(N, 16), _cdiv(M, 16)), (16, 16)))),
        Step(3, "03_register_tiles.cu", "register tiles", "gemm_register_tiles",
             _gemm_simple(lambda M, N: ((_cdiv(N, 64), _cdiv(M, 64)), 256))),
        Step(4, "04_vectorized.cu", "16-byte global loads", "gemm_vectorized",
             _gemm_simple(lambda M, N: ((_cdiv(N, 64), _cdiv(M, 64)), 256)), needs=_vec4_k),
        Step(5, "05_padded.cu", "padding against bank conflicts", "gemm_padded",
             _gemm_simple(lambda M, N: ((_cdiv(N, 64), _cdiv(M, 64)), 256)), needs=_vec4_k),
        Step(6, "06_shipped.cu", "the shipped kernels: prefetch, tensor cores", "linear_relu_simt64_kernel",
             _gemm_shipped, needs=_vec4_k),
    ],
    make_inputs=_gemm_inputs,
    reference=_gemm_reference,
    default_shape=(64, 64, 128),
    tolerance=lambda dtype: (2e-2, 2e-2) if str(dtype) in ("torch.float16", "torch.bfloat16") else (1e-4, 1e-5),
)

# ---------------------------------------------------------------- cross-entropy (forward, reduction none)
class ClassRows(ctypes.Structure):  # kernels/cuda/cross_entropy.cuh
    _fields_ = [(n, ctypes.c_int64) for n in ("rows", "classes", "inner", "ld_n", "ld_d", "ld_c")]


class LossOutput(ctypes.Structure):  # kernels/cuda/cross_entropy.cuh: LossOutput<float>
    _fields_ = [("per_row", ctypes.c_bool), ("rows_out", ctypes.c_void_p), ("partials", ctypes.c_void_p),
                ("reduced", ctypes.c_void_p), ("total_weight", ctypes.c_void_p), ("mean", ctypes.c_bool)]


class Smoothing(ctypes.Structure):  # kernels/cuda/cross_entropy.cuh: Smoothing<float>
    _fields_ = [("keep", ctypes.c_float), ("spread", ctypes.c_float)]


def _ce_inputs(shape, seed=0, dtype=None):
    import torch

    rows, C = shape
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(rows, C, generator=g) * 3, "t": torch.randint(0, C, (rows,), generator=g)}


def _ce_reference(inp):
    import torch

    return torch.nn.functional.cross_entropy(inp["x"], inp["t"], reduction="none")


def _ce_simple(grid_block, buffer=False):
    def launch(mod, inp):
        import torch

        x, t = inp["x"], inp["t"]
        rows, C = x.shape
        loss = torch.empty(rows)
        grid, block = grid_block(rows)
        k = next(iter(mod.kernels.values()))
        if buffer:
            k[grid, block](x, t, torch.empty(rows, C), loss, rows, C)
        else:
            k[grid, block](x, t, loss, rows, C)
        return loss
    return launch


def _ce_shipped(mod, inp):
    """The launch cross_entropy_forward makes for float rows of <= 1024 classes with 16-byte loads,
    reduction none, no weights, no smoothing (row_plan of common.cuh)."""
    import torch

    x, t = inp["x"], inp["t"]
    rows, C = x.shape
    loss, lse = torch.empty(rows), torch.empty(rows, dtype=torch.float64)
    out = LossOutput(per_row=True, rows_out=loss.data_ptr())
    mod.cross_entropy_fwd_warp_kernel[_cdiv(rows, 4), (32, 4)](
        x, ClassRows(rows, C, 1, C, 0, 1), t, torch.empty(0), -100, Smoothing(1.0, 0.0), out, lse,  # no weight:
        # an empty tensor's pointer is null
        memory=(loss,))
    return loss


def _ce_vec4_warp(shape):
    if shape[1] % 4:
        return f"16-byte loads need C % 4 == 0, got C = {shape[1]}"
    if shape[1] > 1024:
        return f"the tour instantiates the warp-per-row kernel, for C <= 1024 classes, got C = {shape[1]}"
    return None


CROSS_ENTROPY = Tour(
    op="cross_entropy",
    summary="the cross-entropy forward, loss_r = lse(x_r) - x[r, t_r], x [rows, C], reduction none",
    steps=[
        Step(1, "01_unfused.cu", "log-softmax, then the loss", "ce_unfused",
             _ce_simple(lambda r: (_cdiv(r, 128), 128), buffer=True)),
        Step(2, "02_fused.cu", "fused, online log-sum-exp", "ce_fused", _ce_simple(lambda r: (_cdiv(r, 128), 128))),
        Step(3, "03_warp_row.cu", "a warp per row, shuffles", "ce_warp_row",
             _ce_simple(lambda r: (_cdiv(r, 4), (32, 4)))),
        Step(4, "04_shipped.cu", "16-byte loads (shipped)", "cross_entropy_fwd_warp_kernel", _ce_shipped,
             needs=_ce_vec4_warp),
    ],
    make_inputs=_ce_inputs,
    reference=_ce_reference,
    default_shape=(64, 1000),
    tolerance=lambda dtype: (1e-5, 1e-5),
)

# ---------------------------------------------------------------- Adam / AdamW (one optimizer step)
ADAM_HYPER = {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2, "adamw": False}
ADAM_STEP = 4  # the step count before the tour's step (the state is that of a parameter trained 4 steps)


def _adam_inputs(shape, seed=0, dtype=None):
    """shape: the numel of each parameter tensor; each tensor comes with its gradient and Adam state."""
    import torch

    if dtype not in (None, torch.float32):
        raise ValueError(f"the adam tour runs float32 parameters, got {dtype}")
    if not shape or any(n < 0 for n in shape):
        raise ValueError(f"adam shape: the numel of each parameter tensor, one or more ints >= 0, got {list(shape)}")
    g = torch.Generator().manual_seed(seed)
    out = {"params": [], "grads": [], "exp_avg": [], "exp_avg_sq": [], "step": ADAM_STEP, "hyper": dict(ADAM_HYPER)}
    for n in shape:
        out["params"].append(torch.randn(n, generator=g))
        out["grads"].append(torch.randn(n, generator=g))
        out["exp_avg"].append(torch.randn(n, generator=g) * 0.1)
        out["exp_avg_sq"].append(torch.rand(n, generator=g) * 0.01)
    return out


def _adam_reference(inp):
    """torch.optim.Adam (AdamW with hyper["adamw"]), single-tensor implementation, from the same state:
    the updated params, exp_avg and exp_avg_sq, flattened and concatenated."""
    import torch

    h = inp["hyper"]
    params = [p.clone() for p in inp["params"]]
    cls = torch.optim.AdamW if h["adamw"] else torch.optim.Adam
    opt = cls(params, lr=h["lr"], betas=(h["beta1"], h["beta2"]), eps=h["eps"], weight_decay=h["weight_decay"],
              foreach=False, fused=False)
    for i, p in enumerate(params):
        p.grad = inp["grads"][i].clone()
        opt.state[p] = {"step": torch.tensor(float(inp["step"])), "exp_avg": inp["exp_avg"][i].clone(),
                        "exp_avg_sq": inp["exp_avg_sq"][i].clone()}
    opt.step()
    return torch.cat([p.detach() for p in params] + [opt.state[p]["exp_avg"] for p in params]
                     + [opt.state[p]["exp_avg_sq"] for p in params])


def _adam_flat(grid):
    """Steps 1 to 3: the parameters as one flat buffer (their concatenation), one launch."""
    def launch(mod, inp):
        import torch

        p, g, m, v = (torch.cat(inp[k]) for k in ("params", "grads", "exp_avg", "exp_avg_sq"))
        h = inp["hyper"]
        n = p.numel()
        k = next(iter(mod.kernels.values()))
        k[grid(n), 256](p, g, m, v, n, h["lr"], h["beta1"], h["beta2"], h["eps"], h["weight_decay"],
                        int(h["adamw"]), inp["step"] + 1)
        return torch.cat([p, m, v])
    return launch


class AdamHyper(ctypes.Structure):  # kernels/cuda/adam_hparams.h: its fields in their order
    _fields_ = [(name, ctypes.c_bool if kind == "bool" else ctypes.c_double) for name, kind, _, _ in adam_hparams()]


class AdamTensor(ctypes.Structure):  # kernels/cuda/adam.cuh: AdamTensor<float>
    _fields_ = [(n, ctypes.c_void_p) for n in ("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")] + \
               [("numel", ctypes.c_int64), ("first_tile", ctypes.c_int64), ("step", ctypes.c_double),
                ("step_ptr", ctypes.c_void_p)]


ADAM_MAX_TENSORS, ADAM_TILE = 54, 256 * 4 * 4  # kAdamMaxTensors; kAdamThreads * VEC * kAdamIlp for float


class AdamLaunch(ctypes.Structure):  # kernels/cuda/adam.cuh: AdamLaunch<float>
    _fields_ = [("tensors", AdamTensor * ADAM_MAX_TENSORS), ("hyper", AdamHyper), ("lr_ptr", ctypes.c_void_p),
                ("counters", ctypes.c_void_p), ("total_tiles", ctypes.c_int64), ("n_tensors", ctypes.c_int),
                ("capturable", ctypes.c_bool), ("lr_f64", ctypes.c_bool), ("step_f64", ctypes.c_bool)]


def _adam_shipped(mod, inp):
    """The launch adam_step makes for float32 tensors (non-capturable, no AMSGrad): one table, one launch."""
    import torch

    h = inp["hyper"]
    p, m, v = ([t.clone() for t in inp[k]] for k in ("params", "exp_avg", "exp_avg_sq"))
    g = inp["grads"]
    hyper = AdamHyper(**{name: default for name, _, default, _ in adam_hparams()})
    hyper.lr, hyper.beta1, hyper.beta2, hyper.eps = h["lr"], h["beta1"], h["beta2"], h["eps"]
    hyper.weight_decay, hyper.decoupled_weight_decay = h["weight_decay"], bool(h["adamw"])
    args = AdamLaunch(hyper=hyper)
    tiles = 0
    for i in range(len(p)):
        args.tensors[i] = AdamTensor(p[i].data_ptr(), g[i].data_ptr(), m[i].data_ptr(), v[i].data_ptr(), None,
                                     p[i].numel(), tiles, float(inp["step"] + 1), None)
        tiles += max(1, _cdiv(p[i].numel(), ADAM_TILE))  # adam_tiles
    args.n_tensors, args.total_tiles = len(p), tiles
    mod.adam_multi_tensor_kernel[min(tiles, 8192), 256](args, memory=(*p, *g, *m, *v))
    return torch.cat(p + m + v)


def _adam_table(shape):
    if len(shape) > ADAM_MAX_TENSORS:
        return f"one launch takes up to {ADAM_MAX_TENSORS} tensors, got {len(shape)}"
    return None


ADAM = Tour(
    op="adam",
    summary="one Adam / AdamW step over a model's parameter tensors (float32)",
    steps=[
        Step(1, "01_naive.cu", "one thread per element", "adam_naive", _adam_flat(lambda n: max(1, _cdiv(n, 256)))),
        Step(2, "02_grid_stride.cu", "a grid-stride loop, fewer blocks", "adam_grid_stride",
             _adam_flat(lambda n: max(1, min(_cdiv(n, 256), 16)))),
        Step(3, "03_vectorized.cu", "16-byte loads and stores", "adam_vectorized",
             _adam_flat(lambda n: max(1, min(_cdiv(n // 4, 256), 16)))),
        Step(4, "04_shipped.cu", "every tensor in one launch (shipped)", "adam_multi_tensor_kernel", _adam_shipped,
             needs=_adam_table),
    ],
    make_inputs=_adam_inputs,
    reference=_adam_reference,
    default_shape=(4096,) * 8,
    tolerance=lambda dtype: (1e-5, 1e-6),
)

TOURS = {t.op: t for t in (SOFTMAX, CROSS_ENTROPY, GEMM, ADAM)}


def get(op: str) -> Tour:
    if op not in TOURS:
        raise ValueError(f"no tour {op!r} (tours: {', '.join(TOURS)})")
    return TOURS[op]


def load_step(op: str, n: int, race_check: bool = False) -> sim.Module:
    return sim.load(get(op).step(n).path(op), race_check=race_check)


@dataclass
class Result:
    op: str
    step: Step
    shape: tuple
    output: object
    reference: object
    max_abs_err: float
    ok: bool
    rtol: float
    atol: float


def run_step(op: str, n: int, shape=None, seed: int = 0, dtype=None) -> Result:
    """Run step `n` of tour `op` on a seeded random input of `shape` and compare it with PyTorch."""
    import torch

    tour = get(op)
    step = tour.step(n)
    shape = tuple(shape or tour.default_shape)
    why = step.needs(shape) if step.needs else None
    if why:
        raise ValueError(f"{op} step {n} ({step.title}): {why}")
    inp = tour.make_inputs(shape, seed, dtype)
    mod = sim.load(step.path(op))
    out = step.launch(mod, inp)
    ref = tour.reference(inp)
    rtol, atol = tour.tolerance(out.dtype)
    err = (out.float() - ref.float()).abs().max().item() if out.numel() else 0.0
    ok = bool(torch.allclose(out.float(), ref.float(), rtol=rtol, atol=atol))
    return Result(op, step, shape, out, ref, err, ok, rtol, atol)


# ---------------------------------------------------------------- profiles (the emulator's counting build)
def _flops(op: str, shape) -> float:
    """Floating-point operations of the op at `shape`: a multiply-add is 2 (GEMM); softmax ~5 per element;
    Adam 15 per element (its formula's adds, multiplies, divisions and square root, with weight decay)."""
    if op == "adam":
        return 15.0 * sum(shape)
    return 2.0 * shape[0] * shape[1] * shape[2] if op == "gemm" else 5.0 * shape[0] * shape[1]  # (per element)


def _dims(d) -> str:
    d = list(d)
    while len(d) > 1 and d[-1] == 1:
        d.pop()
    return str(d[0]) if len(d) == 1 else "(" + ",".join(map(str, d)) + ")"


# (label, function of (launch record, op, shape) -> number, format).  What each measures: docs/profiling.md.
METRICS = [
    ("grid x block", lambda L, op, sh: f"{_dims(L.grid)} x {_dims(L.block)}", "s"),
    ("global load requests", lambda L, op, sh: L.requests("global_load"), "d"),
    ("global load requests / kFLOP", lambda L, op, sh: 1e3 * L.requests("global_load") / _flops(op, sh), ".3g"),
    ("global load sectors / request", lambda L, op, sh: L.sectors_per_request("global_load"), ".2f"),
    ("  ideal", lambda L, op, sh: L.ideal_sectors_per_request("global_load"), ".2f"),
    ("global store requests", lambda L, op, sh: L.requests("global_store"), "d"),
    ("global store sectors / request", lambda L, op, sh: L.sectors_per_request("global_store"), ".2f"),
    ("L1-level global bytes", lambda L, op, sh: L.l1_bytes("global_load") + L.l1_bytes("global_store"), "d"),
    ("unique global bytes", lambda L, op, sh: L.unique_bytes, "d"),
    ("shared load requests", lambda L, op, sh: L.requests("shared_load"), "d"),
    ("shared store requests", lambda L, op, sh: L.requests("shared_store"), "d"),
    ("shared excess wavefronts (bank conflicts)", lambda L, op, sh: L.excess_wavefronts, "d"),
    ("warps", lambda L, op, sh: L.warps, "d"),
    ("barriers / warp", lambda L, op, sh: L.per_warp("barriers"), ".3g"),
    ("shuffles / warp", lambda L, op, sh: L.per_warp("shuffles"), ".3g"),
]


def profile_step(op: str, n: int, shape=None, seed: int = 0) -> dict:
    """Run step `n` on `shape` (default: the tour's) in the counting build; its metrics by label (METRICS),
    plus "kernel" and the launch record itself ("record", a pyops.profile.Launch)."""
    tour = get(op)
    step = tour.step(n)
    shape = tuple(shape or tour.default_shape)
    why = step.needs(shape) if step.needs else None
    if why:
        raise ValueError(f"{op} step {n} ({step.title}): {why}")
    mod = sim.load(step.path(op))
    inp = tour.make_inputs(shape, seed)
    with mod.record() as launches:
        step.launch(mod, inp)
    (L,) = launches
    out = {label: f(L, op, shape) for label, f, _ in METRICS}
    out["kernel"], out["record"] = L.name, L
    return out


def _fmt(v, spec: str) -> str:
    return format(v, ",d" if spec == "d" else spec) if not isinstance(v, str) else v


def profile_table(op: str, profiles: dict, steps: list[int]) -> str:
    """A Markdown table: one row per metric, one column per step."""
    head = "| metric | " + " | ".join(f"step {n}" for n in steps) + " |"
    rows = [head, "| --- |" + " ---: |" * len(steps)]
    for label, _, spec in METRICS:
        rows.append(f"| {label.strip()}{' (global loads)' if label.startswith('  ') else ''} | "
                    + " | ".join(_fmt(profiles[n][label], spec) for n in steps) + " |")
    return "\n".join(rows) + "\n"


PLOTTED = ["global load requests", "global load sectors / request", "shared excess wavefronts (bank conflicts)",
           "L1-level global bytes"]


def profile_plot(op: str, profiles: dict, width: int = 40) -> str:
    """Bars of the PLOTTED metrics across the steps, counts on a log scale (they span orders of magnitude);
    text, so the page stays diffable and checkable."""
    steps = sorted(profiles)
    spec = {m[0]: m[2] for m in METRICS}
    out = ["```"]
    for label in PLOTTED:
        vals = [float(profiles[n][label]) for n in steps]
        log = spec[label] == "d"
        scale = (lambda v: math.log10(1 + v)) if log else (lambda v: v)
        top = max(scale(v) for v in vals) or 1.0
        out.append(label + (" (log scale)" if log else ""))
        for n, v in zip(steps, vals):
            bar = "#" * round(width * scale(v) / top)
            out.append(f"  step {n}  {bar:<{width}}  {_fmt(profiles[n][label], spec[label])}")
    out.append("```")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- docs/tour/<op>.md
DOCS_DIR = os.path.join(sim.ROOT, "docs", "tour")

INTROS = {
    "softmax": """\
Softmax over the rows of a `[rows, cols]` float matrix, `y[r, c] = exp(x[r, c] - m_r) / s_r`, from one
thread per row reading everything three times to the kernels pyops ships (`kernels/cuda/softmax.cuh`,
[its page](../softmax.md)).  Each step is one `.cu` file under `kernels/tour/softmax/`; run one with
`python -m pyops tour softmax --step N`, or load it yourself with `pyops.sim.load` ([README](README.md)).
""",
    "cross_entropy": """\
The cross-entropy forward with one loss per row (`F.cross_entropy(x, t, reduction="none")`), from PyTorch's
unfused log-softmax + NLL to the kernel pyops ships (`kernels/cuda/cross_entropy.cuh`,
[its page](../cross_entropy.md)).  Each step is one `.cu` file under `kernels/tour/cross_entropy/`; run one
with `python -m pyops tour cross_entropy --step N`, or load it yourself with `pyops.sim.load`
([README](README.md)).
""",
    "gemm": """\
The forward GEMM of a linear+ReLU layer, `y = relu(x w^T + b)` with `x [M, K]`, `w [N, K]` (nn.Linear's
layout), from one thread per output to the kernels pyops ships (`kernels/cuda/linear_relu.cuh`,
[its page](../linear_relu.md)).  Each step is one `.cu` file under `kernels/tour/gemm/`; run one with
`python -m pyops tour gemm --step N`, or load it yourself with `pyops.sim.load` ([README](README.md)).
""",
    "adam": """\
One Adam or AdamW step (`torch.optim.Adam(..., foreach=False)`'s update) over a model's float32
parameter tensors, each with its gradient and its two running averages, from one thread per element
to the multi-tensor kernel pyops ships (`kernels/cuda/adam.cuh`, [its page](../adam.md)).  Each step
is one `.cu` file under `kernels/tour/adam/`; run one with `python -m pyops tour adam --step N`, or load
it yourself with `pyops.sim.load` ([README](README.md)).
""",
}


def _markdown(lines: list[str]) -> str:
    """A step file's comment as Markdown: paragraphs joined, indented lines (formulas) as code blocks."""
    out, para, code = [], [], []

    def flush():
        if para:
            out.append(" ".join(para) + "\n")
            para.clear()
        if code:
            out.append("```\n" + "\n".join(code) + "\n```\n")
            code.clear()
    for line in lines:
        if not line.strip():
            flush()
        elif line.startswith("    "):
            if para:
                flush()
            code.append(line[4:])
        else:
            if code:
                flush()
            para.append(line.strip())
    flush()
    return "\n".join(out)


def _step_diff(op: str, t: Tour, s: Step) -> str:
    import difflib

    cur = open(s.path(op), encoding="utf-8").read().splitlines()
    if s.number == 1:
        return "```cuda\n" + "\n".join(cur) + "\n```\n"
    prev = t.step(s.number - 1)
    old = open(prev.path(op), encoding="utf-8").read().splitlines()
    diff = difflib.unified_diff(old, cur, prev.file, s.file, n=2, lineterm="")
    return "```diff\n" + "\n".join(diff) + "\n```\n"


def profile_all(op: str) -> dict:
    """Every step of the tour profiled at the tour's default shape (step number -> metrics)."""
    return {s.number: profile_step(op, s.number) for s in get(op).steps}


def generate_docs(op: str, profiles: dict | None = None) -> str:
    """The text of docs/tour/<op>.md, from the step files (their opening comments and diffs) and the
    steps' profiles in the counting build (`profiles`: from profile_all, computed when not given)."""
    t = get(op)
    profiles = profiles or profile_all(op)
    out = [f"# The {op} tour\n",
           f"<!-- generated by `python -m pyops tour --write-docs` from kernels/tour/{op}/*.cu; "
           "tests/test_tour.py checks it is current -->\n", INTROS[op],
           "| step | idea | file | kernel |", "| --- | --- | --- | --- |"]
    for s in t.steps:
        out.append(f"| {s.number} | {s.title} | [`{s.file}`](../../kernels/tour/{op}/{s.file}) | `{s.kernel}` |")
    out.append("")
    shape = _fmt_shape(op, t.default_shape)
    out.append(f"## The steps measured\n\nEach step run once on {shape} (float32, seed 0) in the emulator's counting "
               "build ([profiling.md](../profiling.md): what each number means, and what the emulator cannot see "
               "-- no timing, no caches beyond unique bytes):\n")
    out.append(profile_table(op, profiles, [s.number for s in t.steps]))
    out.append(profile_plot(op, profiles))
    for s in t.steps:
        head = s.header(op).split("\n")
        out.append(f"## Step {s.number}: {s.title}\n")
        out.append(_markdown(head[1:]))
        nums = [s.number - 1, s.number] if s.number > 1 else [s.number]
        out.append(f"Measured (kernel `{profiles[s.number]['kernel']}`"
                   + (f", beside step {s.number - 1}" if s.number > 1 else "") + "):\n")
        out.append(profile_table(op, profiles, nums))
        out.append("The step's source, as a diff from the step before:\n" if s.number > 1 else "The source:\n")
        out.append(_step_diff(op, t, s))
    return "\n".join(out).rstrip("\n") + "\n"


def write_docs() -> list[str]:
    os.makedirs(DOCS_DIR, exist_ok=True)
    written = []
    for op in TOURS:
        path = os.path.join(DOCS_DIR, f"{op}.md")
        text = generate_docs(op)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        written.append(path)
    return written


# ---------------------------------------------------------------- command line
def _fmt_shape(op, shape):
    if op == "adam":
        sizes = ", ".join(map(str, shape)) if len(set(shape)) > 1 else f"{shape[0]}"
        return (f"{len(shape)} parameter tensor{'s' if len(shape) > 1 else ''} of {sizes} elements"
                + (" each" if len(shape) > 1 and len(set(shape)) == 1 else "") + ", with grad, exp_avg, exp_avg_sq")
    return {"softmax": "x [{}, {}]", "cross_entropy": "x [{0}, {1}], target [{0}]",
            "gemm": "x [{0}, {2}], w [{1}, {2}], b [{1}]"}[op].format(*shape)


def list_tours(ops=None) -> str:
    out = []
    for op in ops or TOURS:
        t = get(op)
        out.append(f"{op}: {t.summary}  ({len(t.steps)} steps, kernels/tour/{op}/)")
        for s in t.steps:
            out.append(f"  {s.number}  {s.title:<42} {s.file:<22} {s.kernel}")
    return "\n".join(out)


def cmd_tour(args) -> int:
    if args.write_docs:
        for p in write_docs():
            print(f"wrote {os.path.relpath(p, sim.ROOT)}")
        return 0
    if args.op is None:
        print(list_tours())
        return 0
    try:
        tour = get(args.op)
        if args.step is None:
            print(list_tours([args.op]))
            print(f"\nrun one: python -m pyops tour {args.op} --step N")
            return 0
        step = tour.step(args.step)
        shape = tuple(args.shape) if args.shape else tour.default_shape
        res = run_step(args.op, args.step, shape, seed=args.seed)
    except (ValueError, sim.CompileError, sim.LaunchError) as e:
        print(f"error: {e}")
        return 2
    first = step.header(args.op).split("\n", 1)[0]
    print(f"{first}")
    print(f"file:   kernels/tour/{args.op}/{step.file}  (kernel {step.kernel})")
    print(f"input:  {_fmt_shape(args.op, shape)} float32, seed {args.seed}")
    verdict = "OK" if res.ok else "MISMATCH"
    print(f"check:  max |out - torch| = {res.max_abs_err:.3g}  (rtol {res.rtol:g}, atol {res.atol:g}): {verdict}")
    if not res.ok:
        return 1
    if args.no_profile:
        return 0
    why = sim.counting_available()
    if why:
        print(f"profile: not available ({why})")
        return 0
    nums = [n for n in (args.step - 1, args.step) if n >= 1]
    prev = tour.step(args.step - 1) if args.step > 1 else None
    if prev is not None and prev.needs and prev.needs(shape):
        nums = [args.step]
    profiles = {n: profile_step(args.op, n, shape, seed=args.seed) for n in nums}
    print(f"\nprofile (the emulator's counting build; docs/profiling.md){' beside step %d' % nums[0] if len(nums) > 1 else ''}:")
    width = max(len(m[0]) for m in METRICS)
    print(f"  {'':<{width}}  " + "  ".join(f"{'step %d' % n:>14}" for n in nums))
    for label, _, spec in METRICS:
        print(f"  {label:<{width}}  " + "  ".join(f"{_fmt(profiles[n][label], spec):>14}" for n in nums))
    return 0


def add_arguments(p) -> None:
    p.add_argument("op", nargs="?", choices=sorted(TOURS), help="which tour (default: list them all)")
    p.add_argument("--step", type=int, default=None, help="run this step on a small input, check it, profile it beside step N-1")
    p.add_argument("--shape", type=int, nargs="+", default=None,
                   help="input shape (softmax: ROWS COLS, default 32 2048; cross_entropy: ROWS C, default 64 1000; "
                   "gemm: M N K, default 64 64 128; adam: the numel of each parameter tensor, default 8 tensors of 4096)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    p.add_argument("--no-profile", action="store_true", help="only run and check the step (no counting build)")
    p.add_argument("--write-docs", action="store_true", help="regenerate docs/tour/<op>.md from the step files "
                   "and their profiles")
