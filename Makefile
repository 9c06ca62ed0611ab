# Set-up is part of every target: on a fresh machine `make demo` or `make test` creates .venv and installs
# optodfa with what it needs. torch is pinned to the CPU build 2.13.0 first, because an unpinned torch pulls a
# multi-GB CUDA build; pyproject's range accepts it, so pip installs nothing more.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev,dist,tensorboard]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/optodfa demo

test: $(STAMP)
	$(VENV)/bin/ruff check optodfa tests benchmarks experiments
	$(PY) -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m benchmarks.step
	$(PY) -m benchmarks.projection
	$(PY) -m benchmarks.ode

clean-venv:
	rm -rf $(VENV)
