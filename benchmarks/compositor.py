"""CompositorActor blend cost: 1080p output, ms per composited frame, one thread.

Run from the repository root::

    python -m benchmarks.compositor [--quick] [--out DIR]

Cases (random RGB background frame, RGBA layers with uniformly random alpha):

* ``full2`` / ``full3``: 2 / 3 full-frame 1920x1080 layers;
* ``small3``: 3 layers of 640x360 at different positions (one partly off-frame).

Methods, each timed per frame with ``time.perf_counter`` over the same inputs:

* ``numba``: ``CompositorActor(backend="numba").render`` (the real code path:
  allocate the output, copy the background, blend each covered region);
* ``torch``: the same with ``backend="torch"`` (the fallback without numba);
* ``naive``: a plain torch float32 blend per layer on the covered region
  (``(src*a + dst*(1-a)).round()``), the baseline the fast paths replace.

Everything runs on one thread (``torch.set_num_threads(1)``; the numba kernels
are serial). ``bit_exact`` says whether numba and torch outputs equal
``composite_reference`` exactly. ``ratio_naive_over_<m>`` = median naive /
median ``<m>``.

GStreamer baseline (``gstreamer`` in each case; skipped with the reason when
``gst-launch-1.0`` or its ``compositor`` is missing): the same number of
layers over a background, all BGRA 1920x1080 from ``videotestsrc`` (the
background ``pattern=smpte``, layers ``pattern=ball``), each layer pad with
``alpha=0.5`` (so every layer pixel is blended, like our random per-pixel
alpha), ``small3`` layers 640x360 at the same positions; output BGRA into
``fakesink``. Timed with ``benchmarks._gst`` (N frames minus a 1-frame run,
see there) twice: the full pipeline and the same sources straight into
fakesinks. ``compositor_cpu_ms`` = CPU ms per frame of the full pipeline minus
the sources alone, i.e. what GStreamer's compositor costs per frame summed
over all its threads; ``ratio_gst_over_numba`` = that / numba's median
(> 1: streamlib is faster). ``wall_ms`` figures are given raw as well:
GStreamer spreads the work over several threads, our compositor uses one.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import _gst, _plots
from benchmarks._record import load, percentiles, results_dir, write_record
from streamlib.actors.blending import numba_available
from streamlib.actors.compositor import Backend, CompositorActor
from streamlib.media.blend import composite_reference
from streamlib.core.frames import VideoFrame
from streamlib.runtime.runtime import Runtime

WIDTH, HEIGHT = 1920, 1080
CASES = ("full2", "full3", "small3")


def _layers(case: str, gen: torch.Generator) -> list[tuple[torch.Tensor, int, int]]:
    def rgba(h: int, w: int) -> torch.Tensor:
        return torch.randint(0, 256, (h, w, 4), dtype=torch.uint8, generator=gen)

    if case == "full2":
        return [(rgba(HEIGHT, WIDTH), 0, 0) for _ in range(2)]
    if case == "full3":
        return [(rgba(HEIGHT, WIDTH), 0, 0) for _ in range(3)]
    return [(rgba(360, 640), 100, 80), (rgba(360, 640), 900, 500), (rgba(360, 640), 1500, 820)]


def naive_blend(background: torch.Tensor, layers: list[tuple[torch.Tensor, int, int]]) -> torch.Tensor:
    """The float baseline: one float32 pass per layer over its covered region."""
    out = background.clone()
    for data, x, y in layers:
        h, w = min(data.shape[0], HEIGHT - y), min(data.shape[1], WIDTH - x)
        src = data[:h, :w].float()
        a = src[..., 3:4] / 255
        dst = out[y:y + h, x:x + w]
        dst.copy_((src[..., :3] * a + dst.float() * (1 - a)).round_())
    return out


def _gst_branch(case: str, i: int, n: str) -> tuple[str, str]:
    """(caps of source ``i``, compositor pad properties) for ``case``."""
    pattern = "smpte" if i == 0 else "ball"
    if case == "small3" and i > 0:
        w, h, (x, y) = 640, 360, ((100, 80), (900, 500), (1500, 820))[i - 1]
        props = f"c.sink_{i}::xpos={x} c.sink_{i}::ypos={y} c.sink_{i}::alpha=0.5"
    else:
        w, h = WIDTH, HEIGHT
        props = "" if i == 0 else f"c.sink_{i}::alpha=0.5"
    src = (f"videotestsrc num-buffers={n} pattern={pattern} ! "
           f"video/x-raw,format=BGRA,width={w},height={h},framerate=30/1")
    return src, props


def gstreamer_case(case: str, frames: int, repeats: int) -> dict[str, Any]:
    """GStreamer compositor figures for ``case`` (see the module docstring)."""
    layers = 3 if case in ("full3", "small3") else 2
    branches = [_gst_branch(case, i, "{n}") for i in range(layers + 1)]
    pads = " ".join(p for _, p in branches if p)
    # Pad properties go on the compositor element itself: sink_N::alpha=...
    comp_props = pads.replace("c.sink_", "sink_")
    full = (f"compositor name=c {comp_props} ! video/x-raw,format=BGRA,width={WIDTH},"
            f"height={HEIGHT} ! fakesink " + " ".join(f"{src} ! c.sink_{i}"
                                                       for i, (src, _) in enumerate(branches)))
    sources = " ".join(f"{src} ! fakesink" for src, _ in branches)
    with_comp = _gst.time_pipeline(full, frames, repeats)
    alone = _gst.time_pipeline(sources, frames, repeats)
    return {
        "layers": layers,
        "pipeline": with_comp,
        "sources_only": alone,
        "wall_ms_raw": with_comp["wall_ms_per_frame"],
        "cpu_ms_raw": with_comp["cpu_ms_per_frame"],
        "compositor_cpu_ms": max(0.0, with_comp["cpu_ms_per_frame"] - alone["cpu_ms_per_frame"]),
        "compositor_wall_ms": max(0.0, with_comp["wall_ms_per_frame"]
                                  - alone["wall_ms_per_frame"]),
    }


def _time(fn: Callable[[], object], frames: int) -> list[float]:
    fn()  # warm-up (numba cache load, allocator)
    samples = []
    for _ in range(frames):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compositor", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few frames per case (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--no-gstreamer", action="store_true", help="skip the GStreamer baseline")
    _plots.add_plot_flag(parser)
    args = parser.parse_args(argv)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    load_at_start = load()
    frames = 5 if args.quick else 40
    gst_frames, gst_repeats = (30, 1) if args.quick else (200, 3)
    gst_skip = "--no-gstreamer given" if args.no_gstreamer else _gst.skip_reason(
        "videotestsrc", "compositor", "fakesink")
    torch.set_num_threads(1)
    if numba_available():
        import numba

        numba.set_num_threads(1)
    methods = (["numba"] if numba_available() else []) + ["torch", "naive"]
    gen = torch.Generator().manual_seed(0)
    background = torch.randint(0, 256, (HEIGHT, WIDTH, 3), dtype=torch.uint8, generator=gen)
    bg_frame = VideoFrame(background, timestamp_ns=0)
    figures: dict[str, Any] = {}
    with Runtime(name="bench-compositor"):  # actors attach here, never run
        for case in args.cases:
            layers = _layers(case, gen)
            frames_by_name = {f"l{i}": VideoFrame(d, timestamp_ns=0, format="rgba")
                              for i, (d, _, _) in enumerate(layers)}
            comps: dict[str, CompositorActor] = {}
            backends: tuple[Backend, ...] = ("numba", "torch")
            for backend in backends:
                if backend in methods:
                    comp = CompositorActor(WIDTH, HEIGHT, backend=backend,
                                           actor_id=f"{case}-{backend}")
                    for i, (_, x, y) in enumerate(layers):
                        comp.add_layer(f"l{i}", x=x, y=y)
                    comps[backend] = comp
            reference = composite_reference(
                WIDTH, HEIGHT, layers=[(d, x, y, 1.0) for d, x, y in layers], base=background)
            result: dict[str, Any] = {}
            for method in methods:
                if method == "naive":
                    fn: Callable[[], torch.Tensor] = partial(naive_blend, background, layers)
                else:
                    fn = partial(comps[method].render, bg_frame, frames_by_name)
                    result[f"bit_exact_{method}"] = bool(torch.equal(fn(), reference))
                result[method] = percentiles(_time(fn, frames))
            for method in methods:
                if method != "naive":
                    result[f"ratio_naive_over_{method}"] = (
                        result["naive"]["median"] / result[method]["median"])
            if gst_skip is None:
                gst = gstreamer_case(case, gst_frames, gst_repeats)
                result["gstreamer"] = gst
                fast = "numba" if "numba" in methods else "torch"
                result[f"ratio_gst_over_{fast}"] = gst["compositor_cpu_ms"] / result[fast]["median"]
                result[f"ratio_gst_raw_wall_over_{fast}"] = gst["wall_ms_raw"] / result[fast]["median"]
            else:
                result["gstreamer"] = {"skipped": gst_skip}
            figures[case] = result
            line = "  ".join(f"{m} {result[m]['median']:7.2f} ms (p99 {result[m]['p99']:7.2f})"
                             for m in methods)
            if gst_skip is None:
                g = result["gstreamer"]
                line += (f"  gstreamer {g['compositor_cpu_ms']:6.2f} cpu-ms "
                         f"(raw {g['wall_ms_raw']:.2f} wall-ms, {g['cpu_ms_raw']:.2f} cpu-ms)")
            print(f"{case:7s} {line}", flush=True)
    if gst_skip is not None:
        print(f"GStreamer baseline skipped: {gst_skip}")
    written = []
    if plots:
        groups = {case: {m: figures[case][m]["median"] for m in methods} for case in args.cases}
        for case in args.cases:
            g = figures[case]["gstreamer"]
            if "skipped" not in g:
                groups[case]["gstreamer (cpu)"] = g["compositor_cpu_ms"]
        written.append(_plots.bars(out_dir / "compositor.png", groups,
                                   title="1080p composite, ms per frame (median; lower is better)",
                                   ylabel="ms / frame").name)
    params = {"width": WIDTH, "height": HEIGHT, "frames": frames, "threads": 1, "cases": args.cases,
              "methods": methods, "quick": args.quick,
              "gstreamer": {"frames": gst_frames, "repeats": gst_repeats, "skipped": gst_skip,
                            "method": "benchmarks/_gst.py: (N-frame run - 1-frame run) / (N-1); "
                                      "compositor_cpu_ms = pipeline cpu - sources-only cpu"}}
    path = write_record("compositor", params, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
