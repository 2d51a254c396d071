"""Planted-bug self-test of the CUDA-on-CPU emulator: proves each planted bug is DETECTED by the
build meant to catch it, and that the correct kernels pass cleanly in every build.

    python planted/check.py --bin build/cpp-tests [--log FILE]

Runs `<bin>/<build>/planted CASE` for every case in the plain, asan (ASan+UBSan) and tsan builds,
classifies what each run observed, prints a table, and exits 1 if an intended detection is missing
or a correct kernel is not clean.  Standard library only.
"""
import argparse
import os
import re
import subprocess
import sys

BUILDS = ["plain", "asan", "tsan"]

# What a detection looks like in a run's output (checked in this order).
SIGNATURES = [
    ("tsan-race", re.compile(r"WARNING: ThreadSanitizer: data race")),
    ("asan-overflow", re.compile(r"AddressSanitizer: (heap|global|stack)-buffer-overflow")),
    ("divergent-barrier", re.compile(r"divergent __syncthreads")),
    ("deadlock", re.compile(r"deadlock in block")),
    ("mask-lacks-caller", re.compile(r"which is not in its mask")),
    ("shfl-outside-mask", re.compile(r"did not take part")),
    ("nan-result", re.compile(r"^RESULT \S+ wrong nan", re.M)),
    ("wrong-result", re.compile(r"^RESULT \S+ wrong", re.M)),
    ("sanitizer-other", re.compile(r"Sanitizer|runtime error")),
    ("emulator-error", re.compile(r"^RESULT \S+ error", re.M)),
]

# bug case -> (build that must catch it, signature it must show, extra environment)
BUGS = {
    "reverse_missing_sync": ("tsan", "tsan-race", {}),
    "warp_sum_missing_syncwarp": ("tsan", "tsan-race", {}),
    "sum_oob_read": ("asan", "asan-overflow", {}),
    "sum_divergent_barrier": ("plain", "divergent-barrier", {}),
    "shfl_mask_absent_lanes": ("plain", "deadlock", {}),
    "shfl_mask_lacks_caller": ("plain", "mask-lacks-caller", {}),
    "shfl_reads_outside_mask": ("plain", "shfl-outside-mask", {}),
    "sum_uninit_smem": ("plain", "nan-result", {}),
    "sum_uninit_smem_template": ("plain", "nan-result", {}),
}
# The same hazard must be an error (not only a warning) under SIMT_STRICT=1.
STRICT = {"shfl_reads_outside_mask": "shfl-outside-mask"}
CORRECT = ["reverse_ok", "sum_ok", "warp_sum_ok", "warp_sum_syncwarp_ok", "activemask_divergent", "shfl_width8",
           "wmma_16x16x16"]
# Where sanitizer reports must point: the kernel's own source.
KERNEL_SOURCE = "planted/kernels.cuh"


def run(binary, case, env_extra):
    env = dict(os.environ, **env_extra)
    env.setdefault("TSAN_OPTIONS", "halt_on_error=0:exitcode=66")
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:halt_on_error=1")
    p = subprocess.run([binary, case], capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stdout + p.stderr


def classify(out):
    for name, pat in SIGNATURES:
        if pat.search(out):
            return name
    return "clean" if re.search(r"^RESULT \S+ correct", out, re.M) else "no-result"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder with plain/, asan/, tsan/ builds of `planted`")
    ap.add_argument("--log", help="write every run's full output here")
    args = ap.parse_args()
    binaries = {b: os.path.join(args.bin, b, "planted") for b in BUILDS}
    listed = subprocess.run([binaries["plain"], "--list"], capture_output=True, text=True, check=True).stdout.split()
    mismatch = (set(BUGS) | set(CORRECT)) ^ set(listed)
    if mismatch:
        print(f"planted cases and check.py disagree: {sorted(mismatch)}")
        return 1

    problems, rows, log = [], [], []
    for case in list(BUGS) + CORRECT:
        seen = {}
        for b in BUILDS:
            rc, out = run(binaries[b], case, BUGS.get(case, (None, None, {}))[2])
            seen[b] = classify(out)
            log.append(f"===== {case} [{b}] exit {rc}\n{out}")
            if case in BUGS and b == BUGS[case][0]:
                want = BUGS[case][1]
                if seen[b] != want:
                    problems.append(f"{case}: the {b} build should detect it as {want}, saw {seen[b]}")
                elif b in ("asan", "tsan") and KERNEL_SOURCE not in out:
                    problems.append(f"{case}: the {b} report does not point at {KERNEL_SOURCE}")
            if case in CORRECT and (seen[b] != "clean" or rc != 0):
                problems.append(f"{case}: a correct kernel must pass cleanly in the {b} build, saw {seen[b]} (exit {rc})")
        if case in STRICT:
            rc, out = run(binaries["plain"], case, {"SIMT_STRICT": "1"})
            log.append(f"===== {case} [plain, SIMT_STRICT=1] exit {rc}\n{out}")
            strict_ok = rc == 3 and classify(out) == STRICT[case]
            seen["plain"] += " (strict: error)" if strict_ok else " (strict: NOT an error)"
            if not strict_ok:
                problems.append(f"{case}: with SIMT_STRICT=1 it should be a launch error, got exit {rc}")
        rows.append((case, "bug -> " + BUGS[case][0] if case in BUGS else "correct", seen))

    w = max(len(r[0]) for r in rows)
    print(f"  {'case':<{w}}  {'expect':<13}  " + "  ".join(f"{b:<34}" for b in BUILDS))
    for case, expect, seen in rows:
        print(f"  {case:<{w}}  {expect:<13}  " + "  ".join(f"{seen[b]:<34}" for b in BUILDS))
    if args.log:
        with open(args.log, "w") as f:
            f.write("\n".join(log))
    for p in problems:
        print("  PROBLEM:", p)
    n_bugs = sum(1 for c in BUGS if not any(p.startswith(c + ":") for p in problems))
    print(f"  {n_bugs} of {len(BUGS)} planted bugs detected by their build; "
          f"{len(CORRECT)} correct kernels {'clean' if not any(c in p for p in problems for c in CORRECT) else 'NOT all clean'}"
          + (f"; full output in {args.log}" if args.log else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
