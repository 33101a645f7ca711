# latplan — the two set-up commands of the README:
#   make demo   create the environment, install latplan, plan the built-in demo cases, write reports
#   make test   create the environment, install latplan with test extras, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out/demo
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: venv demo test lint bench clean

$(BIN)/latplan: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BIN)/latplan

venv: $(BIN)/latplan

demo: venv
	$(BIN)/latplan demo --out $(OUT)
	@echo "open $(OUT)/index.html"

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests benchmarks

bench: venv
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
