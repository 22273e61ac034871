"""Run the benchmark suite: ``python -m benchmarks [--quick] [--out DIR] [--only NAME ...] [--plots]``.

Also ``streamlib bench`` (same options). Each benchmark writes a JSON record
(and PNG plots when matplotlib is installed) into ``benchmarks/results/``, or
``benchmarks/results/quick/`` with ``--quick`` (about a minute in all) so a
smoke run never overwrites the full-run records the docs quote. Benchmarks
whose module is not in this checkout (``gpu``, ``network``) are skipped with a
note. A benchmark that fails is reported and the others still run; the exit
status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Order: cheap and self-contained first, the realtime pipeline when warm.
BENCHMARKS = ("ringbuffer", "clock_jitter", "metrics_overhead", "testpattern", "compositor",
              "e2e", "file_io", "gpu", "network")
OPTIONAL = ("gpu", "network")  # written by others; absent from some checkouts


def available(name: str) -> bool:
    return importlib.util.find_spec(f"benchmarks.{name}") is not None


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks") -> dict[str, Any]:
    """Run the selected benchmarks; returns ``{name: result or {"error"/"skipped": why}}``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about a minute in all")
    parser.add_argument("--out", type=Path, default=None,
                        help="results directory (default benchmarks/results, quick: results/quick)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=None, metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=None,
                        help="render PNG plots (default: when matplotlib is installed)")
    args = parser.parse_args(argv)
    from benchmarks import _plots
    from benchmarks._record import results_dir

    plots = _plots.want_plots(args.plots)
    os.environ["STREAMLIB_BENCH_PLOTS"] = "1" if plots else "0"  # modules read it as default
    out_dir = results_dir(args.out, args.quick)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for name in args.only or list(BENCHMARKS):
        if not available(name):
            why = f"benchmarks/{name}.py is not in this checkout"
            print(f"== {name}: skipped ({why})", flush=True)
            results[name] = {"skipped": why}
            continue
        print(f"== {name}", flush=True)
        sub_argv = (["--quick"] if args.quick else []) + ["--out", str(out_dir)]
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            results[name] = module.main(sub_argv)
        except Exception as exc:  # noqa: BLE001 - report it, run the rest
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"== {name}: FAILED ({type(exc).__name__}: {exc})", flush=True)
        else:
            print(f"== {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    failed = [n for n, r in results.items() if isinstance(r, dict) and "error" in r]
    print(f"== done in {time.perf_counter() - started:.1f} s; results in {out_dir}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return results


def exit_code(results: dict[str, Any]) -> int:
    return 1 if any(isinstance(r, dict) and "error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(exit_code(main(sys.argv[1:])))
