"""Fake time for clock tests: a settable clock and a PTP time source over it."""

from __future__ import annotations


class FakeTime:
    """A settable clock; ``sleep`` advances it by exactly the requested time."""

    def __init__(self, t: int = 0) -> None:
        self.t = t
        self.sleeps: list[int] = []

    def __call__(self) -> int:
        return self.t

    def sleep(self, duration_ns: int) -> None:
        self.sleeps.append(duration_ns)
        self.t += duration_ns


class FakeTAI:
    """A TimeSource over FakeTime."""

    def __init__(self, t: int, synchronized: bool = True) -> None:
        self.time = FakeTime(t)
        self._sync = synchronized

    def now_ns(self) -> int:
        return self.time.t

    @property
    def synchronized(self) -> bool:
        return self._sync
