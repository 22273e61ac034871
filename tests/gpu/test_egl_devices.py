"""The offscreen GL context opens on the EGL device of the CUDA GPU interop uses.

A fake EGL device list (Mesa's software device first, then two NVIDIA GPUs in
another order than CUDA's) and a recording ``moderngl.create_context`` check the
choice without NVIDIA's EGL; the real ctypes query runs against this machine's.
"""
from __future__ import annotations

from typing import Any

import moderngl
import pytest
import torch

import streamlib.gpu.egl_devices as egl_devices
from streamlib.gpu.egl_devices import egl_cuda_ordinals, egl_index_for_cuda
from streamlib.gpu.gl import GLContextError, create_offscreen_context, interop_cuda_ordinal


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []

    def create_context(**kw: Any) -> str:
        made.append(kw)
        if kw.get("device_index") == 9:
            raise RuntimeError("eglInitialize failed (0x3001)")
        return f"context {kw.get('device_index', 'default')}"

    monkeypatch.setattr(egl_devices, "egl_cuda_ordinals", lambda: [None, 1, 0])
    monkeypatch.setattr(moderngl, "create_context", create_context)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return made


def test_index_of_each_cuda_ordinal_in_the_egl_list(calls: list[dict[str, Any]]) -> None:
    assert [egl_index_for_cuda(n) for n in (0, 1, 2)] == [2, 1, None]
    assert egl_index_for_cuda(0, lambda: [0]) == 0


def test_context_opens_on_the_egl_device_of_the_cuda_ordinal(calls: list[dict[str, Any]]) -> None:
    assert create_offscreen_context(cuda_device=0) == "context 2"  # type: ignore[comparison-overlap]
    assert calls == [{"standalone": True, "require": 330, "backend": "egl", "device_index": 2}]


def test_no_matching_device_or_no_cuda_uses_the_default_egl_device(
        calls: list[dict[str, Any]]) -> None:
    assert create_offscreen_context(cuda_device=5) == "context default"  # type: ignore[comparison-overlap]
    assert create_offscreen_context() == "context default"  # type: ignore[comparison-overlap]
    assert calls == [{"standalone": True, "require": 330, "backend": "egl"}] * 2


def test_a_failing_matched_device_falls_back_to_the_default_and_is_named(
        calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(egl_devices, "egl_cuda_ordinals", lambda: [None] * 9 + [3])
    assert create_offscreen_context(cuda_device=3) == "context default"  # type: ignore[comparison-overlap]
    assert [c.get("device_index") for c in calls] == [9, None]

    def refuse(**kw: Any) -> None:
        raise RuntimeError(f"no display for {kw.get('device_index', 'default')}")

    monkeypatch.setattr(moderngl, "create_context", refuse)
    with pytest.raises(GLContextError) as err:
        create_offscreen_context(cuda_device=3)
    assert ("(EGL device 9 (CUDA 3): RuntimeError: no display for 9; "
            "EGL: RuntimeError: no display for default; "
            "platform default: skipped (no DISPLAY or WAYLAND_DISPLAY))") in str(err.value)


def test_interop_ordinal_follows_the_cuda_device() -> None:
    assert interop_cuda_ordinal(torch.device("cuda", 3)) == 3
    want = torch.cuda.current_device() if torch.cuda.is_available() else None
    assert interop_cuda_ordinal(torch.device("cpu")) == want
    assert interop_cuda_ordinal(None) == want


def test_real_egl_query_lists_this_machines_devices() -> None:
    # Mesa here: at least one device, none of them CUDA; NVIDIA's EGL reports 0..N-1.
    ordinals = egl_cuda_ordinals()
    assert ordinals, "libEGL with EGL_EXT_device_enumeration expected (Mesa >= 18)"
    if not torch.cuda.is_available():
        assert set(ordinals) == {None}
    else:
        cuda = sorted(o for o in ordinals if o is not None)
        assert cuda == list(range(len(cuda)))
