# Two commands: `make demo` and `make test`. Each sets up .venv itself and is safe to repeat.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# The first Python >= 3.11 on PATH.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is needed; install it and retry" >&2; exit 2; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

node_modules/.bin/prism: package.json
	@if command -v npm >/dev/null 2>&1; then npm install --silent --no-audit --no-fund && touch $@; \
	else echo "note: npm not found; the SendGrid contract test (Prism) will skip" >&2; fi

demo: $(STAMP)
	$(VENV)/bin/digest run --date 2025-12-05

test: $(STAMP) node_modules/.bin/prism
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf $(VENV) var out node_modules .pytest_cache
