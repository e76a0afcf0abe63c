# Every target creates .venv and installs what it needs on a fresh machine.
VENV   := .venv
PYTHON := $(VENV)/bin/python
SETUP  := $(VENV)/.installed

.PHONY: demo test test-integrations bench bench-quick cachesim lint example-pytest example-ddp clean

$(SETUP): pyproject.toml constraints-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints-dev.txt -e '.[dev]'
	touch $(SETUP)

demo: $(SETUP)
	$(PYTHON) examples/back_to_back.py

test: $(SETUP)
	$(PYTHON) -m pytest -n auto --dist loadgroup

# `make bench TORCH=2.15.0` runs the same benchmarks on another torch release, in .venv-torch-2.15.0
# (that torch, from PyPI, and this package installed without touching it); bench-torch-2.15.0.json.
# PIP_CONSTRAINT=/dev/null lifts a machine-wide pip constraint file that caps torch, where one exists.
TORCH_VENV := .venv-torch-$(TORCH)

$(TORCH_VENV)/.installed: pyproject.toml
	python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=/dev/null $(TORCH_VENV)/bin/python -m pip install --quiet torch==$(TORCH) pytest pytest-xdist
	$(TORCH_VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

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

example-pytest: $(SETUP)
	$(PYTHON) -m pytest -n 2 examples/pytest_project

example-ddp: $(SETUP)
	$(VENV)/bin/torchrun --nproc-per-node 2 examples/ddp_train.py

clean:
	rm -rf $(VENV) $(INTEGRATIONS_VENV) build *.egg-info src/*.egg-info .pytest_cache bench.json bench-torch-*.json
