"""Prometheus text export of ``Runtime.metrics()``, served on loopback.

``render_prometheus(snapshot)`` returns the text exposition format 0.0.4;
``serve_metrics(runtime)`` serves it at ``http://127.0.0.1:<port>/metrics``::

    with Runtime() as rt, serve_metrics(rt, port=9464) as server:
        ...  # curl server.url

The server runs ``streamlib.net.httpguard``'s hardened ``http.server`` on one owned,
non-daemon thread (the same ``Host`` check and per-connection read deadline as
the control plane; no token: the metrics are read-only); ``close()`` (or
leaving the ``with`` block) stops it and releases the port. It also stops
by itself once the main thread has finished, so a forgotten server never
blocks interpreter exit. Only loopback addresses are accepted: the metrics
are not meant to be exposed to a network.

Names: ``streamlib_actor_*{runtime, actor, class}``, ``streamlib_link_*{runtime,
source, target}``, ``streamlib_process_*`` (telemetry) and ``streamlib_gpu_*{gpu}``.
Window figures (process time, latency) are summaries over the last 1024 calls
with ``quantile`` 0.5 and 0.99; their ``_sum``/``_count`` cover every call.
"""

from __future__ import annotations

import ipaddress
import threading
from typing import TYPE_CHECKING, Callable, Iterable

from streamlib.errors import ConfigError
from streamlib.net import httpguard

