# Set-up is part of every target: on a fresh machine `make demo` or `make test` creates .venv and installs
# optodfa with what it needs. torch is pinned to the CPU build 2.13.0 first, because an unpinned torch pulls a
# multi-GB CUDA build; pyproject's range accepts it, so pip installs nothing more.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed
# lightonml and the LightOn driver plug-in (devices/lighton) are installed for the tests, so they run: lightonml's own
# pins do not install on current Python, hence --no-deps and its few real needs by hand (devices/lighton/README.md).
# Neither is a dependency of optodfa.

.PHONY: demo test lint bench fuzz wheel-check clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[dev,dist,tensorboard]"
	$(PY) -m pip install --quiet --no-deps lightonml==1.4.3
	$(PY) -m pip install --quiet attrs requests numexpr "setuptools<81"
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e devices/lighton
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/optodfa demo

test: $(STAMP)
	$(VENV)/bin/ruff check optodfa tests benchmarks experiments
	$(PY) -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# lightonml (the projection benchmark's baseline) is never a dependency: 1.4.3 pins numexpr==2.7.*, which does not
# build on Python >= 3.11, so it goes in without its pins, beside what it really needs (setuptools < 81 for
# pkg_resources).
bench: $(STAMP)
	$(PY) -m pip install --quiet --no-deps lightonml==1.4.3 attrs requests numexpr "setuptools<81"
	$(PY) -m benchmarks.step --threads 1,2
	$(PY) -m benchmarks.projection
	$(PY) -m benchmarks.ode

clean-venv:
	rm -rf $(VENV)

# Hypothesis over every public entry point, full budget (>= 10^4 examples, random seeds, per-example deadline);
# prints the counts by outcome. `make test` runs the same targets as a small derandomised subset.
fuzz: $(STAMP)
	OPTODFA_FUZZ=full $(PY) -m pytest -q -p no:cacheprovider tests/fuzz

# Build the wheel, install it into a fresh virtual environment outside the checkout and run it from there.
wheel-check: $(STAMP)
	.ci/wheel-check
