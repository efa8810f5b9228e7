# Two commands set everything up on a fresh machine:
#   make up     install, then run the whole platform on its embedded default
#   make test   install, then run linters, type checks, contract checks and the test suite
#   make test-unit   the tests that start no server (no broker, Temporal or PostgreSQL), in < 1 min
# python3.11 and Node.js (with npm, for the official AsyncAPI parser) are assumed; uv is bootstrapped into .tools/ when it is not on PATH. The suite also
# needs PostgreSQL: a server on 127.0.0.1:5432, or its binaries (initdb, pg_ctl) installed so the
# tests can start a throwaway cluster; `make test` stops at once when neither is there.

PYTHON ?= python3.11
UV_VERSION := 0.13.8
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
NPM ?= npm
# The npm project of the AsyncAPI parser; its package-lock.json pins every package.
ASYNCAPI_TOOLS := tools/asyncapi
# The npm project of the OpenID provider the tests start (oauth2-mock-server).
OIDC_TOOLS := tools/oidc
# The npm project of the portal's front-end assets (GOV.UK Frontend, htmx; axe-core for tests).
PORTAL_ASSETS := services/portal/assets
# The browser the portal's tests drive (Debian's Chromium; Playwright's download is not used).
CHROMIUM ?= /usr/bin/chromium

.PHONY: install browser up down status test test-unit test-resilience preflight lint typecheck contracts-check pytest bench schemas clean

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock $(if $(filter .tools/bin/uv,$(UV)),.tools/bin/uv)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

# pytest rewrites the assertions of the test modules and of its plugins' whole packages
# (hypothesis, schemathesis, anyio, ...) into bytecode of its own, which --compile-bytecode does
# not write: a first test run rewrote ~440 modules, in each xdist worker. One collection after
# each fresh install writes them (about 15 s of CPU); later runs rewrite only what changed.
# Collection errors are left for the test run to report.
$(VENV)/.rewritten: $(VENV)/.installed
	@echo "writing pytest's rewritten bytecode (one test collection)"
	@PYTHONDONTWRITEBYTECODE= INCENTIVES_TEST_TIER=unit $(BIN)/pytest --collect-only -q \
	  -p no:randomly -p no:cacheprovider >/dev/null 2>&1 || true
	@touch $@

# Exactly the locked versions; install scripts are not needed and not run.
$(ASYNCAPI_TOOLS)/node_modules/.installed: $(ASYNCAPI_TOOLS)/package.json $(ASYNCAPI_TOOLS)/package-lock.json
	cd $(ASYNCAPI_TOOLS) && $(NPM) ci --ignore-scripts --no-audit --no-fund
	@touch $@

$(OIDC_TOOLS)/node_modules/.installed: $(OIDC_TOOLS)/package.json $(OIDC_TOOLS)/package-lock.json
	cd $(OIDC_TOOLS) && $(NPM) ci --ignore-scripts --no-audit --no-fund
	@touch $@

# The portal serves these files itself: nothing is fetched from a CDN at run time.
# The stylesheet is GOV.UK Frontend's Sass built with the portal's settings (portal.scss).
$(PORTAL_ASSETS)/node_modules/.installed: $(PORTAL_ASSETS)/package.json $(PORTAL_ASSETS)/package-lock.json $(PORTAL_ASSETS)/portal.scss
	cd $(PORTAL_ASSETS) && $(NPM) ci --ignore-scripts --no-audit --no-fund && $(NPM) run build
	@touch $@

# Chromium from Debian when it is missing and we may install it (CI runs as root on a fresh
# machine); otherwise say what the browser tests need.
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	else echo "$(CHROMIUM) is missing: install Debian's chromium for the browser tests"; fi

# promtool, which the deploy tests check the Prometheus configuration with: taken out of Debian's
# prometheus package into .tools/ (only extracted, never installed: no server is set up).
PROMTOOL := .tools/prometheus/usr/bin/promtool
$(PROMTOOL):
	@mkdir -p .tools/prometheus
	@if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then \
	  cd .tools && rm -f prometheus_*.deb && apt-get download prometheus >/dev/null 2>&1 \
	  && dpkg-deb -x prometheus_*.deb prometheus && rm -f prometheus_*.deb \
	  || echo "could not fetch Debian's prometheus package: the promtool test will fail"; \
	else echo "no apt-get/dpkg-deb: install promtool at $(PROMTOOL) for the deploy tests"; fi

# Services start seven processes at once on small machines; compiled bytecode halves their
# import time, and it is used even where PYTHONDONTWRITEBYTECODE is set. Cheap when current.
install: $(VENV)/.installed $(VENV)/.rewritten $(ASYNCAPI_TOOLS)/node_modules/.installed $(OIDC_TOOLS)/node_modules/.installed $(PORTAL_ASSETS)/node_modules/.installed browser $(PROMTOOL)
	@$(BIN)/python -m compileall -q -x '(^|/)(test_[^/]*|conftest)\.py$$' contracts services workflows tests

up: install
	$(BIN)/incentives up

down: install
	$(BIN)/incentives down

status: install
	$(BIN)/incentives status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy contracts services workflows
	$(BIN)/lint-imports

# Drift against the committed schemas, then compatibility with v1 as first released: every
# change since must have been additive, so a breaking change cannot hide in the commit that
# also rewrote the committed files.
contracts-check: install
	$(BIN)/python -m contracts.schemas_tool check
	@first=$$(git log --diff-filter=A --format=%H -- contracts/schemas/v1/index.json 2>/dev/null | tail -n 1); \
	if [ -n "$$first" ]; then \
	  tmp=$$(mktemp -d) && git archive "$$first" contracts/schemas/v1 | tar -x -C "$$tmp" && \
	  $(BIN)/python -m contracts.schemas_tool check --against "$$tmp/contracts/schemas/v1"; \
	  rc=$$?; rm -rf "$$tmp"; exit $$rc; \
	else echo "no git history: compatibility with the first v1 release not checked"; fi

# What the suite needs beyond Python: PostgreSQL, or the binaries to start one of its own.
preflight: install
	@$(BIN)/python -m tests.pg_cluster

# The resilience runs (minute-long outages, chaos, kills and restarts of the whole platform,
# replicas) take minutes each and are left to `make test-resilience`.
pytest: install preflight
	$(BIN)/pytest -m "not resilience" $(PYTEST_ARGS)

test: preflight lint typecheck contracts-check pytest

# Tests are marked from the fixtures they use (tests/tiers.py); a fixture that would start a
# server fails the test under this tier instead of starting it. Bytecode is written even where
# PYTHONDONTWRITEBYTECODE is set, so the next run finds the test modules' assertions rewritten.
test-unit: install
	PYTHONDONTWRITEBYTECODE= INCENTIVES_TEST_TIER=unit $(BIN)/pytest -m "not integration and not e2e" -n auto --dist worksteal $(PYTEST_ARGS)

# Outages of a minute (PostgreSQL, Temporal, the rail), the short chaos run, every part SIGKILLed
# in turn, the broker killed, down/up with journeys in flight, replicas.
test-resilience: install preflight
	$(BIN)/pytest -m resilience $(PYTEST_ARGS)

schemas: install
	$(BIN)/python -m contracts.schemas_tool write

bench: install
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache $(ASYNCAPI_TOOLS)/node_modules \
	  $(OIDC_TOOLS)/node_modules \
	  $(PORTAL_ASSETS)/node_modules $(PORTAL_ASSETS)/build
