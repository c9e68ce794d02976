# wxpartner — two commands: `make serve` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PORT ?= 8080
HOST ?= 127.0.0.1
DATA_DIR ?= .wxpartner

.PHONY: serve test install lint typecheck unit pythons test-pythons bench soak clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

serve: install
	$(BIN)/wxpartner serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

unit: install
	./scripts/install-peers.sh
	$(BIN)/pytest

# The SDK's tests on the other supported CPythons found here (3.12, 3.13: .venv-X.Y each).
pythons:
	./scripts/other-pythons.sh

test: lint typecheck unit pythons

# The whole suite, both backends, on each of them (about as long as `make unit` each).
test-pythons:
	WXPARTNER_TEST_BACKENDS=sqlite,postgres ./scripts/other-pythons.sh -q tests

# Ratios to the machine's signing floor, measured side by side (a few minutes; installs wrk).
bench: install
	$(BIN)/python -m bench

# The long hostile runs: thousands of fuzzed requests (bounded versions of these run in `make test`),
# then the endurance run: `serve --workers 2` under a mixed load, ENDURANCE seconds per backend
# (tests/soak_endurance.py; only `make soak` runs it).
ENDURANCE ?= 300
soak: install
	WXPARTNER_FUZZ_EXAMPLES=300 WXPARTNER_CRASH_CYCLES=20 PYTHONPATH=tests $(BIN)/pytest -q -s -p figures tests/test_fuzz_schema.py tests/test_parser_fuzz.py tests/test_crashes.py tests/test_tenant_isolation.py tests/test_hostile_limits.py tests/test_replay_workers.py
	WXPARTNER_ENDURANCE_SECONDS=$(ENDURANCE) PYTHONPATH=tests $(BIN)/pytest -q -s -p figures tests/soak_endurance.py

clean:
	rm -rf $(VENV) .venv-3.* $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
