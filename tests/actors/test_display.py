"""DisplayActor: headless framebuffer readback, letterboxing, counters, errors,
self-close without deadlock, and a real glfw window under Xvfb (subprocess).

Run as a script (``python tests/actors/test_display.py window``) it is the Xvfb
scenario itself; the pytest test below runs it under ``xvfb-run``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch

from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick, VirtualClock
from streamlib.core.actor import ActorStatus
from streamlib.core.frames import EventMessage
from streamlib.actors.display import DisplayActor, letterbox_rect
from streamlib.errors import ActorStateError
from streamlib.core.frames import VideoFrame

ROOT = Path(__file__).resolve().parents[2]


class Frames(Actor):
    """Writes ``frames[n % len(frames)]`` (data, format) on tick n."""

    def __init__(self, frames: Sequence[tuple[torch.Tensor, str]], **kw: Any) -> None:
        super().__init__(**kw)
        self.frames = list(frames)
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        data, fmt = self.frames[tick.frame_number % len(self.frames)]
        self.outputs["video"].write(VideoFrame(data, timestamp_ns=tick.timestamp_ns,
                                               frame_number=tick.frame_number, format=fmt))


class EventSink(Actor):
    """Collects events; ``seen`` is set once ``want(event)`` holds for one of them."""

    def __init__(self, want: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["events"] = StreamInput("events", slots=64)
        self.events: list[EventMessage] = []
        self.want = want
        self.seen = threading.Event()

    def process(self, tick: TimedTick) -> None:
        for event in self.inputs["events"].read_all_new():
            self.events.append(event)
            if self.want is not None and self.want(event):
                self.seen.set()


def rand_image(h: int, w: int, c: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (h, w, c), dtype=torch.uint8, generator=g)


def show(frames: Sequence[tuple[torch.Tensor, str]], width: int, height: int,
         ticks: int | None = None, **kw: Any) -> tuple[torch.Tensor, DisplayActor]:
    """Run Frames >> DisplayActor(headless) lock-step; return the readback and the actor."""
    with Runtime() as rt:
        src = Frames(frames, clock=VirtualClock(30, max_ticks=ticks or len(frames)))
        display = DisplayActor(width=width, height=height, headless=True, **kw)
        src >> display
        assert rt.run(20), "graph did not finish"
        assert display.status is ActorStatus.RUNNING, display.error
        return display.read_framebuffer(), display


def gl_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("streamlib-") and "-gl" in t.name]


# -- headless readback ------------------------------------------------------------

@pytest.mark.parametrize("channels,fmt", [(3, "rgb24"), (4, "rgba")])
def test_headless_readback_equals_input_exactly(channels: int, fmt: str) -> None:
    img = rand_image(45, 67, channels)  # odd width: exercises 1-byte row alignment
    fb, display = show([(img, fmt)], 67, 45)
    assert fb.dtype == torch.uint8 and fb.shape == (45, 67, 3)
    assert torch.equal(fb, img[..., :3])  # byte-exact, top-down, alpha ignored
    assert display.mode == "headless"
    assert (display.frames_shown, display.last_frame_shown) == (1, 0)


@pytest.mark.parametrize("fmt", ["bgr24", "bgra", "gray8"])
def test_other_formats_are_swizzled_to_rgb(fmt: str) -> None:
    c = {"bgr24": 3, "bgra": 4, "gray8": 1}[fmt]
    img = rand_image(20, 30, c, seed=3)
    fb, _ = show([(img, fmt)], 30, 20)
    want = img.expand(20, 30, 3) if c == 1 else img[..., [2, 1, 0]]
    assert torch.equal(fb, want)


def test_letterbox_bars_are_black_and_image_scales_exactly() -> None:
    img = rand_image(18, 32, 3, seed=1).clamp(min=1)  # no black pixel inside the image
    fb, display = show([(img, "rgb24")], 64, 48)   # scale 2: 64x36 image, bars of 6 rows
    assert letterbox_rect(32, 18, 64, 48) == (0, 6, 64, 36)
    assert int(fb[:6].max()) == 0 and int(fb[42:].max()) == 0
    assert torch.equal(fb[24, 32], img[9, 16])      # the centre pixel
    assert torch.equal(fb[6:42], img.repeat_interleave(2, 0).repeat_interleave(2, 1))
    assert display.window_to_frame(32.0, 24.0) == (16.0, 9.0)
    assert display.window_to_frame(32.0, 2.0) is None  # on a bar

    tall = rand_image(48, 16, 3, seed=2).clamp(min=1)  # pillarbox: bars left and right
    fb, _ = show([(tall, "rgb24")], 64, 48)
    assert int(fb[:, :24].max()) == 0 and int(fb[:, 40:].max()) == 0
    assert torch.equal(fb[:, 24:40], tall)


def test_non_integer_scale_keeps_aspect_and_centre() -> None:
    img = torch.zeros((20, 30, 3), dtype=torch.uint8)
    img[..., 0] = 200
    img[9:11, 14:16] = torch.tensor([10, 220, 30], dtype=torch.uint8)  # centre marker
    fb, _ = show([(img, "rgb24")], 100, 100)  # 30x20 -> 100x67 at y=16
    x, y, w, h = letterbox_rect(30, 20, 100, 100)
    assert (x, y, w, h) == (0, 16, 100, 67)
    assert int(fb[:y].max()) == 0 and int(fb[y + h:].max()) == 0
    assert fb[y:y + h, :, 0].min() >= 10 and (fb[y:y + h, :, 2] <= 30).all()
    assert fb[50, 50].tolist() == [10, 220, 30]


def test_counts_frames_and_recreates_texture_on_size_change() -> None:
    small, big = rand_image(10, 16, 3, seed=4), rand_image(24, 32, 4, seed=5)
    fb, display = show([(small, "rgb24"), (big, "rgba")], 32, 24, ticks=7)
    assert display.frames_shown == 7 and display.last_frame_shown == 6
    # tick 6 showed `small` again (16x10 scaled 2x to 32x20 at y=2) after `big` (RGBA 32x24)
    assert int(fb[:2].max()) == 0 and int(fb[22:].max()) == 0
    assert torch.equal(fb[2:22], small.repeat_interleave(2, 0).repeat_interleave(2, 1))
    fb, _ = show([(small, "rgb24"), (big, "rgba")], 32, 24, ticks=2)
    assert torch.equal(fb, big[..., :3])


def test_ticks_without_a_new_frame_show_nothing() -> None:
    img = rand_image(8, 8, 3)
    with Runtime() as rt:
        display = DisplayActor(width=8, height=8, headless=True,
                               clock=VirtualClock(30, max_ticks=5))
        display.inputs["video"].feed(VideoFrame(img, timestamp_ns=0, frame_number=41))
        assert rt.run(20)
        assert display.counters.processed == 5
        assert display.frames_shown == 1 and display.last_frame_shown == 41
        assert torch.equal(display.read_framebuffer(), img)


def test_describe_reports_mode_and_host_upload() -> None:
    _, display = show([(rand_image(4, 4, 3), "rgb24")], 4, 4)
    info = display.describe()
    assert info["display"]["mode"] == "headless" and info["display"]["upload"] == "host"
    assert info["display"]["frames_shown"] == 1
    json.dumps(info)


# -- modes, errors, lifecycle -----------------------------------------------------

def test_auto_mode_without_display_is_headless_and_logs_why(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    caplog.set_level(logging.INFO, logger="streamlib")
    with Runtime() as rt:
        display = DisplayActor(width=16, height=16, actor_id="screen")
        assert display.mode is None  # decided at setup
        rt.start()
        assert rt.wait(10)
        assert display.mode == "headless"
    lines = [r.getMessage() for r in caplog.records if "display 'screen'" in r.getMessage()]
    assert len(lines) == 1 and "headless mode" in lines[0] and "no DISPLAY" in lines[0]


def test_headless_false_without_display_fails_setup_naming_actor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with Runtime() as rt:
        display = DisplayActor(width=16, height=16, headless=False, actor_id="wall")
        rt.start()
        assert rt.wait(10)
        assert display.status is ActorStatus.FAILED
        assert display.error is not None
        assert "DisplayActor 'wall': headless=False but no DISPLAY" in display.error
    assert gl_threads() == []


@pytest.mark.parametrize("kwargs,err,match", [
    ({"width": 0}, ValueError, "DisplayActor 'd1': width must be an int"),
    ({"height": 2.5}, ValueError, "height must be an int"),
    ({"vsync": 1}, TypeError, "vsync must be a bool"),
    ({"headless": "yes"}, TypeError, "headless must be None, True or False"),
    ({"window_name": 3}, TypeError, "window_name must be a str"),
])
def test_bad_configuration_raises_at_construction(kwargs: dict[str, Any], err: type,
                                                  match: str) -> None:
    with Runtime():
        with pytest.raises(err, match=match):
            DisplayActor(actor_id="d1", **kwargs)


def test_unsupported_format_fails_the_actor_with_a_clear_error() -> None:
    yuv = torch.zeros((12, 8), dtype=torch.uint8)
    with Runtime() as rt:
        src = Frames([(yuv, "yuv420p")], clock=VirtualClock(30, max_ticks=1))
        display = DisplayActor(width=8, height=8, headless=True)
        src >> display
        assert rt.run(20)
        assert display.failed and "cannot show yuv420p frames" in (display.error or "")


def test_read_framebuffer_needs_a_context() -> None:
    with Runtime():
        display = DisplayActor(width=8, height=8, headless=True, actor_id="idle")
        with pytest.raises(ActorStateError, match="'idle': no GL context"):
            display.read_framebuffer()


class ClosingDisplay(DisplayActor):
    """Headless stand-in for a window whose close button is hit on frame 2."""

    def _gl_tick(self, frame: VideoFrame | None) -> tuple[list[EventMessage], bool]:
        events, closing = super()._gl_tick(frame)
        if frame is not None and frame.frame_number == 2:
            self._closing = closing = True
            events.append(EventMessage("window", "close", 1, source=self.actor_id))
        return events, closing


@pytest.mark.parametrize("dispatcher", [None, "dedicated", "thread"])
def test_closing_from_its_own_tick_stops_cleanly_without_deadlock(dispatcher: str | None) -> None:
    stopped = threading.Event()
    with Runtime() as rt:
        src = Frames([(rand_image(4, 4, 3), "rgb24")], clock=VirtualClock(30, max_ticks=6))
        display = ClosingDisplay(width=4, height=4, headless=True, dispatcher=dispatcher)
        sink = EventSink()
        display.add_close_callback(stopped.set)
        src >> display
        display >> sink
        assert rt.run(20)
        assert stopped.wait(10), "the display did not stop itself"
        assert display.status is ActorStatus.STOPPED
        assert display.frames_shown == 3  # frames 0..2; nothing after the close (ticks 3..5)
        assert [(e.kind, e.action) for e in sink.events] == [("window", "close")]
        assert display._gl is None and display._ctx is None  # teardown ran
        assert gl_threads() == []
        assert display.actor_id not in {a.actor_id for a in rt.actors()}
        assert not [t for t in threading.enumerate() if display.actor_id in t.name]


# -- a real window under Xvfb -------------------------------------------------------

def _window_scenario() -> dict[str, Any]:
    """Runs in the Xvfb subprocess; returns what the test asserts."""
    import glfw

    out: dict[str, Any] = {}
    img = rand_image(120, 160, 3, seed=7)

    class Feed(Actor):  # clockless: the scenario writes, each write ticks the display
        def __init__(self) -> None:
            super().__init__()
            self.outputs["video"] = StreamOutput("video")

        def process(self, tick: TimedTick) -> None:
            pass

    n = 0

    def push() -> None:
        nonlocal n
        feed.outputs["video"].write(VideoFrame(img, timestamp_ns=n, frame_number=n))
        n += 1
        assert rt.wait_idle(10)

    def until(done: Any) -> bool:
        for _ in range(200):  # each push is a real tick that polls events
            push()
            if done():
                return True
        return False

    stopped = threading.Event()
    with Runtime() as rt:
        feed = Feed()
        display = DisplayActor("streamlib-xvfb-test", 160, 120, vsync=False, headless=None)
        sink = EventSink(want=lambda e: e.kind == "key" and e.action == "press" and e.key == "a")
        display.add_close_callback(stopped.set)
        feed >> display
        display >> sink
        rt.start()
        assert rt.wait(10)
        for _ in range(3):
            push()
        out["mode"] = display.mode
        out["frames_shown"] = display.frames_shown
        fb = display.read_framebuffer()
        out["exact"] = bool(torch.equal(fb, img))
        out["fb_shape"] = list(fb.shape)
        xdotool = shutil.which("xdotool")
        out["xdotool"] = bool(xdotool)
        if xdotool:
            win = subprocess.run([xdotool, "search", "--sync", "--name", "streamlib-xvfb-test"],
                                 capture_output=True, text=True, timeout=10).stdout.split()[0]
            subprocess.run([xdotool, "windowfocus", "--sync", win], timeout=10, check=True)
            subprocess.run([xdotool, "key", "--window", win, "a"], timeout=10, check=True)
            out["key_seen"] = until(lambda: sink.seen.is_set())
            subprocess.run([xdotool, "mousemove", "--window", win, "40", "30", "click", "1"],
                           timeout=10, check=True)
            out["click_seen"] = until(lambda: any(
                e.kind == "mouse" and e.action == "release" for e in sink.events))
            out["mouse"] = [[e.action, e.x, e.y, e.button] for e in sink.events
                            if e.kind == "mouse"]
            subprocess.run([xdotool, "windowsize", "--sync", win, "320", "200"],
                           timeout=10, check=True)
            out["resized"] = until(lambda: any(
                e.action == "resize" and (e.width, e.height) == (320, 200) for e in sink.events))
            fb = display.read_framebuffer()  # 160x120 letterboxed into 320x200: 267x200 at x=26
            out["resized_fb"] = [list(fb.shape), int(fb[:, :26].max()), int(fb[:, 293:].max()),
                                 bool(torch.equal(fb[100, 160], img[60, 80]))]
        glfw.set_window_should_close(display._window, True)
        push()
        out["stopped"] = stopped.wait(10)
        out["status"] = display.status.value
        out["events"] = [f"{e.kind}/{e.action}" for e in sink.events]
        out["torn_down"] = display._gl is None and display._window is None
        out["gl_threads"] = gl_threads()
    return out


@pytest.mark.timeout(60)
def test_real_window_under_xvfb() -> None:
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        pytest.skip("xvfb-run is not installed (apt-get install xvfb)")
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    proc = subprocess.run(
        [xvfb, "-a", "-s", "-screen 0 1280x720x24", sys.executable, __file__, "window"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mode"] == "window", out
    assert out["frames_shown"] == 3
    assert out["fb_shape"] == [120, 160, 3] and out["exact"], out
    if out["xdotool"]:  # apt-get install xdotool
        assert out["key_seen"] and out["click_seen"], out
        moves = [m for m in out["mouse"] if m[0] == "move"]
        assert moves and moves[-1][1:3] == [40.0, 30.0], out
        assert [m for m in out["mouse"] if m[0] != "move"] == [
            ["press", 40.0, 30.0, 0], ["release", 40.0, 30.0, 0]], out
        assert out["resized"] and out["resized_fb"] == [[200, 320, 3], 0, 0, True], out
    assert out["stopped"] and out["status"] == "stopped", out
    assert out["events"][-1] == "window/close", out
    assert out["torn_down"] and out["gl_threads"] == [], out


# -- example -------------------------------------------------------------------------

def test_pattern_display_example_runs_headless() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "examples/pattern_display.py", "12"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "mode=headless frames_shown=12"


if __name__ == "__main__" and sys.argv[1:] == ["window"]:
    print(json.dumps(_window_scenario()))
