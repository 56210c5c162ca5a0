# Every target creates .venv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint bench bench-api clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jobdock demo

test: $(STAMP)
	bash scripts/ensure-services.sh
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint test

bench:  ## jobdock vs Procrastinate and PgQueuer (PostgreSQL on 127.0.0.1, db "bench"; ~7 min)
	bash bench/setup.sh
	.bench-venv/bin/python -m bench.run

bench-api: $(STAMP)  ## read API under load over 1,000,000 jobs, SQLite and PostgreSQL (~15 min)
	command -v wrk >/dev/null || apt-get install -y wrk || echo "no wrk: the Python load generator is used"
	test -x $(BIN)/py-spy || $(BIN)/pip install -q py-spy
	$(BIN)/python -m bench.api_bench

bench-flow: $(STAMP)  ## issue #6: a 1,000,000-record CSV through a flow vs pandas and the raw limit (~5 min)
	bash bench/setup_ingest.sh
	$(BIN)/python -m bench.flow_bench

clean:
	rm -rf $(VENV) .jobdock .pytest_cache .mypy_cache .ruff_cache
