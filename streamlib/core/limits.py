"""Frame-size limits: checked before anything is allocated.

A constructor asked for a 20000x20000 compositor allocates 1.1 GB before the
first frame, so sizes are checked first. Every side is at most
``MAX_FRAME_SIDE`` pixels for any actor; the control plane also caps the area
(``MAX_FRAME_PIXELS``, 8K UHD, by default; ``ControlServer(max_frame_pixels=...)``).
"""

from __future__ import annotations

from typing import Any

from streamlib.errors import ConfigError

MAX_FRAME_SIDE = 16384
MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD: 33.2 Mpixel, 133 MB as RGBA


def check_frame_size(width: Any, height: Any, where: str, *, max_side: int = MAX_FRAME_SIDE,
                     max_pixels: int | None = None) -> tuple[int, int]:
    """``(width, height)`` when both are ints in ``1..max_side`` and their product
    is at most ``max_pixels`` (when given); ConfigError naming the field otherwise."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_side:
            raise ConfigError(f"{where}: field {name!r} must be an int in 1..{max_side}, "
                              f"got {value!r}")
    if max_pixels is not None and width * height > max_pixels:
        raise ConfigError(f"{where}: fields 'width' x 'height' = {width}x{height} is "
                          f"{width * height} pixels, more than the limit {max_pixels}")
    return width, height


__all__ = ["MAX_FRAME_SIDE", "MAX_FRAME_PIXELS", "check_frame_size"]
