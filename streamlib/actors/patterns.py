"""``TestPatternActor``: synthetic video on its own clock.

Static patterns are rendered once and the same tensor is published every tick
(frames are immutable, so sharing is safe); only ``moving_box`` does per-frame
work, and only on the rows the box crosses.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..actor import Actor
from ..clocks import Clock, SoftwareClock, TimedTick
from ..frames import VideoFrame
from ..ports import StreamOutput

Pattern = Literal["gradient", "checkerboard", "solid", "moving_box"]
PATTERNS: tuple[str, ...] = ("gradient", "checkerboard", "solid", "moving_box")


def render_pattern(pattern: str, width: int, height: int,
                   color: tuple[int, int, int] = (0, 0, 0), cell: int = 32) -> torch.Tensor:
    """The static (H, W, 3) uint8 image of ``pattern``; ValueError if unknown."""
    if pattern == "gradient":
        x = torch.linspace(0, 255, width).round().to(torch.uint8)
        y = torch.linspace(0, 255, height).round().to(torch.uint8)
        img = torch.empty((height, width, 3), dtype=torch.uint8)
        img[..., 0] = x.unsqueeze(0)
        img[..., 1] = y.unsqueeze(1)
        img[..., 2] = 128
        return img
    if pattern == "checkerboard":
        yy = torch.arange(height).unsqueeze(1) // cell
        xx = torch.arange(width).unsqueeze(0) // cell
        board = ((yy + xx) % 2 * 255).to(torch.uint8)
        return board.unsqueeze(-1).expand(height, width, 3).contiguous()
    if pattern in ("solid", "moving_box"):
        return torch.tensor(color, dtype=torch.uint8).expand(height, width, 3).contiguous()
    raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")


class TestPatternActor(Actor):
    """Publishes a test pattern on ``outputs['video']`` every tick.

    ``moving_box`` moves a white box one step per frame (so motion and dropped
    frames are visible); the frame number is also in ``frame.frame_number``.
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, width: int = 640, height: int = 360, fps: float = 30,
                 pattern: Pattern = "moving_box", *, color: tuple[int, int, int] = (16, 16, 16),
                 box_size: int = 64, actor_id: str | None = None,
                 clock: Clock | None = None, **kwargs: object) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"TestPatternActor: width and height must be > 0, got {width}x{height}")
        super().__init__(actor_id=actor_id, clock=clock or SoftwareClock(fps), **kwargs)  # type: ignore[arg-type]
        self.width, self.height, self.pattern = width, height, pattern
        self.box_size = max(1, min(box_size, width, height))
        self._base = render_pattern(pattern, width, height, color)
        self.outputs["video"] = StreamOutput("video")

    def _box_frame(self, n: int) -> torch.Tensor:
        img = self._base.clone()
        span_x = max(1, self.width - self.box_size)
        span_y = max(1, self.height - self.box_size)
        x = (n * 8) % (2 * span_x)
        y = (n * 5) % (2 * span_y)
        x = x if x < span_x else 2 * span_x - x  # bounce off the edges
        y = y if y < span_y else 2 * span_y - y
        img[y:y + self.box_size, x:x + self.box_size] = 235
        return img

    def process(self, tick: TimedTick) -> None:
        data = self._box_frame(tick.frame_number) if self.pattern == "moving_box" else self._base
        self.outputs["video"].write(VideoFrame(
            data, timestamp_ns=tick.timestamp_ns, frame_number=tick.frame_number,
            clock_id=tick.clock_id,
        ))
