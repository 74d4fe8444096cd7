# Stickler: `make conformance` runs the conformance suites, `make test` the project's tests.
# Both bootstrap themselves: a .venv with the package, and (as root on Debian/Ubuntu) the
# balancers from apt. Extra arguments: make conformance ARGS='--balancer nginx'.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stickler-installed
# binary:package pairs that the suites and benchmarks need
CONTAINER_SUITES := suites
SYSTEM_DEPS := haproxy:haproxy nginx:nginx-light caddy:caddy apache2:apache2 redis-server:redis-server wrk:wrk

.PHONY: conformance test test-processes images lint system-deps venv clean

conformance: system-deps $(STAMP)
	$(BIN)/stickler conformance $(ARGS)

# Everything: the project's tests (the container ones included) and every suite on local
# processes, then every suite again in containers (CONTAINER_SUITES; checks that only one
# runtime can inject, such as the host-gone faults, run on it alone). A Docker daemon is
# started first when none answers (as root; docker.io is installed if missing) and stopped
# again at the end; a daemon that was running already is left alone.
test: system-deps $(STAMP) lint
	@started=""; \
	if ! .ci/dockerd.sh status; then .ci/dockerd.sh start || exit 1; started=1; fi; \
	trap 'if [ -n "$$started" ]; then .ci/dockerd.sh stop; fi' EXIT; \
	begin=$$(date +%s); $(BIN)/stickler images build || exit 1; \
	echo "stickler images build: $$(( $$(date +%s) - begin )) s"; \
	$(BIN)/python -m pytest tests suites $(PYTEST_ARGS) || exit 1; \
	$(BIN)/python -m pytest $(CONTAINER_SUITES) --runtime containers $(PYTEST_ARGS)

# Without Docker: the tests (container tests skip outside CI) and the suites on processes.
test-processes: system-deps $(STAMP) lint
	$(BIN)/python -m pytest tests suites $(PYTEST_ARGS)

images: $(STAMP)
	$(BIN)/stickler images build

lint: $(STAMP)
	$(BIN)/ruff check harness suites tests benchmarks

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "Stickler needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version)." >&2; \
	  echo "Set PYTHON=/path/to/python3.11 and run make again." >&2; exit 1; }
	@$(PYTHON) -m venv --help >/dev/null 2>&1 && $(PYTHON) -c 'import ensurepip' 2>/dev/null || \
	  $(MAKE) --no-print-directory SYSTEM_DEPS_EXTRA=python3-venv system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

# Stickler starts its own balancers and Redis; the packages' system services are never
# needed, so apt is told not to start them (policy-rc.d 101: "action forbidden"), and
# nginx and apache2 do not fight over port 80.
system-deps:
	@missing="$(SYSTEM_DEPS_EXTRA)"; \
	for pair in $(SYSTEM_DEPS); do \
	  bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system packages:$$missing"; \
	    policy=/usr/sbin/policy-rc.d; made=""; \
	    if [ ! -e $$policy ]; then printf '#!/bin/sh\nexit 101\n' > $$policy; chmod 755 $$policy; made=1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	    rc=$$?; if [ -n "$$made" ]; then rm -f $$policy; fi; [ $$rc = 0 ] || exit $$rc; \
	  else \
	    echo "missing system packages:$$missing" >&2; \
	    echo "install them with: sudo apt-get install$$missing   (or run make as root)" >&2; \
	    exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
