"""The teaching tour (kernels/tour/<op>/, pyops/tour.py) and the write-your-own loader (pyops.sim.load).

Every step of every tour against PyTorch at small shapes (edge tiles, odd sizes, block-per-row rows);
pyops.sim.load on kernels written here: results, the emulator's checks (divergent barrier, shared
memory poison, a race under race_check=True), the compiler's message for a syntax error, clear errors
for bad launches and arguments; `python -m pyops tour` output.  nvcc compiles the steps in
`make tour-nvcc` (part of `make test`).  The step modules are compiled two at a time by one fixture
(g++, cached under $PYOPS_SIM_CACHE or ~/.cache/pyops/sim).
"""
import concurrent.futures
import ctypes
import os
import re

import pytest
import torch

import pyops.sim as sim
import pyops.tour as tour
from pyops.__main__ import main

ALL_STEPS = [(op, s.number) for op, t in tour.TOURS.items() for s in t.steps]


@pytest.fixture(scope="module")
def compiled():
    """Every step module, compiled two at a time (the machine's two cores), then reused by every test."""
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        futs = {(op, n): ex.submit(tour.load_step, op, n) for op, n in ALL_STEPS}
        return {k: f.result() for k, f in futs.items()}


# ---------------------------------------------------------------- parity of every step
SHAPES = {
    # softmax: (rows, cols) -- 1 x 1, odd widths, more rows than one block, block-per-row widths (> 1024)
    "softmax": [(1, 1), (5, 37), (131, 64), (3, 1500), (2, 2052)],
    # cross_entropy: (rows, C) -- as softmax; the shipped step's warp-per-row kernel takes C <= 1024
    "cross_entropy": [(1, 1), (5, 37), (131, 12), (64, 1000), (3, 1500), (2, 1024)],
    # gemm: (M, N, K) -- 1 x 1 x 1, edge tiles in every direction, K not a multiple of the 16-wide k-tile
    "gemm": [(1, 1, 1), (37, 45, 50), (70, 65, 52), (16, 16, 16), (3, 130, 20)],
    # adam: the numel of each parameter tensor -- one element, odd sizes (scalar tails), a tensor of more than
    # one 4096-element tile, tensors of different sizes in one table
    "adam": [(1,), (37, 5, 130), (4097, 3, 256), (1000,)],
}


@pytest.mark.parametrize("op,n", ALL_STEPS, ids=[f"{op}-{n}" for op, n in ALL_STEPS])
def test_step_matches_torch(compiled, op, n):
    t = tour.get(op)
    step = t.step(n)
    ran = 0
    for shape in SHAPES[op]:
        why = step.needs(shape) if step.needs else None
        if why:
            with pytest.raises(ValueError, match=re.escape(why)):
                tour.run_step(op, n, shape)
            continue
        r = tour.run_step(op, n, shape, seed=shape[0])
        assert r.output.shape == r.reference.shape
        torch.testing.assert_close(r.output, r.reference, rtol=r.rtol, atol=r.atol,
                                   msg=lambda m: f"{op} step {n} at {shape}: {m}")
        ran += 1
    assert ran >= 3, f"{op} step {n} ran only {ran} shapes"


def test_softmax_steps_take_minus_inf_rows(compiled):
    """-inf entries add nothing; a row of only -inf gives NaN, as torch.softmax does."""
    for n in range(1, 6):
        x = torch.randn(4, 40)
        x[0, ::3] = float("-inf")
        x[1] = float("-inf")
        y = tour.get("softmax").step(n).launch(compiled["softmax", n], {"x": x})
        torch.testing.assert_close(y, torch.softmax(x, -1), equal_nan=True, msg=lambda m: f"step {n}: {m}")


def test_adam_steps_match_torch_adamw(compiled):
    """Every Adam step also runs AdamW (decoupled weight decay) and weight_decay=0, against torch.optim."""
    t = tour.get("adam")
    for n in range(1, 5):
        for seed, (adamw, wd) in enumerate([(True, 1e-2), (False, 0.0)]):
            inp = t.make_inputs((37, 130, 4100), seed)
            inp["hyper"].update(adamw=adamw, weight_decay=wd)
            out = t.step(n).launch(compiled["adam", n], inp)
            torch.testing.assert_close(out, t.reference(inp), rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"adam step {n} (adamw={adamw}, wd={wd}): {m}")
    with pytest.raises(ValueError, match="one launch takes up to 54 tensors, got 55"):
        tour.run_step("adam", 4, (1,) * 55)
    with pytest.raises(ValueError, match=r"one or more ints >= 0, got \[5, -1\]"):
        tour.run_step("adam", 1, (5, -1))
    with pytest.raises(ValueError, match="runs float32 parameters, got torch.float16"):
        tour.run_step("adam", 4, (8,), dtype=torch.float16)
    r = tour.run_step("adam", 4, (0, 5))  # an empty tensor in the table
    torch.testing.assert_close(r.output, r.reference)


