# Two commands for a newcomer: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.run-installed
STAMP_DEV := $(VENV)/.dev-installed
STAMP_NATIVE := $(VENV)/.native-built

.PHONY: run test lint typecheck check bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The project itself is installed in editable mode: `bot` and `dashboard` import from anywhere.
$(STAMP_RUN): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(STAMP_DEV): requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@ $(STAMP_RUN)

# verify's optional C line scan; without a compiler the Python reference scan runs.
$(STAMP_NATIVE): bot/audit/native/_chain.c | $(BIN)/python
	$(BIN)/python -m bot.audit.native.build
	touch $@

run: $(STAMP_RUN) $(STAMP_NATIVE)  ## paper trading on a simulated market + dashboard + alerts
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/honcho start

test: $(STAMP_DEV) $(STAMP_NATIVE)  ## the whole test suite, lint and type checks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: $(STAMP_DEV)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck: $(STAMP_DEV)
	$(BIN)/mypy

BENCHMARKS := audit_write audit_cli decision_latency dashboard_ingest dashboard_viewers archive_metrics controls

bench: $(STAMP_DEV) $(STAMP_NATIVE)  ## every benchmark, each against its baselines in the same run
	for b in $(BENCHMARKS); do $(BIN)/python -m benchmarks.$$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bot/audit/native/*.so
