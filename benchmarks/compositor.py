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
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks._record import percentiles, write_record
from streamlib.actors.compositor import (
    Backend, CompositorActor, composite_reference, numba_available,
)
from streamlib.frames import VideoFrame
from streamlib.graph import Runtime

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
    args = parser.parse_args(argv)
    frames = 5 if args.quick else 40
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
            figures[case] = result
            line = "  ".join(f"{m} {result[m]['median']:7.2f} ms (p99 {result[m]['p99']:7.2f})"
                             for m in methods)
            print(f"{case:7s} {line}", flush=True)
    params = {"width": WIDTH, "height": HEIGHT, "frames": frames, "threads": 1, "cases": args.cases,
              "methods": methods, "quick": args.quick}
    path = write_record("compositor", params, figures, results_dir=args.out)
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
