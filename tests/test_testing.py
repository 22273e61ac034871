"""The shipped harness for user-written actors."""

from __future__ import annotations

import pytest
import torch

from streamlib import Actor, StreamInput, StreamOutput, TimedTick, VideoFrame
from streamlib.actors import TransformActor
from streamlib.testing import ActorHarness


class Counter(Actor):
    def __init__(self, start: int = 0, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.inputs["video"] = StreamInput("video")
        self.outputs["data"] = StreamOutput("data", "any")
        self.n = start
        self.events: list[str] = []

    def setup(self) -> None:
        self.events.append("setup")

    async def process(self, tick: TimedTick) -> None:
        if self.inputs["video"].read_new() is None:
            raise LookupError(f"no frame at tick {tick.frame_number}")
        self.n += 1
        self.outputs["data"].write(self.n)

    def teardown(self) -> None:
        self.events.append("teardown")


def test_harness_feeds_ticks_and_captures() -> None:
    frame = VideoFrame(torch.full((2, 2, 3), 10, dtype=torch.uint8), timestamp_ns=0)
    with ActorHarness(TransformActor, "invert") as h:
        h.feed("video", frame)
        out = h.tick()
        assert int(out["video"][0].data[0, 0, 0]) == 245
        assert h.tick() == {"video": []}  # nothing new: nothing written


def test_harness_runs_lifecycle_and_async_process() -> None:
    frame = VideoFrame(torch.zeros((2, 2, 3), dtype=torch.uint8), timestamp_ns=0)
    h = ActorHarness(Counter, start=5)
    h.feed("video", frame)
    assert h.tick() == {"data": [6]}
    with pytest.raises(LookupError, match="no frame at tick 1"):
        h.tick()
    h.close()
    h.close()
    assert h.actor.events == ["setup", "teardown"]
