"""ShaderActor (moderngl, headless EGL): pixels, uniforms, input textures, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick, VirtualClock
from streamlib.core.actor import ActorStatus
from streamlib.core.frames import VideoFrame
from streamlib.actors.shader import ShaderActor, prepare_fragment_source
from streamlib.gpu.gl import ShaderCompileError, create_offscreen_context, read_framebuffer, upload_texture

ROOT = Path(__file__).resolve().parents[2]


class Sink(Actor):
    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.inputs["video"] = StreamInput("video")
        self.got: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None:
            self.got.append(frame)


class Frames(Actor):
    """Publishes the given frames' data, one per tick of its VirtualClock."""

    def __init__(self, images: list[torch.Tensor], fmt: str = "rgb24", **kw: object) -> None:
        super().__init__(clock=VirtualClock(30, max_ticks=len(images)), **kw)  # type: ignore[arg-type]
        self.images, self.fmt = images, fmt
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(VideoFrame(
            self.images[tick.frame_number], timestamp_ns=tick.timestamp_ns,
            frame_number=tick.frame_number, format=self.fmt, clock_id=tick.clock_id))


def run_source(source: str, n: int = 1, size: tuple[int, int] = (64, 32), fps: int = 30,
               **kw: object) -> list[VideoFrame]:
    with Runtime() as rt:
        shader = ShaderActor(source, size[0], size[1], clock=VirtualClock(fps, max_ticks=n), **kw)  # type: ignore[arg-type]
        sink = Sink()
        shader >> sink
        assert rt.run(30), "graph did not finish in 30 s"
        assert shader.status is ActorStatus.RUNNING, shader.error
    return sink.got


def close_to(got: torch.Tensor, want: list[float], tol: int = 1) -> bool:
    return bool((got.int() - torch.tensor(want).round().int()).abs().max() <= tol)


def test_uv_gradient_pixels_and_orientation() -> None:
    (frame,) = run_source("void main() { fragColor = vec4(uv.x, 0.25, 0.5, 1.0); }", size=(64, 32))
    assert (frame.format.value, frame.width, frame.height) == ("rgba", 64, 32)
    for x in (0, 17, 40, 63):
        for y in (0, 31):
            assert close_to(frame.data[y, x], [255 * (x + 0.5) / 64, 63.75, 127.5, 255]), (x, y)
    (frame,) = run_source("void main() { fragColor = vec4(0.0, uv.y, 0.0, 1.0); }", size=(8, 16))
    # uv.y is up (GL convention) and frames are top-down: row 0 is the top, uv.y near 1
    assert close_to(frame.data[0, 3], [0, 255 * 15.5 / 16, 0, 255])
    assert close_to(frame.data[15, 3], [0, 255 * 0.5 / 16, 0, 255])


def test_time_frame_and_resolution_uniforms_follow_virtual_clock() -> None:
    src = """
uniform float u_time;
uniform int u_frame;
uniform vec2 u_resolution;
void main() { fragColor = vec4(u_time / 2.0, float(u_frame) / 255.0, u_resolution.x / 255.0, u_resolution.y / 255.0); }
"""
    frames = run_source(src, n=5, size=(40, 20), fps=10)
    assert [f.frame_number for f in frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp_ns for f in frames] == [n * 100_000_000 for n in range(5)]
    for n, f in enumerate(frames):
        assert close_to(f.data[7, 9], [255 * n * 0.1 / 2, n, 40, 20]), (n, f.data[7, 9])


def test_rgb24_output_format() -> None:
    (frame,) = run_source("void main() { fragColor = vec4(1.0, 0.5, 0.0, 0.2); }", size=(6, 4),
                          output_format="rgb24")
    assert frame.format.value == "rgb24" and frame.shape == (4, 6, 3)
    assert close_to(frame.data[2, 2], [255, 127.5, 0])


def test_input_texture_round_trip_is_exact() -> None:
    gen = torch.Generator().manual_seed(7)
    rgb = [torch.randint(0, 256, (24, 37, 3), dtype=torch.uint8, generator=gen) for _ in range(3)]
    rgba = [torch.randint(0, 256, (24, 37, 4), dtype=torch.uint8, generator=gen) for _ in range(2)]
    for images, fmt in ((rgb, "rgb24"), (rgba, "rgba")):
        with Runtime() as rt:
            src = Frames(images, fmt)
            shader = ShaderActor("uniform sampler2D video;\nvoid main() { fragColor = texture(video, uv); }",
                                 37, 24, inputs=["video"])
            sink = Sink()
            src >> shader >> sink
            assert rt.run(30)
            assert shader.status is ActorStatus.RUNNING, shader.error
            assert shader.clock is None  # ticked by its upstream
            assert shader.describe()["dispatcher"] == "dedicated"  # the GL context's one thread
        assert [f.frame_number for f in sink.got] == list(range(len(images)))
        for image, out in zip(images, sink.got):
            want = image if fmt == "rgba" else torch.cat(
                [image, torch.full((24, 37, 1), 255, dtype=torch.uint8)], dim=2)
            assert torch.equal(out.data, want), fmt


