"""Triton softmax / log-softmax over the rows of a [rows, cols] matrix, forward and backward.

Math (derivation in kernels/cuda/softmax.cuh):
    softmax      y = exp(x - m) / s                 m = max(x), s = sum(exp(x - m))
    log_softmax  y = x - m - log(s)
    backward     softmax:      dx = y * (g - sum(g * y))
                 log_softmax:  dx = g - exp(y) * sum(g)

Decomposition: one program per row.
  * cols <= MAX_SINGLE_BLOCK: the whole row is one block of BLOCK = next_pow2(cols) lanes, loaded once
    into registers; max, sum and the output come from that single read.
  * longer rows: a loop over column blocks of LOOP_BLOCK.  The forward keeps a per-lane running
    (max, sum) pair -- when a lane's max grows, its sum is rescaled by exp(old - new) -- so the
    statistics need one read of the row; the output needs a second.  The backward reduces its dot
    product in one loop and writes in a second.
Accumulation in float32 (float64 for float64 rows).

The ops pyops_triton::(log_)softmax_fwd/_bwd are C++ (csrc/triton.cpp): their checks, the [rows, cols] views
and the output come from csrc/softmax.h, as on every backend; they call softmax_forward / softmax_backward.
"""
import torch
import triton
import triton.language as tl

from . import launch
from ._common import TL, acc, ptr, variant

MAX_SINGLE_BLOCK = 4096
LOOP_BLOCK = 1024


