"""TestPatternActor 1080p generation rate versus GStreamer ``videotestsrc``.

Run from the repository root::

    python -m benchmarks.testpattern [--quick] [--out DIR] [--plots/--no-plots]

streamlib, per pattern (1920x1080 RGB24, one process):

* ``render``: ``TestPatternActor.render(n)`` called N times in a loop (the
  per-frame work alone). ``smpte_bars`` is static: rendered once at
  construction and the same immutable tensor published every frame, so its
  render rate measures only the call; ``moving_box`` clones the frame and
  paints the box (a real 6 MB write per frame); ``smpte_bars+timecode``
  clones and draws the timecode glyphs.
* ``graph``: the actor on a ``VirtualClock`` (lock-step, as fast as possible)
  into a sink that reads each frame, through the runtime: fps = N / wall time
  of ``Runtime.run`` (start-up included; the framework's per-tick cost shows).

GStreamer, same run: ``videotestsrc pattern=smpte`` and ``pattern=ball`` (the
moving analogue of ``moving_box``) into ``video/x-raw,format=RGB,width=1920,
height=1080 ! fakesink``, timed by ``benchmarks._gst`` (N-buffer run minus a
1-buffer run for start-up; see there). ``videotestsrc`` renders every buffer.
Skipped, with the reason, when GStreamer is missing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks import _gst, _plots
from benchmarks._record import load, percentiles, results_dir, write_record
from streamlib import Actor, Runtime, StreamInput, TestPatternActor, TimedTick, VirtualClock

WIDTH, HEIGHT = 1920, 1080
CASES: dict[str, dict[str, Any]] = {
    "smpte_bars": {"pattern": "smpte_bars"},
    "moving_box": {"pattern": "moving_box"},
    "smpte_bars+timecode": {"pattern": "smpte_bars", "timecode": True},
}
GST_CASES = {"smpte": "smpte", "ball": "ball"}


class _ReadSink(Actor):
    """Reads every new frame (so links count reads, not drops)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")
        self.frames = 0

    def process(self, tick: TimedTick) -> None:
        self.frames += len(self.inputs["video"].read_all_new())


def render_rate(frames: int, repeats: int, **kwargs: Any) -> dict[str, Any]:
    """``render(n)`` per-frame times (ms) over ``repeats`` loops of ``frames``."""
    with Runtime(name="bench-pattern-render"):  # never started: render() only
        actor = TestPatternActor(WIDTH, HEIGHT, fps=60, **kwargs)
        actor.render(0)  # warm-up
        per_frame: list[float] = []
        n = 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(frames):
                actor.render(n)
                n += 1
            per_frame.append((time.perf_counter() - t0) / frames * 1e3)
    stats = percentiles(per_frame)
    return {"ms_per_frame": stats, "fps": 1e3 / stats["median"]}


def graph_rate(frames: int, **kwargs: Any) -> dict[str, Any]:
    """Frames per second of pattern -> sink on a VirtualClock through the runtime."""
    with Runtime(name="bench-pattern-graph") as rt:
        src = TestPatternActor(WIDTH, HEIGHT, clock=VirtualClock(60, max_ticks=frames),
                               actor_id="pattern", runtime=rt, **kwargs)
        sink = _ReadSink(actor_id="sink", runtime=rt)
        src >> sink
        t0 = time.perf_counter()
        finished = rt.run(600)
        wall = time.perf_counter() - t0
        m = rt.metrics(telemetry=False)
    if not finished or sink.frames != frames:
        raise RuntimeError(f"graph run incomplete: {sink.frames}/{frames} frames")
    proc = m.actor("pattern").process_ms
    return {"frames": frames, "wall_s": wall, "fps": frames / wall,
            "pattern_process_ms": None if proc is None else proc.as_dict()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.testpattern", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few frames (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    _plots.add_plot_flag(parser)
    args = parser.parse_args(argv)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    load_at_start = load()
    frames, repeats, graph_frames = (30, 3, 60) if args.quick else (120, 7, 600)
    gst_frames, gst_repeats = (60, 1) if args.quick else (600, 3)

    figures: dict[str, Any] = {"streamlib": {}, "gstreamer": {}}
    for case, kwargs in CASES.items():
        r = render_rate(frames, repeats, **kwargs)
        g = graph_rate(graph_frames, **kwargs)
        figures["streamlib"][case] = {"render": r, "graph": g}
        print(f"streamlib {case:20s} render {r['fps']:9.1f} fps "
              f"({r['ms_per_frame']['median']:.3f} ms)   graph {g['fps']:7.1f} fps", flush=True)
    skip = _gst.skip_reason("videotestsrc", "fakesink")
    for case, pattern in GST_CASES.items():
        if skip is not None:
            figures["gstreamer"][case] = {"skipped": skip}
            continue
        template = (f"videotestsrc num-buffers={{n}} pattern={pattern} ! "
                    f"video/x-raw,format=RGB,width={WIDTH},height={HEIGHT} ! fakesink")
        gst = _gst.time_pipeline(template, gst_frames, gst_repeats)
        figures["gstreamer"][case] = gst
        print(f"gstreamer {case:20s} {gst['fps']:9.1f} fps ({gst['wall_ms_per_frame']:.3f} ms, "
              f"{gst['cpu_ms_per_frame']:.3f} cpu-ms)", flush=True)
    if skip is not None:
        print(f"GStreamer baseline skipped: {skip}")
    else:
        s, gs = figures["streamlib"], figures["gstreamer"]
        figures["ratio_graph_over_gst"] = {
            "smpte_bars_vs_smpte": s["smpte_bars"]["graph"]["fps"] / gs["smpte"]["fps"],
            "moving_box_vs_ball": s["moving_box"]["graph"]["fps"] / gs["ball"]["fps"],
        }
    written = []
    if plots:
        groups: dict[str, dict[str, float]] = {}
        for case, f in figures["streamlib"].items():
            groups[case] = {"streamlib render": f["render"]["fps"],
                            "streamlib graph": f["graph"]["fps"]}
        for case, f in figures["gstreamer"].items():
            if "skipped" not in f:
                groups[f"gst {case}"] = {"gst videotestsrc": f["fps"]}
        written.append(_plots.bars(out_dir / "testpattern.png", groups,
                                   title="1080p RGB test pattern, frames per second "
                                         "(log scale; higher is better)",
                                   ylabel="fps", log_y=True).name)
    params = {"width": WIDTH, "height": HEIGHT, "render_frames": frames, "render_repeats": repeats,
              "graph_frames": graph_frames, "quick": args.quick,
              "gstreamer": {"frames": gst_frames, "repeats": gst_repeats, "skipped": skip,
                            "method": "benchmarks/_gst.py: fps = (N-1) / (wall(N) - wall(1))"}}
    path = write_record("testpattern", params, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)
    print(f"wrote {path}")
    return {"parameters": params, "figures": figures, "path": str(path)}


if __name__ == "__main__":
    main()
