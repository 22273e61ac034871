"""DrawingActor: skia pixels, DrawingContext timing, draw code as source, error handling."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import skia
import torch

from streamlib import Actor, Runtime, StreamInput, TimedTick, VirtualClock
from streamlib.core.actor import ActorStatus
from streamlib.core.frames import VideoFrame
from streamlib.actors.drawing import DrawingActor, DrawingContext, parse_color

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


def render(draw: object, n: int = 3, size: tuple[int, int] = (64, 64), fps: int = 30,
           **kw: Any) -> tuple[DrawingActor, list[VideoFrame]]:
    with Runtime() as rt:
        actor = DrawingActor(draw, size[0], size[1], clock=VirtualClock(fps, max_ticks=n),  # type: ignore[arg-type]
                             **kw)
        sink = Sink()
        actor >> sink
        assert rt.run(30), "graph did not finish in 30 s"
        # status before the runtime stops everything: draw errors must not fail the actor
        assert actor.status is ActorStatus.RUNNING and actor.error is None, actor.error
    return actor, sink.got


def red_rect(canvas: skia.Canvas, ctx: DrawingContext) -> None:
    canvas.drawRect(skia.Rect(10, 10, 50, 50), skia.Paint(Color=skia.ColorRED))


def px(frame: VideoFrame, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in frame.data[y, x])


def test_filled_rect_pixels_and_transparent_background() -> None:
    actor, frames = render(red_rect, n=2, size=(80, 60))
    assert len(frames) == 2
    f = frames[-1]
    assert (f.format.value, f.width, f.height, f.data.dtype) == ("rgba", 80, 60, torch.uint8)
    assert px(f, 20, 20) == (255, 0, 0, 255)
    assert px(f, 10, 10) == (255, 0, 0, 255) and px(f, 49, 49) == (255, 0, 0, 255)
    assert px(f, 50, 50) == (0, 0, 0, 0) and px(f, 5, 5) == (0, 0, 0, 0)
    assert px(f, 70, 20) == (0, 0, 0, 0)
    assert int(f.data[..., 3].sum()) == 40 * 40 * 255  # nothing else was drawn
    assert actor.draw_errors == 0 and actor.last_error is None


def test_context_times_come_from_virtual_ticks() -> None:
    seen: list[DrawingContext] = []

    def record(canvas: skia.Canvas, ctx: DrawingContext) -> None:
        seen.append(ctx)

    with Runtime() as rt:
        actor = DrawingActor(record, 32, 16, clock=VirtualClock(25, max_ticks=4, first_frame=10))
        sink = Sink()
        actor >> sink
        assert rt.run(30)
    assert [c.frame_number for c in seen] == [10, 11, 12, 13]
    assert [c.time for c in seen] == [0.0, 0.04, 0.08, 0.12]  # seconds since the first tick
    assert {(c.width, c.height, c.fps) for c in seen} == {(32, 16, 25.0)}
    assert [f.frame_number for f in sink.got] == [10, 11, 12, 13]
    assert [f.timestamp_ns for f in sink.got] == [c.timestamp_ns for c in seen]
    assert sink.got[1].timestamp_ns == 11 * 40_000_000


def test_draw_code_string_with_namespace_and_module_state() -> None:
    code = """
calls = []

def draw(canvas, ctx):
    calls.append(ctx.frame_number)
    side = int(math.sqrt(400)) * len(calls)  # 20, 40, 60
    shade = int(torch.tensor([128]).item())
    canvas.drawRect(skia.Rect(0, 0, side, 10), skia.Paint(Color=skia.Color(0, shade, 0)))
