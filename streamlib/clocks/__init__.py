"""Clocks that drive actors: ``await clock.next_tick()`` or the blocking ``clock.wait_tick()``.

The one place to import clocks from. :mod:`~streamlib.clocks.base` holds
``TimedTick``, the ``Clock`` base and exact rate arithmetic;
:mod:`~streamlib.clocks.software` the host-time clocks (``SoftwareClock``,
``VirtualClock``); :mod:`~streamlib.clocks.reference` the clocks locked to an
external reference (``PTPClock`` on a :class:`TimeSource`, ``GenlockClock`` on a
:class:`PulseSource`). This layer imports nothing of streamlib but its errors.
"""

from streamlib.clocks.base import Clock, FpsLike, TimedTick, deadline_ns, latest_frame_at, parse_rate
from streamlib.clocks.reference import (
    GenlockClock, ManualPulseSource, PTPClock, PulseSource, SystemTAITimeSource, TimeSource,
)
from streamlib.clocks.software import SoftwareClock, VirtualClock

__all__ = [
    "Clock", "FpsLike", "GenlockClock", "ManualPulseSource", "PTPClock", "PulseSource",
    "SoftwareClock", "SystemTAITimeSource", "TimeSource", "TimedTick", "VirtualClock",
    "deadline_ns", "latest_frame_at", "parse_rate",
]
