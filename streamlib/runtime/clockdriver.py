"""``ClockDriver``: the thread that turns one clock's ticks into actor ticks.

The runtime owns one per distinct ``Clock``: it blocks in ``clock.wait_tick()``
(the clock's own sleep-then-spin gives sub-millisecond timing asyncio cannot),
hands each tick to the runtime's loop through ``Runtime._notify`` and, for a
non-realtime clock, waits until the graph is idle before the next tick
(lock-step offline runs).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from streamlib.clocks import Clock
from streamlib.errors import ClockClosedError, EndOfStream

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime

logger = logging.getLogger("streamlib")


class ClockDriver:
    """The thread that turns one clock's ticks into actor ticks."""

    def __init__(self, runtime: Runtime, clock: Clock) -> None:
        self.runtime = runtime
        self.clock = clock
        self.subscribers: list[Actor] = []  # copy-on-write: read by the thread unlocked
        self.finished = threading.Event()   # set when the clock ends or is closed
        self.exhausted = False               # ended with EndOfStream (a finite clock)
        self._stopping = False
        self.thread = threading.Thread(
            target=self._run, name=f"streamlib-clock-{clock.clock_id}", daemon=True
        )

    def _run(self) -> None:
        clock = self.clock
        try:
            while not self._stopping:
                try:
                    tick = clock.wait_tick()
                except EndOfStream:
                    self.exhausted = True
                    return
                except ClockClosedError:
                    return
                self.runtime.recorder.note_origin(tick)
                for actor in self.subscribers:
                    self.runtime._notify(actor, tick)
                if not clock.realtime:
                    self.runtime._wait_idle_or(lambda: self._stopping)
        except Exception:  # noqa: BLE001 - a broken clock must not kill the process
            logger.exception("clock %r failed; its actors stop ticking", clock.clock_id)
        finally:
            self.finished.set()
            self.runtime._wake_waiters()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopping = True
        self.clock.close()  # wakes a wait_tick() that is waiting
        self.runtime._wake_waiters()
