# minir1: `make demo` and `make test` work on a fresh machine (they create .venv and install first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# CI installs the CPU wheel first; on your own machine override, e.g. `make demo TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
NB_FLAGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=300 --dist loadfile -p no:cacheprovider \
  --durations=12

.PHONY: venv demo demo-fast test unit nbtest browser lab bench gpu-check notebooks lint clean ship-base

# jupyter/overrides.json: JupyterLab saves widget state with the notebook, so a lesson saved after a
# live session reopens with its figures, not "Error displaying widget: model not found".
$(VENV)/.installed: pyproject.toml jupyter/overrides.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp jupyter/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

venv: $(VENV)/.installed

# The whole miniature: pre-training demo, the R1 pipeline, distillation, the results table (~20 min on 2 cores).
demo: venv
	$(VENV)/bin/minir1 demo

# The same from the shipped base model with short RL stages: under 10 minutes on 2 cores.
demo-fast: venv
	$(VENV)/bin/minir1 demo --fast

test: unit nbtest browser

unit: venv
	$(PY) -m ruff check minir1 tests benchmarks
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadgroup tests

nbtest: venv
	MINIR1_PROFILE=ci OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 $(NB_FLAGS) notebooks

# Every widget lesson in JupyterLab in headless Chromium, live widgets on (tests/browser); skipped,
# and said, where chromium and chromedriver are not installed (Debian: chromium chromium-driver).
browser: venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadgroup -rs --durations=8 --browser tests/browser

# `make lab ARGS="--port 8899 --no-browser"` passes options to JupyterLab. As root (most containers
# and cloud notebooks) JupyterLab refuses to start without --allow-root: it is added, and said.
# The lessons are trusted (`jupyter trust`): their committed outputs are the project's own, and in an
# untrusted notebook JupyterLab shows a saved widget as its text repr instead of drawing it.
lab: venv
	@if [ "$$(id -u)" = 0 ]; then echo "make lab: running as root, so JupyterLab gets --allow-root"; fi
	@$(VENV)/bin/jupyter trust notebooks/*.ipynb >/dev/null
	@echo "make lab: open the URL JupyterLab prints below (with its token); Ctrl-C stops it"
	$(VENV)/bin/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(ARGS)

bench: venv
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/generate.py
	$(PY) benchmarks/speculative.py

# The prepared check on one CUDA GPU (sized for <= 5 min on an H200): the tests marked gpu, the small
# preset's training MFU eager and compiled, rollouts vs transformers' generate, FP8 vs bf16 at 4096^3
# and a short R1-Zero run; writes benchmarks/results/gpu-<date>.json and .md. Its --dry-run (the same
# script at toy sizes on the CPU) runs in `make unit` (tests/test_gpu_check.py).
gpu-check: venv
	$(PY) benchmarks/gpu_check.py

# Re-execute every lesson in place to refresh the committed outputs: the `cpu` profile (what a student sees),
# static figures only (live widgets need a browser).
notebooks: venv
	for nb in notebooks/*.ipynb; do \
	  MINIR1_PROFILE=$${MINIR1_PROFILE:-cpu} MINIR1_WIDGETS=0 $(VENV)/bin/jupyter nbconvert --to notebook --execute \
	    --inplace --ExecutePreprocessor.timeout=7200 "$$nb" || exit 1; \
	done

lint: venv
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Maintainers: after retraining the cpu base model (`minir1 pretrain --profile cpu`), refresh the float16 copy
# in data/base-cpu that CI and the RL lessons start from.
# Likewise the distillation student (`minir1 pretrain --student --profile cpu`) into data/student-cpu, and the
# teacher traces of `minir1 r1 --profile cpu` into data/r1-traces-cpu.jsonl (lesson 11 and CI distil from them).
ship-base: venv
	$(PY) -c "from minir1.train.runs import ship_base; print(ship_base())"
	$(PY) -c "from minir1.train.runs import ship_base; print(ship_base(kind="student"))"
	cp runs/r1-cpu/traces.jsonl data/r1-traces-cpu.jsonl
