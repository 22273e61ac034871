"""The 5-line script: a pattern, an inverting transform and a stats sink.

Actors start as soon as they are created (on the default runtime);
``streamlib.run(seconds)`` keeps the script alive while frames flow.

    python examples/console_pipeline.py [seconds]
"""

import sys

import streamlib as sl

sl.TestPatternActor(320, 180, fps=30) >> sl.TransformActor("invert") >> sl.StatsSink()
sl.run(seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
