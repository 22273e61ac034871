"""Send SMPTE bars as ST 2110-20 video (RFC 4175 over RTP/UDP) to loopback.

Usage: python examples/network_send.py [--frames N] [--port P] [--sdp stream.sdp]
Then receive with examples/network_receive.py stream.sdp (or GStreamer/FFmpeg: the
SDP file is what ``ffmpeg -protocol_whitelist file,udp,rtp -i stream.sdp`` opens).
"""

import argparse

from streamlib import Runtime, VirtualClock
from streamlib.actors.network import NetworkSendActor
from streamlib.actors.patterns import TestPatternActor

ap = argparse.ArgumentParser()
ap.add_argument("--frames", type=int, default=300)
ap.add_argument("--port", type=int, default=5004)
ap.add_argument("--sdp", default="stream.sdp")
args = ap.parse_args()

with Runtime() as rt:
    # VirtualClock: exactly --frames frames; the sender paces them at 30 fps on the wire.
    bars = TestPatternActor(320, 180, pattern="smpte_bars",
                            clock=VirtualClock(30, max_ticks=args.frames))
    sender = NetworkSendActor(dest=f"127.0.0.1:{args.port}", format="YCbCr-4:2:2/10",
                              width=320, height=180, fps=30, sdp_path=args.sdp)
    bars >> sender
    print(f"SDP written to {args.sdp}", flush=True)
    rt.run()
    print(f"sent {sender.stats()}")
