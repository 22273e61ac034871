"""`streamlib run` never reports success it did not have (issue 10, section 3).

No silent time limit, no `wrote PATH` for a file that was not written, exit 1
when an actor failed or stalled, a writer wrote nothing or a draw function never
drew, a WARNING when a writer's file has gaps, and real final states.
"""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from streamlib import Runtime, TestPatternActor, VirtualClock
from streamlib.actors.file_writer import FileWriterActor
from streamlib.control.cli import main
from streamlib.runtime.runresult import RunResult
from streamlib.control.summary import final_status, summarize


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def twelve_seconds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of 64x48 video at 10 fps (120 frames): longer than the old silent 10 s."""
    path = tmp_path_factory.mktemp("src") / "long.mp4"
    with Runtime() as rt:
        src = TestPatternActor(64, 48, pattern="moving_box", clock=VirtualClock(10, max_ticks=120))
        src >> FileWriterActor(str(path), fps=10, preset="ultrafast")
        assert rt.run(60).ok
    return path


def test_offline_run_without_a_limit_plays_the_whole_file(
        tmp_path: Path, twelve_seconds: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline = write(tmp_path, f"""
name: whole
actors:
  reader: {{type: FileReaderActor, path: '{twelve_seconds}', loop: false}}
  writer: {{type: FileWriterActor, path: unused.mp4, fps: 10, preset: ultrafast}}
connections:
  - reader.video -> writer.video
""")
    out = tmp_path / "copy.mp4"
    assert main(["run", str(pipeline), "--offline", "--out", str(out), "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "running whole (2 actors, offline: requested) until the end of reader" in stdout
    assert ", finished" in stdout.splitlines()[1]
    assert f"wrote {out} (120 frames)" in stdout
    assert frames_in(out) == 120


def test_realtime_run_without_a_limit_ends_with_its_finite_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip = tmp_path / "clip.mp4"
    with Runtime() as rt:  # 1 s at 10 fps
        src = TestPatternActor(64, 48, pattern="moving_box", clock=VirtualClock(10, max_ticks=10))
        src >> FileWriterActor(str(clip), fps=10, preset="ultrafast")
        assert rt.run(60).ok
    pipeline = write(tmp_path, f"""
name: play
clocks:
  fast: {{fps: 30}}
actors:
  reader: {{type: FileReaderActor, path: '{clip}', loop: false}}
  writer: {{type: FileWriterActor, path: unused.mp4, fps: 10, preset: ultrafast}}
  bars:   {{type: TestPatternActor, clock: fast, width: 32, height: 32}}
  stats:  {{type: StatsSink, report_interval_s: null, printer: null}}
connections:
  - reader.video -> writer.video
  - bars.video -> stats.in
""")
    out = tmp_path / "copy.mp4"
    assert main(["run", str(pipeline), "--realtime", "--out", str(out), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("until the end of reader")
    assert lines[1].startswith("summary: play ran ") and lines[1].endswith("(realtime), finished")
    assert f"wrote {out} (10 frames)" in lines
    assert frames_in(out) == 10


def test_endless_offline_graph_asks_for_a_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "examples/console.yaml", "--offline", "-q"]) == 2
    assert ("examples/console.yaml: offline mode needs a duration: no actor ends on its own "
            "(a FileReaderActor with loop: false would); give seconds (streamlib run: "
            "--seconds or --frames)") in capsys.readouterr().err


SMALL = """
name: small
clocks:
  video: {fps: 30}
actors:
  bars:   {type: TestPatternActor, clock: video, width: WIDTH, height: 48, pattern: gradient}
  writer: {type: FileWriterActor, path: unused.mp4, fps: 30, preset: ultrafast}
connections:
  - bars.video -> writer.video
