"""Model inference on video: a moving box is detected, boxed in red, and checked.

TestPatternActor(moving_box) -> InferenceActor(BrightBoxDetector) -> OverlayBoxesActor,
on a VirtualClock (offline, lock-step: every frame is processed). The detector is
a tiny fixed-weight torch model (no download); on a CUDA machine it runs on the
GPU on its own stream. Prints each detected box next to the true one.

    python examples/inference_overlay.py [FRAMES]
"""

from __future__ import annotations

import sys

import streamlib as sl
from streamlib.actors.inference import BrightBoxDetector, InferenceActor, to_cpu
from streamlib.actors.overlay import OverlayBoxesActor


class Report(sl.Actor):
    """Prints detected vs true boxes; checks the overlay drew the box's corner red."""

    def __init__(self, source: sl.TestPatternActor) -> None:
        super().__init__()
        self.source, self.exact, self.red = source, 0, 0
        self.inputs["data"] = sl.StreamInput("data", slots=64)
        self.inputs["video"] = sl.StreamInput("video", slots=64)

    def process(self, tick: sl.TimedTick) -> None:
        size = self.source.box_size
        for msg in self.inputs["data"].read_all_new():
            boxes = to_cpu(msg).payload["boxes"]  # GPU results: wait for them, then copy
            found = [round(v) for v in boxes[0].tolist()]
            x, y = self.source.box_position(msg.frame_number)
            real = [x, y, x + size, y + size]
            self.exact += found == real
            print(f"frame {msg.frame_number:3d}: detected {found} truth {real}")
        for frame in self.inputs["video"].read_all_new():
            x, y = self.source.box_position(frame.frame_number)
            self.red += to_cpu(frame).data[y, x].tolist() == [255, 0, 0]


def main(frames: int) -> None:
    with sl.Runtime() as rt:
        source = sl.TestPatternActor(320, 180, pattern="moving_box", box_size=24,
                                     clock=sl.VirtualClock(30, max_ticks=frames))
        infer = InferenceActor(BrightBoxDetector())
        overlay = OverlayBoxesActor(color=(255, 0, 0), thickness=2)
        report = Report(source)
        source >> infer >> overlay.inputs["data"]
        source >> overlay.inputs["video"]
        infer >> report.inputs["data"]
        overlay >> report.inputs["video"]
        assert rt.run(60), "offline run did not finish in 60 s"
        print(f"device {infer.device}: {report.exact}/{frames} boxes exact, "
              f"{report.red}/{frames} overlays drawn")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
