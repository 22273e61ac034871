"""Every example runs (so none can rot) and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_console_pipeline_prints_stats() -> None:
    proc = run_example("console_pipeline.py", "1.5")
    assert " fps  frames=" in proc.stdout


def test_custom_actor_renders_offline_exactly() -> None:
    proc = run_example("custom_actor.py")
    lines = proc.stdout.splitlines()
    frames = [int(l.split("frame=")[1].split()[0]) for l in lines if l.startswith("t=")]
    assert frames == [0, 30, 60]
    # virtual time: frame n is stamped exactly n/30 s
    assert [l.split("frame=")[0].strip() for l in lines[:3]] == ["t= 0.00s", "t= 1.00s", "t= 2.00s"]
    assert lines[-1] == "rendered 90 frames"


def test_every_example_is_run_by_some_test() -> None:
    test_sources = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    untested = [p.name for p in EXAMPLES.glob("*.py") if p.name not in test_sources]
    assert not untested, f"examples without a test that runs them: {untested}"


def test_gpu_pipeline_detects_every_box_and_counts_host_copies() -> None:
    import torch

    proc = run_example("gpu_pipeline.py", "12")
    lines = proc.stdout.splitlines()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert lines[0] == f"device {device}: 12/12 boxes exact, 12/12 frames drawn with their own result"
    assert lines[1].startswith("display upload: ")
    if device == "cpu":  # nothing is on a GPU, so the bridge never copies
        assert lines[1].startswith("display upload: host (no CUDA device")
        assert lines[2] == "host copies by the staging bridge: 0 down, 0 up"
    elif "cuda-gl-interop" in lines[1]:  # the whole pipeline on the GPU: no host copy
        assert lines[2] == "host copies by the staging bridge: 0 down, 0 up"
