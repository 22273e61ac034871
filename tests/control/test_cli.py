"""The console demo: `python -m streamlib demo` runs, reports, exits cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamlib.control.cli import main

ROOT = Path(__file__).resolve().parents[2]


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


def test_run_refuses_to_overwrite_without_the_flag(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.mp4"
    out.write_bytes(b"an earlier take")
    argv = ["run", "examples/demo.yaml", "--offline", "--frames", "2", "--headless",
            "--out", str(out), "-q"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"error: actor 'writer' would overwrite {out}; pass "
                                       "--overwrite to replace it\n")
    assert out.read_bytes() == b"an earlier take"
    assert main(argv + ["--overwrite"]) == 0
    assert f"wrote {out} (2 frames)" in capsys.readouterr().out.splitlines()


def test_makefile_demo_passes_overwrite_and_an_explicit_limit() -> None:
    makefile = (ROOT / "Makefile").read_text()
    demo_args = next(l for l in makefile.splitlines() if l.startswith("DEMO_ARGS"))
    assert "--seconds 10" in demo_args and "--overwrite" in demo_args
