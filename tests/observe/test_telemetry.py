"""Telemetry: CPU figures from /proc, NVML through a fake module, the no-driver path."""

from __future__ import annotations

import logging
import sys
import threading
import types
from typing import Any

import pytest

from streamlib import Actor, Runtime, TimedTick, VirtualClock
from streamlib.errors import ClosedError, ConfigError
from streamlib.observe.telemetry import Telemetry, TelemetrySample, gpu_status


class _Util:
    gpu, memory = 37, 12


class _Mem:
    used, total = 3 * 2**30, 80 * 2**30


def fake_pynvml(broken: str | None = None, init_error: bool = False) -> types.ModuleType:
    """A stand-in for nvidia-ml-py: one GPU; ``broken`` names a call that fails."""
    nv = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    nv.NVMLError = NVMLError  # type: ignore[attr-defined]
    nv.NVML_CLOCK_GRAPHICS, nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM = 0, 1, 2  # type: ignore[attr-defined]
    nv.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    nv.calls = []  # type: ignore[attr-defined]

    def call(name: str, value: Any) -> Any:
        def fn(*args: Any) -> Any:
            nv.calls.append(name)
            if name == broken or (init_error and name == "nvmlInit"):
                raise NVMLError(f"{name}: Not Supported")
            return value(*args) if callable(value) else value
        return fn

    for name, value in {
        "nvmlInit": None, "nvmlShutdown": None, "nvmlDeviceGetCount": 1,
        "nvmlDeviceGetHandleByIndex": "handle0", "nvmlDeviceGetName": b"Fake H100",
        "nvmlDeviceGetUtilizationRates": _Util(), "nvmlDeviceGetMemoryInfo": _Mem(),
        "nvmlDeviceGetEncoderUtilization": [25, 167000],
        "nvmlDeviceGetDecoderUtilization": [5, 167000],
        "nvmlDeviceGetClockInfo": lambda h, which: (1980, 1755, 2619)[which],
        "nvmlDeviceGetTemperature": 48, "nvmlDeviceGetPowerUsage": 123_456,
    }.items():
        setattr(nv, name, call(name, value))
    return nv


def test_gpu_figures_come_from_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    with Telemetry(threads=False) as t:
        s = t.sample()
    assert s.gpu_available and s.gpu_error is None
    (g,) = s.gpus
    assert (g.index, g.name, g.utilization_percent, g.memory_utilization_percent) == (
        0, "Fake H100", 37.0, 12.0)
    assert (g.memory_used_bytes, g.memory_total_bytes) == (3 * 2**30, 80 * 2**30)
    assert (g.encoder_percent, g.decoder_percent) == (25.0, 5.0)
    assert (g.clock_graphics_mhz, g.clock_sm_mhz, g.clock_memory_mhz) == (1980, 1755, 2619)
    assert g.temperature_c == 48.0 and g.power_w == pytest.approx(123.456)
    calls: list[str] = getattr(nv, "calls")
    assert calls.count("nvmlInit") == 1 and calls[-1] == "nvmlShutdown"


def test_an_unsupported_gpu_figure_is_none_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(broken="nvmlDeviceGetEncoderUtilization"))
    with Telemetry(threads=False) as t:
        (g,) = t.sample().gpus
    assert g.encoder_percent is None and g.decoder_percent == 5.0


def test_no_driver_means_not_available_quietly(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    nv = fake_pynvml(init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    caplog.set_level(logging.INFO)
    with Telemetry(threads=False) as t:
        first, second = t.sample(), t.sample()
    for s in (first, second):
        assert not s.gpu_available and s.gpus == ()
        assert s.gpu_error == "NVML unavailable: nvmlInit: Not Supported"
    assert nv.calls == ["nvmlInit"]  # tried once, not on every sample  # type: ignore[attr-defined]
    assert caplog.records == []
    assert gpu_status() == (False, "NVML unavailable: nvmlInit: Not Supported")


def test_missing_package_means_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    ok, why = gpu_status()
    assert not ok and why is not None and "nvidia-ml-py" in why


def test_real_nvml_or_its_absence_never_raises() -> None:
    ok, why = gpu_status()  # whatever this machine has
    assert ok == (why is None)


def test_cpu_figures_and_thread_names() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, name="telemetry-test-worker")
    worker.start()
    try:
        with Telemetry(gpu=False) as t:
            t.sample()
            sum(i * i for i in range(300_000))  # some CPU between the samples
            s = t.sample()
    finally:
        stop.set()
        worker.join()
    assert s.cpu_user_s + s.cpu_system_s > 0 and s.cpu_percent >= 0
    assert s.cores >= 1 and len(s.loadavg) == 3
    assert s.rss_bytes is not None and s.rss_bytes > 0
    assert s.gpu_error == "GPU telemetry disabled" and not s.gpu_available
    names = {th.name for th in s.threads}
    assert {"MainThread", "telemetry-test-worker"} <= names
    main = next(th for th in s.threads if th.name == "MainThread")
    assert main.cpu_s > 0 and main.cpu_percent >= 0


def test_background_sampler_starts_and_stops() -> None:
    t = Telemetry(interval=0.05, gpu=False, threads=False)
    assert t.latest() is None
    t.start()
    first = t.latest()
    assert isinstance(first, TelemetrySample)
    assert any(th.name == "streamlib-telemetry" for th in threading.enumerate())
    t.close()
    t.close()  # idempotent
    assert not any(th.name == "streamlib-telemetry" for th in threading.enumerate())
    with pytest.raises(ClosedError) as info:
        t.start()
    assert str(info.value) == "Telemetry is closed"
    with pytest.raises(ConfigError, match="interval must be > 0"):
        Telemetry(interval=0)


class _Ticker(Actor):
    def process(self, tick: TimedTick) -> None:
        pass


def test_runtime_metrics_carry_telemetry_and_close_stops_it() -> None:
    with Runtime() as rt:
        _Ticker(actor_id="t", clock=VirtualClock(30, max_ticks=3), runtime=rt)
        assert rt.run(60)
        m = rt.metrics()
        assert m.telemetry is not None and m.telemetry.cpu_user_s > 0
        assert rt.metrics().telemetry is not None  # the same sampler, still running
        assert sum(th.name == "streamlib-telemetry" for th in threading.enumerate()) == 1
    assert not any(th.name == "streamlib-telemetry" for th in threading.enumerate())
    assert m.actor("t").processed == 3
