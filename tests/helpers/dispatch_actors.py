"""Actors for tests/runtime/test_dispatchers.py.

They live in an importable module (not the test file) because the process
dispatcher's ``spawn`` workers unpickle them by module and class name; the
child inherits ``sys.path``, which pytest extended with this directory.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from streamlib.core.actor import Actor
from streamlib.clocks import TimedTick
from streamlib.core.frames import DataMessage
from streamlib.core.ports import StreamInput, StreamOutput


def where() -> dict[str, Any]:
    """Where the calling code runs: process, thread, and the running loop (if any)."""
    try:
        loop: int | None = id(asyncio.get_running_loop())
    except RuntimeError:
        loop = None
    return {"pid": os.getpid(), "thread": threading.current_thread().name, "loop": loop}


class SyncRecorder(Actor):
    """Records where each plain method runs; raises on tick ``fail_on``."""

    def __init__(self, fail_on: int = -1, **kw: Any) -> None:
        super().__init__(**kw)
        self.fail_on = fail_on
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def setup(self) -> None:
        self.calls.append(("setup", where()))

    def process(self, tick: TimedTick) -> None:
        if tick.frame_number == self.fail_on:
            raise ValueError(f"bad tick {tick.frame_number}")
        self.calls.append(("process", where()))

    def teardown(self) -> None:
        self.calls.append(("teardown", where()))


class AsyncRecorder(SyncRecorder):
    """Same as SyncRecorder with ``async def`` methods that really suspend."""

    async def setup(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.calls.append(("setup", where()))

    async def process(self, tick: TimedTick) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        if tick.frame_number == self.fail_on:
            raise ValueError(f"bad tick {tick.frame_number}")
        self.calls.append(("process", where()))

    async def teardown(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.calls.append(("teardown", where()))


class Blocker(Actor):
    """``process`` signals ``started`` then blocks until ``release`` is set."""

    def __init__(self, started: threading.Event, release: threading.Event, **kw: Any) -> None:
        super().__init__(**kw)
        self.started, self.release = started, release

    def process(self, tick: TimedTick) -> None:
        self.started.set()
        self.release.wait()


class Inverter(Actor):
    """Process-pool workhorse: inverts video, counts ticks, reports where it runs.

    A DataMessage with payload ``"boom"`` makes ``process`` raise; teardown
    writes ``count pid`` to ``teardown_path``.
    """

    def __init__(self, teardown_path: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")
        self.inputs["data"] = StreamInput("data")
        self.outputs["video"] = StreamOutput("video")
        self.outputs["data"] = StreamOutput("data")
        self.teardown_path = teardown_path
        self.count = 0
        self.setup_pid = 0

    def setup(self) -> None:
        self.setup_pid = os.getpid()

    def process(self, tick: TimedTick) -> None:
        self.count += 1
        msg = self.inputs["data"].read_new()
        if msg is not None and msg.payload == "boom":
            raise ValueError("boom requested")  # BOOM_LINE
        frame = self.inputs["video"].read_new()
        if frame is not None:
            self.outputs["video"].write(frame.replace(data=255 - frame.data))
        info = {"count": self.count, "setup_pid": self.setup_pid, "tick": tick.frame_number}
        self.outputs["data"].write(DataMessage(info | where(), tick.timestamp_ns, topic="info"))

    def teardown(self) -> None:
        Path(self.teardown_path).write_text(f"{self.count} {os.getpid()}")


class AsyncCounter(Actor):
    """``async def process`` in a worker: counts ticks and reports its loop."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["data"] = StreamOutput("data")
        self.count = 0

    async def process(self, tick: TimedTick) -> None:
        await asyncio.sleep(0.001)
        self.count += 1
        self.outputs["data"].write(DataMessage({"count": self.count} | where(), tick.timestamp_ns))


class Crasher(Actor):
    """``process`` kills its own process with exit code 3."""

    def process(self, tick: TimedTick) -> None:
        os._exit(3)


class Unpicklable(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.fine = 1
        self.lock = threading.Lock()

    def process(self, tick: TimedTick) -> None:
        pass


class Hanger(Actor):
    """``process`` writes one byte to the FIFO ``fifo`` (the test's "started"
    signal, no polling needed) then blocks forever: shutdown must kill it."""

    def __init__(self, fifo: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.fifo = fifo

    def process(self, tick: TimedTick) -> None:
        with open(self.fifo, "w") as f:
            f.write("x")
        threading.Event().wait()