def test_gemm_shipped_tensor_cores(compiled):
    """Step 6's wmma kernel: float16 inputs, fp32 accumulation (the emulator's wmma stand-in)."""
    for shape in [(37, 45, 56), (64, 64, 64)]:
        r = tour.run_step("gemm", 6, shape, dtype=torch.float16)
        assert r.output.dtype == torch.float16
        torch.testing.assert_close(r.output.float(), r.reference.float(), rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match="K % 8 == 0"):
        tour.run_step("gemm", 6, (8, 8, 52), dtype=torch.float16)


def test_tour_steps_are_the_files_and_the_shipped_kernels(compiled):
    """Each listed file exists and defines the kernel the tour launches; the last steps instantiate the
    shipped kernels from kernels/cuda (the header, not a copy)."""
    for op, t in tour.TOURS.items():
        files = sorted(f for f in os.listdir(os.path.join(tour.TOUR_DIR, op)) if f.endswith(".cu"))
        assert files == [s.file for s in t.steps], f"{op}: kernels/tour/{op} and the tour's steps differ"
        for s in t.steps:
            assert s.kernel in compiled[op, s.number].kernels
            title = {"softmax": "Softmax", "cross_entropy": "Cross-entropy", "gemm": "GEMM", "adam": "Adam"}[op]
            assert s.header(op).startswith(f"{title} tour, step {s.number} of {len(t.steps)}: ")
        last = open(t.steps[-1].path(op)).read()
        assert f'#include "kernels/cuda/{"linear_relu" if op == "gemm" else op}.cuh"' in last
        assert "template __global__ void pyops::cuda::" in last


# ---------------------------------------------------------------- pyops.sim.load
LEARNER = r"""
#include <cuda_runtime.h>
// __global__ void fake(float* y) {}

__global__ void scale_add(const float* x, float* y, int n, float a, long long offset) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + (float)offset;
}

// one block: shared-memory tree, then the last warp with shuffles
__global__ void block_sum(const float* x, float* out, int n) {
  __shared__ float part[256];
  float v = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) v += x[i];
  part[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s >= 32; s /= 2) {
    if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x < 32) {
    v = part[threadIdx.x];
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) *out = v;
  }
}

__global__ void reverse_dyn(float* y, int n) {
  extern __shared__ float s[];
  s[threadIdx.x] = y[threadIdx.x];
  __syncthreads();
  y[threadIdx.x] = s[n - 1 - threadIdx.x];
}

__global__ void reverse_no_sync(float* y, int n) {
  extern __shared__ float s[];
  s[threadIdx.x] = y[threadIdx.x];
  y[threadIdx.x] = s[n - 1 - threadIdx.x];
}

__global__ void divergent(float* y) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  y[threadIdx.x] = 1.f;
}

__global__ void read_unwritten(float* y) {
  __shared__ float s[64];
  if (threadIdx.x < 32) s[threadIdx.x] = 1.f;
  __syncthreads();
  y[threadIdx.x] = s[threadIdx.x];
}

struct Pair { float a; int b; };
__global__ void takes_struct(Pair p, float* y) { y[0] = p.a * p.b; }

#define THREADS 32
__global__ static void __launch_bounds__(THREADS * (2)) fill(float* y, double v) { y[threadIdx.x] = (float)v; }

template <class T> __global__ void twice(T* y) { y[threadIdx.x] *= 2; }
template __global__ void twice<double>(double* y);
"""


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    path = tmp_path_factory.mktemp("learner") / "my_kernels.cu"
    path.write_text(LEARNER)
    return path


