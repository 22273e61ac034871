"""``TestPatternActor``: synthetic RGB24 video on its own clock.

Static patterns are rendered once and the same tensor is published every tick
(frames are immutable, so sharing is safe). Per-frame work is only what
changes: ``moving_box`` clones the base and paints the box; ``timecode=True``
clones the base and pastes cached glyph cells into a pre-drawn text box.

SMPTE bars follow SMPTE RP 219-1 (ARIB STD-B28), the HD layout, with the
``*1 = 40% grey``, ``*2 = -I``, ``*3 = +Q`` options. Rows: pattern 1 (bars)
``[0, round(7H/12))``, pattern 2 ``[.., round(8H/12))``, pattern 3
``[.., round(9H/12))``, pattern 4 (PLUGE) to the bottom. Column widths at
1920 (RP 219-1 sample counts; 1280 uses the 720-line table, any other width
scales the 1920 edges and rounds):

* pattern 1: 40% grey 240 | 75% white 206 | yellow 206 | cyan 206 |
  green 204 | magenta 206 | red 206 | blue 206 | 40% grey 240
* pattern 2: 100% cyan 240 | -I 206 | 75% white 1234 | 100% blue 240
* pattern 3: 100% yellow 240 | +Q 206 | ramp black->100% white 1234 | 100% red 240
* pattern 4: 15% grey 240 | black 308 | 100% white 412 | black 170 |
  -2% 68 | black 70 | +2% 68 | black 70 | +4% 68 | black 206 | 15% grey 240

Levels are R'G'B' fractions coded to 8 bits as ``round(16 + 219 v)``
(``color_range="limited"``) or ``round(255 v)`` (``"full"``), halves rounded
up, clipped to 0..255. -I is (0, 0.2457, 0.4126) and +Q (0.2531, 0, 0.4710):
the RP 219 10-bit Y'CbCr values (-I 244/612/395, +Q 141/697/606) through the
BT.709 matrix. 8-bit results, limited / full: 75% = 180 / 191, black 16 / 0,
100% white 235 / 255, 40% grey 104 / 102, 15% grey 49 / 38,
-2% 12 / 0 (full range cannot go below black, so it clips), +2% 20 / 5,
+4% 25 / 10, -I (16, 70, 106) / (0, 63, 105), +Q (71, 16, 119) / (65, 0, 120).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, TimedTick
from streamlib.gpu.device import resolve_device
from streamlib.core.frames import VideoFrame
from streamlib.core.limits import check_frame_size
from streamlib.core.ports import StreamOutput
from streamlib.actors._font import GlyphSet

Pattern = Literal["gradient", "checkerboard", "solid", "moving_box", "smpte_bars"]
PATTERNS: tuple[str, ...] = ("gradient", "checkerboard", "solid", "moving_box", "smpte_bars")
ColorRange = Literal["limited", "full"]
COLOR_RANGES: tuple[str, ...] = ("limited", "full")

# R'G'B' fractions of every SMPTE RP 219-1 element (see the module docstring).
SMPTE_LEVELS: dict[str, tuple[float, float, float]] = {
    "grey40": (0.40, 0.40, 0.40),
    "white75": (0.75, 0.75, 0.75),
    "yellow75": (0.75, 0.75, 0.0),
    "cyan75": (0.0, 0.75, 0.75),
    "green75": (0.0, 0.75, 0.0),
    "magenta75": (0.75, 0.0, 0.75),
    "red75": (0.75, 0.0, 0.0),
    "blue75": (0.0, 0.0, 0.75),
    "cyan100": (0.0, 1.0, 1.0),
    "blue100": (0.0, 0.0, 1.0),
    "yellow100": (1.0, 1.0, 0.0),
    "red100": (1.0, 0.0, 0.0),
    "minus_i": (0.0, 0.2457, 0.4126),
    "plus_q": (0.2531, 0.0, 0.4710),
    "grey15": (0.15, 0.15, 0.15),
    "black": (0.0, 0.0, 0.0),
    "white100": (1.0, 1.0, 1.0),
    "black_m2": (-0.02, -0.02, -0.02),
    "black_p2": (0.02, 0.02, 0.02),
    "black_p4": (0.04, 0.04, 0.04),
}

# (name, width in samples at 1920) per row band; RP 219-1 1080-line table.
_BANDS_1920: tuple[tuple[tuple[str, int], ...], ...] = (
    (("grey40", 240), ("white75", 206), ("yellow75", 206), ("cyan75", 206), ("green75", 204),
     ("magenta75", 206), ("red75", 206), ("blue75", 206), ("grey40", 240)),
    (("cyan100", 240), ("minus_i", 206), ("white75", 1234), ("blue100", 240)),
    (("yellow100", 240), ("plus_q", 206), ("ramp", 1234), ("red100", 240)),
    (("grey15", 240), ("black", 308), ("white100", 412), ("black", 170), ("black_m2", 68),
     ("black", 70), ("black_p2", 68), ("black", 70), ("black_p4", 68), ("black", 206),
     ("grey15", 240)),
)
# The 720-line table of RP 219-1 (1280 samples).
_BANDS_1280: tuple[tuple[tuple[str, int], ...], ...] = (
    (("grey40", 160), ("white75", 136), ("yellow75", 138), ("cyan75", 138), ("green75", 136),
     ("magenta75", 138), ("red75", 138), ("blue75", 136), ("grey40", 160)),
    (("cyan100", 160), ("minus_i", 136), ("white75", 824), ("blue100", 160)),
    (("yellow100", 160), ("plus_q", 136), ("ramp", 824), ("red100", 160)),
    (("grey15", 160), ("black", 206), ("white100", 274), ("black", 114), ("black_m2", 46),
     ("black", 46), ("black_p2", 46), ("black", 46), ("black_p4", 46), ("black", 136),
     ("grey15", 160)),
)


def code_level(value: float, color_range: str = "limited") -> int:
    """8-bit code of the R'G'B' fraction ``value``: limited ``16 + 219 v``, full ``255 v``.

    Rounds halves up and clips to 0..255. Raises ValueError for an unknown range.
    """
    if color_range == "limited":
        scaled = 16 + 219 * value
    elif color_range == "full":
        scaled = 255 * value
    else:
        raise ValueError(f"color_range must be one of {COLOR_RANGES}, got {color_range!r}")
    return max(0, min(255, math.floor(scaled + 0.5)))


def smpte_color(name: str, color_range: str = "limited") -> tuple[int, int, int]:
    """8-bit RGB of the SMPTE element ``name`` (a ``SMPTE_LEVELS`` key); KeyError if unknown."""
    r, g, b = SMPTE_LEVELS[name]
    return (code_level(r, color_range), code_level(g, color_range), code_level(b, color_range))


@dataclass(frozen=True)
class SmpteRegion:
    """One rectangle of the bars: ``[x0, x1) x [y0, y1)`` filled with element ``name``."""

    name: str
    x0: int
    x1: int
    y0: int
    y1: int

    @property
    def center(self) -> tuple[int, int]:
        """(x, y) of the region's centre pixel."""
        return (self.x0 + self.x1) // 2, (self.y0 + self.y1) // 2


