# Every target creates .venv and installs what it needs on a fresh machine.
VENV   := .venv
PYTHON := $(VENV)/bin/python
SETUP  := $(VENV)/.installed

.PHONY: demo test test-torch test-matrix test-integrations bench bench-quick cachesim lint example-pytest example-ddp clean

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

# `make bench TORCH=2.15.0` runs the same benchmarks on another torch release, in the same venv as
# test-torch; it writes bench-torch-2.15.0.json.
BENCH_VENV := $(if $(TORCH),$(TORCH_VENV),$(VENV))

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks --json bench$(if $(TORCH),-torch-$(TORCH)).json

# HF transformers (+ accelerate) and Lightning in a venv of their own: never dependencies of the package.
INTEGRATIONS_VENV  := .venv-integrations
INTEGRATIONS_SETUP := $(INTEGRATIONS_VENV)/.installed

$(INTEGRATIONS_SETUP): pyproject.toml constraints-dev.txt constraints-integrations.txt
	python3 -m venv $(INTEGRATIONS_VENV)
	$(INTEGRATIONS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INTEGRATIONS_VENV)/bin/python -m pip install --quiet -c constraints-dev.txt -c constraints-integrations.txt \
		-e '.[test]' transformers accelerate lightning
	touch $(INTEGRATIONS_SETUP)

test-integrations: $(INTEGRATIONS_SETUP)
	$(INTEGRATIONS_VENV)/bin/python -m pytest -p no:cacheprovider tests/integrations \
		'tests/test_docs.py::test_python_blocks_run[frameworks.md]'

# Every case once, few repetitions: checks that each runs and each claim is measured, not the claims.
bench-quick: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m benchmarks --quick

# Where the compiled path's overhead goes, piece by piece (needs valgrind; ~10 minutes).
cachesim: $(SETUP)
	$(PYTHON) -m benchmarks.cachesim

lint: $(SETUP)
	$(PYTHON) -m ruff check src tests examples benchmarks
	$(PYTHON) -m mypy
	$(VENV)/bin/lint-imports

example-pytest: $(SETUP)
	$(PYTHON) -m pytest -n 2 examples/pytest_project

example-ddp: $(SETUP)
	$(VENV)/bin/torchrun --nproc-per-node 2 examples/ddp_train.py

clean:
	rm -rf $(VENV) $(INTEGRATIONS_VENV) build *.egg-info src/*.egg-info .pytest_cache bench.json bench-torch-*.json
