"""``SampleWindow``: the last calls' samples of one actor.

Part of an actor's bookkeeping (``Actor._sl.window``); the runtime fills it
after each ``process`` call and ``streamlib.observe.metrics`` summarises it.
"""

from __future__ import annotations

from collections import deque

WINDOW_SIZE = 1024  # samples kept per actor
UNKNOWN = -1        # cpu/latency sample not available


class SampleWindow:
    """The last ``size`` samples of one actor: ``(done_ns, process_ns, cpu_ns, latency_ns)``.

    ``done_ns`` is ``time.monotonic_ns()`` at the end of the call; ``cpu_ns``
    and ``latency_ns`` are ``UNKNOWN`` (-1) when not measured. Appended only
    on the runtime's loop thread; ``samples()`` copies atomically (under the
    GIL a deque copy runs no Python code), so readers need no lock.
    """

    __slots__ = ("_samples",)

    def __init__(self, size: int = WINDOW_SIZE) -> None:
        self._samples: deque[tuple[int, int, int, int]] = deque(maxlen=size)

    def add(self, done_ns: int, process_ns: int, cpu_ns: int, latency_ns: int) -> None:
        self._samples.append((done_ns, process_ns, cpu_ns, latency_ns))

    def samples(self) -> list[tuple[int, int, int, int]]:
        return list(self._samples)

    @property
    def full(self) -> bool:
        return len(self._samples) == self._samples.maxlen

    def __len__(self) -> int:
        return len(self._samples)
