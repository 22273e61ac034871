"""Receive ST 2110-20 video described by an SDP file and show it (a window when a
display exists, else offscreen).

Usage: python examples/network_receive.py stream.sdp [--frames N] [--save shown.npy]
"""

import argparse

import numpy as np

from streamlib import Runtime
from streamlib.actors.display import DisplayActor
from streamlib.actors.network import NetworkReceiveActor

ap = argparse.ArgumentParser()
ap.add_argument("sdp")
ap.add_argument("--frames", type=int, default=300)
ap.add_argument("--save", help="save what the display shows at the end (.npy)")
args = ap.parse_args()

with Runtime() as rt:
    # Ends after --frames frames, or 10 s without one.
    receiver = NetworkReceiveActor(sdp=args.sdp, max_frames=args.frames, timeout_s=10)
    display = DisplayActor("streamlib network", receiver.width, receiver.height)
    receiver >> display
    rt.run()
    print(f"mode={display.mode} received={receiver.frames_out} "
          f"frames_shown={display.frames_shown} stats={receiver.stats()}")
    if args.save:
        np.save(args.save, display.read_framebuffer().numpy())
