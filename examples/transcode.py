"""Transcode a media file: FileReaderActor >> FileWriterActor, video and audio.

The reader runs lock-step (``realtime=False``: a VirtualClock at the file's
rate), so the copy goes as fast as the encoder allows and drops nothing;
``loop=False`` ends the stream at the end of the file, which ends ``run()``.

    python examples/transcode.py INPUT OUTPUT [codec]
"""

from __future__ import annotations

import sys

import streamlib as sl
from streamlib.actors.file_reader import FileReaderActor
from streamlib.actors.file_writer import FileWriterActor


def main(src: str, dst: str, codec: str = "libx264") -> None:
    with sl.Runtime() as rt:
        reader = FileReaderActor(src, loop=False, realtime=False)
        writer = FileWriterActor(dst, codec=codec, fps=reader.rate)
        reader >> writer  # video -> video
        if reader.has_audio:
            reader.outputs["audio"] >> writer.inputs["audio"]
        rt.run()
    print(f"{dst}: {writer.frames_written} frames, {writer.audio_samples_written} audio samples")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:4])
