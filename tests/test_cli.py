"""The console demo: `python -m streamlib demo` runs, reports, exits cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamlib.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_in_process_stops_after_frames(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--frames", "20", "--seconds", "30", "--fps", "120",
                 "--size", "160x90", "--graph"]) == 0
    out = capsys.readouterr().out
    summary = [l for l in out.splitlines() if l.startswith("summary:")]
    assert len(summary) == 1
    frames = int(summary[0].split()[1])
    assert frames >= 20
    assert "dropped" in summary[0] and "latency p50" in summary[0]
    assert '"id": "invert"' in out  # --graph printed the runtime description


def test_demo_as_subprocess_exits_zero_with_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamlib", "demo", "--seconds", "1.5", "--fps", "60",
         "--size", "320x180"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("demo: 320x180 moving_box at 60 fps")
    assert any(" fps  frames=" in l for l in lines), proc.stdout  # per-second report line
    assert lines[-1].startswith("summary:")
    assert proc.stderr == ""


def test_bad_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--size", "big"])
    assert info.value.code == 2
    assert "size must look like 640x360" in capsys.readouterr().err
