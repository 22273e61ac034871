"""CUDA-GL interop: the decision (with faked probes), the host fallback that runs here
and says why in ``runtime.graph()``, the interop sequence against a fake CUDA runtime
on a real (llvmpipe) GL context, and (marked) the real round trip on a GPU."""

from __future__ import annotations

import contextlib
import ctypes
import enum
import json
import threading
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch

from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick, VirtualClock
from streamlib.gpu import gl_interop as gi
from streamlib.actors.display import DisplayActor
from streamlib.actors.shader import ShaderActor
from streamlib.core.frames import VideoFrame
from streamlib.gpu.gl import create_offscreen_context, read_framebuffer

GEN = torch.Generator().manual_seed(11)


def rand_image(h: int, w: int, c: int) -> torch.Tensor:
    return torch.randint(0, 256, (h, w, c), dtype=torch.uint8, generator=GEN)


class Frames(Actor):
    def __init__(self, images: list[torch.Tensor], fmt: str = "rgb24", **kw: Any) -> None:
        super().__init__(clock=VirtualClock(30, max_ticks=len(images)), **kw)
        self.images, self.fmt = images, fmt
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(VideoFrame(self.images[tick.frame_number],
                                               timestamp_ns=tick.timestamp_ns,
                                               frame_number=tick.frame_number, format=self.fmt))


class Sink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video", slots=32)
        self.got: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        self.got.extend(self.inputs["video"].read_all_new())


@pytest.fixture
def ctx() -> Iterator[Any]:
    context = create_offscreen_context()
    yield context
    context.release()


# -- a fake cuda.bindings.runtime over host memory and the real GL context --------------------
class FakeResource:
    def __init__(self, glo: int, kind: str, flags: int, target: int | None = None) -> None:
        self.glo, self.kind, self.flags, self.target = glo, kind, flags, target
        self.mapped = False
        self.memory: np.ndarray[Any, Any] | None = None


