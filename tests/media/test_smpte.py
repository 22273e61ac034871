"""streamlib.media.smpte: SMPTE RP 219-1 levels (both ranges), the HD layout, the bars image."""

from __future__ import annotations

import pytest
import torch

from streamlib.errors import ConfigError
from streamlib.media.smpte import (
    SMPTE_LEVELS, code_level, render_smpte_bars, smpte_color, smpte_regions,
)

# Expected 8-bit RGB per element, worked out by hand from the R'G'B' levels:
# limited = round(16 + 219 v), full = round(255 v), clipped to 0..255.
EXPECTED = {
    "limited": {
        "grey40": (104, 104, 104), "white75": (180, 180, 180), "yellow75": (180, 180, 16),
        "cyan75": (16, 180, 180), "green75": (16, 180, 16), "magenta75": (180, 16, 180),
        "red75": (180, 16, 16), "blue75": (16, 16, 180), "cyan100": (16, 235, 235),
        "blue100": (16, 16, 235), "yellow100": (235, 235, 16), "red100": (235, 16, 16),
        "minus_i": (16, 70, 106), "plus_q": (71, 16, 119), "grey15": (49, 49, 49),
        "black": (16, 16, 16), "white100": (235, 235, 235), "black_m2": (12, 12, 12),
        "black_p2": (20, 20, 20), "black_p4": (25, 25, 25),
    },
    "full": {
        "grey40": (102, 102, 102), "white75": (191, 191, 191), "yellow75": (191, 191, 0),
        "cyan75": (0, 191, 191), "green75": (0, 191, 0), "magenta75": (191, 0, 191),
        "red75": (191, 0, 0), "blue75": (0, 0, 191), "cyan100": (0, 255, 255),
        "blue100": (0, 0, 255), "yellow100": (255, 255, 0), "red100": (255, 0, 0),
        "minus_i": (0, 63, 105), "plus_q": (65, 0, 120), "grey15": (38, 38, 38),
        "black": (0, 0, 0), "white100": (255, 255, 255), "black_m2": (0, 0, 0),
        "black_p2": (5, 5, 5), "black_p4": (10, 10, 10),
    },
}

# RP 219-1 sample counts per band at 1920 and 1280 (names, widths).
RP219_1920 = [
    [240, 206, 206, 206, 204, 206, 206, 206, 240],
    [240, 206, 1234, 240],
    [240, 206, 1234, 240],
    [240, 308, 412, 170, 68, 70, 68, 70, 68, 206, 240],
]
RP219_1280 = [
    [160, 136, 138, 138, 136, 138, 138, 136, 160],
    [160, 136, 824, 160],
    [160, 136, 824, 160],
    [160, 206, 274, 114, 46, 46, 46, 46, 46, 136, 160],
]


def widths_by_band(width: int, height: int) -> list[list[int]]:
    bands: dict[int, list[int]] = {}
    for r in smpte_regions(width, height):
        bands.setdefault(r.y0, []).append(r.x1 - r.x0)
    return [bands[y] for y in sorted(bands)]


def test_rp219_geometry_matches_the_standard_tables() -> None:
    assert widths_by_band(1920, 1080) == RP219_1920
    assert widths_by_band(1280, 720) == RP219_1280
    rows = sorted({(r.y0, r.y1) for r in smpte_regions(1920, 1080)})
    assert rows == [(0, 630), (630, 720), (720, 810), (810, 1080)]


@pytest.mark.parametrize("color_range", ["limited", "full"])
@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (320, 180)])
def test_smpte_bars_values_at_region_centres(color_range: str, size: tuple[int, int]) -> None:
    width, height = size
    img = render_smpte_bars(width, height, color_range)
    assert img.shape == (height, width, 3) and img.dtype == torch.uint8
    expected = EXPECTED[color_range]
    checked = 0
    for reg in smpte_regions(width, height):
        if reg.name == "ramp":
            continue
        x, y = reg.center
        assert tuple(img[y, x].tolist()) == expected[reg.name], (reg, color_range)
        # the whole region is flat, edges included
        area = img[reg.y0:reg.y1, reg.x0:reg.x1]
        assert bool((area == torch.tensor(expected[reg.name], dtype=torch.uint8)).all()), reg
        checked += 1
    assert checked == 27


@pytest.mark.parametrize("color_range, black, white", [("limited", 16, 235), ("full", 0, 255)])
def test_smpte_ramp_runs_black_to_white(color_range: str, black: int, white: int) -> None:
    img = render_smpte_bars(1920, 1080, color_range)
    ramp = next(r for r in smpte_regions(1920, 1080) if r.name == "ramp")
    row = img[ramp.center[1], ramp.x0:ramp.x1, 0].tolist()
    assert row[0] == black and row[-1] == white
    assert all(b >= a for a, b in zip(row, row[1:]))
    assert bool((img[ramp.y0:ramp.y1, ramp.x0:ramp.x1, 1] == img[ramp.y0, ramp.x0:ramp.x1, 0]).all())


def test_code_level_rounding() -> None:
    assert code_level(0.75) == 180 and code_level(0.75, "full") == 191  # 180.25, 191.25
    assert code_level(1.0) == 235 and code_level(0.0) == 16
    assert code_level(-0.02, "full") == 0  # clipped: full range has no sub-black
    with pytest.raises(ValueError, match="color_range"):
        code_level(0.5, "studio")


@pytest.mark.parametrize("color_range", ["limited", "full"])
def test_smpte_color_of_every_element(color_range: str) -> None:
    assert {name: smpte_color(name, color_range) for name in SMPTE_LEVELS} == EXPECTED[color_range]


def test_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigError, match=r"^color_range must be one of \('limited', 'full'\), "
                                          r"got 'studio'$"):
        render_smpte_bars(64, 48, "studio")
    with pytest.raises(ConfigError, match=r"^smpte_bars needs a larger frame than 16x8 \(at least "
                                          r"64x12\): a region would be empty$"):
        smpte_regions(16, 8)
