# Backburner: `make run` starts the service on SQLite with the offline engine;
# `make test` runs the whole suite (SQLite and PostgreSQL).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
BACKBURNER_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export BACKBURNER_TEST_POSTGRES_URL

.PHONY: run test lint typecheck tools unit bench-queue screenshots clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Backburner needs Python 3.11 or newer (found: $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
	  { echo "Could not create $(VENV). On Debian/Ubuntu: apt-get install python3-venv"; exit 1; }

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/backburner db upgrade
	$(BIN)/backburner serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench evals examples
	$(BIN)/ruff format --check src tests bench evals examples
	$(BIN)/lint-imports

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy

# Test tools from Debian packages: promtool (checks docs/alerts.yml), Chromium (the
# browser tests drive it with Playwright; `playwright install` is never used), openssl
# (the TLS test makes a self-signed certificate) and Tesseract (scanned PDFs are read by
# OCR; without it their upload is refused, naming the package).
tools:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v tesseract >/dev/null || missing="$$missing tesseract-ocr"; \
	[ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null || missing="$$missing pgbouncer"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing test tools from Debian:$$missing"; \
	  apt-get install -y --no-install-recommends $$missing >/dev/null 2>&1 || \
	  echo "could not install$$missing: run apt-get install -y$$missing"; \
	fi

test: lint typecheck tools
	$(BIN)/pytest

unit: $(VENV)/.dev-installed
	$(BIN)/pytest tests/unit

bench-queue: $(VENV)/.dev-installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(BIN)/python bench/queue.py

# The browser tests write every main page to build/screenshots; the README shows these.
README_SHOTS := recent-jobs new-job job-summary job-classifications operations job-report-phone
screenshots: tools $(VENV)/.dev-installed
	$(BIN)/pytest -q tests/browser -k sqlite
	mkdir -p docs/screenshots
	for shot in $(README_SHOTS); do cp build/screenshots/$$shot.png docs/screenshots/; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test-artifacts
