# Every target creates or refreshes .venv first, so a fresh clone needs nothing else.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
E2E_STAMP := $(VENV)/.installed-e2e
CHROMIUM ?= /usr/bin/chromium
SOAK_SECONDS ?= 120

.PHONY: venv run test lint diagrams browser-deps e2e e2e-build bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/llamaswap run $(ARGS)

# The whole suite except the real-llama-server tests (make e2e).
test: $(STAMP) lint browser-deps
	$(BIN)/python -m pytest tests --ignore=tests/e2e $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/llamaswap diagram --check

diagrams: $(STAMP)
	$(BIN)/llamaswap diagram

# Browser tests drive Debian's chromium (Playwright never downloads a browser here).
# Install it when missing and we may (root with apt-get); otherwise those tests skip.
browser-deps:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser tests"; \
		{ DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "warning: could not install chromium; browser tests will be skipped"; \
	else echo "note: $(CHROMIUM) missing and not root; browser tests will be skipped"; fi

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
	$(BIN)/python benchmarks/proxy.py
	$(BIN)/python benchmarks/real_readiness.py
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/idle_rss.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
