"""``ProcessPoolDispatcher``: one worker process per actor.

This module is the parent side: it starts the workers, exchanges requests with
them and stops them. Tensors cross in per-actor shared-memory arenas,
everything else is pickled (the wire format: :mod:`streamlib.runtime.procwire`); what
runs inside a worker is :mod:`streamlib.runtime.procworker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import pickle
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, AsyncIterator

import torch

from streamlib.core.ports import PortDict
from streamlib.errors import (ActorStateError, ConfigTypeError, DispatcherShutdownError, ShutdownTimeoutError,
                              WorkerError)
from streamlib.runtime.dispatchbase import Dispatcher
from streamlib.runtime.procwire import Arena, Unpickler, dumps, fill, grown, send
from streamlib.runtime.procworker import worker_main

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.clocks import TimedTick

__all__ = ["ProcessPoolDispatcher"]


@dataclass(eq=False)
class _Worker:
    """Parent side of one actor's worker process."""

    actor: Actor
    process: BaseProcess
    conn: Connection
    arena_in: Arena | None = None   # parent -> worker tensors
    arena_out: Arena | None = None  # worker -> parent tensors
    busy: bool = False
    pending: int = 0     # requests whose reply is unread (a cancelled await leaves one)
    closed: bool = False
    exit_text: str = ""
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("ticks", "sent_bytes_last", "received_bytes_last", "shm_bytes_last"), 0))

    @property
    def actor_id(self) -> str:
        return self.actor.actor_id


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