"""


def test_summary_shows_final_states_not_running(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ok.mp4"
    pipeline = write(tmp_path, SMALL.replace("WIDTH", "64"))
    assert main(["run", str(pipeline), "--offline", "--frames", "5", "--out", str(out), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
    assert rows == {"bars": "finished", "writer": "finished"}
    assert f"wrote {out} (5 frames)" in lines


def test_failed_writer_exits_1_and_does_not_claim_the_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "odd.mp4"
    pipeline = write(tmp_path, SMALL.replace("WIDTH", "33"))
    assert main(["run", str(pipeline), "--offline", "--frames", "5", "--out", str(out), "-q"]) == 1
    stdout, stderr = capsys.readouterr()
    assert not any(line.startswith("wrote ") for line in stdout.splitlines())
    assert not out.exists()
    assert ("FAILED: actor 'writer' failed: streamlib.errors.ConfigError: writer: upstream "
            "'bars' frame size: yuv420p needs an even frame size, got 33x48; crop or pass "
            "pix_fmt='yuv444p'") in stdout
    assert f"FAILED: writer 'writer' wrote nothing usable to {out}" in stdout
    assert "actor writer failed:\nTraceback" in stderr


def test_draw_function_that_never_draws_fails_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.mp4"
    pipeline = write(tmp_path, """
name: never
clocks:
  video: {fps: 30}
actors:
  overlay:
    type: DrawingActor
    clock: video
    width: 64
    height: 48
    draw: |
      def draw(canvas, ctx):
          raise ValueError("no ink")
  writer: {type: FileWriterActor, path: unused.mp4, fps: 30}
connections:
  - overlay.video -> writer.video
""")
    assert main(["run", str(pipeline), "--offline", "--frames", "4", "--out", str(out), "-q"]) == 1
    stdout = capsys.readouterr().out
    assert ("FAILED: actor 'overlay': the draw function never produced a frame (4 error(s); "
            "last: frame 3") in stdout and "ValueError: no ink" in stdout
    assert f"FAILED: writer 'writer' wrote nothing: no video frame reached it ({out} not written)" \
        in stdout
    assert not any(line.startswith("wrote ") for line in stdout.splitlines())
    assert not out.exists()


def test_gaps_at_a_writer_are_a_prominent_warning(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # A 30 fps source into a file declared 60 fps: every other 1/60 slot is empty,
    # like the realtime demo that delivered 36 fps to a 60 fps file.
    out = tmp_path / "gaps.mp4"
    pipeline = write(tmp_path, SMALL.replace("WIDTH", "64")
                     .replace("fps: 30, preset", "fps: 60, preset"))
    assert main(["run", str(pipeline), "--offline", "--frames", "10", "--out", str(out), "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ("WARNING: writer 'writer': 9 frames dropped (0 overwritten on its input, 9 missing "
            "slots, 0 skipped): the file has gaps (the previous frame is held; declared rate "
            "60 fps)") in lines
    assert f"wrote {out} (10 frames)" in lines
    with av.open(str(out)) as c:
        assert [round(float(f.time) * 60) for f in c.decode(video=0)] == list(range(0, 20, 2))


def test_stalled_and_restarted_actors_are_reported_and_fail_the_run() -> None:
    def described(actor_id: str, status: str, restarts: int = 0) -> dict[str, object]:
        return {"id": actor_id, "status": status, "restarts": restarts, "outputs": [],
                "latency_ms": None, "counters": {"processed": 3, "process_ns_total": 3_000_000}}

    before = {"actors": [described("slow", "stalled"), described("flaky", "running", 2)],
              "links": []}
    summary = summarize(name="g", mode="realtime", elapsed=1.0, finished=False,
                        signal_name=None, signal_exit=None, before=before, actors=[],
                        result=RunResult(False, stalled=("slow",), restarts={"flaky": 2},
                                         stuck={"src": "it has no clock"}))
    assert [(r["id"], r["status"]) for r in summary.rows] == [("slow", "stalled"),
                                                              ("flaky", "stopped")]
    assert summary.problems == ["actor 'slow' stalled (a call exceeded its time budget)",
                                "actor 'src' is stuck: it has no clock"]
    assert summary.warnings == ["actor 'flaky' was restarted 2 time(s)"]
    assert summary.exit_code == 1
    assert summary.header == "summary: g ran 1.00 s (realtime), stopped at its time limit"


def test_final_status_mapping() -> None:
    assert final_status("running", True) == "finished"
    assert final_status("running", False) == "stopped"
    for status in ("failed", "stalled", "stopped", "restarting"):
        assert final_status(status, True) == status
