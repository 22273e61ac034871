"""Actor types referenced from test pipeline files as `_pipeline_actors:Name`."""

from __future__ import annotations

from streamlib import Actor, StreamInput, TimedTick


class Exploder(Actor):
    """Raises on the frame number given by ``at``."""

    def __init__(self, at: int = 3, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.at = at
        self.inputs["video"] = StreamInput("video")

    def process(self, tick: TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None and frame.frame_number == self.at:
            raise RuntimeError(f"exploded at frame {self.at}")
