"""What ``streamlib run`` prints while and after a pipeline runs, and its exit code.

Progress rows come from ``Runtime.graph()`` snapshots. The end-of-run summary is
built after the runtime closed (files finalised) from two views: the graph
taken just before closing (failed and stalled states, link drops) and each
actor's own description after closing (final counters). A state that was
still ``running`` becomes ``finished`` (the graph ended on its own) or
``stopped`` (time limit or signal); any other state is shown as it is.

A run is a failure (exit 1) when an actor failed, stalled or was stuck (an offline
graph that can never finish: ``streamlib.runtime.progress``), a file writer wrote
nothing, or a draw function never produced a frame; a stop signal gives
128 + its number (130 SIGINT, 143 SIGTERM, 129 SIGHUP). Frames a writer lost
(gaps in its file) are a WARNING line, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runresult import RunResult


def actor_rows(graph: dict[str, Any], previous: dict[str, int], dt: float) -> list[dict[str, Any]]:
    """One row per actor of ``graph``: status, output count and rate over ``dt``
    (``previous`` holds the last output counts and is updated), drops, timings."""
    dropped_by_actor: dict[str, int] = {}
    for link in graph["links"]:
        dst = link["to"].rsplit(".", 1)[0]
        dropped_by_actor[dst] = dropped_by_actor.get(dst, 0) + link["dropped"]
    rows = []
    for a in graph["actors"]:
        c = a["counters"]
        # Rate of media produced (frames written); sinks and event-only actors:
        # calls handled.
        media = [o for o in a["outputs"] if o["kind"] != "event"]
        out = sum(o["written"] for o in media) if media else c["processed"]
        fps = (out - previous.get(a["id"], 0)) / dt if dt > 0 else 0.0
        previous[a["id"]] = out
        rows.append({
            "id": a["id"], "status": a["status"], "processed": c["processed"], "out": out,
            "fps": fps,
            "drops": dropped_by_actor.get(a["id"], 0),  # frames overwritten unread
            "latency": a.get("latency_ms"),
            "process_ms": (c["process_ns_total"] / c["processed"] / 1e6) if c["processed"] else 0.0,
            # Metrics window (streamlib.observe.metrics): last-second CPU %, process P99.
            "cpu": a.get("cpu_percent"),
            "process_p99": (a.get("process_ms") or {}).get("p99"),
            "restarts": int(a.get("restarts") or 0),
        })
    return rows


def progress_line(rows: list[dict[str, Any]]) -> str:
    """The one-line live view: rate, CPU, drops, latency and any non-running state."""
    parts = []
    for r in rows:
        text = f"{r['id']} {r['fps']:.1f}fps"
        if r.get("cpu") is not None:
            text += f" cpu {r['cpu']:.0f}%"
        if r["drops"]:
            text += f" drop {r['drops']}"
        if r["latency"]:
            text += f" lat {r['latency']['p50']:.1f}/{r['latency']['p99']:.1f}ms"
        if r["status"] != "running":
            text += f" [{r['status']}]"
        parts.append(text)
    return " | ".join(parts)


def final_status(status: str, finished: bool) -> str:
    """The state to report once the runtime closed: see the module docs."""
    if status in ("running", "created", "starting"):
        return "finished" if finished else "stopped"
    return status


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "no error recorded"


@dataclass
class Summary:
    """The end-of-run report: rows, problems (exit 1), warnings and written files."""

    header: str
    rows: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    wrote: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # failed actor -> traceback
    signal_exit: int | None = None

    @property
    def exit_code(self) -> int:
        if self.signal_exit is not None:
            return self.signal_exit
        return 1 if self.problems else 0

    def print(self, out: Callable[[str], None], err: Callable[[str], None]) -> None:
        out(self.header)
        for r in self.rows:
            lat = (f" latency p50 {r['latency']['p50']:.2f} ms p99 {r['latency']['p99']:.2f} ms"
                   if r["latency"] else "")
            p99 = f" (p99 {r['process_p99']:.2f})" if r.get("process_p99") is not None else ""
            restarts = f" restarts {r['restarts']}" if r.get("restarts") else ""
            out(f"  {r['id']:<16} {r['status']:<8} out {r['out']:>6}  {r['fps']:7.1f} fps  "
                f"drops {r['drops']:<4} calls {r['processed']:>6}  "
                f"process {r['process_ms']:.2f} ms{p99}{lat}{restarts}")
        for line in self.warnings:
            out(f"WARNING: {line}")
        for line in self.wrote:
            out(f"wrote {line}")
        for line in self.problems:
            out(f"FAILED: {line}")
        for actor_id, text in self.errors.items():
            err(f"actor {actor_id} failed:\n{text}")


def summarize(*, name: str, mode: str, elapsed: float, finished: bool,
              signal_name: str | None, signal_exit: int | None,
              before: dict[str, Any], actors: Iterable[Actor], result: RunResult) -> Summary:
    """Build the summary. ``before``: ``Runtime.graph()`` taken just before the
    runtime closed; ``actors``: the pipeline's actors, after it closed;
    ``result``: ``Runtime.result()`` taken with ``before``."""
    actors = list(actors)
    by_id = {a.actor_id: a for a in actors}
    status_before = {a["id"]: a["status"] for a in before["actors"]}
    described = [by_id[a["id"]].describe() if a["id"] in by_id else a for a in before["actors"]]
    for d in described:
        d["status"] = final_status(status_before.get(d["id"], d["status"]), finished)
    rows = actor_rows({"actors": described, "links": before["links"]}, {}, elapsed)
    how = (f"interrupted by {signal_name}" if signal_name
           else "finished" if finished else "stopped at its time limit")
    summary = Summary(f"summary: {name} ran {elapsed:.2f} s ({mode}), {how}", rows,
                      signal_exit=signal_exit)

    failed = set(result.failed) | {i for i, s in status_before.items() if s == "failed"}
    stalled = set(result.stalled) | {i for i, s in status_before.items() if s == "stalled"}
    for actor_id in sorted(failed):
        text = result.errors.get(actor_id) or getattr(by_id.get(actor_id), "error", None)
        summary.problems.append(f"actor {actor_id!r} failed: {_last_line(text)}")
        if text:
            summary.errors[actor_id] = text.rstrip()
    for actor_id in sorted(stalled):
        summary.problems.append(f"actor {actor_id!r} stalled (a call exceeded its time budget)")
    for actor_id, why in sorted(result.stuck.items()):
        summary.problems.append(f"actor {actor_id!r} is stuck: {why}")
    for r in rows:
        if r["restarts"]:
            summary.warnings.append(f"actor {r['id']!r} was restarted {r['restarts']} time(s)")

    for actor in actors:
        kind = type(actor).__name__
        if kind == "FileWriterActor":
            _writer_report(actor, failed, summary)
        elif kind == "DrawingActor":
            written = actor.outputs["video"].written if "video" in actor.outputs else 0
            errors = int(getattr(actor, "draw_errors", 0))
            if written == 0 and errors:
                summary.problems.append(
                    f"actor {actor.actor_id!r}: the draw function never produced a frame "
                    f"({errors} error(s); last: {getattr(actor, 'last_error', None)})")
    return summary


def _writer_report(writer: Any, failed: set[str], summary: Summary) -> None:
    wid, path = writer.actor_id, writer.path
    if writer.completed:
        summary.wrote.append(f"{path} ({writer.frames_written} frames)")
    elif writer.actor_id in failed:
        summary.problems.append(f"writer {wid!r} wrote nothing usable to {path}")
    elif writer.frames_received == 0:
        summary.problems.append(f"writer {wid!r} wrote nothing: no video frame reached it "
                                f"({path} not written)")
    else:
        summary.problems.append(f"writer {wid!r}: {path} was not closed cleanly "
                                f"({writer.frames_written} frames encoded)")
    losses = writer.losses()
    lost = sum(losses.values())
    if lost:
        summary.warnings.append(
            f"writer {wid!r}: {lost} frames dropped ({losses['link']} overwritten on its input, "
            f"{losses['gaps']} missing slots, {losses['skipped']} skipped): the file has gaps "
            f"(the previous frame is held; declared rate {writer.fps:g} fps)")
