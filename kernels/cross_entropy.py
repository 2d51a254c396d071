"""Triton nll_loss and fused cross-entropy (log-softmax + NLL in one pass), forward and backward.

Math (derivation in kernels/cuda/cross_entropy.cuh), row r with logits x, target t, class weights w
(1 without weight), eps = label smoothing, W = sum_c w_c:
    lse     = log sum_c exp(x_c)                       (online: running max and rescaled sum)
    nll     loss_r = -w_t x_t
    xent    loss_r = (1 - eps) w_t (lse - x_t) + eps / C * ((lse - ref) W - sum_c w_c (x_c - ref)),  ref = x_t
    mean = sum_r loss_r / sum_r w_t(r) over non-ignored rows; sum; none
    backward  dx_c = g * ((a + b W) p_c - a [c == t] - b w_c),  p_c = exp(x_c - lse),  a = (1-eps) w_t,  b = eps / C
              nll: dx_c = -g w_t [c == t]

Decomposition -- the CUDA kernels side by side:
    cross-entropy forward   one program per row, a loop over column blocks of BLOCK (one iteration when
                            C <= MAX_BLOCK): per block, its max, then sum exp(x - new max), merged into the
                            row's scalar (max, sum).  One read of the row, one exp per element; the program
                            stores lse (one float64) and the row's loss -- CUDA: a warp or a block per row.
    cross-entropy backward  one program per row, the same column loop, one read of x and one write of dx.
    reduce (mean, sum)      one program folds the [2, rows] per-row (loss, weight) pairs.
    nll forward / backward  BLOCK rows / BLOCK gradient elements per program.
The input is seen as [N, C, D] with strides (row r = n*D + j), like the CUDA ClassRows, so no copy is made.
Accumulation in float32 (float64 for float64 input).  The label smoothing arrives as a float32 scalar
(Triton's type for a Python float), so float64 rows see eps rounded to float32 -- in forward and backward alike.

Target check: a target outside [0, C) that is not ignore_index trips tl.device_assert.  Triton compiles
device asserts only with debug=True, so on a GPU the launches pass debug=True (sanitize_overflow=False keeps
the other debug checks out); the interpreter never runs device asserts, so for CPU tensors the op checks
the targets on the host first (no device synchronization involved).

The ops pyops_triton::nll_loss_fwd/_bwd and cross_entropy_fwd/_bwd are C++ (csrc/triton.cpp): their checks, the
[N, C, D] layout and the outputs come from csrc/cross_entropy.h, as on every backend; they call the four
launchers below.
"""
import torch
import triton
import triton.language as tl

from . import launch
from ._common import acc, ptr, variant

MAX_BLOCK = 4096    # widest column block of the row kernels
FLAT_BLOCK = 1024   # rows / elements per program of the nll kernels
REDUCE_BLOCK = 1024