class FakeRuntime:
    """Stands in for ``cuda.bindings.runtime``: returns (error, ...) tuples like it.

    A mapped PBO is host memory; unmapping writes it into the GL buffer (found with
    ``buffer_of(glo)``), which is what a real unmap makes visible to GL. A mapped
    texture array is read from the GL texture (``texture_of(glo)``).
    """

    def __init__(self, buffer_of: Callable[[int], Any] | None = None,
                 texture_of: Callable[[int], Any] | None = None, fail: str = "",
                 gl_devices: tuple[int, ...] = (0,)) -> None:
        self.buffer_of, self.texture_of, self.fail = buffer_of, texture_of, fail
        self.gl_devices = gl_devices
        self.calls: list[str] = []
        self.streams: list[tuple[str, int]] = []  # (call, stream handle) of stream-ordered calls
        self.live: list[FakeResource] = []
        self.lock = threading.Lock()

    class cudaMemcpyKind(enum.IntEnum):  # noqa: N801 - the runtime's names
        cudaMemcpyDeviceToDevice = 3

    class cudaGLDeviceList(enum.IntEnum):  # noqa: N801
        cudaGLDeviceListAll = 1

    def _log(self, name: str) -> int:
        with self.lock:
            self.calls.append(name)
        return 101 if name == self.fail else 0  # 101: cudaErrorInvalidDevice

    def cudaGetErrorString(self, err: int) -> tuple[int, bytes]:
        return 0, b"invalid device ordinal"

    def cudaGLGetDevices(self, count: int, which: Any) -> tuple[int, int, list[int]]:
        # the enum member itself: cuda-bindings 12.8.0-12.9.5 and 13.0.0-13.1.1 reject ints
        assert which is self.cudaGLDeviceList.cudaGLDeviceListAll, which
        return self._log("cudaGLGetDevices"), len(self.gl_devices), list(self.gl_devices)

    def cudaGraphicsGLRegisterBuffer(self, glo: int, flags: int) -> tuple[int, Any]:
        err = self._log("cudaGraphicsGLRegisterBuffer")
        res = FakeResource(glo, "buffer", flags)
        if not err:
            self.live.append(res)
        return err, None if err else res

    def cudaGraphicsGLRegisterImage(self, glo: int, target: int, flags: int) -> tuple[int, Any]:
        err = self._log("cudaGraphicsGLRegisterImage")
        res = FakeResource(glo, "image", flags, target)
        if not err:
            self.live.append(res)
        return err, None if err else res

    def cudaGraphicsUnregisterResource(self, res: FakeResource) -> tuple[int]:
        self.live.remove(res)
        return (self._log("cudaGraphicsUnregisterResource"),)

    def cudaGraphicsMapResources(self, n: int, res: FakeResource, stream: int) -> tuple[int]:
        assert n == 1 and not res.mapped
        self.streams.append(("map", stream))
        res.mapped = True
        if res.kind == "buffer":
            assert self.buffer_of is not None
            res.memory = np.zeros(self.buffer_of(res.glo).size, np.uint8)
        return (self._log("cudaGraphicsMapResources"),)

    def cudaGraphicsUnmapResources(self, n: int, res: FakeResource, stream: int) -> tuple[int]:
        assert res.mapped
        self.streams.append(("unmap", stream))
        res.mapped = False
        if res.kind == "buffer" and res.memory is not None:
            assert self.buffer_of is not None
            self.buffer_of(res.glo).write(res.memory.tobytes())
        return (self._log("cudaGraphicsUnmapResources"),)

    def cudaGraphicsResourceGetMappedPointer(self, res: FakeResource) -> tuple[int, int, int]:
        assert res.mapped and res.memory is not None
        err = self._log("cudaGraphicsResourceGetMappedPointer")
        return err, res.memory.ctypes.data, res.memory.size

    def cudaGraphicsSubResourceGetMappedArray(self, res: FakeResource, index: int,
                                              level: int) -> tuple[int, Any]:
        assert res.mapped and (index, level) == (0, 0)
        return self._log("cudaGraphicsSubResourceGetMappedArray"), res

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int, stream: int) -> tuple[int]:
        assert kind is self.cudaMemcpyKind.cudaMemcpyDeviceToDevice, kind  # a member, not 3
        self.streams.append(("copy", stream))
        err = self._log("cudaMemcpyAsync")
        if not err:
            ctypes.memmove(dst, src, count)
        return (err,)

    def cudaMemcpy2DFromArrayAsync(self, dst: int, dpitch: int, array: FakeResource, w_off: int,
                                   h_off: int, width: int, height: int, kind: int,
                                   stream: int) -> tuple[int]:
        assert kind is self.cudaMemcpyKind.cudaMemcpyDeviceToDevice, kind
        assert (w_off, h_off) == (0, 0) and dpitch == width
        self.streams.append(("copy2d", stream))
        assert self.texture_of is not None
        raw = self.texture_of(array.glo).read(alignment=1)  # GL order: bottom row first
        assert len(raw) == width * height
        ctypes.memmove(dst, raw, len(raw))
        return (self._log("cudaMemcpy2DFromArrayAsync"),)


def fake_probes(monkeypatch: pytest.MonkeyPatch, *, vendor: str = "NVIDIA Corporation",
                cuda: bool = True, runtime: Any = None, version: str = "13.0.0") -> FakeRuntime:
    rt = runtime or FakeRuntime()
    monkeypatch.setattr(gi, "_torch_cuda_available", lambda: cuda)
    monkeypatch.setattr(gi, "_gl_vendor", lambda ctx: vendor)
    monkeypatch.setattr(gi, "_load_runtime", lambda: rt)
    monkeypatch.setattr(gi, "_bindings_version", lambda: version)
    monkeypatch.delenv("STREAMLIB_GL_INTEROP", raising=False)
    return rt


# -- the decision --------------------------------------------------------------------------
def test_this_machine_takes_the_host_path_and_says_why(ctx: Any) -> None:
    if gi.interop_available(ctx)[0]:
        pytest.skip("CUDA-GL interop works on this machine")
    ok, reason = gi.interop_available(ctx)
    assert not ok
    if not torch.cuda.is_available():
        assert "no CUDA device" in reason
    if "nvidia" not in ctx.info["GL_VENDOR"].lower():
        assert f"GL vendor is {ctx.info['GL_VENDOR']!r}" in reason and "not NVIDIA" in reason
    up = gi.create_uploader(ctx)
    assert isinstance(up, gi.HostUploader) and up.path == "host" and up.reason == reason


