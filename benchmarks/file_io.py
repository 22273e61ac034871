"""File encode/decode throughput through the actors versus bare PyAV.

Run from the repository root::

    python -m benchmarks.file_io [--quick] [--out DIR] [--plots/--no-plots]

Encode, N frames of 1920x1080 RGB24 ``moving_box`` into H.264 MP4
(``libx264``, preset ``veryfast``, crf 23, yuv420p, 30 fps, FFmpeg's default
threads), both ways rendering each frame with ``TestPatternActor.render``:

* ``actors``: ``TestPatternActor`` on a ``VirtualClock`` -> ``FileWriterActor``,
  lock-step through the runtime; time = ``Runtime.run`` wall (the runtime and
  the writer's open/flush/trailer included);
* ``bare``: a PyAV loop doing the same: open, per frame ``render`` ->
  ``av.VideoFrame.from_ndarray(rgb24)`` -> ``encode`` -> ``mux``; flush; close.

Decode, the file just written, to RGB24 frames:

* ``actors``: ``FileReaderActor(realtime=False, loop=False)`` -> a sink that
  reads every frame, lock-step; time = ``Runtime.run`` wall;
* ``bare``: ``for f in container.decode(video=0): f.to_ndarray(format="rgb24")``
  with the stream's ``thread_type = "AUTO"``, as the reader sets it.

``overhead_ratio`` = actors wall / bare wall (1.0 = the framework is free).
Runs alternate actors/bare ``repeats`` times; medians are reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from benchmarks import _plots
from benchmarks._record import load, results_dir, write_record
from streamlib import (
    Actor, FileReaderActor, FileWriterActor, Runtime, StreamInput, TestPatternActor, TimedTick,
    VirtualClock,
)

WIDTH, HEIGHT, FPS = 1920, 1080, 30
CODEC, PRESET, CRF = "libx264", "veryfast", 23


class _CountSink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video", slots=8)
        self.frames = 0

    def process(self, tick: TimedTick) -> None:
        self.frames += len(self.inputs["video"].read_all_new())


def encode_actors(path: Path, frames: int) -> float:
    with Runtime(name="bench-encode") as rt:
        src = TestPatternActor(WIDTH, HEIGHT, pattern="moving_box", runtime=rt,
                               clock=VirtualClock(FPS, max_ticks=frames))
        writer = FileWriterActor(str(path), codec=CODEC, fps=FPS, preset=PRESET, crf=CRF,
                                 overwrite=True,  # each repeat writes the same file
                                 runtime=rt)
        src >> writer
        t0 = time.perf_counter()
        finished = rt.run(600)
        writer.finalize()  # trailer written inside the timed span, like the bare loop
        wall = time.perf_counter() - t0
        written = writer.frames_written
    if not finished or written != frames:
        raise RuntimeError(f"actor encode incomplete: {written}/{frames} frames")
    return wall


def encode_bare(path: Path, frames: int) -> float:
    with Runtime(name="bench-encode-bare"):  # the actor is only a renderer here
        pattern = TestPatternActor(WIDTH, HEIGHT, pattern="moving_box")
        t0 = time.perf_counter()
        container = av.open(str(path), "w")
        stream: Any = container.add_stream(CODEC, rate=FPS,
                                           options={"crf": str(CRF), "preset": PRESET})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.time_base = Fraction(1, FPS)
        for n in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern.render(n).numpy(), format="rgb24")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        container.close()
        return time.perf_counter() - t0


def decode_actors(path: Path, frames: int) -> float:
    with Runtime(name="bench-decode") as rt:
        reader = FileReaderActor(str(path), loop=False, realtime=False, audio=False, runtime=rt)
        sink = _CountSink(runtime=rt)
        reader >> sink
        t0 = time.perf_counter()
        finished = rt.run(600)
        wall = time.perf_counter() - t0
    if not finished or sink.frames != frames:
        raise RuntimeError(f"actor decode incomplete: {sink.frames}/{frames} frames")
    return wall


def decode_bare(path: Path, frames: int) -> float:
    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"  # as FileReaderActor sets it
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            n += 1
    wall = time.perf_counter() - t0
    if n != frames:
        raise RuntimeError(f"bare decode got {n}/{frames} frames")
    return wall


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.file_io", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 frames, one repeat")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    _plots.add_plot_flag(parser)
    args = parser.parse_args(argv)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    frames, repeats = (60, 1) if args.quick else (300, 3)
    load_at_start = load()

    walls: dict[str, list[float]] = {k: [] for k in
                                     ("encode_actors", "encode_bare", "decode_actors", "decode_bare")}
    with tempfile.TemporaryDirectory(prefix="streamlib-bench-") as tmp:
        a_path, b_path = Path(tmp) / "actors.mp4", Path(tmp) / "bare.mp4"
        for _ in range(repeats):  # alternate, so drifting load hits both alike
            walls["encode_actors"].append(encode_actors(a_path, frames))
            walls["encode_bare"].append(encode_bare(b_path, frames))
            walls["decode_actors"].append(decode_actors(b_path, frames))
            walls["decode_bare"].append(decode_bare(b_path, frames))
        sizes = {"actors_bytes": a_path.stat().st_size, "bare_bytes": b_path.stat().st_size}
    med = {k: statistics.median(v) for k, v in walls.items()}
    figures: dict[str, Any] = {}
    for op in ("encode", "decode"):
        a, b = med[f"{op}_actors"], med[f"{op}_bare"]
        figures[op] = {
            "actors_fps": frames / a, "bare_fps": frames / b,
            "actors_wall_s": walls[f"{op}_actors"], "bare_wall_s": walls[f"{op}_bare"],
            "overhead_ratio": a / b,
        }
        print(f"{op}: actors {frames / a:6.1f} fps  bare PyAV {frames / b:6.1f} fps  "
              f"overhead x{a / b:.3f}", flush=True)
    figures["file_sizes"] = sizes
    written = []
    if plots:
        written.append(_plots.bars(
            out_dir / "file_io.png",
            {op: {"actors": figures[op]["actors_fps"], "bare PyAV": figures[op]["bare_fps"]}
             for op in ("encode", "decode")},
            title=f"{WIDTH}x{HEIGHT} H.264 ({PRESET}) frames per second (higher is better)",
            ylabel="fps").name)
    params = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "frames": frames, "repeats": repeats,
              "codec": CODEC, "preset": PRESET, "crf": CRF, "pix_fmt": "yuv420p",
              "pattern": "moving_box", "quick": args.quick, "pyav": av.__version__}
    path = write_record("file_io", params, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)
    print(f"wrote {path}")
    return {"parameters": params, "figures": figures, "path": str(path)}


if __name__ == "__main__":
    main()
