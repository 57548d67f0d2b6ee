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

.PHONY: install demo test lint bench sweep report clean-runs papers papers-mlp papers-conv

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

# The paper reproductions (configs/papers/README.md), on Fashion-MNIST, each arm at its own learning rate chosen
# on a validation split: `make papers` runs both parts. `make papers-mlp`: four sweeps of MLPs (five seeds per
# point), then the lesion studies of the chosen nets, gradient shattering, and the loss landscapes and paths of
# the degradation and lesion sweeps' nets. `make papers-conv`: He et al.'s Fig. 6 on conv nets (three seeds).
# Two steps run at a time (MLP sweeps with --jobs 1 each: two processes on two cores, none waiting for a core;
# the conv sweep alone with --jobs 2); a step prints a line as it starts and ends, its output goes to
# $(OUT)/papers-logs/STEP.log. Figures, tables and differences go to docs/papers/. Their cost:
# configs/papers/README.md.
PAPER_JOBS ?= 1
CONV_JOBS ?= 2
PAPER_LOGS = $(OUT)/papers-logs
PAPERS := highway degradation identity-mappings lesion
# longest first, so that the last step to end is a short one
MLP_STEPS := sweep-identity-mappings sweep-degradation sweep-highway sweep-lesion landscape lesion-highway \
  lesion-lesion paths shatter
comma := ,

papers: papers-conv papers-mlp

papers-mlp: $(STAMP)
	@mkdir -p $(PAPER_LOGS) docs/papers
	+@$(MAKE) --no-print-directory -j2 $(addprefix paper-,$(MLP_STEPS))
	cp $(OUT)/sweep-highway/plots/depth.png docs/papers/highway.png
	cp $(OUT)/sweep-degradation/plots/depth.png docs/papers/degradation.png
	cp $(OUT)/sweep-identity-mappings/plots/shortcut.png docs/papers/identity-mappings.png
	for s in $(PAPERS); do cp $(OUT)/sweep-$$s/plots/curves.png docs/papers/$$s-curves.png && \
	  cp $(OUT)/sweep-$$s/summary-seeds.csv docs/papers/$$s.csv && \
	  cp $(OUT)/sweep-$$s/differences.csv docs/papers/$$s-differences.csv || exit 1; done
	cp $(OUT)/sweep-highway/plots/lesion.png docs/papers/highway-lesion.png
	cp $(OUT)/sweep-lesion/plots/lesion.png docs/papers/lesion.png
	cp "$$(tail -n 1 $(PAPER_LOGS)/shatter.log)/plots/shatter.png" docs/papers/shatter.png
	cp $(OUT)/sweep-degradation/plots/landscape-grid.png docs/papers/landscape.png
	cp $(OUT)/sweep-degradation/plots/landscape-depth.png docs/papers/landscape-depth.png
	cp $(OUT)/sweep-degradation/landscape-seeds.csv docs/papers/landscape.csv
	cp $(OUT)/sweep-lesion/plots/paths.png docs/papers/paths.png
	cp $(OUT)/sweep-lesion/paths-seeds.csv docs/papers/paths.csv

papers-conv: $(STAMP)
	@mkdir -p $(PAPER_LOGS) docs/papers
	+@$(MAKE) --no-print-directory paper-sweep-conv-degradation PAPER_JOBS=$(CONV_JOBS)
	cp $(OUT)/sweep-conv-degradation/plots/depth.png docs/papers/conv-degradation.png
	cp $(OUT)/sweep-conv-degradation/plots/curves.png docs/papers/conv-degradation-curves.png
	cp $(OUT)/sweep-conv-degradation/summary-seeds.csv docs/papers/conv-degradation.csv
	cp $(OUT)/sweep-conv-degradation/differences.csv docs/papers/conv-degradation-differences.csv

# One step of the reproductions: $(1) with its output in $(PAPER_LOGS)/<step>.log, a line as it starts and as
# it ends (with its time), and the log's last lines where it fails.
step = @name=$(@:paper-%=%); log=$(PAPER_LOGS)/$$name.log; t=$$(date +%s); echo "papers: $$name ... ($$log)"; \
  if { $(1); } > $$log 2>&1; then echo "papers: $$name done in $$(( $$(date +%s) - t )) s"; \
  else tail -n 20 $$log; echo "papers: $$name failed ($$log)"; exit 1; fi

paper-sweep-%:
	$(call step,$(SKIPEXP) sweep configs/papers/$*.yaml --out $(OUT) --jobs $(PAPER_JOBS))
paper-lesion-highway: paper-sweep-highway
	$(call step,$(SKIPEXP) lesion $(OUT)/sweep-highway --where depth=50$(comma)net=highway --drop 6)
paper-lesion-lesion: paper-sweep-lesion
	$(call step,$(SKIPEXP) lesion $(OUT)/sweep-lesion --drop 6)
paper-landscape: paper-sweep-degradation
	$(call step,$(SKIPEXP) landscape $(OUT)/sweep-degradation --points 21 --samples 1024)
paper-paths: paper-sweep-lesion
	$(call step,$(SKIPEXP) paths $(OUT)/sweep-lesion)
paper-shatter:
	$(call step,$(SKIPEXP) shatter configs/papers/shatter.yaml --depths 1$(comma)2$(comma)4$(comma)8$(comma)16$(comma)32$(comma)64 \
	  --seeds 5 --pairs 8 --out $(OUT))