def smpte_regions(width: int, height: int) -> list[SmpteRegion]:
    """The RP 219-1 layout at ``width`` x ``height`` (see the module docstring).

    Raises:
        ValueError: the frame is too small for every region to be at least 1 pixel.
    """
    table, ref = (_BANDS_1280, 1280) if width == 1280 else (_BANDS_1920, 1920)
    rows = [0, round(height * 7 / 12), round(height * 8 / 12), round(height * 9 / 12), height]
    regions: list[SmpteRegion] = []
    for band, (y0, y1) in zip(table, zip(rows, rows[1:])):
        edge = 0
        for name, samples in band:
            x0 = round(edge * width / ref)
            edge += samples
            x1 = round(edge * width / ref)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(
                    f"smpte_bars needs a larger frame than {width}x{height} "
                    "(at least 64x12): a region would be empty"
                )
            regions.append(SmpteRegion(name, x0, x1, y0, y1))
    return regions


def render_smpte_bars(width: int, height: int, color_range: str = "limited") -> torch.Tensor:
    """The (H, W, 3) uint8 RP 219-1 bars; ValueError if too small or unknown range."""
    img = torch.empty((height, width, 3), dtype=torch.uint8)
    for reg in smpte_regions(width, height):
        area = img[reg.y0:reg.y1, reg.x0:reg.x1]
        if reg.name == "ramp":
            n = reg.x1 - reg.x0
            lo, hi = code_level(0.0, color_range), code_level(1.0, color_range)
            steps = torch.arange(n, dtype=torch.float64) * (hi - lo) / max(1, n - 1)
            area[...] = torch.floor(steps + lo + 0.5).to(torch.uint8).view(1, n, 1)
        else:
            area[...] = torch.tensor(smpte_color(reg.name, color_range), dtype=torch.uint8)
    return img


