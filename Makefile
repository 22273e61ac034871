# The two set-up commands in the README: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The pinned CPU wheel (already on the CI machines' disk); a plain `torch`
# requirement would pull a multi-GB CUDA build on a machine without CUDA.
TORCH_CPU ?= torch==2.13.0
# out/demo.mp4 is replaced on each run (writers refuse to overwrite otherwise)
DEMO_ARGS ?= --seconds 10 --overwrite
# Debian packages: ffmpeg/ffprobe (file checks), Xvfb (a real glfw window in
# tests), Mesa EGL (headless OpenGL), GStreamer (the interop reference peer), g++
# (builds the .cu kernels for the host: the kernel emulator tests), linuxptp and
# iproute2 (a ptp4l master in a network namespace: the PTP slave tests).
SYSTEM_PKGS ?= g++ ffmpeg xvfb xauth xdotool libegl1 libgl1-mesa-dri libportaudio2 fontconfig fonts-dejavu-core \
	linuxptp iproute2 \
	gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good

.PHONY: venv sysdeps test test-random test-gpu demo bench bench-full typecheck clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA driver found: keeping the torch build pip resolves"; \
	else \
		$(PIP) install -q "$(TORCH_CPU)"; \
	fi
	$(PIP) install -q -e ".[dev,bench]"
	touch $@

venv: $(VENV)/.installed

# Installs missing Debian packages when root with apt-get; otherwise warns
# (tests that need a missing tool skip and say why).
sysdeps:
	@missing=""; for p in $(SYSTEM_PKGS); do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian packages:$$missing"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
			|| echo "warning: apt-get failed; tests that need$$missing will skip and say why"; \
	else \
		echo "warning: missing Debian packages:$$missing (run as root to install)"; \
	fi

test: sysdeps venv
	$(PY) -m mypy
	$(PY) -m pytest

# The suite in random order (tests shuffled across all modules), once per seed:
# no test may depend on another having run first.
SEEDS ?= 1 2 3
test-random: sysdeps venv
	@for s in $(SEEDS); do echo "random order, seed $$s"; \
		$(PY) -m pytest -q --random-order-bucket=global --random-order-seed=$$s || exit 1; done

# On a CUDA machine: GPU tests must run (and fail loudly), never skip.
test-gpu: sysdeps venv
	$(PIP) install -q -e ".[cuda,dev]"
	STREAMLIB_REQUIRE_GPU=1 $(PY) -m pytest -m gpu

demo: sysdeps venv
	$(PY) -m streamlib run examples/demo.yaml $(DEMO_ARGS)

bench: sysdeps venv
	$(PY) -m benchmarks --quick

bench-full: sysdeps venv
	$(PY) -m benchmarks

typecheck: venv
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
