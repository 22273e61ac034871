"""SMPTE RP 219-1 colour bars: levels, the HD layout, the 8-bit image; no actor here.

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
from typing import Literal

import torch

from streamlib.errors import ConfigError

__all__ = [
    "COLOR_RANGES", "ColorRange", "SMPTE_LEVELS", "SmpteRegion", "code_level", "render_smpte_bars",
    "smpte_color", "smpte_regions",
]

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

    Rounds halves up and clips to 0..255.

    Raises:
        ConfigError: an unknown ``color_range``.
    """
    if color_range == "limited":
        scaled = 16 + 219 * value
    elif color_range == "full":
        scaled = 255 * value
    else:
        raise ConfigError(f"color_range must be one of {COLOR_RANGES}, got {color_range!r}")
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
        ConfigError: the frame is too small for every region to be at least 1 pixel.
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
                raise ConfigError(
                    f"smpte_bars needs a larger frame than {width}x{height} "
                    "(at least 64x12): a region would be empty"
                )
            regions.append(SmpteRegion(name, x0, x1, y0, y1))
    return regions


def render_smpte_bars(width: int, height: int, color_range: str = "limited") -> torch.Tensor:
    """The (H, W, 3) uint8 RP 219-1 bars.

    Raises:
        ConfigError: the frame is too small, or an unknown ``color_range``.
    """
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
