"""streamlib.gpu.kernels with a fake CuPy importable: the NVRTC probe, the fall-back to
the torch references, the one warning, graph()'s report and the CuPy stream of launches.

No GPU here: ``CudaLooking`` tensors are CPU tensors whose ``is_cuda`` says True, so
the kernels take their CUDA branch; the fake ``cupy`` records what the code asks of it.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types
from typing import Any, Iterator

import pytest
import torch

from streamlib.gpu import kernel_refs as R
from streamlib.gpu import kernels as K
from streamlib.media.blend import composite_reference
from streamlib.errors import UnavailableError

NVRTC_MISSING = ("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open "
                 "shared object file: No such file or directory")
GEN = torch.Generator().manual_seed(17)


class CudaLooking(torch.Tensor):
    """A CPU tensor that says it is on CUDA."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


def cuda_looking(*shape: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=GEN).as_subclass(CudaLooking)


def plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_subclass(torch.Tensor)


class FakeCupy:
    """Builds a ``cupy`` module: RawModule compiles (or raises like NVRTC missing),
    kernels record the CuPy stream current at launch."""

    def __init__(self, nvrtc_ok: bool, from_external: bool) -> None:
        self.modules: list[str] = []        # RawModule codes, in order
        self.functions: list[str] = []      # get_function names
        self.launches: list[tuple[str, Any, int]] = []  # (name, current stream, device)
        self.streams: list[tuple[str, Any]] = []        # how CuPy streams were made
        self.current: list[Any] = [None]
        self.device: list[int] = [-1]
        fake = self

        class Device:
            def __init__(self, index: int) -> None:
                self.index = index

            def __enter__(self) -> None:
                fake.device.append(self.index)

            def __exit__(self, *exc: object) -> None:
                fake.device.pop()

        class Stream:
            def __init__(self, ptr: int, device_id: int) -> None:
                self.ptr, self.device_id = ptr, device_id

            def __enter__(self) -> Stream:
                fake.current.append(self)
                return self

            def __exit__(self, *exc: object) -> None:
                fake.current.pop()

        def external_stream(ptr: int, device_id: int = -1) -> Stream:
            fake.streams.append(("ExternalStream", (ptr, device_id)))
            return Stream(ptr, device_id)

        def stream_from_external(obj: Any) -> Stream:
            version, ptr = obj.__cuda_stream__()
            fake.streams.append(("from_external", obj))
            return Stream(ptr, fake.device[-1])

        if from_external:
            Stream.from_external = staticmethod(stream_from_external)  # type: ignore[attr-defined]

        class Function:
            def __init__(self, name: str) -> None:
                self.name = name

            def __call__(self, grid: Any, block: Any, args: Any) -> None:
                fake.launches.append((self.name, fake.current[-1], fake.device[-1]))

        class RawModule:
            def __init__(self, code: str, options: tuple[str, ...]) -> None:
                assert options == K.NVRTC_OPTIONS
                fake.modules.append(code)

            def get_function(self, name: str) -> Function:
                fake.functions.append(name)
                if not nvrtc_ok:
                    raise RuntimeError(NVRTC_MISSING)
                return Function(name)

        mod = types.ModuleType("cupy")
        mod.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
        mod.__version__ = "14.0.0"  # type: ignore[attr-defined]
        mod.RawModule = RawModule  # type: ignore[attr-defined]
        mod.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
            Device=Device, Stream=Stream, ExternalStream=external_stream,
            runtime=types.SimpleNamespace(runtimeGetVersion=lambda: 12090))
        self.module = mod


class TorchStream:
    """What ``torch.cuda.current_stream`` returns, with the CUDA stream protocol."""

    def __init__(self, ptr: int) -> None:
        self.cuda_stream = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.cuda_stream)


