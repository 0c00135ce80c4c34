# Ledgerline: `make run` (embedded demo) and `make test` (whole suite). See README.md.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .uv/bin/uv
PY := .venv/bin/python

.PHONY: run test test-deps install lint format bench clean

$(UV):
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

install: .venv/.synced

run: install
	$(PY) -m portal.launcher

# Debian's Chromium for the browser tests, and the npm packages (axe-core) they use.
test-deps: install
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@[ -f node_modules/.package-lock.json ] && cmp -s package-lock.json node_modules/.package-lock.json.src 2>/dev/null || { \
	  npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.package-lock.json.src; }

test: test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	@for b in bench/*.py; do case $$b in */bench_support.py|*/bare_app.py) continue;; esac; echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .venv .uv node_modules var .pytest_cache .ruff_cache .hypothesis
