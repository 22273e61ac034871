"""``StopSignals``: SIGINT, SIGTERM and SIGHUP ask a command to stop, cleanly.

Used only by the command line (``streamlib run``); importing streamlib installs
no handler. Inside ``with StopSignals() as stop:`` each of the three signals
sets ``stop.received`` and ``stop.event`` instead of killing the process (or
raising ``KeyboardInterrupt`` at an arbitrary line), so the caller's loop sees
the request, stops the graph, finalises files and prints its summary. The
previous handlers come back on exit. ``exit_code`` is the shell convention,
128 + the signal number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP, so an
interrupted run never exits 0.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Callable, Union

_Handler = Union[Callable[[int, Union[FrameType, None]], Any], int, signal.Handlers, None]


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a run on this platform (no SIGHUP on Windows)."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    return tuple(getattr(signal, n) for n in names if hasattr(signal, n))


class StopSignals:
    """Turns stop signals into a flag for the duration of a ``with`` block.

    Off the main thread (where Python cannot install handlers) it installs
    nothing and ``received`` stays None: the caller behaves as before.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: signal.Signals | None = None   # the first signal
        self.count = 0                                # all stop signals so far
        self._previous: dict[signal.Signals, _Handler] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in stop_signals():
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs on the main thread between bytecodes: only set flags here (no
        # printing: a handler writing to a stream it interrupted can raise).
        self.count += 1
        if self.received is None:
            self.received = signal.Signals(signum)
        self.event.set()

    @property
    def name(self) -> str | None:
        """``"SIGTERM"`` etc. for the first signal received, else None."""
        return None if self.received is None else self.received.name

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal's number (130 SIGINT, 143 SIGTERM, 129 SIGHUP), or None."""
        return None if self.received is None else 128 + int(self.received)
