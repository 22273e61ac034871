"""Runtime metrics: per-actor sample windows and the ``Runtime.metrics()`` snapshot.

What is measured, per actor, for every ``process()`` call that returns
normally (the runtime records it on its loop thread, after the call):

* ``process`` time: wall time of the call as the runtime sees it (dispatch
  to the actor's thread included), in the counters (last/max/total) and in a
  window of the last 1024 calls (P50/P99/max);
* CPU time: ``time.thread_time_ns()`` around ``process`` on the thread that
  runs it (exact for thread, dedicated and asyncio dispatchers; unknown for
  ``async def process`` and the process dispatcher, reported as None);
* latency: the time from the tick's *origin* to the end of this actor's
  ``process``. Ticks travel downstream with the frames written while handling
  them, so a sink's latency is the source-to-sink (end-to-end) latency.

  The origin is chosen so latency is meaningful for every clock:
  ``SoftwareClock`` ticks (``clock_id == "monotonic"``) carry a monotonic
  timestamp, the frame's scheduled time, which is the origin (so latency
  includes the clock's wake lateness); for every other clock
  (``VirtualClock``, TAI/PTP, genlock) the timestamp is on another timebase,
  so the origin is the monotonic time at which the runtime's clock thread
  received the tick from ``wait_tick()``. On a ``VirtualClock`` latency is
  therefore "wall time spent since the source tick was issued", never a
  difference of virtual timestamps.
* fps and CPU % over the last second of completions (from the window).

``MetricsRecorder`` (one per runtime, ``Runtime.recorder``) takes those samples:
the clock threads note tick origins, the loop thread records each call.
``MetricsSnapshot`` is a frozen dataclass tree; ``as_dict()`` is JSON-ready.
The overhead (a tuple appended to a bounded deque, two ``thread_time_ns``
calls, one dict lookup per call) is measured by ``benchmarks/metrics_overhead``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from streamlib.core.samples import UNKNOWN, SampleWindow

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.clocks import TimedTick
    from streamlib.runtime.runtime import Runtime
    from streamlib.observe.telemetry import TelemetrySample

RATE_WINDOW_NS = 1_000_000_000  # "the last second" for fps and CPU %


class MetricsRecorder:
    """Takes the metrics samples of one runtime (``Runtime.recorder``).

    ``note_origin`` runs on the clock threads, once per tick issued;
    ``record`` on the runtime's loop thread, once per ``process()`` call that
    returned normally. With ``enabled=False`` (``Runtime(collect_metrics=False)``)
    no origin is remembered and the runtime never calls ``record``, so only
    the actors' counters are kept.
    """

    ORIGINS_KEPT = 4096  # ticks whose origin is remembered (about 68 s at 60 fps)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        # id(tick) -> (tick, origin ns); ordered so the oldest is evicted in O(1)
        self._origins: OrderedDict[int, tuple[TimedTick, int]] = OrderedDict()
        self._origins_lock = threading.Lock()

    @property
    def origins_held(self) -> int:
        """How many tick origins are remembered (at most ``ORIGINS_KEPT``)."""
        return len(self._origins)

    def note_origin(self, tick: TimedTick) -> None:
        """Clock thread: remember when ``tick`` was issued (non-monotonic clocks)."""
        if not self.enabled or tick.clock_id == "monotonic":
            return  # a monotonic timestamp is its own origin
        now = time.monotonic_ns()
        with self._origins_lock:  # several clock threads insert and evict
            origins = self._origins
            origins[id(tick)] = (tick, now)  # the tick is held, so its id stays unique
            if len(origins) > self.ORIGINS_KEPT:
                origins.popitem(last=False)

    def record(self, actor: Actor, tick: TimedTick, elapsed_ns: int) -> None:
        """Loop thread, after a successful process(): add one metrics sample."""
        st = actor._sl
        done = time.monotonic_ns()
        if tick.clock_id == "monotonic":
            origin = tick.timestamp_ns
        else:
            entry = self._origins.get(id(tick))  # atomic under the GIL
            origin = entry[1] if entry is not None and entry[0] is tick else 0
        latency = done - origin if origin > 0 else UNKNOWN
        cpu, st.cpu_ns = st.cpu_ns, UNKNOWN
        c = st.counters
        if cpu >= 0:
            c.cpu_ns_total += cpu
            c.cpu_samples += 1
        if latency >= 0:
            c.latency_ns_total += latency
            c.latency_samples += 1
        st.window.add(done, elapsed_ns, cpu, latency)


@dataclass(frozen=True)
class Summary:
    """P50/P99/max in milliseconds of ``samples`` values (nearest-rank P99)."""

    p50: float
    p99: float
    max: float
    samples: int

    def as_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p99": self.p99, "max": self.max, "samples": float(self.samples)}


def summarize_ns(values: Iterable[int]) -> Summary | None:
    """``Summary`` (ms) of nanosecond ``values``; negative values (unknown) are
    ignored; None when nothing is left."""
    ordered = sorted(v for v in values if v >= 0)
    if not ordered:
        return None
    n = len(ordered)
    p99 = ordered[min(n - 1, max(0, round(0.99 * n) - 1))]
    return Summary(ordered[n // 2] / 1e6, p99 / 1e6, ordered[-1] / 1e6, n)


@dataclass(frozen=True)
class WindowStats:
    """What one ``SampleWindow`` says at ``now_ns``."""

    process_ms: Summary | None
    latency_ms: Summary | None
    fps: float                  # completions per second over the last second
    cpu_percent: float | None   # CPU time of those completions / wall time (100 = one core)


def window_stats(window: SampleWindow, now_ns: int | None = None) -> WindowStats:
    """Summaries of ``window``; rates cover the last second before ``now_ns``.

    When the window holds fewer than a second of samples because it is full
    (more than ``WINDOW_SIZE`` calls a second), rates cover the span it holds.
    """
    now = time.monotonic_ns() if now_ns is None else now_ns
    samples = window.samples()
    recent = [s for s in samples if s[0] > now - RATE_WINDOW_NS]
    span = RATE_WINDOW_NS
    if window.full and recent and len(recent) == len(samples) and len(recent) > 1:
        span = max(1, recent[-1][0] - recent[0][0])
        count = len(recent) - 1  # intervals between the first and the last
    else:
        count = len(recent)
    cpus = [s[2] for s in recent]
    known = [c for c in cpus if c >= 0]
    cpu_percent = (100.0 * sum(known) / span) if known else (0.0 if not recent else None)
    if known and len(known) < len(cpus):
        cpu_percent = None  # mixed: some calls unmeasured, a partial sum would mislead
    return WindowStats(
        process_ms=summarize_ns(s[1] for s in samples),
        latency_ms=summarize_ns(s[3] for s in samples),
        fps=count * 1e9 / span,
        cpu_percent=cpu_percent,
    )


def window_description(actor: Actor) -> dict[str, Any]:
    """The metrics keys of ``actor.describe()``: summaries of its window, rates, CPU s."""
    stats = window_stats(actor._sl.window)
    c = actor._sl.counters
    return {
        "latency_ms": None if stats.latency_ms is None else stats.latency_ms.as_dict(),
        "process_ms": None if stats.process_ms is None else stats.process_ms.as_dict(),
        "fps": stats.fps,
        "cpu_percent": stats.cpu_percent,
        "cpu_s": c.cpu_ns_total / 1e9 if c.cpu_samples else None,
    }


@dataclass(frozen=True)
class ActorMetrics:
    """One actor: counters, process time, latency, rates."""

    id: str
    cls: str
    status: str
    dispatcher: str | None
    ticks: int
    processed: int
    failed: int
    overruns: int
    process_ms: Summary | None      # window of the last calls
    process_ms_mean: float | None   # over every call
    latency_ms: Summary | None      # tick origin -> end of process, window
    fps: float                      # process() completions in the last second
    cpu_percent: float | None       # over the last second (100 = one core)
    cpu_s: float | None             # total CPU time in process(); None if never measured
    is_sink: bool                   # no downstream links: its latency is end-to-end
    stalls: int = 0                 # calls the watchdog found overrunning (streamlib.runtime.watchdog)
    restarts: int = 0               # supervisor rebuilds (streamlib.runtime.supervisor)


@dataclass(frozen=True)
class LinkMetrics:
    """One link (output -> input): the input ring buffer's exact counters."""

    source: str
    target: str
    kind: str
    written: int
    read: int
    dropped: int   # overwritten before being read
    unread: int
    slots: int


