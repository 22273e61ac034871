"""``streamlib`` command line: ``run`` a pipeline file, list ``actors``, ``demo``, ``bench``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Sequence

from streamlib.control.signals import StopSignals

if TYPE_CHECKING:
    from streamlib.control.pipeline import Mode, PipelineSpec


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x360, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _control_address(text: str) -> tuple[str, int]:
    from streamlib.control.flags import parse_control_address

    try:
        return parse_control_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _has_display() -> bool:
    from streamlib.control.pipeline import has_display

    return has_display()


# -- streamlib demo (the console pipeline) -----------------------------------

def _demo(args: argparse.Namespace) -> int:
    from streamlib.actors import StatsSink, TestPatternActor, TransformActor
    from streamlib.runtime.runtime import Runtime

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


# -- streamlib run PIPELINE --------------------------------------------------

# The progress rows and line live in streamlib.control.summary (kept here for callers).
def _actor_rows(graph: dict[str, Any], previous: dict[str, int], dt: float) -> list[dict[str, Any]]:
    from streamlib.control.summary import actor_rows

    return actor_rows(graph, previous, dt)


def _progress_line(rows: list[dict[str, Any]]) -> str:
    from streamlib.control.summary import progress_line

    return progress_line(rows)


_WRITER_CLOSE_S = 20.0  # per writer at the end of `streamlib run` (trailer included)


def _run(args: argparse.Namespace) -> int:
    from streamlib.control.pipeline import Mode, PipelineError, load_pipeline

    try:
        spec = load_pipeline(args.pipeline, allow_modules=args.allow_module)
    except (PipelineError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    types = {a.type.name for a in spec.actors.values()}
    mode: Mode
    if args.offline or args.realtime:
        mode = "offline" if args.offline else "realtime"
        why = "requested"
    elif not _has_display() and "FileWriterActor" in types:
        mode, why = "offline", "no display: rendering the file as fast as possible"
    else:
        mode, why = "realtime", "display present" if _has_display() else "no file output"
    first_rate = next(iter(spec.clocks.values()), None)
    seconds = args.seconds
    if args.frames:
        if first_rate is None:
            print("error: --frames needs a pipeline with a 'clocks' section", file=sys.stderr)
            return 2
        seconds = args.frames / float(first_rate)
    overrides: dict[str, dict[str, Any]] = {}
    if args.out:
        if "FileWriterActor" not in types:
            print("error: --out given but the pipeline has no FileWriterActor", file=sys.stderr)
            return 2
        overrides["FileWriterActor"] = {"path": args.out}
    if args.overwrite:
        overrides.setdefault("FileWriterActor", {})["overwrite"] = True
    else:  # say so in the command line's terms before anything is built
        for a in spec.actors.values():
            path = (args.out or a.params.get("path")) if a.type.name == "FileWriterActor" else None
            if isinstance(path, str) and os.path.exists(path):
                print(f"error: actor {a.name!r} would overwrite {path}; pass --overwrite to "
                      "replace it", file=sys.stderr)
                return 2
    if args.headless and "DisplayActor" in types:
        overrides["DisplayActor"] = {"headless": True}
    # SIGINT/SIGTERM/SIGHUP stop the graph cleanly (files finalised, summary
    # printed, exit 128+N); the previous handlers are back when the run returns.
    with StopSignals() as stop:
        return _run_pipeline(args, spec, mode, why, seconds, overrides, stop)


def _run_pipeline(args: argparse.Namespace, spec: PipelineSpec, mode: Mode, why: str,
                  seconds: float | None, overrides: dict[str, dict[str, Any]],
                  stop: StopSignals) -> int:
    from streamlib.runtime.runtime import Runtime
    from streamlib.control.pipeline import PipelineError
    from streamlib.runtime.progress import endless_offline
    from streamlib.control.runlimits import finite_sources, sources_ended
    from streamlib.control.summary import summarize

    with Runtime(name=spec.name) as rt, contextlib.ExitStack() as control:
        try:
            pipeline = spec.build(rt, mode=mode, seconds=seconds, overrides=overrides,
                                  display=False if args.headless else None)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finite = finite_sources(pipeline.actors.values())
        if seconds:
            limit = f"{seconds:g} s"
        elif finite:
            limit = "the end of " + ", ".join(a.actor_id for a in finite)
        else:  # realtime and endless (offline needs a limit: build refused it)
            limit = "stopped (Ctrl-C, SIGTERM or SIGHUP)"
        print(f"running {spec.name} ({len(pipeline.actors)} actors, {mode}: {why}) until {limit}",
              flush=True)
        if args.control is not None:
            from streamlib.control.server import ControlServer
            from streamlib.control.flags import server_options, token_line

            try:  # closed (by the ExitStack) before the runtime
                server = control.enter_context(
                    ControlServer(rt, *args.control, **server_options(args)))
            except (OSError, ValueError) as exc:
                print(f"error: --control {args.control[0]}:{args.control[1]}: {exc}",
                      file=sys.stderr)
                return 2
            print(f"control: {server.url}", flush=True)
            print(token_line(args, server.token), flush=True)
        started = time.monotonic()
        finished = interrupted = False
        stuck: dict[str, str] = {}
        if not stop.event.is_set():
            rt.start()
        previous: dict[str, int] = {}
        last = started
        live = _live_display(args.quiet)
        try:
            while not stop.event.is_set():
                step = 0.1  # short waits: a stop signal is seen within one
                if mode == "realtime" and seconds is not None:
                    remaining = started + seconds - time.monotonic()
                    if remaining <= 0:
                        break
                    step = min(step, remaining)
                if rt.wait(step):
                    finished = True
                    break
                if finite and seconds is None and sources_ended(finite):
                    rt.wait_idle(5.0)  # the sources' last frames reach the writers
                    finished = True
                    break
                now = time.monotonic()
                if now - last >= 1.0:
                    live(_progress_line(_actor_rows(rt.graph(), previous, now - last)))
                    last = now
                    stuck = endless_offline(rt) if mode == "offline" and rt.wait_idle(0) else {}
                    if stuck:
                        break  # could never finish: the summary names the actor
        except KeyboardInterrupt:  # off the main thread no handler is installed
            interrupted = True
        elapsed = time.monotonic() - started
        before = rt.graph()  # failed/stalled states and link drops, before close()
        result = rt.result(finished)
        # the file's actors and any the control plane added (or replaced)
        actors = {**pipeline.actors, **{a.actor_id: a for a in rt.actors()}}
        if stuck:
            result = dataclasses.replace(result, stuck={**result.stuck, **stuck})
        # Writers first, each with its own budget: a slow encoder flush must not
        # lose the file to the bounded close of the whole graph.
        for actor in actors.values():
            if type(actor).__name__ == "FileWriterActor":
                actor.close(timeout=_WRITER_CLOSE_S)
    # The runtime is closed: every writer has finalised its file.
    summary = summarize(
        name=spec.name, mode=mode, elapsed=elapsed, finished=finished,
        signal_name=stop.name or ("SIGINT" if interrupted else None),
        signal_exit=stop.exit_code or (130 if interrupted else None),
        before=before, actors=actors.values(), result=result)
    try:
        summary.print(lambda line: print(line, flush=True),
                      lambda line: print(line, file=sys.stderr, flush=True))
    except OSError:  # SIGHUP: the terminal may be gone; the exit code still tells
        pass
    return summary.exit_code


def _live_display(quiet: bool) -> Any:
    """A progress printer: a rich live line on a terminal, plain lines otherwise."""
    if quiet:
        return lambda line: None
    if sys.stdout.isatty():
        from rich.console import Console

        console = Console()
        return lambda line: console.print(line, end="\r", overflow="ellipsis", no_wrap=True,
                                          soft_wrap=False, highlight=False)
    return lambda line: print(line, flush=True)


# -- streamlib actors ----------------------------------------------------------

def _actors(args: argparse.Namespace) -> int:
    from streamlib.control.catalog import builtin_actor_types, resolve_actor_type

    try:
        types = ({args.name: resolve_actor_type(args.name)} if args.name
                 else builtin_actor_types())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([t.as_dict() for t in types.values()], indent=2, default=repr))
        return 0
    for t in types.values():
        print(f"{t.name}: {t.summary}")
        for p in t.params:
            default = "" if p.required else f" = {p.default!r}"
            print(f"    {p.name}: {p.annotation}{default}")
    return 0


# -- streamlib bench -------------------------------------------------------------

def _import_benchmarks() -> Any:
    """``benchmarks.__main__`` from the source checkout, or None.

    The suite lives in the repository (``benchmarks/``), not in the wheel. A
    console script does not put the current directory on ``sys.path``, so
    look next to this package (a clone or editable install) and in the
    current directory.
    """
    import importlib
    from pathlib import Path

    candidates = [Path(__file__).resolve().parent.parent, Path.cwd()]
    for root in candidates:
        if (root / "benchmarks" / "__main__.py").is_file() and str(root) not in sys.path:
            sys.path.insert(0, str(root))
            break
    try:
        return importlib.import_module("benchmarks.__main__")
    except ImportError:
        return None


def _bench(args: argparse.Namespace) -> int:
    module = _import_benchmarks()
    if module is None:
        print("error: the benchmark suite is not installed with the package; run "
              "`streamlib bench` from a clone of the streamlib repository "
              "(it needs the benchmarks/ folder)", file=sys.stderr)
        return 2
    argv = (["--quick"] if args.quick else []) + (["--out", args.out] if args.out else [])
    argv += (["--only", *args.only] if args.only else [])
    if args.plots is not None:
        argv.append("--plots" if args.plots else "--no-plots")
    try:
        code: int = module.exit_code(module.main(argv, prog="streamlib bench"))
    except SystemExit as exc:  # the suite rejected an option (e.g. an unknown --only name)
        return exc.code if isinstance(exc.code, int) else 2
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamlib", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline file (YAML or JSON)")
    run.add_argument("pipeline", help="path to the pipeline file")
    limit = run.add_mutually_exclusive_group()
    limit.add_argument("--seconds", type=_positive, default=None,
                       help="stop after this long (default: when every finite source, e.g. "
                            "a FileReaderActor with loop: false, has ended; an endless graph "
                            "runs until a signal in real time, and needs a limit offline)")
    limit.add_argument("--frames", type=int, default=0,
                       help="stop after this many frames of the first clock")
    run.add_argument("--headless", action="store_true", help="no windows: displays render offscreen")
    run.add_argument("--out", default=None, help="path for the pipeline's FileWriterActor")
    run.add_argument("--overwrite", action="store_true",
                     help="let file writers replace existing files (default: refuse)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true",
                      help="virtual clocks: render as fast as possible, lose nothing")
    mode.add_argument("--realtime", action="store_true", help="software clocks (wall time)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    run.add_argument("--control", type=_control_address, default=None, metavar="[HOST:]PORT",
                     help="serve the JSON control plane (streamlib.control.server) on loopback; "
                          "0 picks a free port; prints 'control: URL' and where the token is")
    from streamlib.control.flags import add_arguments

    add_arguments(run)
    run.set_defaults(func=_run)

    actors = sub.add_parser("actors", help="list actor types and their parameters")
    actors.add_argument("name", nargs="?", help="one type (or package.module:Class)")
    actors.add_argument("--json", action="store_true", help="machine-readable output")
    actors.set_defaults(func=_actors)

    demo = sub.add_parser("demo", help="console pipeline: pattern -> invert -> stats")
    demo.add_argument("--seconds", type=float, default=5.0, help="stop after this long")
    demo.add_argument("--frames", type=int, default=0, help="stop after this many frames")
    demo.add_argument("--fps", type=float, default=30.0)
    demo.add_argument("--size", type=_size, default=(640, 360), help="WIDTHxHEIGHT")
    from streamlib.actors import PATTERNS

    demo.add_argument("--pattern", default="moving_box", choices=list(PATTERNS))
    demo.add_argument("--graph", action="store_true", help="print runtime.graph() JSON at the end")
    demo.set_defaults(func=_demo)

    # The suite's own options (benchmarks/__main__.py), passed on as given.
    bench = sub.add_parser(
        "bench", help="run the benchmark suite (from a source checkout)",
        description="Run the benchmarks in the repository's benchmarks/ folder; each writes "
                    "a JSON record and PNG plots into benchmarks/results/ "
                    "(benchmarks/results/quick/ with --quick).")
    bench.add_argument("--quick", action="store_true", help="about a minute in all")
    bench.add_argument("--out", default=None, metavar="DIR", help="results directory")
    bench.add_argument("--only", nargs="+", default=None, metavar="NAME",
                       help="run only these benchmarks (see python -m benchmarks --help)")
    bench.add_argument("--plots", action=argparse.BooleanOptionalAction, default=None,
                       help="render PNG plots (default: when matplotlib is installed)")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
