"""Triton linear / linear+ReLU: the GEMMs of one layer, forward and backward.

Math (derivation in kernels/cuda/linear_relu.cuh), x: [M, K], W: [N, K], b: [N], g = dL/dy:
    forward   y = relu(x W^T + b)
    backward  dz = g * [y > 0];  dx = dz W;  dW = dz^T x;  db = sum_m dz

Like the CUDA kernels, all three products are one kernel, ``linear_gemm_kernel``:
    C[m, n] = epilogue( sum_k A(m, k) * B(n, k) )
with each operand passed as (pointer, stride along its output index, stride along k), so W^T, x^T and
dz^T are the same memory with swapped strides:
    forward  A = x            B = W                  + b, ReLU in the epilogue
    dx       A = g, masked    B = W^T  (reduce over n)
    dW       A = g^T, masked  B = x^T  (reduce over m); db = row sums of the masked A tiles, stored by
                                        the programs of the first column of tiles
The ReLU mask is applied to the g tile right after it is loaded (no masked copy of g is written).

Decomposition: one program per BLOCK_M x BLOCK_N tile of C (a 1-D grid, consecutive programs walk down
M and share the B tile), looping over k in steps of BLOCK_K with ``tl.dot`` (tensor cores for
fp16/bf16, TF32 for fp32 only when torch.backends.cuda.matmul.allow_tf32, else IEEE fp32).  Edge tiles
are masked; offsets are int64.  Block sizes come from ``gemm_plan`` (per shape).
Accumulation in float32 (float64 for float64).

The ops pyops_triton::linear_relu_fwd/_bwd are C++ (csrc/triton.cpp): their checks, the [rows, cols] views and
the outputs come from csrc/linear_relu.h, as on every backend; they call linear_forward / linear_backward.
"""
import torch
import triton
import triton.language as tl

from . import launch
from ._common import acc, ptr, variant