def test_decision_with_every_probe_passing_chooses_interop(
        ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probes(monkeypatch)
    ok, reason = gi.interop_available(ctx, "cuda:0")
    assert ok and "NVIDIA Corporation" in reason and "cuda:0" in reason


@pytest.mark.parametrize("setup, device, expected", [
    ({"cuda": False}, "cuda:0", "no CUDA device"),
    ({"vendor": "Mesa"}, "cuda:0", "GL vendor is 'Mesa'"),
    ({"cuda": False, "vendor": "Mesa"}, "cuda:0", "no CUDA device (torch.cuda.is_available() is "
                                                  "False); GL vendor is 'Mesa'"),
    ({"version": "12.9.3"}, "cuda:0", "cuda-bindings 12.9.3 has a null-handle bug"),
    ({"runtime": FakeRuntime(gl_devices=(1,))}, "cuda:0", "runs on CUDA device(s) [1], frames on cuda:0"),
    ({"runtime": FakeRuntime(fail="cudaGLGetDevices")}, "cuda:0", "cudaGLGetDevices failed"),
    ({}, "cpu", "frames are on cpu"),
])
def test_decision_names_what_is_missing(ctx: Any, monkeypatch: pytest.MonkeyPatch,
                                        setup: dict[str, Any], device: str, expected: str) -> None:
    fake_probes(monkeypatch, **setup)
    ok, reason = gi.interop_available(ctx, device)
    assert not ok and expected in reason, reason


def test_decision_without_cuda_bindings_and_the_env_switch(
        ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_probes(monkeypatch)

    def missing() -> Any:
        raise ImportError("No module named 'cuda'")

    monkeypatch.setattr(gi, "_load_runtime", missing)
    ok, reason = gi.interop_available(ctx, "cuda:0")
    assert not ok and "cuda-bindings not importable" in reason and "streamlib[cuda]" in reason
    fake_probes(monkeypatch)
    monkeypatch.setenv("STREAMLIB_GL_INTEROP", "0")
    assert gi.interop_available(ctx, "cuda:0") == (False, "disabled by STREAMLIB_GL_INTEROP=0")


# -- the interop sequence on real GL with a fake CUDA --------------------------------------
def test_uploader_registers_once_maps_per_frame_and_unregisters(ctx: Any) -> None:
    rt = FakeRuntime()
    up = gi.CudaGLUploader(ctx, "cpu", "fake", runtime=rt)  # "cpu": the fake's device memory
    rt.buffer_of = lambda glo: up._pbo
    tex = ctx.texture((7, 5), 3, alignment=1)
    for _ in range(3):
        img = rand_image(5, 7, 3)
        assert up.upload(tex, img) == "cuda-gl-interop"
        got = np.frombuffer(tex.read(alignment=1), np.uint8).reshape(5, 7, 3)
        assert np.array_equal(got, img.numpy())
    img = rand_image(5, 7, 3)
    assert up.upload(tex, img, flip=True) == "cuda-gl-interop"  # GL row order
    got = np.frombuffer(tex.read(alignment=1), np.uint8).reshape(5, 7, 3)
    assert np.array_equal(got, img.flip(0).numpy())
    assert up.registrations == 1 and rt.calls.count("cudaGraphicsGLRegisterBuffer") == 1
    assert rt.calls.count("cudaGraphicsMapResources") == 4 == rt.calls.count("cudaGraphicsUnmapResources")
    assert rt.live[0].flags == 2  # write-discard
    tex4 = ctx.texture((3, 2), 4, alignment=1)
    up.upload(tex4, rand_image(2, 3, 4))  # a new size: the one re-registration
    assert up.registrations == 2 and len(rt.live) == 1
    up.close()
    up.close()  # idempotent
    assert rt.live == [] and up._pbo is None
    tex.release()
    tex4.release()


def test_uploader_failure_raises_naming_the_call_and_still_unmaps(ctx: Any) -> None:
    rt = FakeRuntime(fail="cudaMemcpyAsync")
    up = gi.CudaGLUploader(ctx, "cpu", runtime=rt)
    rt.buffer_of = lambda glo: up._pbo
    tex = ctx.texture((4, 4), 3, alignment=1)
    with pytest.raises(gi.InteropError, match=r"cudaMemcpyAsync failed \(101: invalid device"):
        up.upload(tex, rand_image(4, 4, 3))
    assert rt.calls[-1] == "cudaGraphicsUnmapResources"
    up.close()
    tex.release()


def test_reader_copies_the_texture_top_down_into_a_fresh_tensor(ctx: Any) -> None:
    target = ctx.texture((6, 4), 4)
    fbo = ctx.framebuffer(color_attachments=[target])
    img = rand_image(4, 6, 4)
    target.write(img.flip(0).numpy().tobytes(), alignment=1)  # GL rows: bottom first
    rt = FakeRuntime(texture_of=lambda glo: target)
    reader = gi.CudaGLReader(target, "cpu", "fake", runtime=rt)
    assert rt.live[0].target == gi.GL_TEXTURE_2D and rt.live[0].flags == 1  # read-only
    first = reader.read(fbo, 4)
    assert torch.equal(first, img) and torch.equal(first, read_framebuffer(fbo, 4))
    second = reader.read(fbo, 3)
    assert torch.equal(second, img[..., :3]) and second.is_contiguous()
    assert first.data_ptr() != second.data_ptr()  # fresh every time: safe to publish
    reader.close()
    reader.close()
    assert rt.live == []
    with pytest.raises(ValueError, match="RGBA8"):
        gi.CudaGLReader(ctx.texture((2, 2), 3), "cpu", runtime=rt)
    fbo.release()
    target.release()


def test_reader_flips_and_drops_components_in_one_copy(
        ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    target = ctx.texture((6, 4), 4)
    fbo = ctx.framebuffer(color_attachments=[target])
    img = rand_image(4, 6, 4)
    target.write(img.flip(0).numpy().tobytes(), alignment=1)
    rt = FakeRuntime(texture_of=lambda glo: target)
    reader = gi.CudaGLReader(target, "cpu", "fake", runtime=rt)
    copies: list[str] = []
    for name in ("flip", "index_select"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _n=name, _r=real, **k: copies.append(_n)
                            or _r(*a, **k))
    real_contig = torch.Tensor.contiguous
    monkeypatch.setattr(torch.Tensor, "contiguous",
                        lambda self, *a, **k: copies.append("contiguous") or real_contig(self))
    out = reader.read(fbo, 3)
    assert copies == ["index_select"] and torch.equal(out, img[..., :3]) and out.is_contiguous()
    reader.close()
    fbo.release()
    target.release()


def test_interop_calls_run_on_the_callers_pool_stream(
        ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # An actor's GPUDispatcher stream (not the legacy default stream, handle 0) must
    # order the map, the copy and the unmap after the frame's producer.
    pool = 0x7F3A5C00
    monkeypatch.setattr(gi, "_stream_handle", lambda dev: pool)
    target = ctx.texture((6, 4), 4)
    fbo = ctx.framebuffer(color_attachments=[target])
    target.write(rand_image(4, 6, 4).numpy().tobytes(), alignment=1)
    rt = FakeRuntime(texture_of=lambda glo: target)
    up = gi.CudaGLUploader(ctx, "cpu", runtime=rt)
    rt.buffer_of = lambda glo: up._pbo
    tex = ctx.texture((7, 5), 3, alignment=1)
    frame = rand_image(5, 7, 3)
    assert up.upload(tex, frame) == "cuda-gl-interop"
    reader = gi.CudaGLReader(target, "cpu", runtime=rt)
    reader.read(fbo, 3)
    assert rt.streams == [("map", pool), ("copy", pool), ("unmap", pool),
                          ("map", pool), ("copy2d", pool), ("unmap", pool)]
    up.close()
    reader.close()
    for obj in (tex, fbo, target):
        obj.release()


# -- the same sequence, type-checked by the real cuda-bindings -------------------------------
class TypeCheckedRuntime(FakeRuntime):
    """A FakeRuntime whose every CUDA call is first made on the real
    ``cuda.bindings.runtime`` with the same argument types (fake handles become null
    real ones). Without a driver each real call returns an error code, but only after
    cuda-bindings accepted the arguments' number and types: what the fake cannot check.
    """

    def __init__(self, real: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.real = real
        self.checked: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        if name in ("cudaMemcpyKind", "cudaGLDeviceList"):  # the real enums, for both calls
            return getattr(super().__getattribute__("real"), name)
        attr = super().__getattribute__(name)
        if not name.startswith("cuda") or not callable(attr):
            return attr
        real, checked = self.real, self.checked

        def call(*args: Any) -> Any:
            handles = [(real.cudaArray_t() if name.startswith("cudaMemcpy2D")
                        else real.cudaGraphicsResource_t()) if isinstance(a, FakeResource) else a
                       for a in args]
            result = getattr(real, name)(*handles)  # TypeError: cuda-bindings rejects our call
            assert isinstance(result, tuple) and isinstance(result[0], real.cudaError_t), result
            checked.add(name)
            return attr(*args)

        return call


def test_every_interop_call_is_accepted_by_the_real_cuda_bindings(
        ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = pytest.importorskip("cuda.bindings.runtime")
    if torch.cuda.is_available():
        pytest.skip("with a driver the real calls would act on null handles: run the gpu tests")
    target = ctx.texture((6, 4), 4)
    fbo = ctx.framebuffer(color_attachments=[target])
    img = rand_image(4, 6, 4)
    target.write(img.flip(0).numpy().tobytes(), alignment=1)
    rt = TypeCheckedRuntime(real, texture_of=lambda glo: target)
    fake_probes(monkeypatch, runtime=rt)
    assert gi.interop_available(ctx, "cuda:0")[0]
    up = gi.CudaGLUploader(ctx, "cpu", runtime=rt)
    rt.buffer_of = lambda glo: up._pbo
    tex = ctx.texture((7, 5), 3, alignment=1)
    frame = rand_image(5, 7, 3)
    assert up.upload(tex, frame) == "cuda-gl-interop"
    assert np.array_equal(np.frombuffer(tex.read(alignment=1), np.uint8).reshape(5, 7, 3),
                          frame.numpy())
    up.close()
    reader = gi.CudaGLReader(target, "cpu", runtime=rt)
    assert torch.equal(reader.read(fbo, 3), img[..., :3])
    reader.close()
    rt.fail = "cudaGraphicsGLRegisterBuffer"  # the error path formats CUDA's message
    with pytest.raises(gi.InteropError, match="cudaGraphicsGLRegisterBuffer failed"):
        gi.CudaGLUploader(ctx, "cpu", runtime=rt).upload(tex, frame)
    assert rt.checked == {
        "cudaGLGetDevices", "cudaGraphicsGLRegisterBuffer", "cudaGraphicsGLRegisterImage",
        "cudaGraphicsMapResources", "cudaGraphicsResourceGetMappedPointer", "cudaMemcpyAsync",
        "cudaGraphicsUnmapResources", "cudaGraphicsSubResourceGetMappedArray",
        "cudaMemcpy2DFromArrayAsync", "cudaGraphicsUnregisterResource", "cudaGetErrorString"}
    for obj in (tex, fbo, target):
        obj.release()


# -- actors: the path they took, in runtime.graph() ------------------------------------------
def run_display(images: list[torch.Tensor], w: int, h: int) -> tuple[dict[str, Any], DisplayActor,
                                                                      torch.Tensor]:
    with Runtime() as rt:
        src = Frames(images)
        display = DisplayActor(width=w, height=h, headless=True, actor_id="screen")
        src >> display
        assert rt.run(30)
        assert display.error is None, display.error
        shown = display.read_framebuffer()
        graph = rt.graph()
    json.dumps(graph)
    node = next(a for a in graph["actors"] if a["id"] == "screen")
    return node["display"], display, shown


def test_display_reports_the_host_upload_and_why_in_the_graph() -> None:
    img = rand_image(6, 8, 3)
    info, _, shown = run_display([img], 8, 6)
    assert torch.equal(shown, img)
    if info["upload"] == "host":
        assert info["upload_reason"]
        if not torch.cuda.is_available():
            assert "no CUDA device" in info["upload_reason"]


def test_display_takes_the_interop_path_when_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = FakeRuntime()
    holder: dict[str, DisplayActor] = {}
    monkeypatch.setattr(gi, "interop_available", lambda ctx, device=None: (True, "fake interop"))
    monkeypatch.setattr(gi, "_default_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(gi, "_load_runtime", lambda: rt)
    rt.buffer_of = lambda glo: holder["d"]._uploader._pbo  # type: ignore[union-attr]
    monkeypatch.setattr(DisplayActor, "setup", _remember(DisplayActor.setup, holder))
    images = [rand_image(6, 8, 3) for _ in range(3)]
    info, display, shown = run_display(images, 8, 6)
    assert info["upload"] == "cuda-gl-interop" and info["upload_reason"] == "fake interop"
    assert torch.equal(shown, images[-1])
    assert rt.calls.count("cudaGraphicsGLRegisterBuffer") == 1
    assert rt.calls.count("cudaMemcpyAsync") == 3 and rt.live == []  # unregistered at teardown


def test_display_falls_back_to_host_when_registration_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = FakeRuntime(fail="cudaGraphicsGLRegisterBuffer")
    monkeypatch.setattr(gi, "interop_available", lambda ctx, device=None: (True, "fake interop"))
    monkeypatch.setattr(gi, "_default_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(gi, "_load_runtime", lambda: rt)
    images = [rand_image(6, 8, 3) for _ in range(2)]
    info, _, shown = run_display(images, 8, 6)
    assert torch.equal(shown, images[-1])
    assert info["upload"] == "host"
    assert info["upload_reason"].startswith("interop failed: cudaGraphicsGLRegisterBuffer failed")
    assert rt.calls.count("cudaGraphicsGLRegisterBuffer") == 1  # never retried per frame


def _remember(setup: Any, holder: dict[str, Any]) -> Any:
    async def wrapped(self: DisplayActor) -> None:
        holder["d"] = self
        await setup(self)
    return wrapped


PASS_THROUGH = "uniform sampler2D video;\nvoid main() { fragColor = texture(video, uv); }"


def run_shader(images: list[torch.Tensor], **sink_kw: Any) -> tuple[dict[str, Any], list[VideoFrame]]:
    h, w = int(images[0].shape[0]), int(images[0].shape[1])
    with Runtime() as rt:
        src = Frames(images, "rgba")
        shader = ShaderActor(PASS_THROUGH, w, h, inputs=["video"], actor_id="fx")
        sink = Sink(**sink_kw)
        src >> shader >> sink
        assert rt.run(30)
        assert shader.error is None, shader.error
        graph = rt.graph()
    json.dumps(graph)
    return next(a for a in graph["actors"] if a["id"] == "fx")["shader"], sink.got


def test_shader_reports_host_paths_and_why() -> None:
    images = [rand_image(5, 9, 4) for _ in range(2)]
    info, got = run_shader(images)
    assert [torch.equal(f.data, i) for f, i in zip(got, images)] == [True, True]
    assert info["readback"] == "host" and info["readback_reason"]
    assert info["upload"] == "host" and info["upload_reason"]
    if not torch.cuda.is_available():
        assert "no CUDA device" in info["upload_reason"]
        assert "no CUDA device" in info["readback_reason"]


def test_shader_inputs_take_the_interop_path_when_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = FakeRuntime()
    uploaders: list[gi.CudaGLUploader] = []
    real_init = gi.CudaGLUploader.__init__

    def init(self: gi.CudaGLUploader, *a: Any, **kw: Any) -> None:
        real_init(self, *a, **kw)
        uploaders.append(self)

    monkeypatch.setattr(gi.CudaGLUploader, "__init__", init)
    monkeypatch.setattr(gi, "interop_available", lambda ctx, device=None: (True, "fake interop"))
    monkeypatch.setattr(gi, "_default_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(gi, "_load_runtime", lambda: rt)
    rt.buffer_of = lambda glo: uploaders[0]._pbo
    images = [rand_image(5, 9, 4) for _ in range(3)]
    info, got = run_shader(images)
    assert info["upload"] == "cuda-gl-interop" and info["upload_reason"] == "fake interop"
    assert [torch.equal(f.data, i) for f, i in zip(got, images)] == [True, True, True]
    assert rt.calls.count("cudaGraphicsGLRegisterBuffer") == 1 and rt.live == []


def _fake_cuda_interop(monkeypatch: pytest.MonkeyPatch) -> FakeRuntime:
    """Interop "chosen" for a pretend cuda:0 on this CUDA-less machine: CPU frames then
    take the host path frame by frame, but the actor's wanted input device is visible."""
    rt = FakeRuntime()
    monkeypatch.setattr(gi, "interop_available", lambda ctx, device=None: (True, "fake interop"))
    monkeypatch.setattr(gi, "_default_device", lambda: torch.device("cuda", 0))
    monkeypatch.setattr(gi, "_load_runtime", lambda: rt)
    monkeypatch.setattr(gi, "_on_device", lambda dev: contextlib.nullcontext())
    return rt


def test_display_with_interop_asks_the_staging_bridge_for_device_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlib.gpu.device import input_device

    _fake_cuda_interop(monkeypatch)
    seen: dict[str, Any] = {}
    real_setup = DisplayActor.setup

    async def setup(self: DisplayActor) -> None:
        seen["before"] = input_device(self)
        await real_setup(self)
        seen["after"] = input_device(self)

    monkeypatch.setattr(DisplayActor, "setup", setup)
    img = rand_image(6, 8, 3)
    info, display, shown = run_display([img], 8, 6)
    # CUDA frames would now reach it as they are; then CPU frames fall back per frame
    assert seen == {"before": torch.device("cpu"), "after": torch.device("cuda", 0)}
    assert info["upload"] == "host" and "interop needs frames on the GL's GPU" in info["upload_reason"]
    assert torch.equal(shown, img)
    assert display.input_device is None and input_device(display) == torch.device("cpu")  # torn down


def test_shader_with_interop_asks_for_device_inputs_but_keeps_its_output_device(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlib.gpu.device import input_device

    _fake_cuda_interop(monkeypatch)
    seen: dict[str, Any] = {}
    real_setup = ShaderActor.setup

    def setup(self: ShaderActor) -> None:
        real_setup(self)
        seen["input"], seen["output"] = input_device(self), self.device

    monkeypatch.setattr(ShaderActor, "setup", setup)
    images = [rand_image(5, 9, 4) for _ in range(2)]
    info, got = run_shader(images)
    assert seen == {"input": torch.device("cuda", 0), "output": None}
    assert [torch.equal(f.data, i) for f, i in zip(got, images)] == [True, True]
    assert info["upload"] == "host" and "interop needs cuda:0" in info["upload_reason"]


# -- the real thing ---------------------------------------------------------------------------
def _interop_or_skip() -> None:
    ctx = create_offscreen_context()
    try:
        ok, reason = gi.interop_available(ctx)
    finally:
        ctx.release()
    if not ok:
        pytest.skip(f"CUDA-GL interop unavailable: {reason}")


@pytest.mark.gpu
def test_real_display_interop_round_trip() -> None:
    _interop_or_skip()
    images = [rand_image(90, 160, 3).cuda() for _ in range(3)]
    info, _, shown = run_display(images, 160, 90)
    assert info["upload"] == "cuda-gl-interop", info
    assert torch.equal(shown, images[-1].cpu())


@pytest.mark.gpu
def test_real_shader_interop_round_trip_stays_on_the_gpu() -> None:
    _interop_or_skip()
    images = [rand_image(36, 64, 4).cuda() for _ in range(3)]
    info, got = run_shader(images, dispatcher="gpu")  # a GPU reader: no staged host copy
    assert info["upload"] == "cuda-gl-interop" and info["readback"] == "cuda-gl-interop", info
    for frame, image in zip(got, images):
        assert frame.data.is_cuda and torch.equal(frame.data, image)


def test_shader_device_is_validated_at_construction() -> None:
    with pytest.raises(ValueError, match="ShaderActor 'fx': device: unknown device 'tpu'"):
        ShaderActor(PASS_THROUGH, 4, 4, inputs=["video"], device="tpu", actor_id="fx")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ShaderActor(PASS_THROUGH, 4, 4, inputs=["video"], device="cuda", actor_id="fx")
