"""Process CPU and NVIDIA GPU telemetry, sampled on a background thread.

``Telemetry().sample()`` reads, without third-party packages:

* process CPU time (``os.times``) and CPU % since the previous sample
  (100 % = one core busy), resident memory (``/proc/self/statm``), load
  average and core count;
* per-thread CPU % from ``/proc/self/task/<tid>/stat``, named after the
  Python ``threading.Thread`` with that native id (so dispatcher threads
  ``streamlib-worker_0`` or ``dedicated`` threads show up by name), else the
  kernel's ``comm`` name (torch, numba and FFmpeg threads);
* GPU figures through NVML (``pip install nvidia-ml-py``): utilisation,
  memory, encoder/decoder utilisation, clocks, temperature, power. Without
  the package or a driver, ``gpu_available`` is False and ``gpu_error`` says
  why; nothing is raised and nothing is logged above DEBUG. Every figure is
  queried on its own, so one a GPU does not support is None, not an error.

``Telemetry(interval).start()`` samples every ``interval`` seconds on an owned
(non-daemon) thread; ``latest()`` returns the newest sample; ``close()`` stops
the thread and releases NVML (idempotent). The thread also ends on its own
once the main thread has finished, so a forgotten sampler never blocks
interpreter exit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

from streamlib.errors import ClosedError, ConfigError

logger = logging.getLogger("streamlib.observe.telemetry")

T = TypeVar("T")

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class GPUTelemetry:
    """One NVIDIA GPU; a figure the device or driver does not report is None."""

    index: int
    name: str | None
    utilization_percent: float | None         # SM busy over the driver's sample period
    memory_utilization_percent: float | None  # memory controller busy
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    encoder_percent: float | None             # NVENC
    decoder_percent: float | None             # NVDEC
    clock_graphics_mhz: int | None
    clock_sm_mhz: int | None
    clock_memory_mhz: int | None
    temperature_c: float | None
    power_w: float | None


@dataclass(frozen=True)
class ThreadCPU:
    """CPU use of one thread of this process."""

    tid: int
    name: str
    cpu_s: float          # user + system since the thread started
    cpu_percent: float    # since the previous sample (100 = one core)


@dataclass(frozen=True)
class TelemetrySample:
    """One telemetry reading; rates cover ``interval_s`` before ``monotonic_ns``."""

    unix_time: float
    monotonic_ns: int
    interval_s: float            # time since the previous sample (or process start)
    cores: int
    loadavg: tuple[float, float, float]
    cpu_user_s: float
    cpu_system_s: float
    cpu_percent: float           # whole process, 100 = one core
    rss_bytes: int | None
    threads: tuple[ThreadCPU, ...]
    gpu_available: bool
    gpu_error: str | None        # why GPU figures are missing, when they are
    gpus: tuple[GPUTelemetry, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- NVML (optional) ------------------------------------------------------------

class _NVML:
    """Lazily initialised NVML; every failure becomes a reason string, once."""

    def __init__(self) -> None:
        self.module: Any = None
        self.error: str | None = None
        self.handles: list[Any] = []
        self._tried = False

    def init(self) -> bool:
        if self._tried:
            return self.module is not None
        self._tried = True
        try:
            import pynvml
        except ImportError:
            self.error = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            logger.debug("GPU telemetry off: %s", self.error)
            return False
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self.error = f"NVML unavailable: {exc}"
            logger.debug("GPU telemetry off: %s", self.error)
            return False
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            self.error = f"NVML could not list devices: {exc}"
            _quiet(pynvml.nvmlShutdown, pynvml)
            return False
        if not self.handles:
            self.error = "NVML found no GPU"
            _quiet(pynvml.nvmlShutdown, pynvml)
            return False
        self.module = pynvml
        return True

    def read(self) -> tuple[GPUTelemetry, ...]:
        nv = self.module
        out = []
        for i, h in enumerate(self.handles):
            util = _quiet(lambda: nv.nvmlDeviceGetUtilizationRates(h), nv)
            mem = _quiet(lambda: nv.nvmlDeviceGetMemoryInfo(h), nv)
            enc = _quiet(lambda: nv.nvmlDeviceGetEncoderUtilization(h), nv)
            dec = _quiet(lambda: nv.nvmlDeviceGetDecoderUtilization(h), nv)
            power = _quiet(lambda: nv.nvmlDeviceGetPowerUsage(h), nv)
            name = _quiet(lambda: nv.nvmlDeviceGetName(h), nv)
            out.append(GPUTelemetry(
                index=i,
                name=name.decode() if isinstance(name, bytes) else name,
                utilization_percent=None if util is None else float(util.gpu),
                memory_utilization_percent=None if util is None else float(util.memory),
                memory_used_bytes=None if mem is None else int(mem.used),
                memory_total_bytes=None if mem is None else int(mem.total),
                encoder_percent=None if enc is None else float(enc[0]),
                decoder_percent=None if dec is None else float(dec[0]),
                clock_graphics_mhz=_quiet(
                    lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_GRAPHICS)), nv),
                clock_sm_mhz=_quiet(lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)), nv),
                clock_memory_mhz=_quiet(
                    lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)), nv),
                temperature_c=_quiet(
                    lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)), nv),
                power_w=None if power is None else power / 1000.0,
            ))
        return tuple(out)

    def shutdown(self) -> None:
        if self.module is not None:
            _quiet(self.module.nvmlShutdown, self.module)
            self.module = None
            self.handles = []


def _quiet(fn: Callable[[], T], nvml: Any) -> T | None:
    """``fn()``, or None when NVML says the figure is unsupported or unreadable."""
    try:
        return fn()
    except nvml.NVMLError:
        return None


def gpu_status() -> tuple[bool, str | None]:
    """``(True, None)`` if NVML sees a GPU, else ``(False, reason)``; never raises."""
    nvml = _NVML()
    ok = nvml.init()
    nvml.shutdown()
    return ok, nvml.error


# -- /proc readers ----------------------------------------------------------------

def _thread_times() -> dict[int, tuple[str, float]]:
    """tid -> (kernel comm name, user+system CPU seconds), from /proc/self/task."""
    out: dict[int, tuple[str, float]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for entry in tids:
        try:
            text = Path(f"/proc/self/task/{entry}/stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        # "tid (comm) state ...": comm may hold spaces or parentheses.
        close = text.rfind(")")
        comm = text[text.find("(") + 1:close]
        fields = text[close + 2:].split()
        try:
            cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
        except (IndexError, ValueError):
            continue
        out[int(entry)] = (comm, cpu)
    return out


def _rss_bytes() -> int | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


class Telemetry:
    """CPU (and, when available, GPU) telemetry of this process.

    Args:
        interval: seconds between background samples (> 0).
        gpu: query NVML (False skips it entirely).
        threads: include per-thread CPU figures.

    Raises:
        ConfigError: ``interval`` is not > 0.
    """

    def __init__(self, interval: float = 1.0, *, gpu: bool = True, threads: bool = True) -> None:
        if not isinstance(interval, (int, float)) or not interval > 0:
            raise ConfigError(f"Telemetry: interval must be > 0 seconds, got {interval!r}")
        self.interval = float(interval)
        self._want_gpu, self._want_threads = gpu, threads
        self._nvml = _NVML()
        self._lock = threading.Lock()     # one sample() at a time
        # The first sample's rates cover the process's life so far.
        self._prev_ns = _process_start_ns()
        self._prev_cpu = 0.0
        self._prev_threads: dict[int, float] = {}
        self._latest: TelemetrySample | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def sample(self) -> TelemetrySample:
        """Read everything now; rates cover the time since the previous sample."""
        with self._lock:
            now = time.monotonic_ns()
            times = os.times()
            cpu = times.user + times.system
            dt = max(1e-9, (now - self._prev_ns) / 1e9)
            cpu_percent = 100.0 * (cpu - self._prev_cpu) / dt
            threads: tuple[ThreadCPU, ...] = ()
            if self._want_threads:
                names = {t.native_id: t.name for t in threading.enumerate()
                         if t.native_id is not None}
                current = _thread_times()
                threads = tuple(
                    ThreadCPU(tid, names.get(tid, comm), tcpu,
                              100.0 * (tcpu - self._prev_threads.get(tid, 0.0)) / dt)
                    for tid, (comm, tcpu) in sorted(current.items()))
                self._prev_threads = {tid: tcpu for tid, (_, tcpu) in current.items()}
            gpus: tuple[GPUTelemetry, ...] = ()
            gpu_ok = False
            gpu_error: str | None = "GPU telemetry disabled"
            if self._want_gpu and not self._closed:
                gpu_ok = self._nvml.init()
                gpu_error = self._nvml.error
                if gpu_ok:
                    gpus = self._nvml.read()
            self._prev_ns, self._prev_cpu = now, cpu
            sample = TelemetrySample(
                unix_time=time.time(), monotonic_ns=now, interval_s=dt,
                cores=os.cpu_count() or 1, loadavg=_loadavg(),
                cpu_user_s=times.user, cpu_system_s=times.system, cpu_percent=cpu_percent,
                rss_bytes=_rss_bytes(), threads=threads,
                gpu_available=gpu_ok, gpu_error=gpu_error, gpus=gpus,
            )
            self._latest = sample
            return sample

    def latest(self) -> TelemetrySample | None:
        """The newest sample (taken by ``start()`` or ``sample()``), or None."""
        return self._latest

    def start(self) -> Telemetry:
        """Take one sample now, then sample every ``interval`` s on a thread. Returns self.

        Raises:
            ClosedError: the sampler is closed.
        """
        if self._closed:
            raise ClosedError("Telemetry is closed")
        if self._thread is None:
            self.sample()
            self._thread = threading.Thread(target=self._loop, name="streamlib-telemetry")
            self._thread.start()
        return self

    def _loop(self) -> None:
        main = threading.main_thread()
        next_at = time.monotonic() + self.interval
        while not self._stop.is_set():
            # Short waits: notice the end of the main thread (interpreter exit).
            if self._stop.wait(min(0.25, max(0.0, next_at - time.monotonic()))):
                return
            if not main.is_alive():
                return
            if time.monotonic() >= next_at:
                try:
                    self.sample()
                except Exception:  # noqa: BLE001 - telemetry must never take the process down
                    logger.debug("telemetry sample failed", exc_info=True)
                next_at += self.interval
                next_at = max(next_at, time.monotonic())

    def close(self) -> None:
        """Stop the sampler thread and release NVML. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
        with self._lock:
            self._nvml.shutdown()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _process_start_ns() -> int:
    """Monotonic time at which this process started (for the first sample's rate)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # starttime, in clock ticks since boot
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        age_s = uptime_s - start_ticks / _CLK_TCK
        return time.monotonic_ns() - int(max(0.0, age_s) * 1e9)
    except (OSError, IndexError, ValueError):
        return time.monotonic_ns() - int(max(time.process_time(), 1e-3) * 1e9)