@triton.jit
def _row_base(x_ptr, row, inner, ld_n, ld_d):
    return x_ptr + (row // inner) * ld_n + (row % inner) * ld_d


@triton.jit
def _read_target(t_ptr, row, w_ptr, ignore_index, C, HAS_WEIGHT: tl.constexpr, ACC: tl.constexpr):
    """(t clamped to a safe index, valid, w_t or 1 or 0) of one row or a vector of rows."""
    t = tl.load(t_ptr + row)
    valid = t != ignore_index
    in_bounds = (t >= 0) & (t < C)
    tl.device_assert(~valid | in_bounds,
                     "nll_loss/cross_entropy: target out of bounds (expected a class index in [0, C) or ignore_index)")
    t_safe = tl.where(valid & in_bounds, t, 0)  # loads stay in bounds whatever the assert does
    if HAS_WEIGHT:
        w_t = tl.where(valid, tl.load(w_ptr + t_safe).to(ACC), 0.0)
    else:
        w_t = tl.where(valid, 1.0, 0.0).to(ACC)
    return t_safe, valid, w_t


@triton.jit
def cross_entropy_fwd_kernel(x_ptr, inner, ld_n, ld_d, ld_c,   # logits [N, C, D]: row r = (r // D, r % D)
                             t_ptr, w_ptr, ignore_index, C, rows,  # target [rows] int64; weight [C] (if HAS_WEIGHT)
                             smoothing,
                             out_ptr,   # loss [rows] (reduction none) or partials [2, rows] (REDUCE)
                             lse_ptr,   # [rows], float64
                             HAS_WEIGHT: tl.constexpr, SMOOTH: tl.constexpr, REDUCE: tl.constexpr,
                             ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = _row_base(x_ptr, row, inner, ld_n, ld_d)
    if SMOOTH:  # the target's logit shifts the smoothing sum; without smoothing it is read after the loop
        t, valid, w_t = _read_target(t_ptr, row, w_ptr, ignore_index, C, HAS_WEIGHT, ACC)
        x_t = tl.where(valid, tl.load(x_row + t * ld_c).to(ACC), 0.0)
        ref = tl.where(x_t - x_t == 0.0, x_t, 0.0)  # x_t if finite: the shift of the smoothing sum
    offs = tl.arange(0, BLOCK)
    ninf = -float("inf")
    m = tl.max(tl.full([BLOCK], ninf, ACC), axis=0)  # scalar (max, sum, smoothing sums) of the row so far
    s = tl.sum(tl.zeros([BLOCK], ACC), axis=0)
    d = s
    w_sum = s
    for start in range(0, C, BLOCK):
        cols = start + offs
        mask = cols < C
        x = tl.load(x_row + cols * ld_c, mask=mask, other=ninf).to(ACC)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        # rescale the old sum (factor 1 when the max did not move, also for -inf == -inf), add the block's
        # terms against the new max (an -inf entry adds 0; guarded because -inf - -inf is NaN)
        s = s * tl.where(m == m_new, 1.0, tl.exp(m - m_new)) + tl.sum(tl.where(x == ninf, 0.0, tl.exp(x - m_new)), axis=0)
        m = m_new
        if SMOOTH:
            xs = tl.where(mask, x - ref, 0.0)
            if HAS_WEIGHT:
                w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(ACC)
                d += tl.sum(w * xs, axis=0)
                w_sum += tl.sum(w, axis=0)
            else:
                d += tl.sum(xs, axis=0)
    if not SMOOTH:  # (nothing of the target's is live across the loop: less register pressure)
        t, valid, w_t = _read_target(t_ptr, row, w_ptr, ignore_index, C, HAS_WEIGHT, ACC)
        x_t = tl.where(valid, tl.load(x_row + t * ld_c).to(ACC), 0.0)
    # lse in float64 (as the CUDA kernels): lse - x_t stays exact to ACC however large the logits
    lse = m.to(tl.float64) + tl.log(s.to(tl.float64))
    tl.store(lse_ptr + row, lse)
    loss = (1.0 - smoothing) * w_t * (lse - x_t.to(tl.float64)).to(ACC)
    if SMOOTH:
        if not HAS_WEIGHT:
            w_sum = tl.full([], C, ACC)
        loss += smoothing / C * ((lse - ref.to(tl.float64)).to(ACC) * w_sum - d)
    loss = tl.where(valid, loss, 0.0)
    if REDUCE:
        tl.store(out_ptr + row, loss)
        tl.store(out_ptr + rows + row, w_t)
    else:
        tl.store(out_ptr + row, loss.to(out_ptr.dtype.element_ty))


@triton.jit
def loss_reduce_kernel(part_ptr, rows, out_ptr, tw_ptr,  # partials [2, rows] -> loss [], total_weight [2]
                       MEAN: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    loss = tl.zeros([BLOCK], ACC)
    w = tl.zeros([BLOCK], ACC)
    for start in range(0, rows, BLOCK):
        mask = start + offs < rows
        loss += tl.load(part_ptr + start + offs, mask=mask, other=0.0)
        w += tl.load(part_ptr + rows + start + offs, mask=mask, other=0.0)
    total = tl.sum(loss, axis=0)
    w_total = tl.sum(w, axis=0)
    if MEAN:
        total = total / w_total  # all rows ignored: 0 / 0 = NaN, as PyTorch
    tl.store(out_ptr, total.to(out_ptr.dtype.element_ty))
    tl.store(tw_ptr, w_total)
    tl.store(tw_ptr + 1, 1.0 / w_total)  # the backward's scale (as the CUDA kernels: no division per row)


@triton.jit
def _sum_weights(w_ptr, C, ACC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], ACC)
    for start in range(0, C, BLOCK):
        acc += tl.load(w_ptr + start + offs, mask=start + offs < C, other=0.0).to(ACC)
    return tl.sum(acc, axis=0)


@triton.jit
def cross_entropy_bwd_kernel(g_ptr, ld_g, tw_ptr,                # dL/dloss [rows] or [] (ld_g 0); total weight [2]
                             x_ptr, inner, ld_n, ld_d, ld_c,    # logits [N, C, D]
                             t_ptr, w_ptr, ignore_index, C, smoothing,
                             lse_ptr,                           # [rows] from the forward
                             gx_ptr,                            # dL/dx, contiguous [N, C, D]
                             HAS_WEIGHT: tl.constexpr, SMOOTH: tl.constexpr, MEAN: tl.constexpr,
                             ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = _row_base(x_ptr, row, inner, ld_n, ld_d)
    gx_row = _row_base(gx_ptr, row, inner, C * inner, 1)
    t, valid, w_t = _read_target(t_ptr, row, w_ptr, ignore_index, C, HAS_WEIGHT, ACC)
    g = tl.load(g_ptr + row * ld_g).to(ACC)
    if MEAN:
        g = g * tl.load(tw_ptr + 1)  # 1 / W_t
    g = tl.where(valid, g, 0.0)  # an ignored row gets exactly 0, even when the total weight is 0
    a = (1.0 - smoothing) * w_t
    b = smoothing / C
    if SMOOTH and HAS_WEIGHT:
        w_sum = _sum_weights(w_ptr, C, ACC, BLOCK)  # W, recomputed per row (C cached loads)
    else:
        w_sum = tl.full([], C, ACC)
    coef = g * (a + b * w_sum)
    lse = tl.load(lse_ptr + row)  # float64: split into hi + lo in ACC, x - hi exact for the logits that matter
    lse_hi = lse.to(ACC)
    lse_lo = (lse - lse_hi.to(tl.float64)).to(ACC)
    offs = tl.arange(0, BLOCK)
    for start in range(0, C, BLOCK):
        cols = start + offs
        mask = cols < C
        x = tl.load(x_row + cols * ld_c, mask=mask, other=0.0).to(ACC)
        dx = coef * tl.exp((x - lse_hi) - lse_lo) - tl.where(cols == t, g * a, 0.0)
        if SMOOTH:
            if HAS_WEIGHT:
                dx -= g * b * tl.load(w_ptr + cols, mask=mask, other=0.0).to(ACC)
            else:
                dx -= g * b
        tl.store(gx_row + cols * inner, dx.to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def nll_loss_fwd_kernel(x_ptr, inner, ld_n, ld_d, ld_c, t_ptr, w_ptr, ignore_index, C, rows,
                        out_ptr,  # loss [rows] (none) or partials [2, rows] (REDUCE)
                        HAS_WEIGHT: tl.constexpr, REDUCE: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = row < rows
    row = tl.where(in_range, row, 0)
    t, valid, w_t = _read_target(t_ptr, row, w_ptr, ignore_index, C, HAS_WEIGHT, ACC)
    valid = valid & in_range
    x = tl.load(_row_base(x_ptr, row, inner, ld_n, ld_d) + t * ld_c, mask=valid, other=0.0).to(ACC)
    loss = tl.where(valid, -w_t * x, 0.0)
    if REDUCE:
        tl.store(out_ptr + row, loss, mask=in_range)
        tl.store(out_ptr + rows + row, tl.where(valid, w_t, 0.0), mask=in_range)
    else:
        tl.store(out_ptr + row, loss.to(out_ptr.dtype.element_ty), mask=in_range)


@triton.jit
def nll_loss_bwd_kernel(g_ptr, ld_g, tw_ptr, t_ptr, w_ptr, ignore_index, C, inner, numel,
                        gx_ptr,  # contiguous [N, C, D]: element e = (n*C + c)*D + j, row n*D + j
                        HAS_WEIGHT: tl.constexpr, MEAN: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    e = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    in_range = e < numel
    q = e // inner
    c = q % C
    row = (q // C) * inner + e % inner
    row = tl.where(in_range, row, 0)
    t, valid, w_t = _read_target(t_ptr, row, w_ptr, ignore_index, C, HAS_WEIGHT, ACC)
    g = tl.load(g_ptr + row * ld_g).to(ACC)
    if MEAN:
        g = g * tl.load(tw_ptr + 1)  # 1 / W_t
    dx = tl.where(valid & (c == t), -g * w_t, 0.0)
    tl.store(gx_ptr + e, dx.to(gx_ptr.dtype.element_ty), mask=in_range)


# ---------------------------------------------------------------- launchers
def row_plan(C: int, element_size: int):
    """(BLOCK, num_warps) of the row kernels for C classes of ``element_size`` bytes -- the one place that picks
    them."""
    block = min(triton.next_power_of_2(max(C, 1)), MAX_BLOCK)
    # Up to 2048 columns 4 warps, float64 16 warps at 1024 and 2048 (2 and 4 elements per thread, at least 8
    # warps below); at 4096 8 fp16/bf16 or 4 fp32/fp64 elements per thread.  Wider shares spilled in the Triton
    # AOT audit: 16 fp32 at 4096, and, compiled as the JIT compiles contiguous rows (where it vectorizes the
    # loads), the smoothing kernels with 8 fp32 at 4096 and 8 doubles at 1024, 2048 and 4096.  float64 at 1024
    # has 16 warps, not 8 (4 doubles per thread), because Triton 3.6's sm_80 build of the contiguous weighted
    # smoothing forward then kept 16 bytes on the stack (48 registers: ptxas outlines the fp64 log after the
    # loop and saves values across it); with 16 warps (54 registers) or 4 (69) it has none.  16 keeps one
    # 16-byte load per thread per block, as 2048 has two: the same bytes per program, more threads on them.
    if block <= 2048:
        return block, max(8, min(16, block // 64)) if element_size == 8 else 4
    return block, 16 if element_size == 2 else 32


def _debug(t: torch.Tensor) -> dict:
    # device asserts compiled in on a GPU (see the module docstring); the interpreter ignores these keys
    return {"debug": True, "sanitize_overflow": False} if t.is_cuda else {}


def cross_entropy_forward(x, layout, target, weight, ignore_index, smoothing, out, partials, lse, total_weight, mean):
    """Row losses into ``out`` ([rows], reduction none) or, with ``partials`` [2, rows], the reduced loss into
    ``out`` [] and ``total_weight`` []; lse [rows].  layout = (rows, C, D, ld_n, ld_d, ld_c)."""
    rows, C, D, ld_n, ld_d, ld_c = layout
    block, warps = row_plan(C, x.element_size())
    if rows > 0:
        launch(cross_entropy_fwd_kernel, (rows,), x, D, ld_n, ld_d, ld_c, target,
               weight if weight is not None else x, ignore_index, C, rows, float(smoothing),
               out if partials is None else partials, lse, HAS_WEIGHT=weight is not None, SMOOTH=smoothing != 0.0,
               REDUCE=partials is not None, ACC=acc(x.dtype), BLOCK=block, num_warps=warps, **_debug(x))
    _reduce(partials, rows, out, total_weight, mean)


def cross_entropy_backward(grad, ld_grad, total_weight, x, layout, target, weight, ignore_index, smoothing, lse, gx,
                           mean):
    rows, C, D, ld_n, ld_d, ld_c = layout
    if rows == 0 or C == 0:
        return
    block, warps = row_plan(C, x.element_size())
    launch(cross_entropy_bwd_kernel, (rows,), grad, ld_grad, total_weight, x, D, ld_n, ld_d, ld_c, target,
           weight if weight is not None else x, ignore_index, C, float(smoothing), lse, gx,
           HAS_WEIGHT=weight is not None, SMOOTH=smoothing != 0.0, MEAN=mean, ACC=acc(x.dtype), BLOCK=block,
           num_warps=warps, **_debug(x))


def nll_loss_forward(x, layout, target, weight, ignore_index, out, partials, total_weight, mean):
    rows, C, D, ld_n, ld_d, ld_c = layout
    if rows > 0:
        launch(nll_loss_fwd_kernel, (triton.cdiv(rows, FLAT_BLOCK),), x, D, ld_n, ld_d, ld_c, target,
               weight if weight is not None else x, ignore_index, C, rows, out if partials is None else partials,
               HAS_WEIGHT=weight is not None, REDUCE=partials is not None, ACC=acc(x.dtype), BLOCK=FLAT_BLOCK,
               **_debug(x))
    _reduce(partials, rows, out, total_weight, mean)


def _reduce(partials, rows, out, total_weight, mean):
    """With ``partials`` (reduction mean or sum): the loss into ``out`` [] from the per-row (loss, weight) pairs."""
    if partials is not None:  # (partials are in the accumulation type)
        launch(loss_reduce_kernel, (1,), partials, rows, out, total_weight, MEAN=mean, ACC=acc(partials.dtype),
               BLOCK=REDUCE_BLOCK)


def nll_loss_backward(grad, ld_grad, total_weight, layout, target, weight, ignore_index, gx, mean):
    rows, C, D = layout[:3]
    numel = rows * C
    if numel == 0:
        return
    launch(nll_loss_bwd_kernel, (triton.cdiv(numel, FLAT_BLOCK),), grad, ld_grad, total_weight, target,
           weight if weight is not None else gx, ignore_index, C, D, numel, gx, HAS_WEIGHT=weight is not None,
           MEAN=mean, ACC=acc(gx.dtype), BLOCK=FLAT_BLOCK, **_debug(gx))


def aot_variants():
    """Ahead-of-time compile targets for the build audit: the kernels with the block sizes and dtypes the
    launchers use (see kernels/softmax.py).

    The row kernels come twice: as compiled for any layout (runtime strides, no alignment: scalar loads), and as
    Triton's JIT compiles the common case -- 2-D logits with contiguous rows of a multiple of 16 classes in
    16-byte-aligned memory: an integer argument equal to 1 (``inner``, ``ld_c``) becomes a constant and the
    pointers, the row stride and ``C`` are known multiples of 16.  Those wide-block variants (1024, 2048 and
    4096 columns) must read the logits with 128-bit loads (expect_vector_loads); the gathers of one element per
    row (targets, the target's logit, the nll kernels) cannot."""
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        p, acc_t = ptr(dtype), acc(dtype)
        types = {"t_ptr": "*i64", "lse_ptr": "*fp64", "out_ptr": ptr(acc_t), "tw_ptr": ptr(acc_t),
                 "part_ptr": ptr(acc_t), "smoothing": "fp32"}
        for block, contiguous in ((16, False), (1024, False), (2048, False), (MAX_BLOCK, False), (1024, True),
                                  (2048, True), (MAX_BLOCK, True)):
            # contiguous: inner == ld_c == 1 as the JIT's constants; multiples of 16: the pointers (torch's
            # 16-byte-aligned allocations), the row stride ld_n and the class count C
            ones = {"inner": 1, "ld_c": 1} if contiguous else {}
            for smooth in (False, True):
                for kernel, flag in ((cross_entropy_fwd_kernel, "REDUCE"), (cross_entropy_bwd_kernel, "MEAN")):
                    aligned = [a for a in kernel.arg_names if a.endswith("_ptr")] + ["ld_n", "C"]
                    yield variant(kernel, {"HAS_WEIGHT": smooth, "SMOOTH": smooth, flag: True, "ACC": acc_t,
                                           "BLOCK": block, **ones}, row_plan(block, dtype.itemsize)[1], p,
                                  aligned=contiguous and aligned, vector_loads=contiguous, **types)
        yield variant(loss_reduce_kernel, {"MEAN": True, "ACC": acc_t, "BLOCK": REDUCE_BLOCK}, 4, p,
                      **{**types, "out_ptr": p})
        yield variant(nll_loss_fwd_kernel, {"HAS_WEIGHT": True, "REDUCE": True, "ACC": acc_t, "BLOCK": FLAT_BLOCK},
                      4, p, **types)
        yield variant(nll_loss_bwd_kernel, {"HAS_WEIGHT": True, "MEAN": True, "ACC": acc_t, "BLOCK": FLAT_BLOCK},
                      4, p, **types)
