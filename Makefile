# skipexp: `make demo` runs the main experiment, `make test` runs the tests.
# Both set up .venv first (it reuses an installed torch, else installs the CPU build torch==2.13.0).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SKIPEXP := $(BIN)/skipexp
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: $(STAMP)
	$(SKIPEXP) train configs/skip.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# ratios of skipexp's speed to baselines (a few minutes; not part of test). Lightning rows need
# `$(BIN)/pip install -e ".[bench]"`; without it they say n/a.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean-runs:
	rm -rf runs/*/ runs/*.mk
