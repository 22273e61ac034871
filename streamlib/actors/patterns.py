"""``TestPatternActor``: synthetic RGB24 video on its own clock.

Static patterns are rendered once and the same tensor is published every tick
(frames are immutable, so sharing is safe). Per-frame work is only what
changes: ``moving_box`` clones the base and paints the box; ``timecode=True``
clones the base and pastes cached glyph cells into a pre-drawn text box.

SMPTE bars are drawn by :mod:`streamlib.media.smpte` (RP 219-1, HD layout).
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import torch

from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, TimedTick
from streamlib.gpu.device import Event, current_stream, record_event, resolve_device, wait_event
from streamlib.core.frames import VideoFrame
from streamlib.core.limits import check_frame_size
from streamlib.core.ports import StreamOutput
from streamlib.errors import ConfigError
from streamlib.media.smpte import COLOR_RANGES, ColorRange, code_level, render_smpte_bars
from streamlib.actors._font import GlyphSet

Pattern = Literal["gradient", "checkerboard", "solid", "moving_box", "smpte_bars"]
PATTERNS: tuple[str, ...] = ("gradient", "checkerboard", "solid", "moving_box", "smpte_bars")


def render_pattern(pattern: str, width: int, height: int,
                   color: Sequence[int] | None = None, cell: int = 32, *,
                   color_range: str = "limited") -> torch.Tensor:
    """The static (H, W, 3) uint8 image of ``pattern`` in ``color_range``.

    ``gradient`` and ``checkerboard`` span black..100% white of the range;
    ``solid``/``moving_box`` fill with ``color`` (default: the range's black).

    Raises:
        ConfigError: unknown ``pattern`` or ``color_range``, or a frame too
            small for ``smpte_bars``.
    """
    black, white = code_level(0.0, color_range), code_level(1.0, color_range)
    if pattern == "smpte_bars":
        return render_smpte_bars(width, height, color_range)
    if pattern == "gradient":
        x = torch.linspace(black, white, width).round().to(torch.uint8)
        y = torch.linspace(black, white, height).round().to(torch.uint8)
        img = torch.empty((height, width, 3), dtype=torch.uint8)
        img[..., 0] = x.unsqueeze(0)
        img[..., 1] = y.unsqueeze(1)
        img[..., 2] = 128
        return img
    if pattern == "checkerboard":
        yy = torch.arange(height).unsqueeze(1) // cell
        xx = torch.arange(width).unsqueeze(0) // cell
        board = ((yy + xx) % 2 * (white - black) + black).to(torch.uint8)
        return board.unsqueeze(-1).expand(height, width, 3).contiguous()
    if pattern in ("solid", "moving_box"):
        rgb = tuple(color) if color is not None else (black, black, black)
        return torch.tensor(rgb, dtype=torch.uint8).expand(height, width, 3).contiguous()
    raise ConfigError(f"pattern must be one of {PATTERNS}, got {pattern!r}")


def timecode_text(frame_number: int, fps: float) -> str:
    """``HH:MM:SS:FF`` (non-drop-frame, nominal ``round(fps)`` frames a second,
    hours wrapping at 24) followed by the frame number (last 8 digits), 20 chars."""
    nominal = max(1, round(fps))
    seconds, ff = divmod(frame_number, nominal)
    minutes, ss = divmod(seconds, 60)
    hours, mm = divmod(minutes, 60)
    return f"{hours % 24:02d}:{mm:02d}:{ss:02d}:{ff:02d} {frame_number % 10**8:>8d}"


TIMECODE_CHARS = len(timecode_text(0, 30))


class TestPatternActor(Actor):
    """Publishes an RGB24 test pattern on ``outputs['video']`` every tick.

    Args:
        width: frame width in pixels (> 0).
        height: frame height in pixels (> 0).
        fps: frame rate of the default ``SoftwareClock`` (ignored with ``clock=``).
        pattern: one of ``PATTERNS``: ``smpte_bars`` (SMPTE RP 219-1 HD bars,
            see ``streamlib.media.smpte``), ``gradient``, ``checkerboard``,
            ``solid``, ``moving_box`` (a white box bouncing one step per frame,
            so motion and dropped frames are visible).
        color: RGB fill of ``solid``/``moving_box`` (default: the range's black).
        box_size: side of the ``moving_box`` box in pixels.
        color_range: ``"limited"`` (black 16, white 235) or ``"full"`` (0, 255).
        timecode: burn ``HH:MM:SS:FF`` and the frame number into a box at the
            bottom centre (built-in 5x7 font; only that box changes per frame).
        device: where frames live: ``"cpu"`` (default), ``"cuda"``,
            ``"cuda:N"``. On CUDA the static image is made on the device once
            (SMPTE bars by the ``patterns.cu`` kernel when CuPy is installed)
            and per-frame changes (box, timecode) are drawn there: no host copy
            per frame. A CUDA device also makes ``dispatcher="gpu"`` the default
            (a CUDA stream of the actor's own).
        actor_id, clock, **kwargs: see ``Actor``.

    Frames carry the tick's ``timestamp_ns``, ``frame_number`` and ``clock_id``.

    Raises:
        ConfigError: bad size, fps, pattern, color, box_size, color_range,
            device, or a frame too small for ``smpte_bars`` or the timecode box.
    """

    device: torch.device  # always resolved in __init__

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, width: int = 640, height: int = 360, fps: float = 30,
                 pattern: Pattern = "moving_box", *, color: Sequence[int] | None = None,
                 box_size: int = 64, color_range: ColorRange = "limited",
                 timecode: bool = False, device: str | None = None,
                 actor_id: str | None = None, clock: Clock | None = None,
                 **kwargs: object) -> None:
        where = f"TestPatternActor{'' if actor_id is None else f' {actor_id!r}'}"
        if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
            raise ConfigError(f"{where}: width and height must be ints > 0, got {width!r}x{height!r}")
        check_frame_size(width, height, where)  # before allocating anything
        if pattern not in PATTERNS:
            raise ConfigError(f"{where}: pattern must be one of {', '.join(PATTERNS)}; got {pattern!r}")
        if color_range not in COLOR_RANGES:
            raise ConfigError(f"{where}: color_range must be one of {COLOR_RANGES}, got {color_range!r}")
        if color is not None and (len(color) != 3 or not all(
                isinstance(c, int) and 0 <= c <= 255 for c in color)):
            raise ConfigError(f"{where}: color must be 3 ints in 0..255, got {color!r}")
        if not isinstance(box_size, int) or box_size < 1:
            raise ConfigError(f"{where}: box_size must be an int >= 1, got {box_size!r}")
        dev = resolve_device("cpu" if device is None else device, where=f"{where}: device")
        try:
            if pattern == "smpte_bars" and dev.type == "cuda":
                from streamlib.gpu.kernels import smpte_bars  # noqa: PLC0415 - imports this module

                base = smpte_bars(width, height, color_range, device=dev)
            else:
                base = render_pattern(pattern, width, height, color, color_range=color_range)
        except ValueError as exc:
            raise ConfigError(f"{where}: pattern: {exc}") from None
        base = base.to(dev)
        if clock is None:
            try:
                clock = SoftwareClock(fps)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: fps: {exc}") from None
        super().__init__(actor_id=actor_id, clock=clock, **kwargs)  # type: ignore[arg-type]
        self.width, self.height, self.pattern = width, height, pattern
        self.color_range = color_range
        self.fps = fps
        self.box_size = max(1, min(box_size, width, height))
        self.device = dev  # staging delivers nothing to a source; consumers read it
        self._white = code_level(1.0, color_range)
        self._base = base
        self.timecode = bool(timecode)
        self.text_box: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1)
        self._glyphs: GlyphSet | None = None
        if self.timecode:
            self._setup_timecode(where)
        # The kernel, clone and glyph uploads above ran on this thread's stream; the
        # first render (on the actor's pool stream) waits for them once. A no-op on CPU.
        self._init_done: Event | None = record_event(current_stream(dev))
        self.outputs["video"] = StreamOutput("video")

    def _setup_timecode(self, where: str) -> None:
        black = code_level(0.0, self.color_range)
        scale = max(1, self.height // 240)
        while scale > 1 and (TIMECODE_CHARS * 6 + 4) * scale > self.width:
            scale -= 1
        glyphs = GlyphSet(scale, (self._white,) * 3, (black,) * 3, device=self.device)
        text_w, text_h = glyphs.text_size(TIMECODE_CHARS)
        pad = 2 * scale
        box_w, box_h = text_w + 2 * pad, text_h + 2 * pad
        if box_w > self.width or box_h + pad > self.height:
            raise ConfigError(
                f"{where}: timecode needs at least {box_w}x{box_h + pad} px, "
                f"got {self.width}x{self.height}"
            )
        x0 = (self.width - box_w) // 2
        y0 = self.height - box_h - pad
        self.text_box = (x0, y0, x0 + box_w, y0 + box_h)
        self._text_origin = (x0 + pad, y0 + pad)
        base = self._base.clone()
        base[y0:y0 + box_h, x0:x0 + box_w] = black  # drawn once; per frame only glyphs
        self._base = base
        self._glyphs = glyphs

    def box_position(self, frame_number: int) -> tuple[int, int]:
        """Top-left (x, y) of the ``moving_box`` box in frame ``frame_number``."""
        span_x = max(1, self.width - self.box_size)
        span_y = max(1, self.height - self.box_size)
        x = (frame_number * 8) % (2 * span_x)
        y = (frame_number * 5) % (2 * span_y)
        x = x if x < span_x else 2 * span_x - x  # bounce off the edges
        y = y if y < span_y else 2 * span_y - y
        return x, y

    def _timecode_fps(self) -> float:
        rate = self.clock.fps if self.clock is not None else 0.0
        return rate if rate > 0 else float(self.fps)

    def render(self, frame_number: int) -> torch.Tensor:
        """The (H, W, 3) uint8 image of frame ``frame_number`` (shared if static)."""
        if self._init_done is not None:
            wait_event(current_stream(self.device), self._init_done)
            self._init_done = None
        img = self._base
        if self.pattern == "moving_box":
            img = img.clone()
            x, y = self.box_position(frame_number)
            img[y:y + self.box_size, x:x + self.box_size] = self._white
        if self._glyphs is not None and self.text_box is not None:
            if img is self._base:
                img = img.clone()
            else:  # the box may have crossed the text box: restore its background
                x0, y0, x1, y1 = self.text_box
                img[y0:y1, x0:x1] = self._base[y0:y1, x0:x1]
            text = timecode_text(frame_number, self._timecode_fps())
            self._glyphs.draw(img, text, *self._text_origin)
        return img

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_init_done"] = None  # a CUDA event belongs to this process (base is on the host)
        return state

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(VideoFrame(
            self.render(tick.frame_number), timestamp_ns=tick.timestamp_ns,
            frame_number=tick.frame_number, clock_id=tick.clock_id,
        ))
