"""What the Triton kernels' modules share: the Triton type of a storage dtype, the accumulation type, and
the entries of their aot_variants() (the ahead-of-time compile audit, tests/test_triton_aot.py)."""
import torch
import triton.language as tl

TL = {torch.float32: tl.float32, torch.float64: tl.float64, torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}


def acc(dtype: torch.dtype):
    """The accumulation type of ``dtype`` storage: float64 for float64, float32 for the others."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def ptr(dtype) -> str:
    """The signature type of a pointer to ``dtype`` (a torch or a Triton dtype): "*fp32", "*bf16", ..."""
    return "*" + TL.get(dtype, dtype).name


def variant(kernel, constexprs: dict, num_warps: int, pointers: str, *, ints: str = "i64", aligned=False,
            vector_loads: bool = False, **types) -> dict:
    """One entry of an aot_variants(): ``kernel`` with ``constexprs`` and ``num_warps``.  Its signature comes from
    the kernel's parameters, in order: "constexpr" for the tl.constexpr ones and for those ``constexprs`` fixes too
    (an integer equal to 1, which Triton's JIT makes a constant), else ``types[name]`` where given, else
    ``pointers`` for a name ending in ``_ptr`` and ``ints`` for the other integers.  ``aligned``: the arguments
    known to be multiples of 16 (``divisible_by_16``), True for every non-constexpr one; ``vector_loads``: the PTX
    must have 128-bit global loads."""
    sig = {p.name: "constexpr" if p.is_constexpr or p.name in constexprs else
           types.get(p.name) or (pointers if p.name.endswith("_ptr") else ints) for p in kernel.params}
    if aligned is True:
        aligned = [name for name, t in sig.items() if t != "constexpr"]
    return {"kernel": kernel, "signature": sig, "constexprs": constexprs, "num_warps": num_warps,
            "divisible_by_16": list(aligned or ()), "expect_vector_loads": vector_loads}
