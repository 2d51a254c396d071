"""Triton Adam / AdamW: one step for every tensor of a (device, dtype) group in one launch.

Math (derivation, and the torch.optim order of operations it follows, in kernels/cuda/adam.cuh):
    g <- -grad if maximize else grad;   Adam: g <- fma(p, wd, g);   AdamW: p <- p * (1 - lr*wd)
    m <- lerp(m, g, 1 - beta1);   v <- fma((1 - beta2) * g, g, v * beta2);   amsgrad: vmax <- max(vmax, v)
    p <- p + (-(lr / (1 - beta1^t)) * m) / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Decomposition: a pointer table in device memory, one program per tile.
  * ``table`` (int64 [n, 8], one row per tensor): the addresses of param, grad, exp_avg, exp_avg_sq,
    max_exp_avg_sq, then numel, the tensor's first tile, and (capturable) the address of its step.
    Triton turns an int64 into a typed pointer with ``.to(tl.pointer_type(...))`` -- an inttoptr on
    the GPU, the host address of a CPU tensor in the interpreter -- so one kernel serves any number
    of tensors, with no limit like the CUDA kernel's 4 KB argument table.
  * Every tensor is cut into tiles of BLOCK elements, numbered one after the other; program ``pid``
    owns tile ``pid``, and ``tile_tensor[pid]`` (built by the host, like apex's block-to-tensor
    map) says which tensor that is.
  * A full tile is processed without a mask (with ALIGNED -- every address of the launch a multiple
    of 16 -- Triton then emits 16-byte accesses, 8 values per thread and array in flight); the last
    tile of a tensor is masked.
  * The per-tensor scalars (-lr / (1 - beta1^t), sqrt(1 - beta2^t), 1 - lr*wd) come from the host,
    computed in double exactly as torch.optim computes them in Python.  Capturable: step and lr stay
    on the device, so the kernel computes them itself in float64 (beta^t as exp2(t * log2(beta)):
    libdevice's pow does not run in the interpreter; it agrees with pow to ~1e-16 relative), and
    the program that finishes the last tile of a tensor advances its step (an arrival counter,
    as in the CUDA kernel).
Accumulation in float32 (float64 for float64 params); fp16/bf16 params keep float32 state.
"""
import triton
import triton.language as tl
import torch

from triton.runtime.interpreter import InterpretedFunction

from . import launch as _launch  # (this module's own launch() is the op's launcher)
from ._common import TL, ptr, variant

BLOCK = 1024  # elements per tile (program): 4 warps x 32 threads x 8 elements
NUM_WARPS = 4
ROW = 8       # int64 columns of a table row
N_HYPER = 6   # accumulation-type hyperparameters: w = 1 - beta1, 1 - w, beta2, 1 - beta2, weight_decay, eps
N_COEF = 3    # per-tensor scalars: -step_size, sqrt(1 - beta2^t), 1 - lr*wd


