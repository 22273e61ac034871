"""The public face: a small sorted `__all__`, every name resolving lazily from its package."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import streamlib

# What the seed plan's code uses: each must be importable from the face.
SEED_NAMES = ("Actor", "ActorRegistry", "AsyncioDispatcher", "AudioFrame", "ConfigError",
              "CompositorActor", "DedicatedThreadDispatcher", "GPUDispatcher", "PortAllocator",
              "ProcessPoolDispatcher", "RingBuffer", "Runtime", "SoftwareClock", "StreamInput",
              "StreamOutput", "StreamlibError", "TestPatternActor", "ThreadPoolDispatcher",
              "TimedTick", "VideoFrame", "VirtualClock", "connect", "get_actor",
              "parse_actor_uri", "register_actor", "run")


def test_all_is_sorted_and_small() -> None:
    assert streamlib.__all__ == sorted(streamlib.__all__)
    assert len(set(streamlib.__all__)) == len(streamlib.__all__)
    assert 30 <= len(streamlib.__all__) <= 45


def test_every_name_resolves_to_its_package_object() -> None:
    for name in streamlib.__all__:
        value = getattr(streamlib, name)
        home = importlib.import_module(value.__module__)
        assert getattr(home, name) is value, name
        assert value.__module__.startswith("streamlib."), name


def test_dir_lists_every_public_name() -> None:
    listed = dir(streamlib)
    assert listed == sorted(listed)
    assert set(streamlib.__all__) <= set(listed)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError) as caught:
        streamlib.MetricsServer  # type: ignore[attr-defined]  # lives in streamlib.observe
    assert str(caught.value) == "module 'streamlib' has no attribute 'MetricsServer'"


def test_seed_names_are_importable() -> None:
    for name in SEED_NAMES:
        assert name in streamlib.__all__, name


def test_import_streamlib_loads_no_actor_module() -> None:
    # The face resolves on first access: a bare import defines no actor and no runtime.
    code = "import sys, streamlib; print(sorted(m for m in sys.modules if m.startswith('streamlib.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_package_is_typed() -> None:
    assert (Path(streamlib.__file__).parent / "py.typed").is_file()
