# skipexp: `make demo` runs the main experiment, `make test` runs the tests.
# Both set up .venv first (it reuses an installed torch, else installs the CPU build torch==2.13.0).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SKIPEXP := $(BIN)/skipexp
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean-runs papers

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

# The paper reproductions (README, "Paper reproductions"): under 20 min on 2 cores; plots go to docs/papers/.
papers: $(STAMP)
	for s in highway degradation identity-mappings; do \
	  $(BIN)/python configs/papers/reproduce.py configs/papers/$$s.yaml --plot docs/papers/$$s.png || exit 1; done
	$(SKIPEXP) lesion "runs/sweep-highway/depth=50,skip.kind=gated"
	cp "runs/sweep-highway/depth=50,skip.kind=gated/plots/lesion.png" docs/papers/highway-lesion.png
	$(BIN)/python configs/papers/reproduce.py configs/papers/lesion.yaml
	$(SKIPEXP) lesion runs/sweep-lesion --drop 6
	cp runs/sweep-lesion/plots/lesion.png docs/papers/lesion.png
	d=$$($(SKIPEXP) shatter configs/papers/shatter.yaml --depths 1,2,4,8,16,32,64 --seeds 3 | tail -n 1) && \
	  cp $$d/plots/shatter.png docs/papers/shatter.png
