"""The benchmark harness: valid JSON records, plots, skips with a reason.

Tiny cases only; no test looks at how fast anything was.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level folder of the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as harness  # noqa: E402
from benchmarks import _gst, _plots, clock_jitter, metrics_overhead  # noqa: E402
from streamlib.control.cli import main as cli_main  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _record(path: Path, name: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(path.read_text())
    json.dumps(record, allow_nan=False)  # strict JSON: no NaN/Infinity
    assert record["name"] == name
    machine = record["machine"]
    for key in ("cpu", "cores", "gpu", "platform", "versions", "git_commit"):
        assert key in machine, key
    assert {"python", "torch", "numpy", "av", "gstreamer"} <= set(machine["versions"])
    assert set(record["load"]) == {"start", "end"}
    assert record["load"]["end"]["cores"] == machine["cores"]
    assert isinstance(record["figures"], dict) and record["figures"]
    return record


def test_harness_writes_a_valid_record(tmp_path: Path) -> None:
    results = harness.main(["--quick", "--only", "ringbuffer", "--out", str(tmp_path),
                            "--no-plots"])
    assert harness.exit_code(results) == 0
    record = _record(tmp_path / "ringbuffer.json", "ringbuffer")
    figures = record["figures"]
    for key in ("min", "median", "p99", "max"):
        assert key in figures["ring_pair_ns"]
    assert figures["ratio_queue_over_ring"] == pytest.approx(
        figures["queue_pair_ns"]["median"] / figures["ring_pair_ns"]["median"])
    assert record["parameters"]["quick"] is True and record["plots"] == []
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.skipif(not _plots.matplotlib_available(), reason="matplotlib not installed")
def test_plots_are_png_files_named_in_the_record(tmp_path: Path) -> None:
    clock_jitter.main(["--fps", "120", "--seconds", "0.2", "--out", str(tmp_path), "--plots"])
    record = _record(tmp_path / "clock_jitter.json", "clock_jitter")
    assert record["plots"] == ["clock_jitter_lateness.png", "clock_jitter_intervals.png"]
    for name in record["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    case = record["figures"]["software_clock"]["120"]
    assert case["ticks"] >= 1 and "_lateness_ns" not in case  # raw samples stay out


def test_metrics_overhead_tiny_case(tmp_path: Path) -> None:
    out = metrics_overhead.main(["--quick", "--ticks", "20", "--repeats", "1",
                                 "--pipeline-seconds", "0", "--out", str(tmp_path), "--no-plots"])
    record = _record(Path(out["path"]), "metrics_overhead")
    f = record["figures"]
    assert f["overhead_us_per_tick"] == pytest.approx(
        f["graph_us_per_tick"]["on"]["median"] - f["graph_us_per_tick"]["off"]["median"])
    assert set(f["per_call"]) >= {"cpu_wrapper_ns", "record_ns", "record_in_graph_ns",
                                  "note_in_graph_ns", "estimated_us_per_tick"}
    assert "pipeline" not in f  # --pipeline-seconds 0 skips it


def test_streamlib_bench_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["bench", "--quick", "--only", "ringbuffer", "--out", str(tmp_path),
                     "--no-plots"]) == 0
    assert (tmp_path / "ringbuffer.json").is_file()
    assert "results in" in capsys.readouterr().out


def test_bench_cli_without_the_suite(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import streamlib.control.cli as cli

    monkeypatch.setattr(cli, "_import_benchmarks", lambda: None)
    assert cli_main(["bench", "--quick"]) == 2
    assert "needs the benchmarks/ folder" in capsys.readouterr().err


def test_a_failing_benchmark_is_reported_and_the_rest_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    real_import = importlib.import_module

    def fake_import(name: str) -> Any:
        if name == "benchmarks.testpattern":
            raise RuntimeError("boom")
        return real_import(name)

    monkeypatch.setattr("benchmarks.__main__.importlib.import_module", fake_import)
    results = harness.main(["--quick", "--only", "testpattern", "ringbuffer", "--out",
                            str(tmp_path), "--no-plots"])
    assert results["testpattern"] == {"error": "RuntimeError: boom"}
    assert "path" in results["ringbuffer"]
    assert harness.exit_code(results) == 1
    assert "FAILED: testpattern" in capsys.readouterr().out


def test_missing_benchmark_modules_are_skipped(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setattr(harness, "available", lambda name: name != "gpu")
    monkeypatch.setattr("benchmarks.__main__.importlib.import_module",
                        lambda name: pytest.fail(name))
    results = harness.main(["--only", "gpu", "--out", str(tmp_path)])
    assert results == {"gpu": {"skipped": "benchmarks/gpu.py is not in this checkout"}}


def test_gstreamer_missing_is_a_skip_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("benchmarks._gst.shutil.which", lambda name: None)
    reason = _gst.skip_reason("videotestsrc")
    assert reason is not None and "gst-launch-1.0 not found" in reason
    with pytest.raises(RuntimeError, match="not found"):
        _gst.run_once("videotestsrc num-buffers=1 ! fakesink")


@pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="GStreamer not installed")
def test_gstreamer_timing_figures() -> None:
    assert _gst.skip_reason("videotestsrc", "fakesink") is None
    g = _gst.time_pipeline("videotestsrc num-buffers={n} ! video/x-raw,width=64,height=64 "
                           "! fakesink", frames=5, repeats=1)
    assert g["frames"] == 5 and len(g["wall_s_n"]) == len(g["wall_s_1"]) == 1
    assert g["fps"] == pytest.approx(1e3 / g["wall_ms_per_frame"])
    assert "num-buffers=5" in g["pipeline"]
    with pytest.raises(RuntimeError, match="gst-launch failed"):
        _gst.run_once("nosuchelement ! fakesink")


def test_bench_options_parse_like_the_suite() -> None:
    from streamlib.control.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick", "--only", "e2e", "file_io",
                                      "--out", "x", "--no-plots"])
    assert (args.quick, args.only, args.out, args.plots) == (True, ["e2e", "file_io"], "x", False)
    assert cli_main(["bench", "--only", "nope"]) == 2  # the suite names the valid choices


# ------------------------------------------------------------------ benchmarks/gpu.py

class _FakeEvent:
    def __init__(self, log: list[str], name: str, at_ms: float) -> None:
        self.log, self.name, self.at_ms = log, name, at_ms

    def record(self) -> None:
        self.log.append(f"record {self.name}")

    def synchronize(self) -> None:
        self.log.append(f"synchronize {self.name}")

    def elapsed_time(self, end: _FakeEvent) -> float:
        return end.at_ms - self.at_ms


def test_gpu_launch_timer_records_events_right_around_each_launch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The start event is recorded after streamlib built the arguments and after the
    lead-in was queued; end right after the launch; the frame waits on the last end."""
    from benchmarks import gpu
    from streamlib.gpu import kernels

    log: list[str] = []
    made = iter(range(100))

    def new_event() -> _FakeEvent:
        n = next(made)
        return _FakeEvent(log, f"e{n}", at_ms=n * n / 10)

    def compiled(file: str, name: str, index: int) -> Any:
        return lambda grid, block, args: log.append(f"launch {name} {args}")

    monkeypatch.setattr(kernels, "_function", compiled)

    def run() -> None:  # what kernels._launch does, twice (e.g. 16 layers: two chunks)
        for chunk in (1, 2):
            log.append(f"marshal {chunk}")
            kernels._function("composite.cu", "composite_rgb", 0)((1, 1, 1), (32, 8, 1), chunk)

    timer = gpu.LaunchTimer(new_event, lead_in=lambda: log.append("lead-in"))
    with timer.installed():
        gpu_ms, host_us = timer.frame(run)
    assert kernels._function is compiled  # restored
    assert log == ["lead-in", "marshal 1", "record e0", "launch composite_rgb 1", "record e1",
                   "marshal 2", "record e2", "launch composite_rgb 2", "record e3",
                   "synchronize e3"]
    assert gpu_ms == pytest.approx((0.1 - 0.0) + (0.9 - 0.4)) and host_us > 0
    with timer.installed(), pytest.raises(RuntimeError, match="launched no kernel"):
        timer.frame(lambda: None)


def test_gpu_tick_overhead_records_a_fresh_event_per_frame() -> None:
    """in_thread_us includes the hook's event for every frame (the CPU twins here)."""
    from benchmarks import gpu

    f = gpu.tick_overhead_case(20)
    assert f["device"] == "cpu" and f["hook_events_per_tick"] == 1.0
    assert f["in_thread_us"]["count"] == 18.0


def test_gpu_cases_skip_without_cuda() -> None:
    from benchmarks import gpu

    if gpu.cuda_available():
        pytest.skip("CUDA here: the cases run")
    assert gpu.composite_case(2) == gpu.staging_case(2) == {"skipped": "no CUDA"}
