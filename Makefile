# Every target creates or refreshes .venv first, so a fresh clone needs nothing else.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
E2E_STAMP := $(VENV)/.installed-e2e
CHROMIUM ?= /usr/bin/chromium
# CI keeps its whole run under 10 minutes; `make e2e SOAK_SECONDS=600` soaks longer.
SOAK_SECONDS ?= 75
BENCH_ROUNDS ?= 5

.PHONY: venv run test lint diagrams browser-deps system-deps e2e e2e-build bench bench-proxy clean

# `make run` installs only what running needs (the first answer comes fast); the tests'
# tools come on top of it.
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/llamaswap run $(ARGS)

# The whole suite except the real-llama-server tests (make e2e).
test: $(STAMP) lint system-deps
	$(BIN)/python -m pytest tests --ignore=tests/e2e $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/llamaswap diagram --check

diagrams: $(STAMP)
	$(BIN)/llamaswap diagram

# System packages the tests need: Debian's chromium (the browser tests; Playwright never
# downloads a browser here) and Graphviz's `dot` (diagram images). Installed when missing
# and we may (root with apt-get); otherwise the tests that need them skip, saying why.
DEBIAN_TEST_PACKAGES := $(if $(wildcard $(CHROMIUM)),,chromium) $(if $(shell command -v dot),,graphviz)

browser-deps: system-deps

system-deps:
	@missing="$(strip $(DEBIAN_TEST_PACKAGES))"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $$missing for the tests"; \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
		|| echo "warning: could not install $$missing; the tests that need them will skip"; \
	else echo "note: $$missing missing and not root; the tests that need them will skip"; fi

$(E2E_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,e2e]'
	touch $(E2E_STAMP)

# Builds llama.cpp's llama-server once into ~/.cache/llamaswap-e2e (reused when present).
e2e-build: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/build-llama-server.sh

# The real-llama-server tests, then the slow reliability runs (10,000 requests, a soak).
e2e: $(E2E_STAMP) e2e-build
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)
	LLAMASWAP_SLOW=1 LLAMASWAP_SOAK_SECONDS=$(SOAK_SECONDS) \
		$(BIN)/python -m pytest tests/reliability -m slow $(PYTEST_ARGS)

bench: $(E2E_STAMP) e2e-build
	$(BIN)/python benchmarks/readiness.py
	$(BIN)/python benchmarks/scheduler.py
	$(BIN)/python benchmarks/proxy.py --rounds $(BENCH_ROUNDS)
	$(BIN)/python benchmarks/real_readiness.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/idle_rss.py

# The proxy overhead alone, no llama-server build (about 1 minute a round):
# make bench-proxy BENCH_ROUNDS=7
bench-proxy: $(STAMP)
	$(BIN)/python benchmarks/proxy.py --rounds $(BENCH_ROUNDS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