"""
    _, frames = render(code, n=3, size=(64, 16))
    assert [px(f, 30, 5) for f in frames] == [(0, 0, 0, 0), (0, 128, 0, 255), (0, 128, 0, 255)]
    assert px(frames[2], 59, 5) == (0, 128, 0, 255) and px(frames[1], 40, 5) == (0, 0, 0, 0)


def test_draw_file_option(tmp_path: Path) -> None:
    path = tmp_path / "overlay.py"
    path.write_text("def draw(canvas, ctx):\n    canvas.clear(skia.ColorBLUE)\n")
    _, frames = render(None, n=1, size=(8, 8), draw_file=str(path))
    assert px(frames[0], 3, 3) == (0, 0, 255, 255)


def test_syntax_error_at_construction_names_actor_and_line() -> None:
    code = "def draw(canvas, ctx):\n    x = 1\n    canvas.drawRect(skia.Rect(0, 0, 1, 1)\n"
    with Runtime():
        with pytest.raises(ValueError, match=r"DrawingActor 'bad'.*syntax error.*line 3") as info:
            DrawingActor(code, 16, 16, actor_id="bad", clock=VirtualClock(30, max_ticks=1))
        assert isinstance(info.value.__cause__, SyntaxError)
        with pytest.raises(ValueError, match="must define a function draw"):
            DrawingActor("x = 1\n", 16, 16, clock=VirtualClock(30, max_ticks=1))
        with pytest.raises(ValueError, match=r"raised while loading.*line 2.*ZeroDivisionError"):
            DrawingActor("y = 0\nz = 1 / y\n", 16, 16, clock=VirtualClock(30, max_ticks=1))


def test_runtime_error_keeps_last_good_frame_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    code = """def draw(canvas, ctx):
    canvas.drawRect(skia.Rect(0, 0, 4 + ctx.frame_number, 4), skia.Paint(Color=skia.ColorWHITE))
    if ctx.frame_number in (2, 3):
        raise RuntimeError("boom at " + str(ctx.frame_number // 10))
"""
    caplog.set_level(logging.ERROR, logger="streamlib")
    actor, frames = render(code, n=6, size=(16, 8), actor_id="overlay")
    assert [f.frame_number for f in frames] == [0, 1, 2, 3, 4, 5]  # one frame per tick still
    widths = [int((f.data[0, :, 3] == 255).sum()) for f in frames]
    assert widths == [4, 5, 5, 5, 8, 9]  # frames 2 and 3 repeat frame 1's picture
    assert torch.equal(frames[2].data, frames[1].data)
    assert "draw_error" in frames[2].metadata and "draw_error" not in frames[4].metadata
    assert actor.draw_errors == 2
    assert actor.last_error is not None
    assert "line 4" in actor.last_error and "RuntimeError: boom at 0" in actor.last_error
    assert "<draw_code:overlay>" in actor.last_error
    logged = [r.getMessage() for r in caplog.records if "draw error" in r.getMessage()]
    assert len(logged) == 1, logged  # the same error twice is logged once
    assert "'overlay'" in logged[0] and "line 4" in logged[0] and 'raise RuntimeError' in logged[0]


def test_error_before_any_good_frame_publishes_nothing() -> None:
    def broken(canvas: skia.Canvas, ctx: DrawingContext) -> None:
        if ctx.frame_number < 2:
            raise KeyError("missing")
        red_rect(canvas, ctx)

    actor, frames = render(broken, n=4, size=(64, 64))
    assert [f.frame_number for f in frames] == [2, 3]
    assert actor.draw_errors == 2 and "KeyError" in (actor.last_error or "")
    assert f"line {broken.__code__.co_firstlineno + 2}" in (actor.last_error or "")


def test_clear_colour_and_accumulate() -> None:
    _, frames = render(red_rect, n=1, size=(64, 64), clear="#10203040")
    assert px(frames[0], 2, 2) == (16, 32, 48, 64)
    assert px(frames[0], 20, 20) == (255, 0, 0, 255)

    def dot(canvas: skia.Canvas, ctx: DrawingContext) -> None:
        canvas.drawRect(skia.Rect.MakeXYWH(ctx.frame_number, 0, 1, 1), skia.Paint(Color=skia.ColorWHITE))

    _, frames = render(dot, n=3, size=(8, 2), clear=None)
    assert [int(f.data[0, :, 3].sum()) // 255 for f in frames] == [1, 2, 3]
    # published frames never change afterwards, even when the next frame builds on them
    assert int(frames[0].data[0, :, 3].sum()) // 255 == 1


def test_frames_are_independent_buffers() -> None:
    def moving(canvas: skia.Canvas, ctx: DrawingContext) -> None:
        canvas.drawRect(skia.Rect.MakeXYWH(ctx.frame_number * 4, 0, 4, 4), skia.Paint(Color=skia.ColorRED))

    _, frames = render(moving, n=4, size=(16, 4))
    assert len({f.data.data_ptr() for f in frames}) == 4
    for n, f in enumerate(frames):
        assert int(f.data[..., 3].count_nonzero()) == 16
        assert px(f, n * 4, 0) == (255, 0, 0, 255)


def test_bad_configuration_is_rejected() -> None:
    with Runtime():
        clock = VirtualClock(30, max_ticks=1)
        with pytest.raises(ValueError, match=r"DrawingActor 'w'.*width"):
            DrawingActor(red_rect, 0, 10, actor_id="w", clock=clock)
        with pytest.raises(ValueError, match=r"clear.*unknown colour 'mauve'"):
            DrawingActor(red_rect, 10, 10, clear="mauve", clock=clock)
        with pytest.raises(ValueError, match="exactly one of draw"):
            DrawingActor(None, 10, 10, clock=clock)
        with pytest.raises(TypeError, match="draw must be a callable"):
            DrawingActor(42, 10, 10, clock=clock)  # type: ignore[arg-type]
    assert parse_color((1, 2, 3)) == (1, 2, 3, 255) and parse_color("#ff000080") == (255, 0, 0, 128)


def test_drawing_overlay_example(tmp_path: Path) -> None:
    out = tmp_path / "overlay.png"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "drawing_overlay.py"), "12", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "rendered 12 frames" in proc.stdout
    image = skia.Image.open(str(out))
    assert (image.width(), image.height()) == (320, 180)
    pixels = image.toarray(colorType=skia.kRGBA_8888_ColorType)
    assert pixels[..., 3].max() == 255 and pixels[0, 0, 3] == 0  # opaque shapes, clear corner
