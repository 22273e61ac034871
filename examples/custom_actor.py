"""Writing your own actor: subclass Actor, declare ports, implement process().

Renders 90 frames offline on a VirtualClock (as fast as the machine allows,
lock-step, so nothing is dropped) and prints the mean brightness of each
second of video.

    python examples/custom_actor.py
"""

from __future__ import annotations

import streamlib as sl


class Brightness(sl.Actor):
    """Emits the mean pixel value of each new frame as a DataMessage."""

    def __init__(self, actor_id: str | None = None) -> None:
        super().__init__(actor_id=actor_id)
        self.inputs["video"] = sl.StreamInput("video")
        self.outputs["data"] = sl.StreamOutput("data")

    async def process(self, tick: sl.TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None:
            mean = float(frame.data.float().mean())
            self.outputs["data"].write(sl.DataMessage(
                mean, timestamp_ns=frame.timestamp_ns, frame_number=frame.frame_number))


class PrintEverySecond(sl.Actor):
    def __init__(self) -> None:
        super().__init__()
        self.inputs["data"] = sl.StreamInput("data")
        self.lines: list[str] = []

    def process(self, tick: sl.TimedTick) -> None:
        msg = self.inputs["data"].read_new()
        if msg is not None and msg.frame_number % 30 == 0:
            line = f"t={msg.timestamp_ns / 1e9:5.2f}s frame={msg.frame_number:3d} mean={msg.payload:6.2f}"
            self.lines.append(line)
            print(line)


def main() -> list[str]:
    with sl.Runtime() as rt:
        source = sl.TestPatternActor(160, 90, pattern="moving_box",
                                     clock=sl.VirtualClock(30, max_ticks=90))
        printer = PrintEverySecond()
        source >> Brightness() >> printer
        assert rt.run(60), "offline render did not finish in 60 s"
        print(f"rendered {source.outputs['video'].written} frames")
        return printer.lines


if __name__ == "__main__":
    main()
