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
	rm -rf $(VENV) $(INTEGRATIONS_VENV) build *.egg-info src/*.egg-info .pytest_cache bench.json
