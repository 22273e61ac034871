"""TestPatternActor: patterns (both ranges), moving box, timecode; the bars are in tests/media."""

from __future__ import annotations

import pickle
import threading

import pytest
import torch

from streamlib import Actor, Runtime, StreamInput, TimedTick, VideoFrame, VirtualClock
import streamlib.actors.patterns as patterns
from streamlib.actors._font import GlyphSet, glyph_mask
from streamlib.actors.patterns import PATTERNS, TestPatternActor, render_pattern, timecode_text
from streamlib.media.smpte import render_smpte_bars
from streamlib.clocks import deadline_ns

def test_smpte_bars_pattern_is_the_media_rendering() -> None:
    for color_range in ("limited", "full"):
        assert torch.equal(render_pattern("smpte_bars", 320, 180, color_range=color_range),
                           render_smpte_bars(320, 180, color_range))


@pytest.mark.parametrize("color_range, lo, hi", [("limited", 16, 235), ("full", 0, 255)])
def test_simple_patterns_follow_the_range(color_range: str, lo: int, hi: int) -> None:
    board = render_pattern("checkerboard", 64, 64, color_range=color_range)
    assert board[0, 0].tolist() == [lo] * 3 and board[0, 32].tolist() == [hi] * 3
    grad = render_pattern("gradient", 64, 48, color_range=color_range)
    assert (grad[0, 0, 0].item(), grad[0, -1, 0].item()) == (lo, hi)
    assert (grad[0, 0, 1].item(), grad[-1, 0, 1].item()) == (lo, hi)
    assert render_pattern("solid", 8, 8, color_range=color_range)[4, 4].tolist() == [lo] * 3
    assert render_pattern("solid", 8, 8, (1, 2, 3))[4, 4].tolist() == [1, 2, 3]


