"""GStreamer baselines: time ``gst-launch-1.0`` pipelines the same way every time.

Method (stated in every record that uses it): a pipeline is run with
``num-buffers=N`` and again with ``num-buffers=1``, alternately, ``repeats``
times each. Wall time is measured around the process (``time.perf_counter``),
CPU time from ``resource.getrusage(RUSAGE_CHILDREN)`` (user + system of the
child, all its threads). The per-frame figures subtract the 1-buffer run, which
holds process start, plugin loading and caps negotiation::

    wall_ms_per_frame = (median wall(N) - median wall(1)) / (N - 1)
    fps               = 1000 / wall_ms_per_frame
    cpu_ms_per_frame  = (median cpu(N) - median cpu(1)) / (N - 1)

GStreamer runs each source and the aggregator on their own threads, so wall
time can use more than one core; ``cpu_ms_per_frame`` is the figure to compare
with single-threaded code.
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import time
from typing import Any

GST_LAUNCH = "gst-launch-1.0"


def gst_launch_path() -> str | None:
    return shutil.which(GST_LAUNCH)


def gst_version() -> str | None:
    path = gst_launch_path()
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.stdout.splitlines():
        if line.startswith("GStreamer "):
            return line.split()[1]
    return None


def missing_elements(*elements: str) -> list[str]:
    """Elements that ``gst-inspect-1.0`` does not know (all of them without GStreamer)."""
    inspect = shutil.which("gst-inspect-1.0")
    if inspect is None:
        return list(elements)
    missing = []
    for element in elements:
        try:
            rc = subprocess.run([inspect, "--exists", element], capture_output=True,
                                timeout=20).returncode
        except (OSError, subprocess.SubprocessError):
            rc = 1
        if rc != 0:
            missing.append(element)
    return missing


def skip_reason(*elements: str) -> str | None:
    """Why a GStreamer baseline cannot run here, or None if it can."""
    if gst_launch_path() is None:
        return f"{GST_LAUNCH} not found (apt install gstreamer1.0-tools gstreamer1.0-plugins-base)"
    missing = missing_elements(*elements)
    if missing:
        return f"GStreamer elements missing: {', '.join(missing)}"
    return None


def run_once(pipeline: str, timeout: float = 300.0) -> tuple[float, float]:
    """Run ``gst-launch-1.0 -q <pipeline>``; returns (wall s, child CPU s).

    Raises:
        RuntimeError: the pipeline failed (message holds GStreamer's stderr).
    """
    path = gst_launch_path()
    if path is None:
        raise RuntimeError(f"{GST_LAUNCH} not found")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([path, "-q", *pipeline.split()], capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"gst-launch failed ({proc.returncode}): {pipeline}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def time_pipeline(template: str, frames: int, repeats: int = 3) -> dict[str, Any]:
    """Per-frame figures of ``template`` (``{n}`` = num-buffers); see the module docstring."""
    if frames < 2:
        raise ValueError(f"time_pipeline: frames must be >= 2, got {frames}")
    run_once(template.format(n=1))  # warm the plugin registry and page cache
    walls: dict[int, list[float]] = {frames: [], 1: []}
    cpus: dict[int, list[float]] = {frames: [], 1: []}
    for _ in range(repeats):
        for n in (frames, 1):  # alternate, so drifting load hits both alike
            wall, cpu = run_once(template.format(n=n))
            walls[n].append(wall)
            cpus[n].append(cpu)
    wall_n, wall_1 = statistics.median(walls[frames]), statistics.median(walls[1])
    cpu_n, cpu_1 = statistics.median(cpus[frames]), statistics.median(cpus[1])
    wall_ms = max(1e-9, (wall_n - wall_1) / (frames - 1) * 1e3)
    return {
        "pipeline": f"{GST_LAUNCH} -q " + template.format(n=frames),
        "frames": frames,
        "repeats": repeats,
        "wall_s_n": walls[frames],
        "wall_s_1": walls[1],
        "cpu_s_n": cpus[frames],
        "cpu_s_1": cpus[1],
        "startup_wall_s": wall_1,
        "wall_ms_per_frame": wall_ms,
        "fps": 1e3 / wall_ms,
        "cpu_ms_per_frame": max(0.0, (cpu_n - cpu_1) / (frames - 1) * 1e3),
    }
