"""Run every benchmark: ``python -m benchmarks [--quick] [--out DIR] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = ("ringbuffer", "clock_jitter", "compositor")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about a minute in all")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    for name in args.only:
        module = importlib.import_module(f"benchmarks.{name}")
        sub_argv = (["--quick"] if args.quick else []) + (
            ["--out", str(args.out)] if args.out else [])
        print(f"== {name}", flush=True)
        results[name] = module.main(sub_argv)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
