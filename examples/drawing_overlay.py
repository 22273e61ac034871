"""An animated skia overlay: a rotating square and a caption on a transparent frame.

Renders N frames offline (VirtualClock, lock-step) and saves the last one as a PNG.

    python examples/drawing_overlay.py [frames=60] [out=overlay.png]
"""

from __future__ import annotations

import sys

import skia

import streamlib as sl
from streamlib.actors.drawing import DrawingActor
from streamlib.core.frames import VideoFrame

DRAW = """
font = skia.Font(skia.Typeface("DejaVu Sans"), 18)

def draw(canvas, ctx):
    canvas.save()
    canvas.translate(ctx.width / 2, ctx.height / 2)
    canvas.rotate(90 * ctx.time)  # a quarter turn per second
    canvas.drawRect(skia.Rect(-40, -40, 40, 40), skia.Paint(Color=skia.Color(255, 140, 0), AntiAlias=True))
    canvas.restore()
    canvas.drawRect(skia.Rect(4, ctx.height - 34, 230, ctx.height - 4), skia.Paint(Color=skia.Color(0, 0, 0, 160)))
    label = f"frame {ctx.frame_number}  t={ctx.time:.2f}s"
    canvas.drawString(label, 10, ctx.height - 12, font, skia.Paint(Color=skia.ColorWHITE, AntiAlias=True))
"""


class KeepLast(sl.Actor):
    def __init__(self) -> None:
        super().__init__()
        self.inputs["video"] = sl.StreamInput("video")
        self.last: VideoFrame | None = None

    def process(self, tick: sl.TimedTick) -> None:
        self.last = self.inputs["video"].read_new() or self.last


def main(frames: int, out: str) -> None:
    with sl.Runtime() as rt:
        overlay = DrawingActor(DRAW, 320, 180, clock=sl.VirtualClock(30, max_ticks=frames))
        keep = KeepLast()
        overlay >> keep
        assert rt.run(60), "offline render did not finish in 60 s"
    assert keep.last is not None and overlay.draw_errors == 0, overlay.last_error
    skia.Image.fromarray(keep.last.numpy(), colorType=skia.kRGBA_8888_ColorType).save(out, skia.kPNG)
    alpha = keep.last.data[..., 3]
    print(f"rendered {overlay.outputs['video'].written} frames; saved {out} "
          f"({int((alpha > 0).sum())} opaque-ish pixels of {alpha.numel()})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60,
         sys.argv[2] if len(sys.argv) > 2 else "overlay.png")
