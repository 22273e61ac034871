# The two set-up commands in the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The pinned CPU wheel (already on the CI machines' disk); a plain `torch`
# requirement would pull a multi-GB CUDA build on a machine without CUDA.
TORCH_CPU ?= torch==2.13.0
DEMO_ARGS ?= --seconds 5

.PHONY: venv test demo bench typecheck clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA driver found: keeping the torch build pip resolves"; \
	else \
		$(PIP) install -q "$(TORCH_CPU)"; \
	fi
	$(PIP) install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest

demo: venv
	$(PY) -m streamlib demo $(DEMO_ARGS)

bench: venv
	$(PY) -m benchmarks --quick

typecheck: venv
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
