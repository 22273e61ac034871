"""``streamlib`` command line: ``streamlib demo`` (more subcommands come later)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Sequence


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _demo(args: argparse.Namespace) -> int:
    from .actors import StatsSink, TestPatternActor, TransformActor
    from .graph import Runtime

    width, height = args.size
    with Runtime(name="demo") as rt:
        source = TestPatternActor(width, height, fps=args.fps, pattern=args.pattern,
                                  actor_id="pattern")
        transform = TransformActor(actor_id="invert")
        sink = StatsSink(actor_id="stats", printer=lambda line: print(line, flush=True))
        source >> transform >> sink
        rt.start()
        print(f"demo: {width}x{height} {args.pattern} at {args.fps:g} fps -> invert -> stats "
              f"(stops after {args.seconds:g} s" + (f" or {args.frames} frames)" if args.frames else ")"),
              flush=True)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            if args.frames and sink.frames >= args.frames:
                break
            rt.wait(min(0.05, max(0.0, deadline - time.monotonic())))
        report = sink.report()
        failed = [a.actor_id for a in rt.actors() if a.failed]
        if args.graph:
            print(json.dumps(rt.graph(), indent=2))
    print(f"summary: {report.frames} frames in {report.elapsed_s:.2f} s ({report.fps:.1f} fps), "
          f"dropped {report.dropped}, latency p50 {report.latency_ms_p50:.2f} ms, "
          f"max {report.latency_ms_max:.2f} ms" + (f", FAILED: {failed}" if failed else ""),
          flush=True)
    return 0 if report.frames > 0 and not failed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlib", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="console pipeline: pattern -> invert -> stats")
    demo.add_argument("--seconds", type=float, default=5.0, help="stop after this long")
    demo.add_argument("--frames", type=int, default=0, help="stop after this many frames")
    demo.add_argument("--fps", type=float, default=30.0)
    demo.add_argument("--size", type=_size, default=(640, 360), help="WIDTHxHEIGHT")
    demo.add_argument("--pattern", default="moving_box",
                      choices=["moving_box", "gradient", "checkerboard", "solid"])
    demo.add_argument("--graph", action="store_true", help="print runtime.graph() JSON at the end")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
