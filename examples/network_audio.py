"""ST 2110-30 audio over loopback UDP: tone >> sender ~RTP~> receiver >> WAV file.

Both ends run in one Runtime on 127.0.0.1, in real time, for a bounded time.
The receiver is configured from the sender's SDP (``a=rtpmap:97 L24/48000/2``,
``a=ptime:1``); the tone's clock is monotonic, so the receiver unwraps RTP
timestamps on that timebase and its frames carry the sender's sample times.

    python examples/network_audio.py OUT.wav [seconds] [port]
"""

from __future__ import annotations

import sys

import streamlib as sl
from streamlib.actors.audio import AudioGeneratorActor, AudioOutputActor
from streamlib.actors.network_audio import AudioNetworkReceiveActor, AudioNetworkSendActor


def main(path: str, seconds: float = 1.0, port: int = 41500) -> None:
    with sl.Runtime() as rt:
        tone = AudioGeneratorActor(48000, 2, 1000.0, "sine", amplitude=0.5)
        send = AudioNetworkSendActor(f"127.0.0.1:{port}", "L24", 48000, 2, ptime_ms=1.0)
        recv = AudioNetworkReceiveActor(sdp=send.sdp, frame_ms=20.0, timebase="monotonic")
        out = AudioOutputActor(backend="wav", path=path)
        tone >> send
        recv >> out
        rt.run(seconds)
    print(f"sent {send.stats['packets_sent']} packets; received {recv.stats.played}, "
          f"lost {recv.stats.lost}, malformed {recv.stats.malformed}; "
          f"{path}: {out.samples_written} samples")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0,
         int(sys.argv[3]) if len(sys.argv) > 3 else 41500)
