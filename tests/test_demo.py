"""The main job: examples/demo.yaml renders a playable 1080p60 file with audio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    proc = subprocess.run(
        [sys.executable, "-m", "streamlib", "run", "examples/demo.yaml", "--offline",
         "--frames", "30", "--headless", "--out", str(out), "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"wrote {out}" in proc.stdout
    assert "comp             finished out     30" in proc.stdout  # final state, not "running"
    return out


def test_demo_file_has_exact_frames_duration_and_audio(demo_file: Path) -> None:
    with av.open(str(demo_file)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        assert (video.codec_context.width, video.codec_context.height) == (1920, 1080)
        assert video.average_rate == 60
        assert audio.codec_context.sample_rate == 48000 and audio.codec_context.channels == 2
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 30
    # SMPTE RP 219 bars (limited range): the 75% yellow bar at the top, below
    # the plasma and overlay layers, survives h264 within a few code values.
    yellow = frames[10][200, 560].astype(int)
    assert np.abs(yellow - np.array([180, 180, 16])).max() <= 6, yellow
    # the moving box layer (placed at 60,620) is in the frame
    assert frames[0][700, 100].tolist() != frames[0][700, 1000].tolist()


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed (Debian ffmpeg)")
def test_demo_file_passes_ffprobe(demo_file: Path) -> None:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format",
         "-of", "json", str(demo_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    info = json.loads(proc.stdout)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert int(streams["video"]["nb_read_frames"]) == 30
    assert streams["audio"]["codec_name"] == "aac"
    assert abs(float(info["format"]["duration"]) - 0.5) < 0.05