def test_bad_configuration_names_actor_and_field() -> None:
    with Runtime():
        with pytest.raises(ValueError, match=r"TestPatternActor.*pattern.*smpte_bars.*'plaid'") as exc:
            TestPatternActor(64, 48, pattern="plaid")  # type: ignore[arg-type]
        assert all(p in str(exc.value) for p in PATTERNS)
        with pytest.raises(ValueError, match="TestPatternActor 'x': color_range"):
            TestPatternActor(64, 48, color_range="tv", actor_id="x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="TestPatternActor: width and height"):
            TestPatternActor(0, 48)
        with pytest.raises(ValueError, match="TestPatternActor: color"):
            TestPatternActor(64, 48, color=(1, 2, 300))
        with pytest.raises(ValueError, match="TestPatternActor: pattern: smpte_bars needs"):
            TestPatternActor(16, 8, pattern="smpte_bars")
        with pytest.raises(ValueError, match="TestPatternActor: timecode needs"):
            TestPatternActor(64, 16, timecode=True)
        with pytest.raises(ValueError, match="TestPatternActor: fps"):
            TestPatternActor(64, 48, fps=-1)
        with pytest.raises(ValueError, match="TestPatternActor 'd': device: unknown device 'tpu'"):
            TestPatternActor(64, 48, device="tpu", actor_id="d")
        if not torch.cuda.is_available():
            with pytest.raises(ValueError, match="TestPatternActor: device: 'cuda' requested but "
                                                 "CUDA is not available"):
                TestPatternActor(64, 48, device="cuda")


class Collect(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.inputs["video"] = StreamInput("video")
        self.frames: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None:
            self.frames.append(frame)


def run_pattern(n: int, **kw: object) -> tuple[TestPatternActor, list[VideoFrame]]:
    with Runtime() as rt:
        src = TestPatternActor(clock=VirtualClock(30, max_ticks=n), **kw)  # type: ignore[arg-type]
        sink = Collect()
        src >> sink
        assert rt.run(30)
    return src, sink.frames


def test_static_pattern_is_rendered_once_and_shared() -> None:
    _, frames = run_pattern(4, width=96, height=54, pattern="smpte_bars")
    assert [f.frame_number for f in frames] == [0, 1, 2, 3]
    assert len({f.data.data_ptr() for f in frames}) == 1  # one tensor, published every tick


def test_first_render_waits_once_for_the_construction_work(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # On CUDA the base image (SMPTE kernel, clone, glyphs) is made on the constructing
    # thread's stream: the actor's pool stream must be ordered after it.
    log: list[tuple[str, object, object]] = []
    init, pool = object(), object()
    streams = iter([init, pool, pool, pool])
    monkeypatch.setattr(patterns, "current_stream", lambda device=None: next(streams))
    monkeypatch.setattr(patterns, "record_event",
                        lambda stream=None, event=None: log.append(("record", stream, None))
                        or "init-done")
    monkeypatch.setattr(patterns, "wait_event",
                        lambda stream, event: log.append(("wait", stream, event)))
    actor = TestPatternActor(160, 90, pattern="smpte_bars", timecode=True)
    assert log == [("record", init, None)]
    for n in range(3):
        actor.render(n)
    assert log == [("record", init, None), ("wait", pool, "init-done")]
    assert pickle.loads(pickle.dumps(actor))._init_done is None


def test_moving_box_moves_and_frames_follow_the_tick() -> None:
    src, frames = run_pattern(6, width=160, height=90, pattern="moving_box", box_size=16)
    assert [f.frame_number for f in frames] == list(range(6))
    assert [f.timestamp_ns for f in frames] == [deadline_ns(src.clock.rate, n, 0) for n in range(6)]  # type: ignore[union-attr]
    positions = [src.box_position(n) for n in range(6)]
    assert len(set(positions)) == 6  # it moves every frame
    for frame, (x, y) in zip(frames, positions):
        data = frame.data
        assert bool((data[y:y + 16, x:x + 16] == 235).all())
        assert int((data == 235).all(-1).sum()) == 16 * 16  # nothing else is white
        assert data[(y + 40) % 90, (x + 60) % 160].tolist() == [16, 16, 16]
    assert not torch.equal(frames[0].data, frames[1].data)


def test_box_bounces_inside_the_frame() -> None:
    with Runtime():
        src = TestPatternActor(100, 60, pattern="moving_box", box_size=20)
        for n in range(0, 400, 7):
            x, y = src.box_position(n)
            assert 0 <= x <= 80 and 0 <= y <= 40


def test_timecode_text() -> None:
    assert timecode_text(0, 30) == "00:00:00:00        0"
    n = 30 * 3661 + 5  # 1 h 1 min 1 s 5 frames
    assert timecode_text(n, 30) == f"01:01:01:05 {n:>8d}"
    assert timecode_text(n, 30000 / 1001) == f"01:01:01:05 {n:>8d}"  # NDF counts nominal 30
    assert timecode_text(25 * 86400 + 3, 25).startswith("00:00:00:03")  # wraps at 24 h
    assert len(timecode_text(10**9 + 7, 60)) == 20


def test_timecode_changes_only_the_text_box_and_draws_glyphs() -> None:
    with Runtime():
        src = TestPatternActor(640, 360, pattern="smpte_bars", timecode=True, fps=25)
        bars = render_pattern("smpte_bars", 640, 360)
        a, b = src.render(7), src.render(25 * 3600 + 25 * 62 + 24)
    assert src.text_box is not None
    x0, y0, x1, y1 = src.text_box
    diff = (a != b).any(-1)
    ys, xs = torch.nonzero(diff, as_tuple=True)
    assert len(ys) > 0
    assert x0 <= int(xs.min()) and int(xs.max()) < x1 and y0 <= int(ys.min()) and int(ys.max()) < y1
    outside = torch.ones(360, 640, dtype=torch.bool)
    outside[y0:y1, x0:x1] = False
    assert torch.equal(a[outside], bars[outside])  # the pattern is untouched elsewhere
    # "01:01:02:24    91574": compare each character cell with the glyph
    glyphs = GlyphSet(1, (235,) * 3, (16,) * 3)
    text = timecode_text(25 * 3600 + 25 * 62 + 24, 25)
    tx, ty = x0 + 2, y0 + 2  # scale 1: padding 2 px
    for i, char in enumerate(text):
        cell = b[ty:ty + glyphs.cell_h, tx + i * glyphs.cell_w: tx + (i + 1) * glyphs.cell_w]
        assert torch.equal(cell, glyphs.cells[char]), (i, char)
    assert text[1] == "1"
    ink = (b[ty:ty + 7, tx + 6 * 1: tx + 6 * 1 + 5, 0] == 235)  # 2nd char: "1"
    assert torch.equal(ink, glyph_mask("1"))
    assert not torch.equal(src._base, a) and src._base is not a  # base never drawn on


def test_timecode_scales_with_height_and_survives_the_box() -> None:
    with Runtime():
        src = TestPatternActor(1920, 1080, pattern="moving_box", timecode=True,
                               color_range="full", box_size=400)
        assert src._glyphs is not None and src._glyphs.scale == 4
        for n in range(0, 200, 9):  # the box crosses the text box; the box background stays black
            img = src.render(n)
            x0, y0, x1, y1 = src.text_box  # type: ignore[misc]
            assert set(torch.unique(img[y0:y1, x0:x1]).tolist()) <= {0, 255}
            assert img[y0, x0].tolist() == [0, 0, 0]


def test_realtime_default_clock_still_works() -> None:
    got = threading.Event()

    class One(Collect):
        def process(self, tick: TimedTick) -> None:
            super().process(tick)
            if len(self.frames) >= 2:
                got.set()

    with Runtime() as rt:
        src = TestPatternActor(64, 48, fps=200, pattern="checkerboard", timecode=False)
        sink = One()
        src >> sink
        rt.start()
        assert got.wait(10), "no frames from the SoftwareClock within 10 s"
    assert sink.frames[0].width == 64


@pytest.mark.gpu
@pytest.mark.parametrize("pattern", ["smpte_bars", "moving_box", "checkerboard"])
def test_cuda_frames_equal_the_cpu_frames(pattern: str) -> None:
    kw = {"width": 192, "height": 108, "pattern": pattern, "timecode": True}
    src, on_gpu = run_pattern(5, device="cuda", **kw)
    _, on_cpu = run_pattern(5, **kw)
    assert src.device.type == "cuda" and all(f.data.is_cuda for f in on_gpu)
    assert [f.frame_number for f in on_gpu] == [0, 1, 2, 3, 4]
    for g, c in zip(on_gpu, on_cpu):
        assert torch.equal(g.data.cpu(), c.data)
