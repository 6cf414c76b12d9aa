# execbroker — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PORT   ?= 8080
HOST   ?= 127.0.0.1
BIN    := $(VENV)/bin
# `make test` runs the suite on this many pytest-xdist workers (0: in this one process).
# Most tests wait on timers, sockets and subprocesses, so two workers halve the wall time on
# two cores; each worker has its own PostgreSQL database, SQLite files and loopback ports.
TEST_WORKERS ?= 2

.PHONY: run test lint typecheck check clean

# A stamp per install flavour, so that editing pyproject.toml reinstalls.
$(VENV)/.installed-run: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/execbroker serve --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy src tests

# What CI runs (.ci/run): lint and types first, they fail in seconds; then the suite.
check: lint typecheck test

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
