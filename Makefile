# Two commands: `make lab` (work through the notebooks) and `make test` (what CI runs).
# Both create .venv and install everything the first time; later runs skip set-up unless requirements.txt changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch that our offline CI machines carry on disk; elsewhere torch comes from the usual indexes.
OFFLINE_CPU_TORCH ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
NBVAL := -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-cell-timeout=300

.PHONY: lab test setup export exercises diagrams check strip bench clean

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root)  # the repository root: notebooks/ and exercises/; containers often run as root

# Tests write only to a temporary folder: checkpoints (never to checkpoints/, which holds a learner's runs), and the
# kernels' IPython history and Jupyter runtime files (never to ~/.ipython or ~/.local/share/jupyter)
test: $(STAMP)
	$(VENV)/bin/ruff format --check --quiet --no-cache . || { echo "run: $(VENV)/bin/ruff format ."; exit 1; }
	$(VENV)/bin/ruff check --quiet --no-cache .
	tmp=$$(mktemp -d) && export IPYTHONDIR=$$tmp/ipython JUPYTER_RUNTIME_DIR=$$tmp/runtime && \
	  $(PY) -m pytest -p no:cacheprovider tests && \
	  TUTORIAL_CONFIG=ci TUTORIAL_CHECKPOINTS=$$tmp/checkpoints $(PY) -m pytest $(NBVAL) notebooks/; \
	  status=$$?; rm -rf $$tmp; exit $$status

setup: $(STAMP)

# torch first, so that pip does not pull a multi-GB CUDA build onto a machine without a GPU
$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "torch already installed: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1 || [ "$$(uname)" = Darwin ]; then \
	  echo "installing torch (CUDA build on Linux with an NVIDIA GPU; the standard build on macOS)"; \
	  $(PY) -m pip install "torch>=2.4"; \
	elif $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/', timeout=5)" 2>/dev/null; then \
	  echo "installing the CPU build of torch from $(TORCH_CPU_INDEX)"; \
	  $(PY) -m pip install "torch>=2.4" --index-url $(TORCH_CPU_INDEX) --extra-index-url https://pypi.org/simple; \
	else \
	  echo "PyTorch's CPU index is unreachable: installing $(OFFLINE_CPU_TORCH) (CPU build from the local wheel cache)"; \
	  $(PY) -m pip install "$(OFFLINE_CPU_TORCH)"; \
	fi
	$(PY) -m pip install -r requirements.txt
	touch $(STAMP)

# Write utils/<module>.py from the notebooks' `#| export` cells (a test fails when they are out of date).
export: $(STAMP)
	$(PY) -m utils.export

# Write exercises/NN_*.ipynb from the solution notebooks (a test fails when they are out of date; a learner's edits are kept).
exercises: $(STAMP)
	$(PY) -m utils.exercises

# Draw notebook 02's diagrams (utils/diagrams.py) into its markdown cells as PNG (a test fails when they are out of date).
# Only this target needs the rasteriser, so it is installed here, not from requirements.txt: learners and CI never need it.
RASTERISER ?= resvg-py==0.5.0
diagrams: $(STAMP)
	$(PY) -c "import resvg_py" 2>/dev/null || $(PY) -m pip install "$(RASTERISER)"
	$(PY) -m utils.diagrams

# The checks as pytest tests against the code in one notebook: make check NOTEBOOK=exercises/02_clean_implementation.ipynb
check: $(STAMP)
	@test -n "$(NOTEBOOK)" || { echo "usage: make check NOTEBOOK=exercises/02_clean_implementation.ipynb"; exit 2; }
	NOTEBOOK="$(abspath $(NOTEBOOK))" $(PY) -m pytest -p no:cacheprovider -v tests/test_notebook_checks.py

# Remove outputs before committing a solution notebook (a test fails on a notebook with outputs). Not exercises/: what
# is there is the learner's; `make exercises` rewrites them without outputs, keeping a copy of an edited one first.
strip: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

# Training-step speed against Hugging Face's GPT-2 and, where the peers folder exists, nanoGPT (see bench/bench_train_step.py);
# 15 rounds, as bench/README.md's figures (2 min 33 s on this project's idle 2-core CPU).
PEER ?= ../shared/peers/nanogpt_model.py
bench: $(STAMP)
	$(PY) bench/bench_train_step.py --rounds 15 $(if $(wildcard $(PEER)),--peer $(PEER))

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
