"""``TransformActor``: apply a function to each new frame's tensor (a CPU map)."""

from __future__ import annotations

from typing import Callable

import torch

from ..actor import Actor
from ..clocks import TimedTick
from ..frames import VideoFrame
from ..ports import StreamInput, StreamOutput


def invert(data: torch.Tensor) -> torch.Tensor:
    """255 - x for uint8 images."""
    return torch.bitwise_not(data)


class TransformActor(Actor):
    """``video -> fn(tensor) -> video``; ticked by its upstream (no clock).

    ``fn`` must return a tensor of the same format; the output frame keeps the
    input's timestamp and frame number so latency stays measurable downstream.
    """

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor] = invert,
                 *, actor_id: str | None = None, **kwargs: object) -> None:
        super().__init__(actor_id=actor_id, **kwargs)  # type: ignore[arg-type]
        self.fn = fn
        self.inputs["video"] = StreamInput("video")
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        frame: VideoFrame | None = self.inputs["video"].read_new()
        if frame is None:
            return
        self.outputs["video"].write(frame.replace(data=self.fn(frame.data)))