def test_load_runs_a_learners_kernels(learner):
    mod = sim.load(learner)
    assert sim.load(learner) is mod  # cached in this session
    assert {"scale_add", "block_sum", "reverse_dyn", "twice", "fill"} <= set(mod.kernels)
    assert "fake" not in mod.kernels  # (a __global__ in a comment)
    assert "const float*" in repr(mod.scale_add)

    x = torch.randn(1000)
    y = torch.empty(1000)
    mod.scale_add[8, 128](x, y, 1000, 2.5, 3)  # ints and floats as the kernel's scalar types
    torch.testing.assert_close(y, 2.5 * x + 3)

    out = torch.empty(1)
    mod.block_sum[1, 256](x, out, 1000)
    torch.testing.assert_close(out[0], x.sum(), rtol=1e-5, atol=1e-4)

    v = torch.arange(64, dtype=torch.float32)
    mod.reverse_dyn[1, 64, 64 * 4](v, 64)  # [grid, block, shared_bytes]: extern __shared__
    assert torch.equal(v, torch.arange(63, -1, -1, dtype=torch.float32))

    mod.fill[1, 64](v, 3)  # static, __launch_bounds__ with nested parentheses; an int for a double
    assert torch.equal(v, torch.full((64,), 3.0))

    d = torch.arange(8, dtype=torch.float64)
    mod.twice[1, 8](d)  # an explicit instantiation of a kernel template
    assert torch.equal(d, 2 * torch.arange(8, dtype=torch.float64))

    class Pair(ctypes.Structure):
        _fields_ = [("a", ctypes.c_float), ("b", ctypes.c_int)]
    mod.takes_struct[1, 1](Pair(1.5, 4), y)
    assert y[0].item() == 6.0


def test_load_reports_divergent_barrier_and_poisoned_shared_memory(learner):
    mod = sim.load(learner)
    with pytest.raises(sim.LaunchError, match=r"divergent: divergent __syncthreads\(\).*my_kernels.cu:\d+.*"
                                              r"thread \(\d+,0,0\)"):
        mod.divergent[1, 64](torch.zeros(64))
    y = torch.zeros(64)
    mod.read_unwritten[1, 64](y)  # threads 32..63 read what nobody wrote: the 0xFF poison, NaN
    assert torch.equal(y[:32], torch.ones(32)) and torch.isnan(y[32:]).all()
    v = torch.arange(64, dtype=torch.float32)
    mod.reverse_no_sync[1, 64, 256](v, 64)  # thread order 0..63: the low half reads unwritten entries
    assert torch.isnan(v[:32]).all()


def test_load_race_check_reports_a_missing_barrier(learner):
    mod = sim.load(learner, race_check=True)
    v = torch.arange(64, dtype=torch.float32)
    with pytest.raises(sim.RaceError, match=r"(?s)reverse_no_sync: ThreadSanitizer reports a data race.*"
                                            r"my_kernels.cu:\d+"):
        mod.reverse_no_sync[1, 64, 256](v, 64)
    v = torch.arange(64, dtype=torch.float32)
    mod.reverse_dyn[1, 64, 256](v, 64)  # with the barrier: clean, and the result comes back
    assert torch.equal(v, torch.arange(63, -1, -1, dtype=torch.float32))


def test_load_compile_error_is_the_compilers_message(tmp_path):
    p = tmp_path / "broken.cu"
    p.write_text("__global__ void k(float* y) {\n  y[threadIdx.x] = 1.f\n}\n")
    with pytest.raises(sim.CompileError, match=r"(?s)broken.cu:2:.*error: expected ';'"):
        sim.load(p)
    p.write_text("__device__ float f(float x) { return x; }\n")
    with pytest.raises(sim.CompileError, match="no launchable __global__"):
        sim.load(p)
    with pytest.raises(FileNotFoundError):
        sim.load(tmp_path / "missing.cu")


