"""Layers over SMPTE bars: a half-size, half-transparent moving box and a checkerboard.

Renders N frames (default 30) offline on one shared VirtualClock, so every
source ticks together and the graph runs lock-step; the bars are the
compositor's background input and so its trigger (one composite per frame).
Prints the frame count and a few sampled pixels of the last frame.

    python examples/compositor_layers.py [frames]
"""

from __future__ import annotations

import sys

import streamlib as sl
from streamlib.actors.compositor import CompositorActor
from streamlib.actors.patterns import TestPatternActor


class LastFrame(sl.Actor):
    """Keeps the newest frame and counts them."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs["video"] = sl.StreamInput("video")
        self.frame: sl.VideoFrame | None = None
        self.count = 0

    def process(self, tick: sl.TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None:
            self.frame, self.count = frame, self.count + 1


def main(frames: int = 30) -> None:
    clock = sl.VirtualClock(30, max_ticks=frames)
    with sl.Runtime() as rt:
        bars = TestPatternActor(640, 360, pattern="smpte_bars", clock=clock)
        box = TestPatternActor(320, 180, pattern="moving_box", box_size=40, clock=clock)
        board = TestPatternActor(160, 120, pattern="checkerboard", clock=clock)
        comp = CompositorActor(640, 360)
        bars >> comp  # the first free video input: "background"
        box >> comp.add_layer("box", x=16, y=16, scale=0.5, opacity=0.5)
        board >> comp.add_layer("board", x=440, y=200, z=1)
        sink = comp >> LastFrame()
        assert rt.run(60), "offline render did not finish in 60 s"
    assert sink.frame is not None
    print(f"composited {sink.count} frames, last frame_number={sink.frame.frame_number}")
    for (x, y), what in [((300, 150), "bars: 75% green"), ((100, 40), "50% box layer over 75% white"),
                         ((450, 210), "checkerboard cell 0"), ((490, 210), "checkerboard cell 1")]:
        print(f"pixel ({x}, {y}) = {tuple(sink.frame.data[y, x].tolist())}  {what}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
