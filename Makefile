# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := packages/memtrace-server packages/memtrace-sdk packages/openai-agents-memtrace
SRC := packages/memtrace-server/src packages/memtrace-sdk/src packages/openai-agents-memtrace/src

.PHONY: install serve test lint typecheck layers pytest format clean demo bench bench-quick bench-locomo soak

$(STAMP): $(addsuffix /pyproject.toml,$(PACKAGES)) requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e 'packages/memtrace-server[postgres,semantic]' -e 'packages/memtrace-sdk[mcp]' \
		-e packages/openai-agents-memtrace -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/memtrace serve --data-dir ./data

bench: install
	command -v wrk >/dev/null || scripts/ensure-wrk.sh
	$(BIN)/python bench/run.py

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