@triton.jit
def linear_gemm_kernel(a_ptr, s_am, s_ak,  # A: [M, K], (m, k) at a_ptr + m * s_am + k * s_ak
                       y_ptr,              # ReLU output at A's offsets (MASK_A): keep A where y > 0
                       b_ptr, s_bn, s_bk,  # B: [N, K]
                       c_ptr, s_cm, s_cn,  # C: [M, N]
                       bias_ptr,           # [N] (HAS_BIAS)
                       rowsum_ptr,         # [M] (ROW_SUMS): sum_k A(m, k), from the programs with pid_n == 0
                       M, N, K,
                       MASK_A: tl.constexpr, HAS_BIAS: tl.constexpr, RELU: tl.constexpr, ROW_SUMS: tl.constexpr,
                       ACC: tl.constexpr, PRECISION: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # tile coordinates in int32 (a 64-bit division by a runtime value is a called subroutine with a
    # stack frame); element offsets in int64
    pid = tl.program_id(0)
    tiles_m = tl.cdiv(M, BLOCK_M).to(tl.int32)
    pid_m = (pid % tiles_m).to(tl.int64)
    pid_n = (pid // tiles_m).to(tl.int64)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    rk = tl.arange(0, BLOCK_K).to(tl.int64)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=ACC)
    rsum = tl.zeros((BLOCK_M,), dtype=ACC)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + rk
        a_off = rm[:, None] * s_am + k[None, :] * s_ak
        a_in = (rm[:, None] < M) & (k[None, :] < K)
        a = tl.load(a_ptr + a_off, mask=a_in, other=0.0)
        if MASK_A:  # ReLU backward: the gradient passes where the forward output was positive
            y = tl.load(y_ptr + a_off, mask=a_in, other=0.0)
            a = tl.where(y <= 0, tl.zeros_like(a), a)  # a NaN y passes, as PyTorch's ReLU gradient
        # B read as its transpose [BLOCK_K, BLOCK_N], so the product is a plain A @ B^T tile
        b = tl.load(b_ptr + k[:, None] * s_bk + rn[None, :] * s_bn, mask=(k[:, None] < K) & (rn[None, :] < N),
                    other=0.0)
        acc += tl.dot(a, b, input_precision=PRECISION, out_dtype=ACC)
        if ROW_SUMS:
            rsum += tl.sum(a.to(ACC), axis=1)
    if ROW_SUMS:
        tl.store(rowsum_ptr + rm, rsum.to(rowsum_ptr.dtype.element_ty), mask=(rm < M) & (pid_n == 0))
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=rn < N, other=0.0).to(ACC)[None, :]
    if RELU:
        acc = tl.where(acc < 0, 0.0, acc)  # NaN stays NaN, as in torch.relu
    tl.store(c_ptr + rm[:, None] * s_cm + rn[None, :] * s_cn, acc.to(c_ptr.dtype.element_ty),
             mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def linear_bias_grad_kernel(g_ptr, s_gm, s_gn,  # g: [M, N]
                            y_ptr,              # ReLU output at g's offsets (MASK)
                            db_ptr,             # [N]: sum_m g[m, n] * [y[m, n] > 0]
                            M, N,
                            MASK: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # one program per BLOCK_N columns, looping down M; used only when dW is not computed
    # (the offsets of the first rows once, then a step of BLOCK_M rows per iteration: no per-element int64
    # multiply in the loop)
    rn = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    rm = tl.arange(0, BLOCK_M)
    off = rm.to(tl.int64)[:, None] * s_gm + rn[None, :] * s_gn
    step = BLOCK_M * s_gm
    acc = tl.zeros((BLOCK_N,), dtype=ACC)
    for m0 in range(0, M, BLOCK_M):
        inside = (rm[:, None] < M - m0) & (rn[None, :] < N)
        g = tl.load(g_ptr + off, mask=inside, other=0.0).to(ACC)
        if MASK:
            y = tl.load(y_ptr + off, mask=inside, other=0.0)
            g = tl.where(y <= 0, 0.0, g)
        acc += tl.sum(g, axis=0)
        off += step
    tl.store(db_ptr + rn, acc.to(db_ptr.dtype.element_ty), mask=rn < N)


# The bias-gradient kernel's launch plan: BLOCK_M x BLOCK_N (<= 128) elements of g and y per loop step, over
# 8 warps.  With 4 warps (32 elements per thread) and per-element int64 offsets recomputed in the loop, Triton
# 3.6's sm_80 build used 255 registers and spilled 16 (fp32) / 24 (fp16) bytes; the offsets now advance by one
# step per iteration (214 registers at 4 warps), and 8 warps halve each thread's share (115 registers with
# Triton 3.6, 64-74 with 3.8) for the same bytes in flight per program and step.
BIAS_GRAD_BLOCK_M, BIAS_GRAD_WARPS = 32, 8


def _precision(dtype) -> str:
    # tl.dot on fp32 inputs: TF32 tensor cores only when PyTorch allows TF32 matmuls, else full fp32
    return "tf32" if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32 else "ieee"


def gemm_plan(M: int, N: int, K: int, elem_size: int = 2):
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps) for one GEMM -- the one place that picks block sizes.

    Tiles shrink to the problem (tl.dot needs every block dim >= 16) and grow to 128 only when the
    output is large enough to keep every SM busy with bigger tiles.  fp32/fp64 operands (elem_size
    >= 4) take K in steps of 16, fp16/bf16 in steps of 32: the same bytes of A and B per step, and
    registers for them (with 32, the fp32 FMA and fp64 tiles spilled)."""
    big = M * N >= 1024 * 1024
    bm = min(128 if big else 64, max(16, triton.next_power_of_2(M)))
    bn = min(128 if big else 64, max(16, triton.next_power_of_2(N)))
    bk = min(32 if elem_size <= 2 else 16, max(16, triton.next_power_of_2(K)))
    # 8 warps from 64 x 64: with 4, the fp32 (FMA) tile and its int64 offsets need more than 255 registers
    # per thread and ptxas spills (tests/test_triton_aot.py audits every variant for a stack frame)
    return bm, bn, bk, 8 if bm * bn >= 64 * 64 else 4


def gemm(a, b, c, *, mask_y=None, bias=None, relu=False, rowsum=None):
    """C = epilogue(A B^T) for A: [M, K], B: [N, K], C: [M, N], views with any strides (W^T is ``w.t()``);
    ``mask_y``: the ReLU output at A's offsets (A's strides) that masks A."""
    (M, K), N = a.shape, b.shape[0]
    if M == 0 or N == 0:
        return
    bm, bn, bk, warps = gemm_plan(M, N, K, a.element_size())
    launch(
        linear_gemm_kernel, (triton.cdiv(M, bm) * triton.cdiv(N, bn),),
        a, *a.stride(), mask_y if mask_y is not None else a, b, *b.stride(), c, *c.stride(),
        bias if bias is not None else c, rowsum if rowsum is not None else c,
        M, N, K,
        MASK_A=mask_y is not None, HAS_BIAS=bias is not None, RELU=relu, ROW_SUMS=rowsum is not None,
        ACC=acc(c.dtype), PRECISION=_precision(c.dtype), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps)


def bias_grad(g, y, db):
    """db[n] = sum_m g[m, n] * [y[m, n] > 0] (no mask when y is None); g, y: [M, N] with equal strides."""
    M, N = g.shape
    if N == 0:
        return
    block_n = min(128, max(16, triton.next_power_of_2(N)))
    launch(
        linear_bias_grad_kernel, (triton.cdiv(N, block_n),),
        g, g.stride(0), g.stride(1), y if y is not None else g, db, M, N,
        MASK=y is not None, ACC=acc(g.dtype), BLOCK_M=BIAS_GRAD_BLOCK_M, BLOCK_N=block_n, num_warps=BIAS_GRAD_WARPS)


def linear_forward(x, w, bias, y, relu: bool) -> None:
    """y = relu?(x W^T + b); x: [M, K], w: [N, K], y: [M, N] (any strides)."""
    gemm(x, w, y, bias=bias, relu=relu)


def linear_backward(g, x, w, y, gx, gw, gb) -> None:
    """dx = dz W into gx, dW = dz^T x into gw, db = sum_m dz into gb (each when not None), with
    dz = g * [y > 0] (y None: dz = g).  g, y: [M, N] with equal strides; x: [M, K]; w, gw: [N, K]."""
    row_sums = gw is not None and x.shape[1] > 0
    if row_sums:
        # dW[n, k] = sum_m dz[m, n] x[m, k]: A = g^T (masked), B = x^T; db from the same A tiles
        gemm(g.t(), x.t(), gw, mask_y=y, rowsum=gb)
    if gb is not None and not row_sums:
        bias_grad(g, y, gb)
    if gx is not None:
        # dx[m, k] = sum_n dz[m, n] W[n, k]: A = g (masked), B = W^T
        gemm(g, w.t(), gx, mask_y=y)


# ---------------------------------------------------------------- ahead-of-time audit
# (M, K, N) of the MNIST MLP's layers at batch 64 and 512: the shapes the launcher sees most
_AUDIT_SHAPES = [(m, k, n) for m in (64, 512) for k, n in ((784, 256), (256, 128), (128, 64), (64, 10))]


def aot_variants():
    """Compilable variants of the kernels as the launcher uses them, for an ahead-of-time audit
    (triton.compile(ASTSource(fn=kernel, signature=..., constexprs=...), target=GPUTarget("cuda", 80|90, 32))):
    every block configuration gemm_plan picks for the forward, dx and dW GEMMs of the MNIST layers,
    in fp32, fp16 and bf16 (fp64 and fp32-as-TF32 for the first layer), plus the bias-gradient
    kernel.  fp16/bf16/TF32/fp64 dots compile to mma instructions; IEEE fp32 dots to FMAs.
    Strides and sizes are runtime int64 and pointers carry no alignment hints in these, so the loads
    compile to scalar ld.global: expect_vector_loads is False.  Then each GEMM again as Triton's JIT
    compiles it for contiguous operands of the layers whose sizes are multiples of 16: the unit strides
    the launcher passes (`linear_forward` / `linear_backward`) become constants, as the JIT makes an
    integer argument equal to 1, and the pointers and every other integer are known multiples of 16.
    Those must load their tiles 16 bytes at a time (expect_vector_loads: ld.global.v4 or cp.async.cg)."""
    gemms = {}  # (configuration) -> variant: one variant per distinct configuration
    # (dtype, tl.dot precision, shapes): fp64 and TF32 (allow_tf32) for the first layer only
    runs = [(torch.float32, "ieee", _AUDIT_SHAPES), (torch.float16, "ieee", _AUDIT_SHAPES),
            (torch.bfloat16, "ieee", _AUDIT_SHAPES), (torch.float64, "ieee", _AUDIT_SHAPES[:1]),
            (torch.float32, "tf32", _AUDIT_SHAPES[:1])]
    for dtype, precision, shapes in runs:
        for m, k, n in shapes:
            # the launchers' operands of contiguous x, W and dz (meta tensors) with their epilogue / mask flags:
            # forward A = x, B = W; dx A = dz, B = W^T; dW A = dz^T, B = x^T (C is contiguous)
            x, w, g = (torch.empty(shape, device="meta") for shape in ((m, k), (n, k), (m, n)))
            for a, b, flags in ((x, w, (False, True, True, False)), (g, w.t(), (True, False, False, False)),
                                (g.t(), x.t(), (True, False, False, True))):
                (gm, gk), gn = a.shape, b.shape[0]
                bm, bn, bk, warps = gemm_plan(gm, gn, gk, dtype.itemsize)
                const = dict(zip(("MASK_A", "HAS_BIAS", "RELU", "ROW_SUMS"), flags), ACC=acc(dtype),
                             PRECISION=precision, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
                # contiguous operands as the JIT specializes them, for the layers whose sizes are multiples of 16:
                # the strides equal to 1 become constants
                unit = [name for name, st in zip(("s_am", "s_ak", "s_bn", "s_bk"), a.stride() + b.stride()) if st == 1]
                for contiguous in (False, True) if (gm | gn | gk) % 16 == 0 else (False,):
                    units = dict.fromkeys(unit + ["s_cn"], 1) if contiguous else {}
                    gemms.setdefault((dtype, precision, bm, bn, bk, warps, flags, contiguous), variant(
                        linear_gemm_kernel, {**const, **units}, warps, ptr(dtype), aligned=contiguous,
                        vector_loads=contiguous))
    yield from gemms.values()
    for dtype in (torch.float32, torch.float16):
        yield variant(linear_bias_grad_kernel, {"MASK": True, "ACC": tl.float32, "BLOCK_M": BIAS_GRAD_BLOCK_M,
                                                "BLOCK_N": 128}, BIAS_GRAD_WARPS, ptr(dtype))
