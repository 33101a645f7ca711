# latplan — the set-up commands of the README:
#   make demo       create the environment, install latplan (no test extras), plan the demo cases, write reports
#   make test       create the environment, install latplan with test extras, run the whole test suite
#                   (2 xdist workers: tests sharing a module fixture stay together, longest first — tests/support/ci_schedule.py)
#   make test-fast  the quick loop: everything except slow, browser and postgres tests (< 2 minutes)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
PYTEST_ARGS ?= -n 2 --dist loadgroup --no-loadscope-reorder

FAST_MARKERS ?= not slow and not browser and not postgres

.PHONY: venv test-venv demo test test-fast lint typecheck bench clean

# Installer: uv (from PyPI, into the venv; resolves and installs in parallel) where it installs, else pip.
# Same versions either way: both take the newest releases pyproject.toml allows; uv is a tool, latplan never
# imports it. --compile-bytecode as pip does: without .pyc files (and PYTHONDONTWRITEBYTECODE set, as on CI
# machines) every process compiles numpy, scipy, FastAPI… from source — the suite ran 743 instead of 578 s.
INSTALL = $(BIN)/python -m pip install --quiet uv && $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python
PIP_INSTALL = $(BIN)/python -m pip install --quiet --upgrade pip && $(BIN)/python -m pip install --quiet

# the install also compiles the numba kernels into numba's on-disk cache (≈ 30 s, one thread), as pip compiles
# bytecode: the first `latplan demo` after install then runs warm instead of compiling them in every worker
$(BIN)/latplan: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(INSTALL) -e . || ($(PIP_INSTALL) -e .)
	NUMBA_NUM_THREADS=1 $(BIN)/python -m latplan.physics.warmup
	touch $(BIN)/latplan

# one pip run for latplan and its test extras (CI: not a second editable build after $(BIN)/latplan's)
$(VENV)/.test-extras: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(INSTALL) -e ".[test]" || ($(PIP_INSTALL) -e ".[test]")
	touch $(BIN)/latplan $(VENV)/.test-extras

venv: $(BIN)/latplan

test-venv: $(VENV)/.test-extras

demo: venv
	$(BIN)/latplan demo --out $(OUT)
	@echo "open $(OUT)/index.html"

test: test-venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: test-venv
	$(BIN)/python -m pytest -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

lint: test-venv
	$(BIN)/ruff check src tests benchmarks

typecheck: test-venv
	$(BIN)/mypy

bench: test-venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
