"""ST 2110-20 receiver: ``VideoStreamReceiver``, the thread that receives RFC 4175
datagrams in batches and feeds them to a ``FrameAssembler``.

Frame assembly (reordering, loss/late/duplicate/malformed counting, the SSRC lock,
concealment) is ``streamlib.net.assembler`` and its kernel
``streamlib.net.assembly_kernel``.
"""

from __future__ import annotations

import collections
import socket
import threading
import time

from streamlib.net.assembler import AssembledFrame, FrameAssembler, ReceiverStats
from streamlib.net.mmsg import BatchReceiver
from streamlib.net.source_lock import SourceLock

__all__ = ["VideoStreamReceiver"]


class VideoStreamReceiver:
    """A thread that receives RFC 4175 datagrams (recvmmsg batches into preallocated
    buffers) and assembles them; finished frames wait in a queue of ``max_queue``
    (the oldest is dropped, and counted in ``frames_overflow``, when nobody reads).

    Args:
        sock: a bound UDP socket (``udp.open_receiver``); closed by ``close``.
        assembler: the stream's ``FrameAssembler`` (owned by the thread from now on).
        batch: messages per recvmmsg call.
        gro: ask for UDP_GRO (runs of GSO datagrams arrive unsplit: far fewer syscalls
            and kernel work on loopback); single datagrams work the same either way.
        max_queue: finished frames kept for ``get``.
        source_lock: the sender-address rule (``streamlib.net.source_lock``); datagrams
            it rejects never reach the assembler (``stats().foreign_source``). None:
            every address is accepted.
    """

    def __init__(self, sock: socket.socket, assembler: FrameAssembler, *, batch: int = 64,
                 max_queue: int = 8, gro: bool = True,
                 source_lock: SourceLock | None = None) -> None:
        self.sock, self.assembler = sock, assembler
        self.source_lock = source_lock if source_lock is not None and source_lock.active \
            else None
        self._rx = BatchReceiver(sock, batch=batch, gro=gro, sources=self.source_lock is not None)
        self._frames: collections.deque[AssembledFrame] = collections.deque()
        self._cond = threading.Condition()
        self.max_queue = max_queue
        self.frames_overflow = 0
        self.frames_total = 0
        self.last_packet_ns = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamlib-rfc4175-recv",
                                        daemon=True)
        self._thread.start()

    def _deliver(self, frames: list[AssembledFrame]) -> None:
        if not frames:
            return
        with self._cond:
            for f in frames:
                if len(self._frames) >= self.max_queue:
                    self._frames.popleft()
                    self.frames_overflow += 1
                self._frames.append(f)
                self.frames_total += 1
            self._cond.notify_all()

    def _run(self) -> None:
        rx, asm = self._rx, self.assembler
        try:
            while not self._stop.is_set():
                n = rx.recv_segments(timeout=0.005)
                now = time.monotonic_ns()
                if n:
                    self.last_packet_ns = now
                    offsets, lengths = rx.seg_offsets, rx.seg_lengths
                    lock = self.source_lock
                    if lock is not None:
                        msgs = rx.seg_msg[:n]
                        m = int(msgs[-1]) + 1  # messages (GRO: several datagrams each)
                        keep = None if lock.all_locked(rx.source_bytes(m), now) else \
                            lock.filter_keys(rx.source_keys(m)[msgs], now)  # one by one
                        if keep is not None:  # foreign senders: never seen by the assembler
                            offsets, lengths = offsets[:n][keep], lengths[:n][keep]
                            n = int(offsets.size)
                if n:
                    self._deliver(asm.push_segments(rx.flat, offsets, lengths, n, now))
                else:
                    self._deliver(asm.poll(now))
        except OSError as e:
            if not self._stop.is_set():
                self.error = e
        except BaseException as e:  # noqa: BLE001 - reported to the reading thread
            self.error = e
        finally:
            with self._cond:
                self._cond.notify_all()

    def get(self, timeout: float = 0.0) -> AssembledFrame | None:
        """The oldest finished frame, waiting up to ``timeout`` s; None if none came.
        Raises the receive thread's error, if it died."""
        with self._cond:
            if not self._frames and timeout > 0:
                self._cond.wait_for(lambda: bool(self._frames) or self.error is not None
                                    or self._stop.is_set(), timeout)
            if self._frames:
                return self._frames.popleft()
        if self.error is not None:
            raise self.error
        return None

    def stats(self) -> ReceiverStats:
        """Counters so far (read while the thread runs: a consistent-enough snapshot)."""
        s = self.assembler.stats
        lock = self.source_lock
        if lock is not None:
            s.foreign_source, s.source_changes, s.source = (
                lock.foreign_source, lock.source_changes, lock.source)
        s.extra = {"frames_overflow": self.frames_overflow, "syscalls": self._rx.syscalls}
        return s

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the socket. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout)
        self.sock.close()