if TYPE_CHECKING:
    from streamlib.runtime.runtime import Runtime
    from streamlib.observe.metrics import MetricsSnapshot, Summary

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Writer:
    """Groups samples by metric name so each family's HELP/TYPE is written once."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, kind: str, help_text: str, labels: dict[str, str],
            value: float | None, suffix: str = "") -> None:
        if value is None:
            return
        family = self._families.setdefault(name, (kind, help_text, []))
        family[2].append(f"{name}{suffix}{_labels(labels)} {_num(value)}")

    def summary(self, name: str, help_text: str, labels: dict[str, str],
                window: Summary | None, total_s: float, count: int) -> None:
        if window is not None:
            self.add(name, "summary", help_text, {**labels, "quantile": "0.5"}, window.p50 / 1e3)
            self.add(name, "summary", help_text, {**labels, "quantile": "0.99"}, window.p99 / 1e3)
        if count:
            self.add(name, "summary", help_text, labels, total_s, "_sum")
            self.add(name, "summary", help_text, labels, count, "_count")

    def text(self) -> str:
        lines: list[str] = []
        for name, (kind, help_text, samples) in self._families.items():
            lines.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2)}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)
        return "\n".join(lines) + "\n"


def render_prometheus(snapshot: MetricsSnapshot,
                      counters: Callable[[str], dict[str, int]] | None = None) -> str:
    """Text format 0.0.4 of ``snapshot``; ``counters(actor_id)`` adds the exact
    process/latency sums (``Runtime`` counters) to the summaries when given."""
    w = _Writer()
    rt = {"runtime": snapshot.runtime}
    for a in snapshot.actors:
        lab = {**rt, "actor": a.id, "class": a.cls}
        w.add("streamlib_actor_ticks_total", "counter", "Ticks delivered to the actor.", lab, a.ticks)
        w.add("streamlib_actor_processed_total", "counter",
              "process() calls that returned normally.", lab, a.processed)
        w.add("streamlib_actor_failed_total", "counter", "process() calls that raised.", lab, a.failed)
        w.add("streamlib_actor_overruns_total", "counter",
              "Ticks replaced by a newer one while the actor was busy.", lab, a.overruns)
        w.add("streamlib_actor_up", "gauge", "1 if the actor is running, else 0.", lab,
              1 if a.status == "running" else 0)
        w.add("streamlib_actor_fps", "gauge", "process() completions over the last second.",
              lab, a.fps)
        w.add("streamlib_actor_cpu_ratio", "gauge",
              "CPU time in process() over the last second, per wall second (1 = one core).",
              lab, None if a.cpu_percent is None else a.cpu_percent / 100)
        w.add("streamlib_actor_cpu_seconds_total", "counter",
              "CPU time spent in process() on the actor's thread.", lab, a.cpu_s)
        c = counters(a.id) if counters is not None else {}
        w.summary("streamlib_actor_process_seconds",
                  "Wall time of process() calls (quantiles over the last calls).", lab,
                  a.process_ms, c.get("process_ns_total", 0) / 1e9, c.get("processed", 0))
        w.summary("streamlib_actor_latency_seconds",
                  "Tick origin to end of process() (quantiles over the last calls).", lab,
                  a.latency_ms, c.get("latency_ns_total", 0) / 1e9, c.get("latency_samples", 0))
    for link in snapshot.links:
        lab = {**rt, "source": link.source, "target": link.target, "kind": link.kind}
        w.add("streamlib_link_written_total", "counter", "Items written into the link.", lab,
              link.written)
        w.add("streamlib_link_read_total", "counter", "Items read from the link.", lab, link.read)
        w.add("streamlib_link_dropped_total", "counter", "Items overwritten before being read.",
              lab, link.dropped)
        w.add("streamlib_link_unread", "gauge", "Items held and not read yet.", lab, link.unread)
    t = snapshot.telemetry
    if t is not None:
        w.add("streamlib_process_cpu_seconds_total", "counter", "Process user+system CPU time.",
              {}, t.cpu_user_s + t.cpu_system_s)
        w.add("streamlib_process_cpu_ratio", "gauge",
              "Process CPU time per wall second over the last sample (1 = one core).",
              {}, t.cpu_percent / 100)
        w.add("streamlib_process_resident_memory_bytes", "gauge", "Resident set size.", {},
              t.rss_bytes)
        w.add("streamlib_load1", "gauge", "1-minute load average of the machine.", {}, t.loadavg[0])
        w.add("streamlib_gpu_available", "gauge", "1 if NVML telemetry is available.", {},
              1 if t.gpu_available else 0)
        for g in t.gpus:
            lab = {"gpu": str(g.index), "name": g.name or ""}
            for name, help_text, value in _gpu_values(g):
                w.add(name, "gauge", help_text, lab, value)
    return w.text()


def _gpu_values(g: object) -> Iterable[tuple[str, str, float | None]]:
    from streamlib.observe.telemetry import GPUTelemetry

    assert isinstance(g, GPUTelemetry)
    def pct(v: float | None) -> float | None:
        return None if v is None else v / 100

    return (
        ("streamlib_gpu_utilization_ratio", "GPU busy fraction.", pct(g.utilization_percent)),
        ("streamlib_gpu_memory_utilization_ratio", "Memory controller busy fraction.",
         pct(g.memory_utilization_percent)),
        ("streamlib_gpu_memory_used_bytes", "GPU memory in use.", g.memory_used_bytes),
        ("streamlib_gpu_memory_total_bytes", "GPU memory size.", g.memory_total_bytes),
        ("streamlib_gpu_encoder_utilization_ratio", "NVENC busy fraction.", pct(g.encoder_percent)),
        ("streamlib_gpu_decoder_utilization_ratio", "NVDEC busy fraction.", pct(g.decoder_percent)),
        ("streamlib_gpu_clock_graphics_hertz", "Graphics clock.",
         None if g.clock_graphics_mhz is None else g.clock_graphics_mhz * 1e6),
        ("streamlib_gpu_clock_sm_hertz", "SM clock.",
         None if g.clock_sm_mhz is None else g.clock_sm_mhz * 1e6),
        ("streamlib_gpu_clock_memory_hertz", "Memory clock.",
         None if g.clock_memory_mhz is None else g.clock_memory_mhz * 1e6),
        ("streamlib_gpu_temperature_celsius", "GPU temperature.", g.temperature_c),
        ("streamlib_gpu_power_watts", "GPU power draw.", g.power_w),
    )


def runtime_metrics_text(runtime: Runtime) -> str:
    """``render_prometheus`` of ``runtime.metrics()`` with the exact counter sums."""
    snap = runtime.metrics()
    counters: dict[str, dict[str, int]] = {}
    for actor in runtime.actors():
        counters[actor.actor_id] = actor.counters.as_dict()
    return render_prometheus(snap, lambda actor_id: counters.get(actor_id, {}))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _MetricsHandler(httpguard.GuardedHandler):
    render: Callable[[], str]  # set on the per-server subclass
    hosts: frozenset[str]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        try:
            httpguard.check_host(self.headers.get("Host"), self.hosts)
        except httpguard.Refusal as refusal:
            self.send_reply(refusal.status, (refusal.message + "\n").encode(),
                            "text/plain; charset=utf-8")
            return
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_reply(404, b"only /metrics is served\n", "text/plain; charset=utf-8")
            return
        try:
            body = type(self).render().encode()
        except Exception as exc:  # noqa: BLE001 - a scrape must not kill the server
            self.send_reply(500, f"metrics failed: {type(exc).__name__}\n".encode(),
                            "text/plain; charset=utf-8")
            return
        self.send_reply(200, body, CONTENT_TYPE)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # scrapes every few seconds must not spam stderr


class MetricsServer:
    """Serves ``/metrics`` for one runtime on a loopback address.

    Requests must name this server in ``Host`` (the bound address or
    ``localhost``, 421 otherwise: a DNS-rebound page cannot read the metrics)
    and are read within ``read_deadline_s`` (``streamlib.net.httpguard``); a slow
    client never holds a scrape or ``close()``.

    Args:
        runtime: the runtime to export (or any zero-argument callable
            returning the exposition text).
        port: TCP port; 0 picks a free one (see ``port``/``url``).
        host: a loopback address (``127.0.0.1``, ``::1``, ``localhost``).
        read_deadline_s: per connection, for the whole request.

    Raises:
        ConfigError: ``host`` is not a loopback address, or ``port`` out of range.
        OSError: the port cannot be bound.
    """

    def __init__(self, runtime: Runtime | Callable[[], str], port: int = 0,
                 host: str = "127.0.0.1", *,
                 read_deadline_s: float = httpguard.READ_DEADLINE_S) -> None:
        if not _is_loopback(host):
            raise ConfigError(f"MetricsServer: host must be a loopback address, got {host!r}")
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"MetricsServer: port must be an int in 0..65535, got {port!r}")
        render: Callable[[], str]
        if callable(runtime):  # a Runtime is not callable (no import of the runtime layer)
            render = runtime
        else:
            rt = runtime
            render = lambda: runtime_metrics_text(rt)  # noqa: E731
        handler: type[_MetricsHandler] = type("MetricsHandler", (_MetricsHandler,), {
            "render": staticmethod(render), "read_deadline_s": read_deadline_s})
        self._server = httpguard.GuardedHTTPServer((host, port), handler)
        self.host = host
        self.port: int = int(self._server.server_address[1])
        handler.hosts = httpguard.allowed_hosts(host, self.port,
                                                [str(self._server.server_address[0])])
        self._serving = httpguard.ServingThread(self._server, f"streamlib-metrics-{self.port}")
        self._serving.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def _thread(self) -> threading.Thread | None:  # the serving thread (tests join it)
        return self._serving._thread

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, cut open connections and release the port. Idempotent."""
        self._serving.close(timeout)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_metrics(runtime: Runtime, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
    """Start serving ``runtime``'s metrics at ``http://host:port/metrics``; see ``MetricsServer``."""
    return MetricsServer(runtime, port=port, host=host)
