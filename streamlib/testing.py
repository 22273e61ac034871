"""A harness for testing your own actors: feed inputs, run ticks, check outputs.

```python
from streamlib.testing import ActorHarness

with ActorHarness(MyInvert) as h:                 # MyInvert(**kwargs) built for you
    h.feed("video", frame)
    out = h.tick()                                 # runs setup() once, then process()
    assert out["video"][0].data[0, 0, 0] == 255 - frame.data[0, 0, 0]
```

The actor lives in a private runtime that is never started, so no clock or
upstream ticks it: only ``tick()`` does, on the calling thread, which makes
tests deterministic. ``async def process`` is awaited.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Generic, TypeVar

from streamlib.core.actor import Actor
from streamlib.core.ports import Capture
from streamlib.clocks import TimedTick
from streamlib.runtime.runtime import Runtime

A = TypeVar("A", bound=Actor)


class ActorHarness(Generic[A]):
    """Builds ``actor_cls(*args, **kwargs)`` and drives it tick by tick."""

    def __init__(self, actor_cls: type[A], *args: Any, fps: float = 30.0, **kwargs: Any) -> None:
        self.runtime = Runtime(name=f"harness-{actor_cls.__name__}")
        self.actor: A = actor_cls(*args, runtime=self.runtime, **kwargs)
        self._period_ns = round(1e9 / fps)
        self._frame = 0
        self._set_up = False
        self._loop = asyncio.new_event_loop()

    def _call(self, result: Any) -> None:
        if inspect.isawaitable(result):
            self._loop.run_until_complete(result)

    def feed(self, port: str, item: Any) -> None:
        """Put ``item`` on input ``port`` (kind-checked like a real write)."""
        self.actor.inputs[port].feed(item)

    def tick(self, tick: TimedTick | None = None) -> dict[str, list[Any]]:
        """Run ``process`` once; returns the items each output wrote during it.

        Exceptions from ``process`` propagate unchanged.
        """
        if not self._set_up:
            self._call(self.actor.setup())
            self._set_up = True
        if tick is None:
            tick = TimedTick(self._frame * self._period_ns, self._frame, "harness")
        self._frame = tick.frame_number + 1
        outputs = self.actor.outputs.values()
        captures = [Capture(out.router) for out in outputs]
        previous = [out.set_router(c) for out, c in zip(outputs, captures)]
        try:
            self._call(self.actor.process(tick))
            return {out.name: c.items for out, c in zip(outputs, captures)}
        finally:
            for out, router in zip(outputs, previous):
                out.set_router(router)

    def close(self) -> None:
        """Run ``teardown`` (if set up) and release the harness. Idempotent."""
        if self._set_up:
            self._set_up = False
            self._call(self.actor.teardown())
        if not self._loop.is_closed():
            self._loop.close()
        self.runtime.close()

    def __enter__(self) -> ActorHarness[A]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
