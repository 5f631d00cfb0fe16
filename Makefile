# Two commands: `make demo` and `make test`. Each sets up .venv itself and is safe to repeat.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# The first Python >= 3.11 on PATH.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
PYTEST_ARGS ?=

# The email's translations, compiled from their .po files (pybabel, no network): digest.locale.
LOCALES_MO := $(patsubst %.po,%.mo,$(wildcard templates/locales/*/LC_MESSAGES/digest.po))

.PHONY: demo test lint bench clean locales screenshots

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is needed; install it and retry" >&2; exit 2; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

node_modules/.bin/prism: package.json package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm install --silent --no-audit --no-fund && touch $@; \
	else echo "note: npm not found; the SendGrid contract test (Prism) will skip" >&2; fi

%.mo: %.po $(STAMP)
	$(VENV)/bin/pybabel -q compile -i $< -o $@

# After changing the templates' words: extract them and update every catalogue.
locales: $(STAMP)
	$(VENV)/bin/pybabel -q extract -F templates/locales/babel.cfg --no-location --sort-output \
		--project digest -o templates/locales/digest.pot .
	$(VENV)/bin/pybabel -q update -i templates/locales/digest.pot -d templates/locales -D digest

# The editors' note first (digest edit), then the morning job. Once the edition has gone
# out it can no longer change: a second `make demo` says so and sends nobody twice.
demo: $(STAMP) $(LOCALES_MO)
	@$(VENV)/bin/digest edit 2025-12-05 --note-file examples/sample-newsroom/editors-note.txt \
		--by "the demo" >/dev/null 2>&1 \
		|| echo "note: the demo edition went out already; its editors' note stays as it was"
	$(VENV)/bin/digest run --date 2025-12-05

test: $(STAMP) $(LOCALES_MO) node_modules/.bin/prism
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m pytest -n 2 $(PYTEST_ARGS)

# docs/screenshots/: the demo edition at 375 and 600 px, light and dark, and the editor page,
# in the Chromium the tests use (Debian's chromium).
screenshots: $(STAMP) $(LOCALES_MO)
	$(VENV)/bin/python docs/screenshots.py

bench: $(STAMP)
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf $(VENV) var out node_modules .pytest_cache