def test_load_bad_launches_and_arguments(learner):
    mod = sim.load(learner)
    x, y = torch.randn(10), torch.empty(10)
    with pytest.raises(sim.LaunchError, match=r"invalid configuration argument.*block \(2048,1,1\)"):
        mod.scale_add[1, 2048](x, y, 10, 1.0, 0)
    with pytest.raises(sim.LaunchError, match="bytes of dynamic shared memory"):
        mod.reverse_dyn[1, 64, 64 * 1024](y, 10)
    with pytest.raises(ValueError, match=r"every grid dimension must be >= 1"):
        mod.scale_add[0, 32](x, y, 10, 1.0, 0)
    with pytest.raises(ValueError, match=r"block must be an int or a tuple of 1 to 3 ints"):
        mod.scale_add[1, (32, 1, 1, 1)](x, y, 10, 1.0, 0)
    with pytest.raises(ValueError, match=r"kernel\[grid, block\]"):
        mod.scale_add[1](x, y, 10, 1.0, 0)
    with pytest.raises(TypeError, match=r"scale_add\[grid, block\]"):
        mod.scale_add(x, y, 10, 1.0, 0)
    with pytest.raises(TypeError, match=r"argument 0 \(const float\*\): tensor of dtype torch.float64, "
                                        r"expected torch.float32"):
        mod.scale_add[1, 32](x.double(), y, 10, 1.0, 0)
    with pytest.raises(ValueError, match=r"argument 1 \(float\*\): the tensor is on meta"):
        mod.scale_add[1, 32](x, torch.empty(10, device="meta"), 10, 1.0, 0)
    with pytest.raises(ValueError, match="not contiguous"):
        mod.scale_add[1, 32](torch.randn(10, 2)[:, 0], y, 10, 1.0, 0)
    with pytest.raises(TypeError, match=r"takes 5 arguments .*got 3"):
        mod.scale_add[1, 32](x, y, 10)
    with pytest.raises(TypeError, match=r"argument 2 \(int\): expected a Python int, got float"):
        mod.scale_add[1, 32](x, y, 10.0, 1.0, 0)
    with pytest.raises(ValueError, match=r"argument 2 \(int\): 4294967296 does not fit"):
        mod.scale_add[1, 32](x, y, 1 << 32, 1.0, 0)
    with pytest.raises(TypeError, match=r"ctypes.Structure of 8 bytes"):
        mod.takes_struct[1, 1](3, y)
    with pytest.raises(AttributeError, match="has no kernel 'nope'"):
        mod.nope


# ---------------------------------------------------------------- python -m pyops tour
def test_tour_command_lists_and_runs_a_step(compiled, capsys):
    assert main(["tour"]) == 0
    out = capsys.readouterr().out
    for op, t in tour.TOURS.items():
        assert op in out and all(s.file in out for s in t.steps)
    assert main(["tour", "softmax", "--step", "3", "--shape", "8", "256"]) == 0
    out = capsys.readouterr().out
    assert "Softmax tour, step 3 of 5: a warp per row" in out
    assert "kernels/tour/softmax/03_warp_row.cu" in out and "x [8, 256]" in out
    check = [line for line in out.splitlines() if line.startswith("check:")]
    assert len(check) == 1 and check[0].endswith(": OK"), out
    # the step's profile beside the previous step's: coalescing brings 8 sectors per request (8 rows, one
    # active lane each) down to the ideal, 4 per 32 lanes
    assert "profile (the emulator's counting build; docs/profiling.md) beside step 2:" in out
    rows = {m.group(1): m.group(2, 3) for m in re.finditer(r"(?m)^\s+(\S.*?)\s{2,}(\S+)\s+(\S+)$", out)}
    prev, cur = map(float, rows["global load sectors / request"])
    assert (prev, cur) == (8.0, 4.0) and float(rows["ideal"][1]) == 4.0
    assert main(["tour", "gemm", "--step", "5", "--shape", "8", "8", "6"]) == 2
    assert "16-byte loads need K % 4 == 0, got K = 6" in capsys.readouterr().out
    assert main(["tour", "adam", "--step", "4", "--shape", "100", "37", "--no-profile"]) == 0
    out = capsys.readouterr().out
    assert "Adam tour, step 4 of 4: every tensor in one launch" in out
    assert "input:  2 parameter tensors of 100, 37 elements, with grad" in out and out.rstrip().endswith(": OK")
    assert main(["tour", "gemm", "--step", "9"]) == 2
    assert "no step 9" in capsys.readouterr().out


# ---------------------------------------------------------------- profiles: each step's claim, measured
@pytest.fixture(scope="module")
def profiles(compiled):
    """Every step profiled at its tour's default shape in the counting build (compiled two at a time)."""
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        list(ex.map(lambda k: sim._compile(tour.get(k[0]).step(k[1]).path(k[0]), "count"), ALL_STEPS))
    return {op: tour.profile_all(op) for op in tour.TOURS}


def _r(p, n, metric):
    return p[n][metric]


