# skipexp: `make demo` compares plain and skip, `make test` runs the tests,
# `make -j2 sweep SWEEP=configs/sweeps/depth.yaml` runs a sweep, two groups of points at a time; `make lint` runs ruff.
# Every target sets up .venv first (it reuses an installed torch, else installs the CPU build torch==2.13.0).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SKIPEXP := $(BIN)/skipexp
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
OUT ?= runs

.PHONY: install demo test lint bench sweep report clean-runs papers

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: $(STAMP)
	$(SKIPEXP) compare configs/plain.yaml configs/skip.yaml --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check skipexp tests benchmarks configs

# One make target per group of points that train together (its points' summary.json), from `skipexp sweep
# --list --format make`, handed to a sub-make on stdin, so `make -j N` runs N groups at once and a group
# already completed is not run again. The last step writes the sweep's summary.csv and plots.
# `make -n sweep` shows every group's command; it writes no makefile (the listing must run under -n, `+`).
JOBS = $(or $(patsubst -j%,%,$(filter -j%,$(MAKEFLAGS))),1)

sweep: $(STAMP)
	$(if $(SWEEP),,$(error usage: make [-j N] sweep SWEEP=configs/sweeps/depth.yaml))
	+@mk="$$($(SKIPEXP) sweep $(SWEEP) --out $(OUT) --list --format make --jobs $(JOBS))" && \
	  printf '%s\n' "$$mk" | $(MAKE) --no-print-directory -f - SKIPEXP=$(SKIPEXP) all

# `make report DIR=runs/sweep-depth`; without DIR, the latest comparison.
report: $(STAMP)
	$(SKIPEXP) report $(or $(DIR),$(lastword $(sort $(wildcard $(OUT)/compare-*))))


# ratios of skipexp's speed to baselines (a few minutes; not part of test). Lightning rows need
# `$(BIN)/pip install -e ".[bench]"`; without it they say n/a.
bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean-runs:
	rm -rf $(OUT)/*/ $(OUT)/*.mk

# The paper reproductions (configs/papers/README.md): four sweeps of five seeds per point on Fashion-MNIST, each
# arm at its own learning rate chosen on a validation split, then the lesion studies (of the chosen points),
# gradient shattering, and the loss landscapes and paths of the degradation and lesion sweeps' nets.
# Figures, tables and differences go to docs/papers/. Its cost: configs/papers/README.md.
PAPERS := highway degradation identity-mappings lesion
PAPER_JOBS ?= 2

papers: $(STAMP)
	for s in $(PAPERS); do $(SKIPEXP) sweep configs/papers/$$s.yaml --out $(OUT) --jobs $(PAPER_JOBS) || exit 1; done
	$(SKIPEXP) lesion $(OUT)/sweep-highway --where depth=50,net=highway --drop 6 > /dev/null
	$(SKIPEXP) lesion $(OUT)/sweep-lesion --drop 6 > /dev/null
	mkdir -p docs/papers
	cp $(OUT)/sweep-highway/plots/depth.png docs/papers/highway.png
	cp $(OUT)/sweep-degradation/plots/depth.png docs/papers/degradation.png
	cp $(OUT)/sweep-identity-mappings/plots/shortcut.png docs/papers/identity-mappings.png
	for s in $(PAPERS); do cp $(OUT)/sweep-$$s/plots/curves.png docs/papers/$$s-curves.png && \
	  cp $(OUT)/sweep-$$s/summary-seeds.csv docs/papers/$$s.csv && \
	  cp $(OUT)/sweep-$$s/differences.csv docs/papers/$$s-differences.csv || exit 1; done
	cp $(OUT)/sweep-highway/plots/lesion.png docs/papers/highway-lesion.png
	cp $(OUT)/sweep-lesion/plots/lesion.png docs/papers/lesion.png
	d=$$($(SKIPEXP) shatter configs/papers/shatter.yaml --depths 1,2,4,8,16,32,64 --seeds 5 --pairs 8 --out $(OUT) | tail -n 1) && \
	  cp $$d/plots/shatter.png docs/papers/shatter.png
	$(SKIPEXP) landscape $(OUT)/sweep-degradation --points 21 --samples 1024 > /dev/null
	cp $(OUT)/sweep-degradation/plots/landscape-grid.png docs/papers/landscape.png
	cp $(OUT)/sweep-degradation/plots/landscape-depth.png docs/papers/landscape-depth.png
	cp $(OUT)/sweep-degradation/landscape-seeds.csv docs/papers/landscape.csv
	$(SKIPEXP) paths $(OUT)/sweep-lesion > /dev/null
	cp $(OUT)/sweep-lesion/plots/paths.png docs/papers/paths.png
	cp $(OUT)/sweep-lesion/paths-seeds.csv docs/papers/paths.csv