def render_pattern(pattern: str, width: int, height: int,
                   color: Sequence[int] | None = None, cell: int = 32, *,
                   color_range: str = "limited") -> torch.Tensor:
    """The static (H, W, 3) uint8 image of ``pattern`` in ``color_range``.

    ``gradient`` and ``checkerboard`` span black..100% white of the range;
    ``solid``/``moving_box`` fill with ``color`` (default: the range's black).

    Raises:
        ValueError: unknown ``pattern`` or ``color_range``, or a frame too
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
    raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")


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
            see ``streamlib.actors.patterns``), ``gradient``, ``checkerboard``,
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
        ValueError: bad size, fps, pattern, color, box_size, color_range,
            device, or a frame too small for ``smpte_bars`` or the timecode box.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, width: int = 640, height: int = 360, fps: float = 30,
                 pattern: Pattern = "moving_box", *, color: Sequence[int] | None = None,
                 box_size: int = 64, color_range: ColorRange = "limited",
                 timecode: bool = False, device: str | None = None,
                 actor_id: str | None = None, clock: Clock | None = None,
                 **kwargs: object) -> None:
        where = f"TestPatternActor{'' if actor_id is None else f' {actor_id!r}'}"
        if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
            raise ValueError(f"{where}: width and height must be ints > 0, got {width!r}x{height!r}")
        check_frame_size(width, height, where)  # before allocating anything
        if pattern not in PATTERNS:
            raise ValueError(f"{where}: pattern must be one of {', '.join(PATTERNS)}; got {pattern!r}")
        if color_range not in COLOR_RANGES:
            raise ValueError(f"{where}: color_range must be one of {COLOR_RANGES}, got {color_range!r}")
        if color is not None and (len(color) != 3 or not all(
                isinstance(c, int) and 0 <= c <= 255 for c in color)):
            raise ValueError(f"{where}: color must be 3 ints in 0..255, got {color!r}")
        if not isinstance(box_size, int) or box_size < 1:
            raise ValueError(f"{where}: box_size must be an int >= 1, got {box_size!r}")
        dev = resolve_device("cpu" if device is None else device, where=f"{where}: device")
        try:
            if pattern == "smpte_bars" and dev.type == "cuda":
                from streamlib.gpu.kernels import smpte_bars  # noqa: PLC0415 - imports this module

                base = smpte_bars(width, height, color_range, device=dev)
            else:
                base = render_pattern(pattern, width, height, color, color_range=color_range)
        except ValueError as exc:
            raise ValueError(f"{where}: pattern: {exc}") from None
        base = base.to(dev)
        if clock is None:
            try:
                clock = SoftwareClock(fps)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{where}: fps: {exc}") from None
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
            raise ValueError(
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

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(VideoFrame(
            self.render(tick.frame_number), timestamp_ns=tick.timestamp_ns,
            frame_number=tick.frame_number, clock_id=tick.clock_id,
        ))
