# Every target creates .venv and installs what it needs on a fresh machine.
VENV   := .venv
PYTHON := $(VENV)/bin/python
SETUP  := $(VENV)/.installed

.PHONY: demo test test-torch test-matrix bench bench-quick cachesim lint example-pytest example-ddp clean

$(SETUP): pyproject.toml constraints-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints-dev.txt -e '.[dev]'
	touch $(SETUP)

demo: $(SETUP)
	$(PYTHON) examples/back_to_back.py

test: $(SETUP)
	$(PYTHON) -m pytest -n auto --dist loadgroup

# The suite on another torch release, in its own venv: make test-torch TORCH=2.15.0 (.venv-torch-2.15.0,
# kept and reused; `make bench TORCH=...`-style targets can use the same venv).
TORCH ?=
TORCH_VENV = .venv-torch-$(TORCH)
# The releases the matrix runs: the oldest supported, the last without per-object isolation, the newest.
MATRIX := 2.9.1 2.12.1 2.15.0
# e.g. MATRIX_ARGS="--parallel --workers 2" on a machine with cores to spare
MATRIX_ARGS ?=

# torch first, alone, with PIP_CONSTRAINT=/dev/null: a machine-wide pip constraint (some machines cap torch)
# must not choose the release for us. The package then goes in with --no-deps, so that torch stays as it is.
.PRECIOUS: .venv-torch-%/.installed
.venv-torch-%/.installed:
	python3 -m venv .venv-torch-$*
	.venv-torch-$*/bin/python -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=/dev/null .venv-torch-$*/bin/python -m pip install --quiet torch==$*
	.venv-torch-$*/bin/python -m pip install --quiet -c constraints-dev.txt pytest pytest-xdist
	.venv-torch-$*/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test-torch:
	@test -n "$(TORCH)" || { echo "usage: make test-torch TORCH=2.15.0"; exit 2; }
	$(MAKE) $(TORCH_VENV)/.installed
	$(TORCH_VENV)/bin/python -m pytest -n auto --dist loadgroup

# The suite on each release of MATRIX, then docs/compatibility.md's table (tools/torch_matrix.py).
test-matrix:
	python3 tools/torch_matrix.py $(MATRIX_ARGS) $(MATRIX)

bench: $(SETUP)
	$(PYTHON) -m benchmarks --json bench.json

# Every case once, few repetitions: checks that each runs and each claim is measured, not the claims.
bench-quick: $(SETUP)
	$(PYTHON) -m benchmarks --quick

# Where the compiled path's overhead goes, piece by piece (needs valgrind; ~10 minutes).
cachesim: $(SETUP)
	$(PYTHON) -m benchmarks.cachesim

lint: $(SETUP)
	$(PYTHON) -m ruff check src tests examples benchmarks
	$(PYTHON) -m mypy

example-pytest: $(SETUP)
	$(PYTHON) -m pytest -n 2 examples/pytest_project

example-ddp: $(SETUP)
	$(VENV)/bin/torchrun --nproc-per-node 2 examples/ddp_train.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache bench.json