def test_softmax_steps_show_what_they_claim(profiles):
    p = profiles["softmax"]
    LR, SPR, IDEAL = "global load requests", "global load sectors / request", "  ideal"
    # step 2: one read of the row less -- 3 loads per element become 2
    assert _r(p, 2, LR) * 3 == _r(p, 1, LR) * 2
    assert _r(p, 2, "L1-level global bytes") < _r(p, 1, "L1-level global bytes")
    # step 3: coalescing -- 32 sectors per request (one per lane) down to the ideal 4
    assert _r(p, 2, SPR) == 32 and _r(p, 3, SPR) == _r(p, 3, IDEAL) == 4
    assert _r(p, 3, "global store sectors / request") == 4
    assert _r(p, 3, "shuffles / warp") == 10  # 5 butterfly steps x (m, s)
    # step 4: the row split 256 ways instead of 32: 8x the warps, each with 8x fewer loads
    assert _r(p, 4, "warps") == 8 * _r(p, 3, "warps") and _r(p, 4, LR) == _r(p, 3, LR)
    assert _r(p, 4, "barriers / warp") > 0 and _r(p, 4, "shared excess wavefronts (bank conflicts)") == 0
    # step 5: 16-byte loads -- 4x fewer requests, 16 sectors each, still the ideal
    assert _r(p, 5, LR) * 4 == _r(p, 4, LR)
    assert _r(p, 5, SPR) == _r(p, 5, IDEAL) == 16
    # every step touches the same bytes: what changes is how
    assert len({_r(p, n, "unique global bytes") for n in p}) == 1


def test_cross_entropy_steps_show_what_they_claim(profiles):
    p = profiles["cross_entropy"]
    rows, C = tour.get("cross_entropy").default_shape
    LR, SR, SPR, IDEAL = "global load requests", "global store requests", "global load sectors / request", "  ideal"
    UB = "unique global bytes"
    # step 2: fusing drops the [rows, C] log-softmax buffer: its C stores per row, and two of three reads of x
    assert _r(p, 1, SR) > _r(p, 2, SR) * C / 2 and _r(p, 2, LR) * 2 < _r(p, 1, LR)
    assert _r(p, 1, UB) - _r(p, 2, UB) >= rows * C * 4  # the buffer's bytes (and the sectors read back)
    # step 3: coalescing -- 32 sectors per request down to the ideal (rows of 4000 bytes: a little under 4)
    assert _r(p, 2, SPR) > 30 and _r(p, 3, SPR) == _r(p, 3, IDEAL) <= 4
    # step 4 (shipped): 16-byte loads -- fewer than half the load requests, 16 sectors each
    assert _r(p, 4, LR) * 2 < _r(p, 3, LR) and _r(p, 4, SPR) > _r(p, 3, SPR)


def test_gemm_steps_show_what_they_claim(profiles):
    p = profiles["gemm"]
    LPF, SPR, IDEAL = "global load requests / kFLOP", "global load sectors / request", "  ideal"
    BANK, SL = "shared excess wavefronts (bank conflicts)", "shared load requests"
    # step 2: shared-memory tiles cut global load requests per FLOP by the tile factor, 16 (less the bias
    # loads both steps make), and reach the ideal sectors per request
    assert _r(p, 1, LPF) / _r(p, 2, LPF) >= 0.9 * 16
    assert _r(p, 1, SPR) > _r(p, 1, IDEAL) and _r(p, 2, SPR) == _r(p, 2, IDEAL)
    assert _r(p, 2, BANK) > 0  # the ws[tx][kk] reads: the 8-way conflict its text names
    # step 3: register tiles -- 16x fewer shared load instructions, 3-4x fewer global loads per FLOP
    assert _r(p, 2, SL) == 16 * _r(p, 3, SL)
    assert _r(p, 2, LPF) / _r(p, 3, LPF) >= 3
    # step 4: 16-byte global loads -- fewer requests for the same bytes, more sectors each
    assert _r(p, 3, LPF) / _r(p, 4, LPF) >= 2 and _r(p, 4, SPR) > _r(p, 3, SPR)
    assert _r(p, 4, "L1-level global bytes") == _r(p, 3, "L1-level global bytes")
    # bank conflicts of the transposed tile stores: 16-way (step 3), 4-way (step 4), 2-way with padding (step 5)
    stores = _r(p, 3, "shared store requests")
    assert (_r(p, 3, BANK), _r(p, 4, BANK), _r(p, 5, BANK)) == (15 * stores, 3 * stores, 1 * stores)
    # step 6 (shipped): float4 stores of the outputs -- 4x fewer store requests; the swizzled tile stores take
    # step 5's 2-way conflicts to none
    assert _r(p, 6, "global store requests") * 4 == _r(p, 5, "global store requests")
    assert _r(p, 5, BANK) > 0 and _r(p, 6, BANK) == 0 and _r(p, 6, LPF) <= _r(p, 5, LPF)