@triton.jit
def softmax_fwd_kernel(x_ptr, ldx, y_ptr, ldy, cols,  # x, y: [rows, cols], row strides ldx, ldy
                       LOG: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < cols
    x = tl.load(x_ptr + row * ldx + offs, mask=mask, other=-float("inf")).to(ACC)
    m = tl.max(x, axis=0)
    z = x - m  # a row of only -inf gives NaN here, as in PyTorch
    s = tl.sum(tl.where(mask, tl.exp(z), 0.0), axis=0)
    y = z - tl.log(s) if LOG else tl.exp(z) / s
    tl.store(y_ptr + row * ldy + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def softmax_fwd_looped_kernel(x_ptr, ldx, y_ptr, ldy, cols,  # x, y: [rows, cols]
                              LOG: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * ldx
    offs = tl.arange(0, BLOCK)
    m_lane = tl.full([BLOCK], -float("inf"), ACC)
    s_lane = tl.zeros([BLOCK], ACC)
    for start in range(0, cols, BLOCK):  # pass 1: online (max, sum) per lane
        mask = start + offs < cols
        x = tl.load(x_row + start + offs, mask=mask, other=-float("inf")).to(ACC)
        m_new = tl.maximum(m_lane, x)
        dead = m_new == -float("inf")  # nothing finite seen yet: contributes 0, avoids (-inf) - (-inf)
        s_lane = tl.where(dead, 0.0, s_lane * tl.exp(m_lane - m_new) + tl.exp(x - m_new))
        m_lane = m_new
    m = tl.max(m_lane, axis=0)
    s = tl.sum(tl.where(m_lane == -float("inf"), 0.0, s_lane * tl.exp(m_lane - m)), axis=0)
    shift = m + tl.log(s)
    for start in range(0, cols, BLOCK):  # pass 2: output
        mask = start + offs < cols
        x = tl.load(x_row + start + offs, mask=mask, other=0.0).to(ACC)
        y = x - shift if LOG else tl.exp(x - m) / s
        tl.store(y_ptr + row * ldy + start + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def softmax_bwd_kernel(g_ptr, ldg, y_ptr, ldy, gx_ptr, ldgx, cols,  # all [rows, cols]
                       LOG: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < cols
    g = tl.load(g_ptr + row * ldg + offs, mask=mask, other=0.0).to(ACC)
    y = tl.load(y_ptr + row * ldy + offs, mask=mask, other=0.0).to(ACC)
    if LOG:
        gx = g - tl.exp(y) * tl.sum(g, axis=0)
    else:
        gx = y * (g - tl.sum(g * y, axis=0))
    tl.store(gx_ptr + row * ldgx + offs, gx.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def softmax_bwd_looped_kernel(g_ptr, ldg, y_ptr, ldy, gx_ptr, ldgx, cols,  # all [rows, cols]
                              LOG: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], ACC)
    for start in range(0, cols, BLOCK):  # pass 1: sum(g) or sum(g * y)
        mask = start + offs < cols
        g = tl.load(g_ptr + row * ldg + start + offs, mask=mask, other=0.0).to(ACC)
        if LOG:
            acc += g
        else:
            acc += g * tl.load(y_ptr + row * ldy + start + offs, mask=mask, other=0.0).to(ACC)
    dot = tl.sum(acc, axis=0)
    for start in range(0, cols, BLOCK):  # pass 2: the gradient
        mask = start + offs < cols
        g = tl.load(g_ptr + row * ldg + start + offs, mask=mask, other=0.0).to(ACC)
        y = tl.load(y_ptr + row * ldy + start + offs, mask=mask, other=0.0).to(ACC)
        gx = g - tl.exp(y) * dot if LOG else y * (g - dot)
        tl.store(gx_ptr + row * ldgx + start + offs, gx.to(gx_ptr.dtype.element_ty), mask=mask)


def launch_plan(cols: int):
    """(looped, BLOCK, num_warps) for a row of ``cols`` elements -- the one place that picks the variant."""
    block = triton.next_power_of_2(cols) if cols <= MAX_SINGLE_BLOCK else LOOP_BLOCK
    return cols > MAX_SINGLE_BLOCK, block, 4 if block <= 2048 else 8


def softmax_forward(x: torch.Tensor, y: torch.Tensor, log: bool) -> None:
    """y[r, :] = (log_)softmax(x[r, :]); x, y: [rows, cols] with unit column stride."""
    rows, cols = x.shape
    looped, block, warps = launch_plan(cols)
    launch(softmax_fwd_looped_kernel if looped else softmax_fwd_kernel, (rows,), x, x.stride(0), y, y.stride(0), cols,
           LOG=log, ACC=acc(x.dtype), BLOCK=block, num_warps=warps)


def softmax_backward(g: torch.Tensor, y: torch.Tensor, gx: torch.Tensor, log: bool) -> None:
    """gx = d(loss)/dx from g = d(loss)/dy and the forward output y; all [rows, cols], unit column stride."""
    rows, cols = y.shape
    looped, block, warps = launch_plan(cols)
    launch(softmax_bwd_looped_kernel if looped else softmax_bwd_kernel, (rows,), g, g.stride(0), y, y.stride(0), gx,
           gx.stride(0), cols, LOG=log, ACC=acc(y.dtype), BLOCK=block, num_warps=warps)


def aot_variants():
    """Ahead-of-time compile targets for the Triton audit (tests/test_triton_aot.py, no GPU needed).

    Every kernel, every dtype, with the BLOCK and num_warps that launch_plan() picks for
    representative row lengths (single-block rows of 1 .. 4096 columns, looped rows beyond).  Triton's
    JIT specializes each call on its arguments: pointers that are 16-byte aligned and integers that are
    multiples of 16 are compiled as such ("divisible_by_16"), which contiguous rows of a multiple of 16
    columns give.  Only those specializations can use 128-bit loads (expect_vector_loads); the others
    are compiled without the hint, as the JIT compiles them for odd lengths.
    """
    for i, cols in enumerate((1, 1000, 2048, 4096, 5000, 8192)):
        looped, block, warps = launch_plan(cols)
        aligned = cols % 16 == 0
        for dtype in TL:
            for kernel in ((softmax_fwd_looped_kernel, softmax_bwd_looped_kernel) if looped
                           else (softmax_fwd_kernel, softmax_bwd_kernel)):
                yield variant(kernel, {"LOG": i % 2 == 1, "ACC": acc(dtype), "BLOCK": block}, warps,
                              ptr(dtype), ints="i32", aligned=aligned, vector_loads=aligned)
    # a row stride of 2^31 elements or more is passed as a 64-bit integer
    yield variant(softmax_fwd_kernel, {"LOG": False, "ACC": tl.float32, "BLOCK": 1024}, 4, "*fp32", ints="i32",
                  ldx="i64", ldy="i64")
