"""Shared helpers for benchmark scripts: machine facts, percentiles, JSON records.

Every benchmark writes one JSON record per case into ``benchmarks/results/`` so
``docs/benchmarks.md`` can quote figures that were measured, with the machine
and commit they were measured on.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any, Sequence

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# ``--quick`` runs write here by default, so a smoke run never overwrites the
# full-run records that docs/benchmarks.md quotes.
QUICK_DIR = RESULTS_DIR / "quick"


def results_dir(out: Path | None, quick: bool) -> Path:
    """Where a benchmark writes: ``out`` if given, else results/ or results/quick/."""
    return out if out is not None else (QUICK_DIR if quick else RESULTS_DIR)


def load() -> dict[str, Any]:
    """Machine load now: 1/5/15-minute load averages and core count (shared machines)."""
    try:
        one, five, fifteen = (round(v, 2) for v in os.getloadavg())
    except OSError:
        return {"loadavg_1m": None, "loadavg_5m": None, "loadavg_15m": None,
                "cores": os.cpu_count()}
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen,
            "cores": os.cpu_count()}


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """min/median/p99/max (and mean) of ``values``; nearest-rank P99."""
    if not values:
        raise ValueError("percentiles() needs at least one value")
    ordered = sorted(values)
    p99_index = max(0, min(len(ordered) - 1, int(round(0.99 * len(ordered))) - 1))
    return {
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p99": ordered[p99_index],
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
        "count": float(len(ordered)),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _git_dirty() -> bool | None:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def _gpu_name() -> str | None:
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(0))
    except Exception:  # noqa: BLE001 - a broken torch means "no GPU" here
        pass
    return None


def machine_info() -> dict[str, Any]:
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in ("torch", "numpy", "numba", "av", "streamlib"):
        try:
            versions[mod] = str(__import__(mod).__version__)
        except Exception:  # noqa: BLE001
            versions[mod] = "missing"
    from benchmarks._gst import gst_version

    versions["gstreamer"] = gst_version() or "missing"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "gpu": _gpu_name(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": _git_commit(),
        "git_dirty": _git_dirty(),  # uncommitted changes to tracked files
    }


def write_record(name: str, parameters: dict[str, Any], figures: dict[str, Any],
                 results_dir: Path | None = None, load_at_start: dict[str, Any] | None = None,
                 plots: list[str] | None = None) -> Path:
    """Write ``<results_dir>/<name>.json`` and return its path.

    ``results_dir`` defaults to results/ (results/quick/ when
    ``parameters["quick"]``). The record holds the machine, the load at the
    end (and at the start, when given) and the names of the plots written.
    """
    directory = results_dir or (QUICK_DIR if parameters.get("quick") else RESULTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": parameters,
        "machine": machine_info(),
        "load": {"start": load_at_start, "end": load()},
        "figures": figures,
        "plots": plots or [],
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path
