"""``RunResult``: what ``Runtime.run()`` / ``wait()`` report, so a run with failed
actors never looks like a success."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

from streamlib.core.actor import ActorStatus
from streamlib.errors import RunFailedError

if TYPE_CHECKING:
    from streamlib.core.actor import Actor


@dataclass(frozen=True)
class RunResult:
    """The outcome of ``Runtime.run()``.

    ``finished`` is True when the graph ended on its own (every clock ended and
    nothing was in flight), False when the run stopped at its time limit (or was
    interrupted). ``failed`` and ``stalled`` name the actors (ids, sorted) that
    failed or were stalled at the end; ``errors`` maps each failed actor to its
    last error text; ``restarts`` counts supervisor restarts per actor (only
    actors restarted at least once); ``stuck`` maps actors that keep an
    offline graph from ever finishing or progressing to why (see
    ``streamlib.runtime.progress``).

    ``bool(result)`` is ``finished`` (what ``run()`` returned before it returned
    a result); ``ok`` is True only when no actor failed, stalled or was stuck.
    """

    finished: bool
    failed: tuple[str, ...] = ()
    stalled: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    stuck: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.finished

    @property
    def ok(self) -> bool:
        return not self.failed and not self.stalled and not self.stuck

    def raise_on_failure(self) -> RunResult:
        """Return self, or raise ``RunFailedError`` naming the failed/stalled/stuck actors."""
        if self.ok:
            return self
        parts = []
        if self.failed:
            parts.append(f"failed: {', '.join(self.failed)}")
        if self.stalled:
            parts.append(f"stalled: {', '.join(self.stalled)}")
        if self.stuck:
            parts.append(f"stuck: {', '.join(sorted(self.stuck))}")
        first = next(iter(self.errors.values()), "") or next(iter(self.stuck.values()), "")
        last_line = first.strip().splitlines()[-1] if first.strip() else ""
        detail = f" (first error: {last_line})" if last_line else ""
        raise RunFailedError(f"run ended with actors {'; '.join(parts)}{detail}", self)


def result_of(actors: Iterable[Actor], finished: bool, stuck: dict[str, str]) -> RunResult:
    """The ``RunResult`` of ``actors``' states now (``Runtime.result``)."""
    down = (ActorStatus.FAILED, ActorStatus.STALLED)
    actors = list(actors)
    return RunResult(
        finished=finished,
        failed=tuple(sorted(a.actor_id for a in actors if a._sl.status is ActorStatus.FAILED)),
        stalled=tuple(sorted(a.actor_id for a in actors if a._sl.status is ActorStatus.STALLED)),
        errors={a.actor_id: a._sl.error or "" for a in actors if a._sl.status in down},
        restarts={a.actor_id: a._sl.restarts for a in actors if a._sl.restarts},
        stuck=stuck)
