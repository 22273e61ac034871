"""The worker-process side of ``ProcessPoolDispatcher`` (see :mod:`streamlib.runtime.procpool`).

``worker_main`` is the entry point of each spawned worker: it holds the
unpickled actor between ticks, runs ``setup``/``process``/``teardown`` as the
parent asks, and answers in the wire format of :mod:`streamlib.runtime.procwire`.
"""

from __future__ import annotations

import asyncio
import inspect
import pickle
import signal
import traceback
from multiprocessing.connection import Connection
from typing import Any, Awaitable

import torch

from streamlib.core.ports import Capture
from streamlib.runtime.procwire import Arena, Unpickler, dumps, fill, send

__all__ = ["WorkerLoop", "worker_main"]


def worker_main(conn: Connection) -> None:
    """Entry point of a worker process (module level so ``spawn`` can import it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the parent, which stops us
    worker = WorkerLoop(conn)
    try:
        worker.serve()
    finally:
        worker.close()


class WorkerLoop:
    """Worker side: holds the unpickled actor between ticks and answers the parent."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.actor: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None  # persistent, for async methods
        self.arena_in: Arena | None = None
        self.arena_out: Arena | None = None

    def serve(self) -> None:
        while True:
            try:
                kind, arena, body = pickle.loads(self.conn.recv_bytes())
            except EOFError:  # the parent is gone
                return
            if kind == "stop":
                return
            try:
                reply = self.handle(kind, arena, body)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                info = (type(exc).__qualname__, str(exc), traceback.format_exc())
                reply = ("error", None, pickle.dumps(info))
            send(self.conn, *reply)

    def run(self, result: Awaitable[None] | None) -> None:
        if inspect.isawaitable(result):
            if self.loop is None:
                self.loop = asyncio.new_event_loop()
                asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(result)

    def handle(self, kind: str, arena: str | None, body: bytes) -> tuple[str, str | None, bytes]:
        if kind == "setup":
            self.actor = pickle.loads(body)
            self.run(self.actor.setup())
            return ("ok", None, b"")
        if kind == "teardown":
            self.run(self.actor.teardown())
            return ("ok", None, b"")
        if arena is not None and (self.arena_in is None or self.arena_in.name != arena):
            if self.arena_in is not None:
                self.arena_in.close()
            self.arena_in = Arena.attach(arena)
        tick, inputs = Unpickler(body, self.arena_in).load()
        actor = self.actor
        for name, items in inputs:
            for item in items:
                actor.inputs[name].feed(item)  # user reads see the usual ring-buffer semantics
        captures = {name: Capture() for name in actor.outputs}
        for name, port in actor.outputs.items():
            port.set_router(captures[name])  # the worker's outputs have no links of their own
        try:
            self.run(actor.process(tick))
        finally:
            for port in actor.outputs.values():
                port.set_router(None)
        captured = {name: c.items for name, c in captures.items()}
        tensors: list[tuple[int, torch.Tensor]] = []
        out, size = dumps([(n, items) for n, items in captured.items() if items], tensors)
        if size > (0 if self.arena_out is None else self.arena_out.shm.size):
            send(self.conn, "grow", None, pickle.dumps(size))  # the parent owns segments
            _, name, _ = pickle.loads(self.conn.recv_bytes())
            if self.arena_out is not None:
                self.arena_out.close()
            self.arena_out = Arena.attach(name)
        if tensors:
            assert self.arena_out is not None
            fill(self.arena_out, tensors)
        return ("done", None if self.arena_out is None else self.arena_out.name, out)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()
        for arena in (self.arena_in, self.arena_out):
            if arena is not None:
                arena.close()
