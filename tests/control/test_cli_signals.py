"""SIGINT, SIGTERM and SIGHUP stop `streamlib run` like Ctrl-C (issue 10, section 2):
the graph stops, the mp4 being written is finalised and playable, the summary is
printed, and the exit code is 128 + the signal (130, 143, 129)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from streamlib.control.signals import StopSignals

ROOT = Path(__file__).resolve().parents[2]

REALTIME = """
name: sig
clocks:
  video: {fps: 30}
actors:
  bars:   {type: TestPatternActor, clock: video, width: 64, height: 48, pattern: moving_box}
  writer: {type: FileWriterActor, path: unused.mp4, fps: 30, preset: ultrafast}
connections:
  - bars.video -> writer.video
"""


def _lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def _wait_for(lines: queue.Queue[str | None], predicate: str, timeout: float) -> list[str]:
    """Lines read until one containing ``predicate``; fails loudly on timeout or EOF."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no line with {predicate!r} within {timeout} s; got {seen}")
        if line is None:
            pytest.fail(f"output ended before a line with {predicate!r}; got {seen}")
        seen.append(line)
        if predicate in line:
            return seen


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed (Debian ffmpeg)")
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                       (signal.SIGHUP, 129)])
def test_stop_signal_finalises_the_file_and_prints_the_summary(
        tmp_path: Path, sig: signal.Signals, code: int) -> None:
    pipeline = tmp_path / "sig.yaml"
    pipeline.write_text(REALTIME)
    out = tmp_path / "rec.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlib", "run", str(pipeline), "--realtime", "--out", str(out)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        head = _wait_for(lines, "running sig", 60)
        assert "until stopped (Ctrl-C, SIGTERM or SIGHUP)" in head[-1]
        # A progress line comes after a second of running: frames are being encoded.
        _wait_for(lines, "writer ", 30)
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    rest = []
    while not lines.empty():
        line = lines.get()
        if line is not None:
            rest.append(line.rstrip("\n"))
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == code, (rest, stderr)
    summary = [line for line in rest if line.startswith("summary: sig ran")]
    assert summary and summary[0].endswith(f"(realtime), interrupted by {sig.name}"), rest
    rows = {line.split()[0]: line.split()[1] for line in rest if line.startswith("  ")}
    assert rows == {"bars": "stopped", "writer": "stopped"}, rest
    wrote = [line for line in rest if line.startswith(f"wrote {out} (")]
    assert wrote, rest
    frames = int(wrote[0].split("(")[1].split()[0])
    assert frames >= 10, rest  # it ran for a second at 30 fps before the signal
    # Under load a realtime writer may miss slots: the summary says so, and the
    # file keeps them as gaps (see FileWriterActor), so its duration covers them.
    gaps = re.search(r"WARNING: writer 'writer': \d+ frames dropped \(\d+ overwritten on its "
                     r"input, (\d+) missing slots", "\n".join(rest))
    slots = frames + (int(gaps.group(1)) if gaps else 0)
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                            "stream=nb_read_frames:format=duration", "-of", "json", str(out)],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stderr == "", probe.stderr
    info = json.loads(probe.stdout)
    assert int(info["streams"][0]["nb_read_frames"]) == frames
    assert abs(float(info["format"]["duration"]) - slots / 30) <= 1 / 30 + 0.01, (info, rest)


def test_stop_signals_set_a_flag_and_restore_the_handlers() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with StopSignals() as stop:
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.event.wait(10), "the SIGTERM handler never ran"
        os.kill(os.getpid(), signal.SIGHUP)  # a second signal: counted, the first one decides
        deadline = time.monotonic() + 10
        while stop.count < 2 and time.monotonic() < deadline:
            stop.event.wait(0.01)  # bytecode boundaries let the handler run
        assert (stop.received, stop.name, stop.exit_code, stop.count) == (
            signal.SIGTERM, "SIGTERM", 143, 2)
    assert {s: signal.getsignal(s) for s in before} == before


def test_stop_signals_off_the_main_thread_install_nothing() -> None:
    seen: list[object] = []

    def body() -> None:
        with StopSignals() as stop:
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(stop.exit_code)

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    assert seen == [before, None]


def test_importing_streamlib_installs_no_signal_handler() -> None:
    code = ("import signal, streamlib, streamlib.control.cli\n"
            "print([signal.getsignal(s) is signal.SIG_DFL\n"
            "       for s in (signal.SIGTERM, signal.SIGHUP)],\n"
            "      signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[True, True] True"