def test_adam_steps_show_what_they_claim(profiles, compiled):
    p = profiles["adam"]
    sizes = tour.get("adam").default_shape
    n = sum(sizes)
    LR, SR, SPR, IDEAL = "global load requests", "global store requests", "global load sectors / request", "  ideal"
    # step 1: one thread per element, coalesced from the start: 4 arrays read, 3 written, a request per warp each
    assert _r(p, 1, LR) == 4 * n // 32 and _r(p, 1, SR) == 3 * n // 32
    assert _r(p, 1, SPR) == _r(p, 1, IDEAL) == 4 and _r(p, 1, "warps") == n // 32
    # step 2: a grid of 16 blocks walks the buffer: the same requests from 8x fewer warps
    assert (_r(p, 2, LR), _r(p, 2, SR)) == (_r(p, 1, LR), _r(p, 1, SR))
    assert _r(p, 2, "warps") == 16 * 256 // 32 and _r(p, 1, "warps") == 8 * _r(p, 2, "warps")
    # step 3: 16-byte accesses -- 4x fewer load and store requests, 16 sectors each (the ideal)
    assert _r(p, 3, LR) * 4 == _r(p, 2, LR) and _r(p, 3, SR) * 4 == _r(p, 2, SR)
    assert _r(p, 3, SPR) == _r(p, 3, IDEAL) == 16
    # step 4 (shipped): the same requests as step 3, for the 8 tensors in 1 launch; step 3 on each tensor is
    # 8 launches
    assert (_r(p, 4, LR), _r(p, 4, SR), _r(p, 4, SPR)) == (_r(p, 3, LR), _r(p, 3, SR), _r(p, 3, SPR))
    t = tour.get("adam")
    inp = t.make_inputs(sizes, 0)
    mod3 = compiled["adam", 3]
    with mod3.record() as per_tensor:
        for i in range(len(sizes)):
            t.step(3).launch(mod3, {**inp, **{k: [inp[k][i]] for k in ("params", "grads", "exp_avg", "exp_avg_sq")}})
    with compiled["adam", 4].record() as table:
        t.step(4).launch(compiled["adam", 4], inp)
    assert (len(per_tensor), len(table)) == (len(sizes), 1) == (8, 1)
    assert sum(L.requests("global_load") for L in per_tensor) == table[0].requests("global_load")
    # every step touches the same bytes: what changes is how
    assert len({_r(p, k, "unique global bytes") for k in p}) == 1 and _r(p, 1, "unique global bytes") == 28 * n


# ---------------------------------------------------------------- docs/tour
def test_docs_are_a_fresh_generation(profiles):
    for op in tour.TOURS:
        path = os.path.join(tour.DOCS_DIR, f"{op}.md")
        assert os.path.exists(path), f"{path} missing: run python -m pyops tour --write-docs"
        assert open(path, encoding="utf-8").read() == tour.generate_docs(op, profiles[op]), \
            f"docs/tour/{op}.md is stale: run python -m pyops tour --write-docs"


def test_load_profile_returns_the_launch_record(learner):
    mod = sim.load(learner)
    x, y = torch.randn(1000), torch.empty(1000)
    rec = mod.scale_add[8, 128](x, y, 1000, 2.0, 0, profile=True)
    torch.testing.assert_close(y, 2.0 * x)  # the counting build computes the same result
    d = rec.to_dict()
    assert d["kernel"] == "scale_add" and d["grid"] == [8, 1, 1] and d["block"] == [128, 1, 1]
    # 1000 floats: 32 warps, 4 sectors per full request; the last warp has 8 lanes
    assert rec.requests("global_load") == 32 and rec.requests("global_store") == 32
    assert rec.unique_bytes == 2 * 4000  # 4000 bytes = 125 sectors read, 125 written
    with pytest.raises(ValueError, match="without race_check"):
        sim.load(learner, race_check=True).scale_add[8, 128](x, y, 1000, 2.0, 0, profile=True)
