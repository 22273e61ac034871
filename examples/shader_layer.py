"""A plasma GLSL shader rendered offscreen (headless EGL works), a few pixels printed.

    python examples/shader_layer.py [frames=30]
"""

from __future__ import annotations

import sys

import streamlib as sl
from streamlib.actors.shader import ShaderActor

PLASMA = """
uniform float u_time;
void main() {
    vec2 p = uv * 8.0;
    float v = sin(p.x + u_time) + sin(p.y + u_time * 1.3) + sin(length(p - 4.0) * 1.5 - u_time * 2.0);
    fragColor = vec4(0.5 + 0.5 * sin(v), 0.5 + 0.5 * sin(v + 2.094), 0.5 + 0.5 * sin(v + 4.189), 1.0);
}
"""


class PrintPixels(sl.Actor):
    def __init__(self) -> None:
        super().__init__()
        self.inputs["video"] = sl.StreamInput("video")

    def process(self, tick: sl.TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None and frame.frame_number % 10 == 0:
            corners = [tuple(frame.data[y, x].tolist()) for y, x in ((0, 0), (89, 159), (179, 319))]
            print(f"frame {frame.frame_number:3d} t={frame.timestamp:.2f}s pixels {corners}")


def main(frames: int) -> None:
    with sl.Runtime() as rt:
        plasma = ShaderActor(PLASMA, 320, 180, clock=sl.VirtualClock(30, max_ticks=frames))
        plasma >> PrintPixels()
        assert rt.run(60), "offline render did not finish in 60 s"
        assert not plasma.failed, plasma.error
    print(f"rendered {plasma.outputs['video'].written} frames")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
