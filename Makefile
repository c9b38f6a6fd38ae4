# One entry point: `make run` for the demo on the simulator, `make test` for the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DRCTL_STATE_DIR ?= .drctl

.PHONY: run test lint clean bench system-deps explore

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "drctl needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,asr,hyperv]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/drctl fabric init examples/inventory.yaml
	$(BIN)/drctl apply specs/
	$(BIN)/drctl status specs/

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench
	$(BIN)/mypy reconciler tests
	$(BIN)/lint-imports --no-cache

# The tests run real Prometheus and promtool (Debian package `prometheus`), git,
# real etcd members (Debian package `etcd-server`, 3.4: the leader election),
# zsh, which loads `drctl completion zsh` in its test; systemd-analyze (Debian
# `systemd`) verifies deploy/systemd and strace shows what its syscall filter lets through;
# a headless Chromium (Debian package `chromium`, driven by Playwright) loads the status page;
# curl is what the README's daemon walk-through (tests/e2e/test_walkthrough.py) types.
system-deps:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1 \
	    || ! command -v git >/dev/null 2>&1 || ! command -v etcd >/dev/null 2>&1 \
	    || ! command -v zsh >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1 \
	    || ! command -v strace >/dev/null 2>&1 || ! test -x /usr/bin/chromium \
	    || ! command -v curl >/dev/null 2>&1; then \
	  echo "installing prometheus, git, etcd-server, zsh, systemd, strace, chromium and curl with apt-get"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus git etcd-server zsh systemd strace chromium curl >/dev/null; \
	fi

test: system-deps lint
	$(BIN)/pytest -q

# The property tests with new random examples (the suite draws fixed ones).
explore: system-deps $(STAMP)
	DRCTL_EXPLORE=1 $(BIN)/pytest -q $$(grep -rl "@given" tests)

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/sim_scale.py
	$(BIN)/python bench/metrics_scale.py
	$(BIN)/python bench/status_page_scale.py
	$(BIN)/python bench/status_scale.py
	$(BIN)/python bench/audit_scale.py
	$(BIN)/python bench/reaction.py
	$(BIN)/python bench/kill.py
	$(BIN)/python bench/spec_fuzz.py
	$(BIN)/python bench/scrape_load.py
	$(BIN)/python bench/journal_checks.py
	$(BIN)/python bench/takeover.py
	$(BIN)/python bench/signed_commits.py

clean:
	rm -rf $(VENV) .drctl .mypy_cache .pytest_cache .ruff_cache