@triton.jit
def adam_multi_tensor_kernel(table_ptr,        # int64 [n, ROW]: addresses, numel, first tile, step address
                             tile_tensor_ptr,  # int64 [tiles]: the tensor of each tile
                             hyper_ptr,        # ACC [N_HYPER]
                             coef_ptr,         # ACC [n, N_COEF] (not capturable)
                             hyper64_ptr,      # float64 [4]: lr, beta1, beta2, weight_decay (capturable)
                             lr_ptr, counters_ptr,  # capturable: lr tensor (with LR_PTR), int32 [n] counters
                             P_DTYPE: tl.constexpr, ACC: tl.constexpr, AMSGRAD: tl.constexpr,
                             MAXIMIZE: tl.constexpr, WD_MODE: tl.constexpr, W_SMALL: tl.constexpr,
                             CAPTURABLE: tl.constexpr, LR_PTR: tl.constexpr, STEP_F64: tl.constexpr,
                             ALIGNED: tl.constexpr, BLOCK: tl.constexpr):
    tile = tl.program_id(0).to(tl.int64)
    t = tl.load(tile_tensor_ptr + tile)
    row = table_ptr + t * 8
    p_addr, g_addr = tl.load(row + 0), tl.load(row + 1)
    m_addr, v_addr, vm_addr = tl.load(row + 2), tl.load(row + 3), tl.load(row + 4)
    numel, first = tl.load(row + 5), tl.load(row + 6)
    p_ptr, g_ptr = p_addr.to(tl.pointer_type(P_DTYPE)), g_addr.to(tl.pointer_type(P_DTYPE))
    m_ptr, v_ptr = m_addr.to(tl.pointer_type(ACC)), v_addr.to(tl.pointer_type(ACC))
    vm_ptr = vm_addr.to(tl.pointer_type(ACC))
    if ALIGNED:  # every address of the launch is a multiple of 16: lets Triton emit 16-byte accesses
        p_ptr, g_ptr = tl.multiple_of(p_ptr, 16), tl.multiple_of(g_ptr, 16)
        m_ptr, v_ptr, vm_ptr = tl.multiple_of(m_ptr, 16), tl.multiple_of(v_ptr, 16), tl.multiple_of(vm_ptr, 16)

    if CAPTURABLE:  # step and lr live on the device: this step's scalars are computed here
        if STEP_F64:
            step_ptr = tl.load(row + 7).to(tl.pointer_type(tl.float64))
        else:
            step_ptr = tl.load(row + 7).to(tl.pointer_type(tl.float32))
        step_old = tl.load(step_ptr)
        step = step_old.to(tl.float64) + 1.0
        lr = tl.load(hyper64_ptr + 0)
        if LR_PTR:
            lr = tl.load(lr_ptr).to(tl.float64)
        bc1 = 1.0 - tl.exp2(step * tl.log2(tl.load(hyper64_ptr + 1)))
        bc2 = 1.0 - tl.exp2(step * tl.log2(tl.load(hyper64_ptr + 2)))
        neg_step_size = (-(lr / bc1)).to(ACC)
        bc2_sqrt = tl.sqrt(bc2).to(ACC)  # fp64 sqrt: IEEE
        decay = (1.0 - lr * tl.load(hyper64_ptr + 3)).to(ACC)
    else:
        coef_ptr += t * 3
        neg_step_size, bc2_sqrt, decay = tl.load(coef_ptr), tl.load(coef_ptr + 1), tl.load(coef_ptr + 2)

    start = (tile - first) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    full = start + BLOCK <= numel
    # Two compiled copies of the tile code: unmasked for full tiles (aligned tensors then get 16-byte
    # accesses), masked for the last tile of a tensor.  (Not a nested @triton.jit function: the
    # interpreter pays milliseconds per nested call.)
    for masked in tl.static_range(2):
        if (masked == 1) != full:
            if masked == 1:
                mask = offs < numel
            else:
                mask = None
            p_ptrs, m_ptrs, v_ptrs = p_ptr + offs, m_ptr + offs, v_ptr + offs
            p = tl.load(p_ptrs, mask=mask).to(ACC)
            g = tl.load(g_ptr + offs, mask=mask).to(ACC)
            m = tl.load(m_ptrs, mask=mask)
            v = tl.load(v_ptrs, mask=mask)
            if MAXIMIZE:
                g = -g
            if WD_MODE == 1:  # Adam: L2 penalty into the gradient
                g = tl.fma(p, tl.load(hyper_ptr + 4), g)
            if WD_MODE == 2:  # AdamW: decoupled decay of the parameter
                p = p * decay
            d = g - m  # lerp(m, g, w) in ATen's two forms
            if W_SMALL:
                m = tl.fma(tl.load(hyper_ptr + 0), d, m)
            else:
                m = tl.fma(-d, tl.load(hyper_ptr + 1), g)
            v = tl.fma(tl.load(hyper_ptr + 3) * g, g, v * tl.load(hyper_ptr + 2))
            vv = v
            if AMSGRAD:
                vm_ptrs = vm_ptr + offs
                vm = tl.maximum(tl.load(vm_ptrs, mask=mask), v, propagate_nan=tl.PropagateNan.ALL)
                tl.store(vm_ptrs, vm, mask=mask)
                vv = vm
            # IEEE sqrt and division: fp32 tl.sqrt and `/` are approximations on the GPU (fp64's are exact)
            eps = tl.load(hyper_ptr + 5)
            if ACC == tl.float64:
                p = p + (neg_step_size * m) / (tl.sqrt(vv) / bc2_sqrt + eps)
            else:
                p = p + tl.div_rn(neg_step_size * m, tl.div_rn(tl.sqrt_rn(vv), bc2_sqrt) + eps)
            tl.store(p_ptrs, p.to(P_DTYPE), mask=mask)
            tl.store(m_ptrs, m, mask=mask)
            tl.store(v_ptrs, v, mask=mask)

    if CAPTURABLE:
        # the program that finishes the last tile of tensor t advances its step (every program of t
        # read step_old before its arrival), then resets the counter for the next launch
        tl.debug_barrier()
        n_tiles = tl.maximum((numel + BLOCK - 1) // BLOCK, 1)
        prev = tl.atomic_add(counters_ptr + t, 1)
        if prev == n_tiles - 1:
            tl.store(step_ptr, step_old + 1)
            tl.atomic_xchg(counters_ptr + t, 0)


def launch_plan(numels):
    """First tile of every tensor and the grid -- the one place that cuts tensors into tiles.  Every
    tensor gets at least one tile, so that in capturable mode an empty tensor's step advances."""
    firsts = [0]
    for n in numels:
        firsts.append(firsts[-1] + max(1, triton.cdiv(n, BLOCK)))
    return firsts, (firsts[-1],)


def launch(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr_tensor, counters, capturable, h):
    """One Adam/AdamW step for lists of tensors of one device and dtype: the Triton kernel of pyops_triton::adam_step
    (csrc/triton.cpp checks the arguments first, as every backend does); ``h``: the hyperparameters by name
    (kernels/cuda/adam_hparams.h)."""
    n = len(params)
    device, dtype = params[0].device, params[0].dtype
    if isinstance(adam_multi_tensor_kernel, InterpretedFunction) and device.type != "cpu":
        # the interpreter copies tensor ARGUMENTS to the host, but the table holds device addresses
        raise RuntimeError("adam_step (backend triton): Triton's interpreter (TRITON_INTERPRET=1) runs this pointer-"
                           f"table kernel on CPU tensors only, got {device} tensors; unset TRITON_INTERPRET to run "
                           "it on the GPU")
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    lr, beta1, beta2, weight_decay, eps = h["lr"], h["beta1"], h["beta2"], h["weight_decay"], h["eps"]
    # capturable: an lr tensor on the device is read by the kernel; otherwise here (as torch.optim does)
    lr_on_device = capturable and lr_tensor is not None and lr_tensor.device == device
    if lr_tensor is not None and not lr_on_device:
        lr = float(lr_tensor)
    firsts, grid = launch_plan([p.numel() for p in params])
    table, addrs = [], []
    for i in range(n):
        row = [params[i].data_ptr(), grads[i].data_ptr(), exp_avgs[i].data_ptr(), exp_avg_sqs[i].data_ptr(),
               max_exp_avg_sqs[i].data_ptr() if h["amsgrad"] else 0]
        addrs += row
        table += row + [params[i].numel(), firsts[i], state_steps[i].data_ptr() if capturable else 0]
    coef = []
    if not capturable:
        torch._foreach_add_(state_steps, 1)  # torch.optim's `step += 1`, on the CPU
        for s in state_steps:  # torch.optim's Python arithmetic (_single_tensor_adam)
            t = s.item()
            coef += [-(lr / (1 - beta1**t)), (1 - beta2**t) ** 0.5, 1 - lr * weight_decay]
    w = float(torch.tensor(1 - beta1, dtype=acc))  # the lerp weight, rounded as the kernel sees it
    hyper = torch.tensor([w, 1 - w, beta2, 1 - beta2, weight_decay, eps] + coef, dtype=acc)
    hyper[1] = 1 - hyper[0]  # 1 - w computed in the accumulation type, as ATen's lerp does
    if hyper.element_size() == 4 and hyper.numel() % 2:  # whole int64 words
        hyper = torch.cat([hyper, hyper.new_zeros(1)])
    tile_tensor = [i for i in range(n) for _ in range(firsts[i + 1] - firsts[i])]
    ints = torch.tensor(table + tile_tensor, dtype=torch.int64)
    h64 = torch.tensor([lr, beta1, beta2, weight_decay], dtype=torch.float64).view(torch.int64)
    buf = torch.cat([ints, h64, hyper.view(torch.int64)]).to(device)  # one host-to-device copy
    hyper_dev = buf[ints.numel() + 4:].view(acc)
    _launch(
        adam_multi_tensor_kernel, grid,
        buf, buf[len(table):], hyper_dev, hyper_dev[N_HYPER:], buf[ints.numel():].view(torch.float64),
        lr_tensor if lr_on_device else buf, counters if capturable else buf,
        P_DTYPE=TL[dtype], ACC=TL[acc], AMSGRAD=h["amsgrad"], MAXIMIZE=h["maximize"],
        WD_MODE=0 if weight_decay == 0 else (2 if h["decoupled_weight_decay"] else 1), W_SMALL=abs(w) < 0.5,
        CAPTURABLE=capturable, LR_PTR=lr_on_device, STEP_F64=state_steps[0].dtype == torch.float64,
        ALIGNED=all(a % 16 == 0 for a in addrs), BLOCK=BLOCK, num_warps=NUM_WARPS)


def aot_variants():
    """The configurations the launcher uses, for the ahead-of-time compile audit (tests/test_adam.py)."""
    for dtype, aligned, amsgrad, wd_mode, capturable in [
        (torch.float32, True, False, 0, False), (torch.float32, False, False, 2, False),
        (torch.float32, True, True, 1, True), (torch.float16, True, False, 2, False),
        (torch.bfloat16, True, True, 0, True), (torch.float64, True, False, 1, False),
    ]:
        acc = torch.float64 if dtype == torch.float64 else torch.float32
        constexprs = dict(P_DTYPE=TL[dtype], ACC=TL[acc], AMSGRAD=amsgrad, MAXIMIZE=False, WD_MODE=wd_mode,
                          W_SMALL=True, CAPTURABLE=capturable, LR_PTR=capturable, STEP_F64=False, ALIGNED=aligned,
                          BLOCK=BLOCK)
        yield variant(adam_multi_tensor_kernel, constexprs, NUM_WARPS, ptr(acc), vector_loads=aligned,
                      table_ptr="*i64", tile_tensor_ptr="*i64", hyper64_ptr="*fp64", lr_ptr="*fp32",
                      counters_ptr="*i32")
