# spec2vol-bids developer commands. `make demo` and `make test` work on a fresh machine:
# they create .venv, install system packages the tests need (when root), then run.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The local CPU torch wheel folder (pip.conf's find-links), so uv never pulls a CUDA build.
WHEELS := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
FIND_LINKS := $(if $(WHEELS),--find-links "$(WHEELS)",)
TORCH_PIN := torch==2.13.0
EXTRAS := test,napari,docs,bench,e2fnet,realtime
STAMP := $(VENV)/.installed
APT_PKGS := xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 graphviz chromium
XVFB := xvfb-run -a -s "-screen 0 1280x1024x24"
export QT_QPA_PLATFORM ?= xcb
# the tested Qt binding (napari deprecates PyQt5 at the end of 2026); qtpy falls back to another one if absent
export QT_API ?= pyqt6
export NIPYPE_NO_ET ?= 1
export MPLBACKEND ?= Agg
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install system-deps test test-fast demo bench docs lint clean help docker-test

help:
	@echo "make demo    install, then simulate a tiny EEG-fMRI dataset and run the pipeline end to end"
	@echo "make test    install, then run the test suite (headless, CPU only), slowest tests listed"
	@echo "make test-fast  the tests not marked slow or gui (the edit-run loop, under a minute)"
	@echo "make bench   run the benchmarks (results in benchmarks/results/)"
	@echo "make docker-test  build the image and run participant + group in it, compared with a host run"
	@echo "make docs    build the Sphinx documentation (warnings are errors)"
	@echo "make lint    ruff + hadolint"

install: system-deps $(STAMP)

# Debian packages for the headless napari tests (Xvfb, the xcb libraries Qt needs), graphviz (workflow graphs) and
# chromium (the HTML reports are rendered and checked in a headless browser); only when missing and root.
system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: missing Debian packages ($$missing); GUI tests need them (run as root or install them)"; fi; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	@test -x $(BIN)/python || $(PYTHON) -m uv venv -q -p $(PYTHON) $(VENV)
	$(PYTHON) -m uv pip install -q --python $(BIN)/python --compile-bytecode $(FIND_LINKS) \
	  "$(TORCH_PIN)" -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# SPEC2VOL_REQUIRE_TOOLS: the tests of tools `make install` provides (validator, hadolint, entry points) fail
# instead of skipping when the tool is missing (tests/tools.py)
test: install
	SPEC2VOL_REQUIRE_TOOLS=1 $(XVFB) $(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not gui" $(PYTEST_ARGS)

demo: install
	$(BIN)/python -m spec2vol_bids.demo

bench: install
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Build the BIDS-App image and run it for real (.ci/docker-test): starts dockerd when root, makes a Debian 12 base
# image with mmdebstrap when the public one is absent, builds with the host's CPU torch wheel, runs participant +
# group in the container (--network none, non-root, BIDS_DIR read-only) and compares with a run on the host.
# Not part of `make test` (a build takes ~7 min on 2 cores); prints "NOT RUN: <why>" without a Docker engine.
docker-test: install
	PYTHON=$(abspath $(BIN))/python .ci/docker-test

docs: install
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

lint: install
	$(BIN)/ruff check spec2vol_bids napari_spec2vol tests benchmarks examples
	@if [ -f Dockerfile ]; then $(BIN)/hadolint Dockerfile; fi

clean:
	rm -rf $(VENV) docs/_build .pytest_cache build dist *.egg-info