def test_missing_input_is_transparent_black_and_formats_swizzle() -> None:
    bgr = torch.zeros((4, 4, 3), dtype=torch.uint8)
    bgr[..., 0] = 200  # blue in BGR order
    src_code = """
uniform sampler2D video;
uniform sampler2D overlay;
void main() {
    vec4 a = texture(video, uv);
    vec4 b = texture(overlay, uv);
    fragColor = uv.x < 0.5 ? a : b + vec4(0.0, 0.0, 0.0, 0.25);
}
"""
    with Runtime() as rt:
        src = Frames([bgr, bgr], "bgr24")
        shader = ShaderActor(src_code, 4, 4, inputs=["video", "overlay"])
        sink = Sink()
        src >> shader.inputs["video"]
        shader >> sink
        assert rt.run(30)
        assert shader.status is ActorStatus.RUNNING, shader.error
    assert len(sink.got) == 2
    out = sink.got[-1].data
    assert out[1, 0].tolist() == [0, 0, 200, 255]  # BGR input read as RGB
    assert close_to(out[1, 3], [0, 0, 0, 63.75])  # never-fed input samples (0, 0, 0, 0)


def test_input_size_change_recreates_texture() -> None:
    small = torch.full((4, 4, 3), 10, dtype=torch.uint8)
    big = torch.full((8, 16, 3), 20, dtype=torch.uint8)
    with Runtime() as rt:
        src = Frames([small, big, small])
        shader = ShaderActor("uniform sampler2D video;\nvoid main() { fragColor = texture(video, uv); }",
                             8, 8, inputs=["video"])
        sink = Sink()
        src >> shader >> sink
        assert rt.run(30)
        assert shader.status is ActorStatus.RUNNING, shader.error
    assert [int(f.data[4, 4, 0]) for f in sink.got] == [10, 20, 10]


def test_compile_error_raises_at_construction_with_glsl_log() -> None:
    bad = "void main() {\n    fragColor = vec4(uv.x, 0.0, 0.0, 1.0) + nope;\n}\n"
    with Runtime() as rt:
        with pytest.raises(ShaderCompileError, match=r"ShaderActor 'glow'") as info:
            ShaderActor(bad, 8, 8, actor_id="glow", clock=VirtualClock(30, max_ticks=1))
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert "nope" in message and "0:2(" in message  # GLSL log with the user's line 2
        assert rt.actors() == []  # nothing was attached


def test_bad_configuration_is_rejected() -> None:
    ok = "void main() { fragColor = vec4(1.0); }"
    with Runtime():
        with pytest.raises(ValueError, match=r"ShaderActor 's1'.*height"):
            ShaderActor(ok, 8, 0, actor_id="s1")
        with pytest.raises(ValueError, match="output_format"):
            ShaderActor(ok, 8, 8, output_format="yuv")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="inputs must be unique identifiers"):
            ShaderActor(ok, 8, 8, inputs=["a", "a"])
        with pytest.raises(TypeError, match="inputs must be a list"):
            ShaderActor(ok, 8, 8, inputs="video")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="exactly one of fragment_source"):
            ShaderActor(None, 8, 8)


def test_fragment_source_completion_keeps_line_numbers() -> None:
    full = "#version 330 core\nin vec2 uv;\nout vec4 c;\nvoid main() { c = vec4(uv, 0, 1); }\n"
    assert prepare_fragment_source(full) == full
    body = prepare_fragment_source("void main() { fragColor = vec4(1.0); }")
    assert body.splitlines()[:4] == ["#version 330 core", "in vec2 uv;", "out vec4 fragColor;", "#line 1"]


def test_gl_helpers_round_trip_and_reuse() -> None:
    ctx = create_offscreen_context()
    try:
        image = torch.arange(5 * 7 * 4, dtype=torch.int64).remainder(256).to(torch.uint8).reshape(5, 7, 4)
        tex = upload_texture(ctx, image)
        assert upload_texture(ctx, image.flip(0), tex) is tex  # same size: reused
        fbo = ctx.framebuffer(color_attachments=[tex])
        # the texture now holds image.flip(0) in GL order; read_framebuffer undoes the flip
        assert torch.equal(read_framebuffer(fbo, 4), image.flip(0))
        staging = np.empty((5, 7, 4), np.uint8)
        first = read_framebuffer(fbo, 4, staging=staging)
        second = read_framebuffer(fbo, 4, staging=staging)
        assert first.data_ptr() != second.data_ptr()  # fresh tensors, safe to publish
        with pytest.raises(ValueError, match="uint8"):
            upload_texture(ctx, image.float())
    finally:
        ctx.release()


def test_shader_layer_example() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "shader_layer.py"), "21"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [l.split()[1] for l in lines if l.startswith("frame")] == ["0", "10", "20"]
    assert lines[-1] == "rendered 21 frames"
    assert lines[0].split("pixels")[1] != lines[1].split("pixels")[1]  # the plasma moves


def test_no_gl_context_error_names_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    import moderngl

    import streamlib.gpu.gl as gl

    def refuse(**kwargs: object) -> moderngl.Context:
        raise RuntimeError(f"no {kwargs.get('backend', 'default')} here")

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(moderngl, "create_context", refuse)
    with pytest.raises(gl.GLContextError, match=r"EGL: RuntimeError: no egl here.*skipped"):
        create_offscreen_context()
    with Runtime():
        with pytest.raises(gl.GLContextError, match=r"ShaderActor 'nogl'.*EGL"):
            ShaderActor("void main() { fragColor = vec4(1.0); }", 8, 8, actor_id="nogl")
