"""The 8-bit alpha blend rule of video layers and its oracle, ``composite_reference``.

Rounding rule (shared bit-exactly by every backend of
``streamlib.actors.blending``, the CUDA kernel of ``streamlib.gpu.kernels`` and
``composite_reference``), all on 8-bit integers:

* ``op = floor(opacity * 255 + 0.5)``: the layer's opacity as an 8-bit factor;
* ``a = round(alpha * op / 255)``: RGBA layers use their alpha, RGB24 ones 255;
* ``out = round((src * a + dst * (255 - a)) / 255)`` per channel.

``x / 255`` of an integer ``x`` is never exactly halfway between integers, so
``round`` needs no tie rule. Layers are applied in (z, insertion) order, each
rounded to 8 bits before the next, as an 8-bit compositor does.
``composite_reference`` is the straightforward float64 reading of the rule that
every backend must match bit for bit.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["Placed", "clip_box", "composite_reference", "opacity_code"]

Placed = tuple[torch.Tensor, int, int, float]  # (HWC uint8 data, x, y, opacity)


def opacity_code(opacity: float) -> int:
    """The 8-bit opacity factor ``floor(opacity * 255 + 0.5)``."""
    return math.floor(opacity * 255 + 0.5)


def clip_box(x: int, y: int, w: int, h: int, width: int, height: int
             ) -> tuple[int, int, int, int, int, int] | None:
    """(dx, dy, sx, sy, cw, ch) of the visible part of a w x h layer at (x, y)."""
    dx0, dy0 = max(x, 0), max(y, 0)
    dx1, dy1 = min(x + w, width), min(y + h, height)
    if dx1 <= dx0 or dy1 <= dy0:
        return None
    return dx0, dy0, dx0 - x, dy0 - y, dx1 - dx0, dy1 - dy0


def composite_reference(width: int, height: int, background: Sequence[int] = (0, 0, 0),
                        layers: Sequence[Placed] = (), base: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """Straightforward float64 implementation of the module's rounding rule.

    ``base`` (an optional RGB/RGBA image, alpha ignored) is placed at (0, 0)
    over the ``background`` colour and clipped; ``layers`` are drawn in order.
    Returns a new (height, width, 3) uint8 CPU tensor.
    """
    out = torch.tensor(list(background), dtype=torch.float64).expand(height, width, 3).clone()
    if base is not None:
        h, w = min(height, base.shape[0]), min(width, base.shape[1])
        out[:h, :w] = base[:h, :w, :3].cpu().double()
    for data, x, y, opacity in layers:
        box = clip_box(x, y, data.shape[1], data.shape[0], width, height)
        if box is None:
            continue
        dx, dy, sx, sy, cw, ch = box
        src = data[sy:sy + ch, sx:sx + cw].cpu().double()
        alpha = src[..., 3:4] if data.shape[2] == 4 else torch.full((ch, cw, 1), 255.0,
                                                                     dtype=torch.float64)
        a = torch.round(alpha * opacity_code(opacity) / 255)
        dst = out[dy:dy + ch, dx:dx + cw]
        out[dy:dy + ch, dx:dx + cw] = torch.round((src[..., :3] * a + dst * (255 - a)) / 255)
    return out.to(torch.uint8)
