"""Show a moving test pattern: a window when a display exists, else offscreen.

Usage: python examples/pattern_display.py [frames]   (default 120)
"""

import sys

from streamlib import Runtime, VirtualClock
from streamlib.actors.display import DisplayActor
from streamlib.actors.patterns import TestPatternActor

frames = int(sys.argv[1]) if len(sys.argv) > 1 else 120

with Runtime() as rt:
    # VirtualClock: exactly `frames` frames; with a window, vsync paces them.
    source = TestPatternActor(640, 360, pattern="moving_box",
                              clock=VirtualClock(30, max_ticks=frames))
    display = DisplayActor("streamlib pattern", 640, 360)  # headless=None: auto-detect
    source >> display
    rt.run()
    print(f"mode={display.mode} frames_shown={display.frames_shown}")
