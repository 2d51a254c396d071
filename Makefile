# pyops -- the commands a newcomer runs.  Each target does its own set-up.
#   make setup   .venv with pinned dependencies, the compiled extensions, the Fashion-MNIST data (apt)
#   make test    everything: C++ emulator self-tests (plain, ASan+UBSan, TSan), nvcc on the tour kernels, GPU build
#                audit, pytest
#   make bench   the main job: the MNIST MLP's training step, pyops vs stock PyTorch, on the best local
#                dataset (python -m pyops bench auto; results/ gets results.md, .json and plots)
#   make bench-ops   every op benchmark (bench/bench_*.py)
#   make gpu-check   on a machine WITH an NVIDIA GPU: build against its torch, GPU tests, Nsight Compute beside
#                the emulator's memory counts, CUDA-event timings (scripts/gpu_check.sh; < 8 min on one H100)
# Faster iteration: `make build-cpu` rebuilds pyops._C without CUDA kernels (CI always builds CUDA).

PYTHON_SYS ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
# The nvcc on PATH may be a wrapper script, which misleads torch's guess of CUDA_HOME: prefer the toolkit folder.
export CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda))
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0

# (kernels/tour is not part of the extension: the tour's steps are compiled by pyops.sim.load and tour-nvcc)
SOURCES := setup.py pyproject.toml $(shell find csrc kernels -path kernels/tour -prune -o \( -name '*.cpp' -o -name '*.cu' \
             -o -name '*.cuh' -o -name '*.h' \) -print 2>/dev/null)
DEPS    := $(VENV)/.deps-installed
BUILT   := build/.extensions-built

.PHONY: setup build build-cpu test test-cpp test-py tour-nvcc bench bench-ops info data clean gpu-check

setup: build data

$(DEPS): requirements.txt
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade-strategy only-if-needed -r requirements.txt
	@touch $@

$(BUILT): $(DEPS) $(SOURCES)
	$(PY) -m pip install -q --no-build-isolation --no-deps -e .
	@mkdir -p build && touch $@

build: $(BUILT)

build-cpu: $(DEPS)
	PYOPS_CUDA=0 PYOPS_SIM=0 $(PY) -m pip install -q --no-build-isolation --no-deps -e .
	@rm -f $(BUILT)

# Real data for `make bench`: Debian's Fashion-MNIST package, when apt can install it here.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) && \
	  echo "data: installed dataset-fashion-mnist" || echo "data: apt could not install dataset-fashion-mnist (benchmarks fall back to other sources)"; \
	else echo "data: dataset-fashion-mnist not installed (needs root and apt); benchmarks fall back to other sources"; fi

test: build test-cpp tour-nvcc test-py

test-cpp: $(DEPS)
	$(MAKE) -C tests/cpp PY=$(abspath $(PY))

# The teaching tour's kernels (kernels/tour/<op>/*.cu) are valid CUDA: one nvcc call compiles every step
# for sm_80 and sm_90, warnings as errors (the emulator runs them in tests/test_tour.py).
TOUR_CU := $(sort $(wildcard kernels/tour/*/*.cu))
NVCC    ?= $(CUDA_HOME)/bin/nvcc
tour-nvcc:
	@if [ -x "$(NVCC)" ]; then mkdir -p build/tour-nvcc && start=$$(date +%s) && \
	  $(NVCC) -std=c++17 -O3 --Werror all-warnings -I. -gencode arch=compute_80,code=sm_80 \
	    -gencode arch=compute_90,code=sm_90 -c --output-directory build/tour-nvcc $(TOUR_CU) && \
	  echo "   nvcc: $(words $(TOUR_CU)) tour kernels compiled for sm_80 and sm_90 in $$(( $$(date +%s) - start )) s"; \
	else echo "   tour-nvcc SKIPPED: no nvcc at $(NVCC) (set CUDA_HOME)"; fi

test-py: build
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pyops bench auto

bench-ops: setup
	$(PY) bench/run_all.py

gpu-check:
	scripts/gpu_check.sh $(if $(wildcard $(PY)),$(PY),$(PYTHON_SYS))

info: build
	$(PY) -m pyops info

clean:
	rm -rf build pyops/*.so *.egg-info
	$(MAKE) -C tests/cpp clean
