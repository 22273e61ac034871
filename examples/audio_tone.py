"""A tone into a WAV file: AudioGeneratorActor >> AudioOutputActor.

The generator runs on a VirtualClock (one tick per 20 ms chunk), so N seconds
render at once instead of in real time. Drop ``clock=`` and use
``backend="auto"`` to hear it on a machine with a sound card.

    python examples/audio_tone.py OUT.wav [seconds] [frequency_hz]
"""

from __future__ import annotations

import sys

import streamlib as sl
from streamlib.actors.audio import AudioGeneratorActor, AudioOutputActor


def main(path: str, seconds: float = 2.0, frequency: float = 440.0) -> None:
    with sl.Runtime() as rt:
        tone = AudioGeneratorActor(48000, 2, frequency, "sine",
                                   clock=sl.VirtualClock(50, max_ticks=round(seconds * 50)))
        out = AudioOutputActor(backend="wav", path=path)
        tone >> out
        rt.run()
    print(f"{path}: {out.samples_written} samples at {out.sample_rate} Hz x{out.channels}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], *(float(a) for a in sys.argv[2:4]))
