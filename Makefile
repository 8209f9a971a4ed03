# FieldSync: `make run` starts the server with demo data; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := server

.PHONY: run test lint system-deps venv clean bench translations

$(STAMP): requirements-server.txt requirements-client.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	bash .ci/system-deps

# Builds the embedded SQLite database with demo data on first run, prints the URL and a login, serves.
run: $(STAMP)
	$(PY) -m flask quickstart --host $(HOST) --port $(PORT)

test: $(STAMP) system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .

# Every benchmark at full size, JSON in bench/results/ (long: push_pull ~25 min; the first staff_queries
# seeds ~1M readings for ~20 min into bench/.cache/). docs/performance.md explains the figures.
bench: $(STAMP)
	mkdir -p bench/results
	for name in push_pull first_sync fleet device_ops staff_queries; do \
		$(PY) -m bench $$name --json --out bench/results/$$name.json || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# After changing page texts: extract them, merge into each catalogue, translate, compile (.mo is committed).
# The code-list labels of sync_protocol/codes.py are translated at display time and kept in the catalogue
# beside the extracted texts (tests/web/test_i18n_codes.py fails if an update drops one).
translations: $(STAMP)
	$(VENV)/bin/pybabel extract -F server/babel.cfg -k _l -o server/translations/messages.pot .
	$(VENV)/bin/pybabel update -i server/translations/messages.pot -d server/translations --no-fuzzy-matching
	$(VENV)/bin/pybabel compile -d server/translations
