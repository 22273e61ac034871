"""Packet-time pacing for ST 2110-30 audio: ``pace_schedule`` and the ``PacedSender`` thread.

A receiver expects one audio packet per packet time, not a frame's worth at once,
so ``PacedSender`` sends each frame's packets on a grid that continues across
frames. Video has its own pacing, linear over each frame period, inside
``streamlib.net.video_sender.VideoStreamSender`` (ST 2110-21 style); the two differ in
what a late frame does (audio restarts the grid, video starts at once) and are not
shared. Both names here are re-exported by ``streamlib.net.audio``.
"""

from __future__ import annotations

import queue
import socket
import threading
import time

from streamlib.net.mmsg import BatchSender
from streamlib.errors import ClosedError, ConfigError

__all__ = ["PacedSender", "pace_schedule"]


def pace_schedule(count: int, ptime_ns: int, now_ns: int, next_due_ns: int,
                  backlog: int = 0) -> tuple[list[int], int]:
    """Send times (monotonic ns) of the next ``count`` packets of a stream with one
    packet per ``ptime_ns``, and the time the packet after them is due.

    The schedule continues from ``next_due_ns`` (where the previous frame's packets
    left off) so packets leave exactly ``ptime_ns`` apart across frames. A frame that
    arrives more than one packet time after that (or the first, ``next_due_ns == 0``)
    restarts the schedule at ``now_ns``: a gap, never a catch-up burst. When
    ``backlog`` more frames are already queued (the input runs faster than the packet
    clock, e.g. clock drift), this frame is spaced at 3/4 of the packet time so the
    queue, and the latency it adds, drains instead of growing.
    """
    interval = ptime_ns if backlog <= 0 else ptime_ns * 3 // 4
    start = next_due_ns
    if next_due_ns <= 0 or now_ns > next_due_ns + ptime_ns:
        start = now_ns
    return [start + k * interval for k in range(count)], start + count * interval


class PacedSender:
    """Sends RTP packets from a thread of its own, one every ``ptime_ms`` (ST 2110-30:
    a receiver expects a packet per packet time, not a frame's worth at once).

    ``submit(packets)`` queues a frame's packets and returns at once; the thread sends
    them at the times ``pace_schedule`` gives (sleeping between packets; packets
    already due when it wakes go together in one ``sendmmsg``). Throughput is the
    input's: on average a frame's packets take the frame's duration. Send errors
    (OSError) lose those packets, counted in ``packets_failed`` (the last error in
    ``last_error``), and never stop the thread.

    Args:
        sock: a connected UDP socket (``udp.open_sender``); closed by ``close``.
        ptime_ms: the packet time.

    Raises ConfigError for ``ptime_ms <= 0``.
    """

    def __init__(self, sock: socket.socket, ptime_ms: float) -> None:
        if not (isinstance(ptime_ms, (int, float)) and ptime_ms > 0):
            raise ConfigError(f"PacedSender: ptime_ms must be > 0, got {ptime_ms!r}")
        self.sock = sock
        self.ptime_ns = int(round(ptime_ms * 1_000_000))
        self._sender = BatchSender(sock, max_batch=64)
        self._todo: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._next_due = 0
        self.packets_sent = 0
        self.packets_failed = 0
        self.restarts = 0          # schedule restarted after the input came late
        self.last_error: OSError | None = None
        self.error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="streamlib-st2110-30-send",
                                        daemon=True)
        self._thread.start()

    @property
    def refused(self) -> int:
        """Sends the OS reported as refused (nobody listening on loopback)."""
        return self._sender.refused

    def submit(self, packets: list[bytes]) -> int:
        """Queue ``packets`` (sent in order, paced); returns how many were queued.
        Raises the thread's unexpected error, if it died, and ClosedError after close."""
        if self.error is not None:
            raise self.error
        if self._closed:
            raise ClosedError("PacedSender is closed")
        if packets:
            self._todo.put(list(packets))
        return len(packets)

    def _run(self) -> None:
        try:
            while True:
                packets = self._todo.get()
                if packets is None:
                    return
                now = time.monotonic_ns()
                if self._next_due and now > self._next_due + self.ptime_ns:
                    self.restarts += 1
                due, self._next_due = pace_schedule(len(packets), self.ptime_ns, now,
                                                    self._next_due, self._todo.qsize())
                i, n = 0, len(packets)
                while i < n:
                    wait = due[i] - time.monotonic_ns()
                    if wait > 0:
                        time.sleep(wait / 1e9)
                    now = time.monotonic_ns()
                    j = i + 1
                    while j < n and due[j] <= now:  # woke late: what is due goes now
                        j += 1
                    self._send(packets[i:j])
                    i = j
        except BaseException as e:  # noqa: BLE001 - handed to the submitting thread
            self.error = e

    def _send(self, packets: list[bytes]) -> None:
        try:
            self.packets_sent += self._sender.send(packets)
        except OSError as e:  # UDP: a failed send loses packets, not the stream
            self.packets_failed += len(packets)
            self.last_error = e

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (still paced), stop the thread, close the socket.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._todo.put(None)
        self._thread.join(timeout)
        self.sock.close()
