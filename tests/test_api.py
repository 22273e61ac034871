"""The public API: every public name is importable from `streamlib` and listed."""

from __future__ import annotations

import inspect

import streamlib


def test_all_lists_every_public_name() -> None:
    public = {n for n in dir(streamlib)
              if not n.startswith("_") and not inspect.ismodule(getattr(streamlib, n))}
    assert public == set(streamlib.__all__)


def test_seed_names_are_importable() -> None:
    for name in ("RingBuffer", "TimedTick", "SoftwareClock", "Actor", "StreamInput",
                 "StreamOutput", "TestPatternActor", "ActorRegistry", "parse_actor_uri",
                 "PortAllocator", "VirtualClock", "Runtime", "VideoFrame", "AudioFrame"):
        assert hasattr(streamlib, name), name


def test_package_is_typed() -> None:
    from pathlib import Path

    assert (Path(streamlib.__file__).parent / "py.typed").is_file()
