"""How long a pipeline runs when no ``--seconds``/``--frames`` is given.

A *finite source* ends its stream on its own: today a ``FileReaderActor`` with
``loop=False`` (it closes its clock at the end of the file). A run without an
explicit limit lasts until every finite source has ended; a graph without one
is endless: offline it needs a limit (an error says so), in real time it runs
until a stop signal (Ctrl-C, SIGTERM, SIGHUP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from streamlib.core.actor import Actor


def finite_sources(actors: Iterable[Actor]) -> list[Actor]:
    """The actors among ``actors`` that end their stream on their own."""
    from streamlib.actors.file_reader import FileReaderActor

    return [a for a in actors if isinstance(a, FileReaderActor) and not a.loop]


def finite_duration(actors: Iterable[Actor]) -> float | None:
    """Seconds until the longest finite source ends (None: none, or none with a
    known duration)."""
    durations = [float(getattr(a, "duration_s", 0.0)) for a in finite_sources(actors)]
    known = [d for d in durations if d > 0]
    return max(known) if known else None


def sources_ended(sources: Iterable[Actor]) -> bool:
    """True when every one of ``sources`` reached its end, failed or was closed."""
    from streamlib.core.actor import ActorStatus

    return all(bool(getattr(a, "finished", False))
               or a.status in (ActorStatus.FAILED, ActorStatus.STOPPED) for a in sources)
