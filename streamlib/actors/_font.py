"""A tiny built-in 5x7 bitmap font for burnt-in text (timecodes, frame numbers).

No font files and no skia: each glyph is seven rows of five bits. Glyphs are
rendered once per (scale, colours) into RGB24 cell tensors by ``GlyphSet`` and
pasted with slice assignment, so drawing a string costs one small copy per
character.
"""

from __future__ import annotations

import torch
from streamlib.errors import ConfigError

GLYPH_W = 5
GLYPH_H = 7

# Seven rows of five columns, '#' = ink. Digits follow the classic 5x7 LCD font.
_BITMAPS: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ":": (".....", "..#..", "..#..", ".....", "..#..", "..#..", "....."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "#": (".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."),
    " ": (".....",) * 7,
}

CHARS: str = "".join(_BITMAPS)


def glyph_mask(char: str) -> torch.Tensor:
    """The (7, 5) bool ink mask of ``char``.

    Raises:
        ConfigError: ``char`` is not one of ``CHARS``.
    """
    rows = _BITMAPS.get(char)
    if rows is None:
        raise ConfigError(f"font: no glyph for {char!r}; available: {CHARS!r}")
    return torch.tensor([[c == "#" for c in row] for row in rows], dtype=torch.bool)


class GlyphSet:
    """Glyph cells rendered once at ``scale`` with ``fg`` ink on ``bg``.

    A cell is ``(7*scale, 6*scale, 3)`` uint8 on ``device``: the glyph scaled by
    pixel repetition plus one blank column (``scale`` pixels) of spacing on its
    right. Drawing is then a device-side copy per character.

    Raises:
        ConfigError: ``scale`` < 1.
    """

    def __init__(self, scale: int, fg: tuple[int, int, int], bg: tuple[int, int, int],
                 device: torch.device | str = "cpu") -> None:
        if scale < 1:
            raise ConfigError(f"font: scale must be >= 1, got {scale}")
        self.scale = scale
        self.cell_w = (GLYPH_W + 1) * scale
        self.cell_h = GLYPH_H * scale
        fg_t = torch.tensor(fg, dtype=torch.uint8)
        bg_t = torch.tensor(bg, dtype=torch.uint8)
        self.cells: dict[str, torch.Tensor] = {}
        for char in _BITMAPS:
            mask = torch.zeros((GLYPH_H, GLYPH_W + 1), dtype=torch.bool)
            mask[:, :GLYPH_W] = glyph_mask(char)
            big = mask.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
            self.cells[char] = torch.where(big.unsqueeze(-1), fg_t, bg_t).contiguous().to(device)

    def text_size(self, n_chars: int) -> tuple[int, int]:
        """(width, height) in pixels of ``n_chars`` characters."""
        return n_chars * self.cell_w, self.cell_h

    def draw(self, image: torch.Tensor, text: str, x: int, y: int) -> None:
        """Paste ``text`` into ``image`` (H, W, 3) at top-left ``(x, y)``, in place.

        Raises:
            ConfigError: a character has no glyph, or the text does not fit.
        """
        width, height = self.text_size(len(text))
        if x < 0 or y < 0 or x + width > image.shape[1] or y + height > image.shape[0]:
            raise ConfigError(
                f"font: text of {width}x{height} px at ({x}, {y}) does not fit a "
                f"{image.shape[1]}x{image.shape[0]} image"
            )
        rows = image[y:y + height]
        for i, char in enumerate(text):
            cell = self.cells.get(char)
            if cell is None:
                raise ConfigError(f"font: no glyph for {char!r}; available: {CHARS!r}")
            left = x + i * self.cell_w
            rows[:, left:left + self.cell_w] = cell
