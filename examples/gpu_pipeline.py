"""The GPU-first pipeline: pattern -> compositor -> inference -> overlay -> display.

On a CUDA machine every frame stays on the GPU: the patterns are drawn there, the
compositor blends with the one-pass CUDA kernel, the detector runs on a stream of its
own, the overlay draws with tensor ops, and the display uploads through CUDA-GL
interop where the GL runs on the NVIDIA driver. The staging bridge counts every frame
it copies between host and device: the last line shows those counts (0 when nothing
was copied). Without CUDA the same code runs on the CPU.

    python examples/gpu_pipeline.py [FRAMES]
"""

from __future__ import annotations

import sys

import torch

import streamlib as sl
from streamlib.actors.inference import BrightBoxDetector, InferenceActor, to_cpu
from streamlib.actors.overlay import OverlayBoxesActor


class Check(sl.Actor):
    """Counts detections that equal the true box of each frame."""

    def __init__(self, box: sl.TestPatternActor) -> None:
        super().__init__()
        self.box, self.exact = box, 0
        self.inputs["data"] = sl.StreamInput("data", slots=64)

    def process(self, tick: sl.TimedTick) -> None:
        for msg in self.inputs["data"].read_all_new():
            x, y = self.box.box_position(msg.frame_number)
            size = self.box.box_size
            found = [round(v) for v in to_cpu(msg).payload["boxes"][0].tolist()]
            self.exact += found == [x, y, x + size, y + size]


def main(frames: int) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with sl.Runtime() as rt:
        clock = sl.VirtualClock(30, max_ticks=frames)  # offline and lock-step: nothing dropped
        box = sl.TestPatternActor(640, 360, pattern="moving_box", box_size=32, device=device,
                                  clock=clock)
        bars = sl.TestPatternActor(640, 360, pattern="smpte_bars", device=device, clock=clock)
        comp = sl.CompositorActor(640, 360, device=device)
        comp.add_layer("bars", x=16, y=16, scale=0.25, opacity=0.3)  # dim: never "bright"
        detect = InferenceActor(BrightBoxDetector(), device=device)
        overlay = OverlayBoxesActor(color=(255, 0, 0), thickness=2, device=device)
        display = sl.DisplayActor(width=640, height=360, headless=True)
        check = Check(box)
        box >> comp.inputs["background"]
        bars >> comp.inputs["bars"]
        comp >> detect >> overlay.inputs["data"]
        comp >> overlay.inputs["video"]
        overlay >> display
        detect >> check
        assert rt.run(120), "offline run did not finish in 120 s"
        staged = None if rt.staging is None else rt.staging.stats()  # None: no CUDA here
    print(f"device {device}: {check.exact}/{frames} boxes exact, "
          f"{overlay.drawn}/{frames} frames drawn with their own result")
    print(f"display upload: {display.upload_path} ({display.upload_reason})")
    print(f"host copies by the staging bridge: {0 if staged is None else staged.d2h_frames} down, "
          f"{0 if staged is None else staged.h2d_frames} up")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