@pytest.fixture
def fake_cupy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh process as far as the kernels know: no probe yet, no caches, CuPy found."""

    def install(nvrtc_ok: bool, from_external: bool = True) -> FakeCupy:
        fake = FakeCupy(nvrtc_ok, from_external)
        monkeypatch.setitem(sys.modules, "cupy", fake.module)
        return fake

    monkeypatch.setattr(K, "_probe_result", None)
    monkeypatch.setattr(K, "_modules", {})
    monkeypatch.setattr(K, "_streams", {})
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: TorchStream(0xBEEF))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    K.cupy_available.cache_clear()
    yield install
    K.cupy_available.cache_clear()


def test_without_nvrtc_the_kernels_fall_back_to_the_references(
        fake_cupy: Any, caplog: pytest.LogCaptureFixture) -> None:
    fake = fake_cupy(nvrtc_ok=False)
    caplog.set_level(logging.WARNING, logger="streamlib")
    layers = [(cuda_looking(10, 15, 4), -3, 2, 0.77), (cuda_looking(20, 9, 3), 30, 5, 1.0)]
    base = cuda_looking(40, 50, 3)
    got = K.composite(64, 48, (12, 200, 7), layers, base)
    want = composite_reference(64, 48, (12, 200, 7), [(plain(d), *r) for d, *r in layers],
                               plain(base))
    assert torch.equal(plain(got), want)
    rgb = cuda_looking(12, 20, 3)
    for nv12 in (True, False):
        fn = K.rgb_to_nv12 if nv12 else K.rgb_to_i420
        yuv = fn(rgb)
        assert torch.equal(plain(yuv), R.rgb_to_yuv420_ref(plain(rgb), nv12))
        assert torch.equal(plain(K.yuv420_to_rgb(yuv, nv12)),
                           R.yuv420_to_rgb_ref(plain(yuv), nv12))
    buf = K.rgb_to_pgroup422_10(rgb)
    assert torch.equal(plain(buf), R.rgb_to_pgroup422_10_ref(plain(rgb)))
    assert torch.equal(plain(K.pgroup422_10_to_rgb(buf, 20, 12)),
                       R.pgroup422_10_to_rgb_ref(plain(buf), 20, 12))

    # One probe for the process: one tiny module, one get_function, no kernel file.
    assert fake.modules == [K._PROBE_SOURCE] and fake.functions == ["streamlib_probe"]
    assert fake.launches == []
    reason = (f"RuntimeError: {NVRTC_MISSING} (CuPy is built for CUDA 12, torch for CUDA 13: "
              "install cupy-cuda12x[ctk] for its own NVRTC, or cupy-cuda13x[ctk])")
    warnings = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert warnings == [("streamlib", logging.WARNING, "streamlib.gpu.kernels: CUDA kernels "
                         f"unavailable, using the torch reference implementations: {reason}")]
    assert K.kernel_backend() == {"backend": "torch", "reason": reason}
    with pytest.raises(UnavailableError) as err:
        K.rgb_to_nv12(rgb, backend="cuda")
    assert str(err.value) == ("rgb_to_nv12: backend='cuda' needs a CUDA tensor and CuPy; the "
                              f"CUDA kernels cannot be compiled: {reason}")
    assert len(fake.functions) == 1 and len(caplog.records) == 1

    from streamlib.runtime.runtime import Runtime

    with Runtime() as rt:
        assert rt.graph()["kernels"] == {"backend": "torch", "reason": reason}


def test_the_compositor_route_falls_back_without_nvrtc(fake_cupy: Any) -> None:
    """``composite_into`` (the CompositorActor's CUDA route) asks the probe, not only
    whether CuPy imports."""
    from streamlib.actors import blending

    fake = fake_cupy(nvrtc_ok=False)
    layers = [(cuda_looking(10, 15, 4), -3, 2, 0.5)]
    out = cuda_looking(48, 64, 3)
    want = composite_reference(64, 48, (0, 0, 0), [(plain(layers[0][0]), -3, 2, 0.5)],
                               plain(out).clone())
    assert not blending.cuda_kernel_available(out)
    blending.composite_into(out, layers)
    assert torch.equal(plain(out), want)
    assert fake.functions == ["streamlib_probe"]


def test_the_probe_mentions_nvrtc_when_the_cuda_majors_match(
        fake_cupy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cupy(nvrtc_ok=False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert not K.cuda_kernels_ready(cuda_looking(2, 2, 3))
    assert K.kernel_backend()["reason"] == (
        f"RuntimeError: {NVRTC_MISSING} (CuPy needs NVRTC: pip install 'streamlib[cuda]', "
        "cupy with [ctk])")


@pytest.mark.parametrize("from_external", [True, False], ids=["cupy14", "cupy13"])
def test_launches_run_on_the_torch_current_stream(fake_cupy: Any,
                                                  caplog: pytest.LogCaptureFixture,
                                                  from_external: bool) -> None:
    fake = fake_cupy(nvrtc_ok=True, from_external=from_external)
    caplog.set_level(logging.WARNING, logger="streamlib")
    assert K.kernel_backend() == {"backend": "unprobed",
                                  "reason": "no kernel has run on a CUDA tensor yet"}
    rgb = cuda_looking(12, 20, 3)
    for _ in range(3):
        K.rgb_to_nv12(rgb)
    assert fake.modules == [K._PROBE_SOURCE, K.kernel_source("color.cu")]
    assert fake.functions == ["streamlib_probe", "rgb_to_yuv420"]
    assert len(fake.launches) == 3
    for name, stream, device in fake.launches:
        assert (name, stream.ptr, stream.device_id, device) == ("rgb_to_yuv420", 0xBEEF, 0, 0)
    assert len({id(s) for _, s, _ in fake.launches}) == 1  # one cached CuPy view
    assert len(fake.streams) == 1
    how, arg = fake.streams[0]
    if from_external:  # CuPy >= 14: the CUDA stream protocol of torch's stream object
        assert how == "from_external" and arg.cuda_stream == 0xBEEF
    else:
        assert (how, arg) == ("ExternalStream", (0xBEEF, 0))
    assert caplog.records == []
    assert K.kernel_backend() == {
        "backend": "cuda", "reason": "CuPy 14.0.0 compiled a probe kernel (NVRTC)"}