class ProcessPoolDispatcher(Dispatcher):
    """One worker process (``streamlib-<actor_id>``) per actor; its state lives there.

    ``dispatch`` sends the items newly read from each input (``read_all_new``) with
    the tick; the worker feeds them to its copy of the inputs, runs ``process``,
    and returns what each output wrote, which the parent then writes (in order
    per output) so downstream propagation happens in the parent. Tensors anywhere
    in those items cross in per-actor shared-memory arenas and are copied out once
    on arrival; the rest is pickled. Worker failures raise WorkerError with the
    worker traceback. POSIX only (waits use ``loop.add_reader``). Workers are
    daemonic: an actor running in one cannot start processes of its own.
    """

    name = "process"

    def __init__(self, *, mp_context: str = "spawn", start_timeout: float = 60.0,
                 stop_timeout: float = 5.0) -> None:
        super().__init__()
        self._ctx = mp.get_context(mp_context)  # ValueError for an unknown method
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._lock = threading.Lock()  # _workers is also read by shutdown() on another thread
        self._workers: dict[int, _Worker] = {}

    def stats(self, actor: Actor) -> dict[str, int]:
        """Counters of ``actor``'s worker: ``ticks`` and, for the last tick, pickled control
        bytes each way (``sent_bytes_last``/``received_bytes_last``) and tensor bytes that
        crossed in shared memory (``shm_bytes_last``). Raises ActorStateError if not set up."""
        return dict(self._get(actor).stats)

    # -- public coroutines -------------------------------------------------
    async def setup(self, actor: Actor) -> None:
        """Start the worker and run ``setup`` in it.

        Raises ConfigTypeError if the actor cannot be pickled, ActorStateError if already
        set up, WorkerError if setup raised, the worker died or did not answer
        within ``start_timeout``.
        """
        with self._work(actor, "set up"):
            if id(actor) in self._workers:
                raise ActorStateError(f"actor '{actor.actor_id}' is already set up on this dispatcher")
            blob = self._pickle_actor(actor)
            parent_conn, child_conn = self._ctx.Pipe(duplex=True)
            process = self._ctx.Process(  # type: ignore[attr-defined]
                target=worker_main, args=(child_conn,), name=f"streamlib-{actor.actor_id}",
                daemon=True)
            try:
                process.start()  # spawn: fork+exec only, the child imports on its own
            except BaseException:
                parent_conn.close()
                raise
            finally:
                child_conn.close()  # ours must go, or we never see EOF when the child dies
            w = _Worker(actor, process, parent_conn, busy=True)  # busy: shutdown won't claim it
            with self._lock:
                self._workers[id(actor)] = w
            try:
                reply = await self._exchange(w, "setup", None, blob, self._start_timeout)
                self._check(w, reply, "setup")
            except BaseException as exc:
                with self._lock:
                    self._workers.pop(id(actor), None)
                await self._stop(w, graceful=not w.pending)  # setup() raised: worker is idle
                if isinstance(exc, TimeoutError):
                    raise WorkerError(f"actor '{actor.actor_id}' worker did not finish setup "
                                      f"within {self._start_timeout} s") from None
                raise
            finally:
                w.busy = False

    async def dispatch(self, actor: Actor, tick: TimedTick) -> None:
        """Run ``process(tick)`` in the worker and write its outputs here.

        Raises WorkerError (process raised, or the worker died), ActorStateError
        (not set up, or a call for this actor is already running).
        """
        with self._work(actor, "dispatch to"):
            w = self._get(actor)
            async with self._exclusive(w):
                inputs = [(name, items) for name, port in actor.inputs.items()
                          if (items := port.read_all_new())]
                tensors: list[tuple[int, torch.Tensor]] = []
                body, size = dumps((tick, inputs), tensors)
                if size:
                    w.arena_in = grown(w.arena_in, size)
                    fill(w.arena_in, tensors)
                arena = None if w.arena_in is None else w.arena_in.name
                reply = await self._exchange(w, "tick", arena, body)
                self._check(w, reply, "process")
                unpickler = Unpickler(reply[2], w.arena_out)
                outputs: list[tuple[str, list[Any]]] = unpickler.load()
                w.stats["ticks"] += 1
                w.stats["shm_bytes_last"] = size + unpickler.size
        for name, items in outputs:
            port = actor.outputs[name]
            for item in items:
                port.write(item)

    async def teardown(self, actor: Actor) -> None:
        """Run ``teardown`` in the worker, stop it and free its shared memory.

        A no-op for an actor whose setup failed. Raises WorkerError if teardown
        raised or did not finish within ``stop_timeout`` (the worker is killed).
        """
        with self._work(actor, "tear down"):
            w = self._workers.get(id(actor))
            if w is None:
                return
            try:
                if not w.closed:
                    async with self._exclusive(w):
                        reply = await self._exchange(w, "teardown", None, b"", self._stop_timeout)
                        self._check(w, reply, "teardown")
            except TimeoutError:
                raise WorkerError(f"actor '{w.actor_id}' teardown did not finish within "
                                  f"{self._stop_timeout} s; worker killed") from None
            finally:
                with self._lock:
                    self._workers.pop(id(actor), None)
                await self._stop(w, graceful=not w.pending)  # a timed-out worker is killed

    # -- parent-side protocol ----------------------------------------------
    def _get(self, actor: Actor) -> _Worker:
        w = self._workers.get(id(actor))
        if w is None:
            raise ActorStateError(f"actor '{actor.actor_id}' is not set up on this process dispatcher")
        return w

    def _pickle_actor(self, actor: Actor) -> bytes:
        try:
            return dumps(actor)[0]
        except Exception as exc:
            where = "its state"
            for key, value in actor.__getstate__().items():
                if isinstance(value, PortDict):
                    continue  # ports pickle as shells; a failure there is the owner's state
                try:
                    dumps(value)
                except Exception:  # noqa: BLE001 - this attribute is the culprit
                    where = f"attribute {key!r}"
                    break
            raise ConfigTypeError(
                f"actor '{actor.actor_id}' ({type(actor).__name__}) cannot be sent to a worker "
                f"process: {where} is not picklable ({type(exc).__name__}: {exc}); create such "
                "resources in setup() and define the class at module level") from exc

    @contextlib.asynccontextmanager
    async def _exclusive(self, w: _Worker) -> AsyncIterator[None]:
        """Own the worker's pipe for one call (shutdown() claims idle workers the same way).

        Raises ActorStateError if a call is running, WorkerError if the worker is gone.
        """
        with self._cond:
            if w.busy:
                raise ActorStateError(f"actor '{w.actor_id}': a call is already running in its worker")
            if w.closed:
                raise (self._refused(w.actor, "dispatch to") if self._closed else
                       WorkerError(f"actor '{w.actor_id}' worker is not running ({w.exit_text})"))
            w.busy = True
        try:
            yield
        finally:
            w.busy = False

    async def _exchange(self, w: _Worker, kind: str, arena: str | None, body: bytes,
                        timeout: float | None = None) -> tuple[str, str | None, bytes]:
        """Send one request and return its final reply (answering arena-grow requests).

        Raises TimeoutError, WorkerError if the worker died.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while w.pending:  # an earlier await was cancelled: discard its reply first
            await self._final_reply(w, deadline)
        try:
            w.stats["sent_bytes_last"] = send(w.conn, kind, arena, body)
        except OSError:
            raise await self._died(w) from None
        w.pending += 1
        return await self._final_reply(w, deadline)

    async def _final_reply(self, w: _Worker, deadline: float | None) -> tuple[str, str | None, bytes]:
        while True:
            kind, arena, body = await self._recv(w, deadline)
            if kind != "grow":
                w.pending -= 1
                return kind, arena, body
            w.arena_out = grown(w.arena_out, pickle.loads(body))
            send(w.conn, "arena", w.arena_out.name, b"")

    async def _recv(self, w: _Worker, deadline: float | None) -> tuple[str, str | None, bytes]:
        if not w.conn.poll(0):
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            await _readable((w.conn.fileno(), w.process.sentinel), timeout)
        if w.closed:  # shutdown() killed the worker under us
            w.conn.close()
            raise DispatcherShutdownError(f"actor '{w.actor_id}': dispatcher shut down mid-call")
        try:
            if not w.conn.poll(0):  # only the sentinel fired: the process exited
                raise EOFError
            data = w.conn.recv_bytes()
        except (EOFError, OSError):
            raise await self._died(w) from None
        w.stats["received_bytes_last"] = len(data)
        kind, arena, body = pickle.loads(data)
        return kind, arena, body

    def _check(self, w: _Worker, reply: tuple[str, str | None, bytes], phase: str) -> None:
        if reply[0] == "error":
            tname, message, tb = pickle.loads(reply[2])
            raise WorkerError(f"actor '{w.actor_id}' {phase} raised {tname}: {message}", tb)

    async def _died(self, w: _Worker) -> WorkerError:
        for _ in range(100):  # the exit status can trail the closed pipe by a moment
            if w.process.exitcode is not None:
                break
            await asyncio.sleep(0.01)
        text = _exit_text(w.process.exitcode)
        await self._stop(w, graceful=False)
        w.exit_text = f"worker process died, {text}"
        return WorkerError(f"actor '{w.actor_id}' worker process died ({text})")

    async def _stop(self, w: _Worker, graceful: bool) -> None:
        """Stop the worker (politely if ``graceful``, else terminate) and free everything."""
        if w.closed:
            return
        w.closed = True
        if graceful:
            with contextlib.suppress(OSError):
                send(w.conn, "stop", None, b"")
        p = w.process
        for wait_s, escalate in ((self._stop_timeout if graceful else 0.0, p.terminate),
                                 (1.0, p.kill), (5.0, None)):
            with contextlib.suppress(TimeoutError):
                await _readable((p.sentinel,), wait_s)
            p.join(0.1)  # reap; the exit status trails the sentinel by microseconds
            if p.exitcode is not None or escalate is None:
                break
            escalate()
        w.exit_text = w.exit_text or f"stopped, {_exit_text(p.exitcode)}"
        self._dispose(w, fds=True)

    def _dispose(self, w: _Worker, fds: bool) -> None:
        for arena in (w.arena_in, w.arena_out):
            if arena is not None:
                arena.close()
        w.arena_in = w.arena_out = None
        if fds:  # not while a coroutine may still have them registered with its loop
            w.conn.close()
            if w.process.exitcode is not None:
                w.process.close()

    def _shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = [w for w in self._workers.values() if not w.closed]
            self._workers.clear()
        # Idle workers run teardown while we wait for the busy ones; once idle after
        # the wait they follow; workers still mid-call are killed.
        tearing = self._claim_idle(workers)
        all_idle = self._wait_idle(timeout)
        tearing += self._claim_idle([w for w in workers if w not in tearing])
        errors: list[Exception] = []
        for w in workers:
            w.closed = True
            p = w.process
            if w in tearing:
                try:
                    if w.conn.poll(max(0.0, deadline - time.monotonic())):
                        reply = pickle.loads(w.conn.recv_bytes())
                        send(w.conn, "stop", None, b"")
                        self._check(w, reply, "teardown")
                    else:
                        errors.append(ShutdownTimeoutError(
                            f"actor '{w.actor_id}' teardown did not finish within {timeout} s"))
                except WorkerError as exc:
                    errors.append(exc)
                except (OSError, EOFError):
                    pass  # it died: nothing left to tear down
                p.join(max(0.0, deadline - time.monotonic()))
            for escalate in (p.terminate, p.kill):
                if p.exitcode is None:
                    escalate()
                    p.join(1.0)
            # A coroutine still awaiting a killed worker wakes on EOF and closes the pipe.
            self._dispose(w, fds=w in tearing)
        if not all_idle:
            raise ShutdownTimeoutError(
                f"{self.name} dispatcher: calls still running after {timeout} s; workers killed")
        if errors:
            raise errors[0]

    def _claim_idle(self, workers: list[_Worker]) -> list[_Worker]:
        """Mark idle workers closed (no call can start on them) and send them teardown."""
        claimed = []
        for w in workers:
            with self._cond:
                if w.busy or w.pending or w.closed:
                    continue
                w.closed = True
            with contextlib.suppress(OSError):
                send(w.conn, "teardown", None, b"")
            claimed.append(w)
        return claimed


async def _readable(fds: tuple[int, ...], timeout: float | None) -> None:
    """Wait until any of ``fds`` is readable, without a thread. Raises TimeoutError."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    for fd in fds:
        loop.add_reader(fd, wake)
    try:
        await asyncio.wait_for(ready, timeout)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