@dataclass(frozen=True)
class Totals:
    actors: int
    running: int
    failed_actors: int
    ticks: int
    processed: int
    failed: int
    overruns: int
    written: int
    read: int
    dropped: int
    cpu_percent: float | None        # sum of the actors' last-second CPU %
    e2e_latency_ms: Summary | None   # pooled latency windows of the sinks
    stalled_actors: int = 0
    restarts: int = 0


@dataclass(frozen=True)
class MetricsSnapshot:
    """``Runtime.metrics()``: every actor and link, totals and telemetry."""

    runtime: str
    monotonic_ns: int
    unix_time: float
    actors: tuple[ActorMetrics, ...]
    links: tuple[LinkMetrics, ...]
    totals: Totals
    telemetry: TelemetrySample | None = field(default=None)

    def actor(self, actor_id: str) -> ActorMetrics:
        """The metrics of ``actor_id``; KeyError naming it if absent."""
        for a in self.actors:
            if a.id == actor_id:
                return a
        raise KeyError(f"metrics snapshot of {self.runtime!r} has no actor {actor_id!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable nested dict (summaries as ``{p50, p99, max, samples}``)."""
        plain: dict[str, Any] = _plain(asdict(self))
        return plain


def _plain(value: Any) -> Any:
    # asdict() turns Summary into a dict with an int ``samples``; keep it that way.
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def actor_metrics(actor: Actor, now_ns: int | None = None) -> ActorMetrics:
    """``ActorMetrics`` of one actor (safe from any thread)."""
    st = actor._sl
    c = st.counters
    stats = window_stats(st.window, now_ns)
    disp = st.dispatcher
    linked = any(out.links for out in actor.outputs.values())
    return ActorMetrics(
        id=actor.actor_id, cls=type(actor).__name__, status=st.status.value,
        dispatcher=None if disp is None else disp.name,
        ticks=c.ticks, processed=c.processed, failed=c.failed, overruns=c.overruns,
        process_ms=stats.process_ms,
        process_ms_mean=(c.process_ns_total / c.processed / 1e6) if c.processed else None,
        latency_ms=stats.latency_ms, fps=stats.fps, cpu_percent=stats.cpu_percent,
        cpu_s=(c.cpu_ns_total / 1e9) if c.cpu_samples else None,
        is_sink=bool(len(actor.inputs)) and not linked,
        stalls=st.stalls, restarts=st.restarts,
    )


def snapshot(runtime: Runtime, telemetry: TelemetrySample | None = None) -> MetricsSnapshot:
    """Build the ``MetricsSnapshot`` of ``runtime`` (see ``Runtime.metrics``)."""
    now = time.monotonic_ns()
    actors = runtime.actors()
    per_actor = tuple(actor_metrics(a, now) for a in actors)
    links: list[LinkMetrics] = []
    for actor in actors:
        for out in actor.outputs.values():
            for inp in out.links:
                s = inp.stats()
                links.append(LinkMetrics(
                    source=out.qualified_name, target=inp.qualified_name,
                    kind=out.kind if out.kind != "any" else inp.kind,
                    written=s.written, read=s.read, dropped=s.dropped, unread=s.unread,
                    slots=s.slots))
    sinks = {m.id for m in per_actor if m.is_sink}
    sink_latencies = [s[3] for a in actors if a.actor_id in sinks for s in a._sl.window.samples()]
    cpus = [m.cpu_percent for m in per_actor if m.cpu_percent is not None]
    totals = Totals(
        actors=len(per_actor),
        running=sum(m.status == "running" for m in per_actor),
        failed_actors=sum(m.status == "failed" for m in per_actor),
        ticks=sum(m.ticks for m in per_actor),
        processed=sum(m.processed for m in per_actor),
        failed=sum(m.failed for m in per_actor),
        overruns=sum(m.overruns for m in per_actor),
        written=sum(link.written for link in links),
        read=sum(link.read for link in links),
        dropped=sum(link.dropped for link in links),
        cpu_percent=sum(cpus) if cpus else None,
        e2e_latency_ms=summarize_ns(sink_latencies),
        stalled_actors=sum(m.status == "stalled" for m in per_actor),
        restarts=sum(m.restarts for m in per_actor),
    )
    return MetricsSnapshot(runtime=runtime.name, monotonic_ns=now, unix_time=time.time(),
                           actors=per_actor, links=tuple(links), totals=totals,
                           telemetry=telemetry)
