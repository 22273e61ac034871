"""The paced RFC 4175 / ST 2110-20 sender: ``VideoStreamSender``, and the kernel pacing
rate its ST 2110-21 ``"narrow"``/``"wide"`` modes set (``pacing_rate``,
``set_pacing_rate``). Packets come from ``streamlib.net.rfc4175.VideoPacketizer``;
their timing model and the analyzer that checks it are ``streamlib.net.st2110_21``.
"""

from __future__ import annotations

import math
import queue
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from streamlib.net.mmsg import HAVE_MMSG, BatchSender, enable_gso, gso_segments
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.errors import ClosedError, ConfigError

__all__ = ["ReadyEvent", "VideoStreamSender", "SENDER_TIMINGS", "pacing_rate", "set_pacing_rate"]


SENDER_TIMINGS = ("burst", "narrow", "wide")
_SO_MAX_PACING_RATE = 47  # Linux: per-socket rate cap that the fq qdisc enforces per packet
_ETHERNET_OVERHEAD = 14   # what a qdisc counts beyond the IP packet (qdisc_pkt_len)
_SPIN_NS = 300_000        # narrow/wide frame starts: sleep until this close, then spin
_LEAD_NS = 8_000_000      # narrow/wide: how far packets are handed to the kernel early
_PACED_SNDBUF = 4 << 20   # narrow/wide: room for the lead (skb truesize ~2.3 KB a packet)


class ReadyEvent(Protocol):
    """What ``submit(..., ready=)`` takes: a ``torch.cuda.Event`` recorded after the
    (asynchronous) copy that fills the buffer."""

    def synchronize(self) -> None: ...


def _zeros(nbytes: int) -> npt.NDArray[np.uint8]:
    return np.zeros(nbytes, np.uint8)


class VideoStreamSender:
    """Sends frames of pgroups as paced RFC 4175 packets from a thread of its own.

    ``acquire()`` hands out one of ``buffers`` preallocated pgroup buffers (None when all
    are queued: the caller drops the frame), the caller packs into it and ``submit``s it
    with its RTP timestamp, and the event of an asynchronous copy into it still running
    (``ready``: the thread synchronises on it before it reads the buffer). A buffer goes
    back to the free list only once it was sent, so no frame is packed into a buffer
    still being sent. The thread restamps the packet headers and sends the frame
    in steps of ``batch`` packets, each step one ``sendmmsg`` whose messages gather
    header, pixel data (straight from the buffer: no copy in Python) and padding.

    ``timing`` picks how packets leave (ST 2110-21, see ``streamlib.net.st2110_21``):

    * ``"burst"``: steps spread evenly over ``pacing`` x the frame period, with UDP GSO
      (``gso=True`` and a uniform packetizer) each message carries up to 44 packets
      that the kernel splits: the highest packet rate (about twice on loopback), but
      each step leaves back to back, so it meets no ST 2110-21 class (1080p60 narrow
      allows bursts of about 6 packets, wide 16) and the SDP claims none.
    * ``"narrow"`` (Type N) and ``"wide"`` (Type W): both pace to the gapped
      ``TRS = TFRAME * 1080/1125 / N`` (wide declares the looser class, which holds
      through more scheduling jitter): one datagram per message (no GSO: a
      qdisc paces per skb), the socket's ``SO_MAX_PACING_RATE`` set to one packet per
      ``TRS`` (``pacing_rate``, bytes/s including UDP/IP/Ethernet headers), steps
      released one ahead of the schedule so the kernel's queue never runs dry, and
      frame starts timed by sleeping then spinning the last 0.3 ms. The per-packet
      spacing is the kernel's: it holds only where the egress qdisc paces, which is
      ``fq`` with a small quantum (``tc qdisc replace dev X root fq quantum 1514
      initial_quantum 1514 flow_limit 1000``), honouring the socket rate; kernels
      built without fq can shape the interface to the stream's rate instead
      (``tc qdisc replace dev X root tbf rate <8*pacing_rate>bit burst 6000 limit
      4mb``; see ``tc_commands``). Loopback and a veth without a qdisc (``noqueue``)
      do not pace: there the packets leave in ``batch`` bursts and the stream meets
      no class. ``SO_TXTIME`` launch times need the ``etf`` or ``fq`` qdisc too and
      are not used.

    Args:
        sock: a connected UDP socket (``udp.open_sender``); closed by ``close``.
        packetizer: the stream's ``VideoPacketizer``.
        fps: frame rate the packets are paced for.
        pacing: ``"burst"``: fraction of the frame period to spread packets over
            (0: one burst); narrow/wide spread over ``N * TRS``.
        batch: packets per pacing step.
        buffers: pgroup buffers in flight.
        gso: ``"burst"``: use UDP GSO when the OS supports it.
        timing: ``"burst"``, ``"narrow"`` or ``"wide"``.
        alloc: makes each buffer from its size in bytes (default: zeroed numpy memory;
            a CUDA sender passes page-locked memory its device->host copies land in).

    Raises ConfigError for a bad fps/pacing/batch/buffers/timing.
    """

    def __init__(self, sock: socket.socket, packetizer: VideoPacketizer, fps: float, *,
                 pacing: float = 0.9, batch: int = 88, buffers: int = 3,
                 gso: bool = True, timing: str = "burst",
                 alloc: Callable[[int], npt.NDArray[np.uint8]] = _zeros) -> None:
        if not fps > 0 or not 0 <= pacing <= 1 or batch < 1 or buffers < 1:
            raise ConfigError(f"VideoStreamSender: need fps > 0, 0 <= pacing <= 1, batch >= 1, "
                              f"buffers >= 1; got {fps}, {pacing}, {batch}, {buffers}")
        if timing not in SENDER_TIMINGS:
            raise ConfigError(f"VideoStreamSender: timing must be one of {SENDER_TIMINGS}, "
                              f"got {timing!r}")
        self.sock, self.packetizer = sock, packetizer
        self.timing = timing
        self.period_ns = int(1e9 / fps)
        self.pacing = pacing
        self.per_message = 1
        self.trs_ns = 0.0          # narrow/wide: the packet time the kernel paces to
        self.pacing_rate = 0       # narrow/wide: SO_MAX_PACING_RATE in bytes/s
        self.kernel_pacing = False  # the OS took SO_MAX_PACING_RATE (fq still needed)
        if timing == "burst":
            if gso and packetizer.uniform and HAVE_MMSG and \
                    enable_gso(sock, packetizer.segment_size):
                self.per_message = gso_segments(packetizer.segment_size)
        else:
            self.trs_ns, self.pacing_rate = pacing_rate(
                packetizer, fps, timing, ipv6=sock.family == socket.AF_INET6)
            self.kernel_pacing = set_pacing_rate(sock, self.pacing_rate)
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < _PACED_SNDBUF:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _PACED_SNDBUF)
                except OSError:
                    pass  # the lead is then bounded by the smaller buffer
        self.gso = self.per_message > 1
        self.batch = max(1, batch // self.per_message)  # messages per step
        self._sender = BatchSender(sock, max_batch=256)
        self._free: queue.Queue[npt.NDArray[np.uint8]] = queue.Queue()
        for _ in range(buffers):
            self._free.put(alloc(packetizer.frame_bytes))
        self._todo: queue.SimpleQueue[
            tuple[npt.NDArray[np.uint8], int, ReadyEvent | None] | None] = queue.SimpleQueue()
        self.frames_sent = 0
        self.packets_sent = 0
        self.frames_dropped = 0
        self.late_frames = 0   # frames that started more than a period behind schedule
        self.error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="streamlib-rfc4175-send",
                                        daemon=True)
        self._thread.start()

    @property
    def sdp_tp(self) -> str | None:
        """The SDP ``TP=`` this sender is configured for: ``2110TPN`` (narrow),
        ``2110TPW`` (wide), None for burst (it meets no ST 2110-21 class)."""
        return {"narrow": "2110TPN", "wide": "2110TPW"}.get(self.timing)

    def tc_commands(self, dev: str) -> list[str]:
        """``tc`` commands (run as root) that make ``dev``'s egress pace this stream:
        fq (per-socket pacing at ``pacing_rate``), then the tbf alternative for kernels
        without fq (shapes the whole interface to the stream's rate). Empty for burst."""
        if self.timing == "burst":
            return []
        return [f"tc qdisc replace dev {dev} root fq quantum 1514 initial_quantum 1514 "
                f"flow_limit 1000",
                f"tc qdisc replace dev {dev} root tbf rate {self.pacing_rate * 8}bit "
                f"burst 6000 limit 4mb"]

    def acquire(self, timeout: float = 0.0) -> npt.NDArray[np.uint8] | None:
        """A free pgroup buffer to pack the next frame into, waiting up to ``timeout``
        seconds; None when none frees up (the frame is counted in ``frames_dropped``)."""
        try:
            return self._free.get(timeout=timeout) if timeout > 0 else self._free.get_nowait()
        except queue.Empty:
            self.frames_dropped += 1
            return None

    def release(self, buf: npt.NDArray[np.uint8]) -> None:
        """Give back an acquired buffer without sending it."""
        self._free.put(buf)

    def submit(self, buf: npt.NDArray[np.uint8], rtp_timestamp: int,
               ready: ReadyEvent | None = None) -> None:
        """Queue an acquired buffer for sending; with ``ready``, the thread synchronises on
        it before reading the buffer. Raises the sender thread's error, if any, and
        ClosedError after ``close``."""
        if self.error is not None:
            raise self.error
        if self._closed:
            raise ClosedError("VideoStreamSender is closed")
        self._todo.put((buf, rtp_timestamp, ready))

    def send_frame(self, buf: npt.NDArray[np.uint8], rtp_timestamp: int,
                   start_ns: int | None = None) -> None:
        """Send one frame on the calling thread, paced from ``start_ns`` (default: now)."""
        pk = self.packetizer
        pk.stamp(rtp_timestamp)
        vec = pk.message_vector(buf, self.per_message)
        msgs = vec.capacity
        steps = max(1, -(-msgs // self.batch))
        start = time.monotonic_ns() if start_ns is None else start_ns
        if self.timing == "burst":
            span = self.period_ns * self.pacing
            due = [start + int(span * c / steps) for c in range(steps)]
        else:
            # _LEAD_NS ahead of the kernel's schedule (the send buffer permitting): its
            # queue never runs dry, so a late wake-up here opens no gap on the wire
            step_ns = self.batch * self.trs_ns
            due = [start + max(0, int(c * step_ns) - _LEAD_NS) for c in range(steps)]
            _wait_until(start)
        for c in range(steps):
            wait = due[c] - time.monotonic_ns()
            if wait > 50_000:
                time.sleep(wait / 1e9)
            first = c * self.batch
            self._sender.send_vector(vec, first, min(self.batch, msgs - first))
        self.frames_sent += 1
        self.packets_sent += pk.n_packets

    def _run(self) -> None:
        next_start = 0
        try:
            while True:
                item = self._todo.get()
                if item is None:
                    return
                buf, ts, ready = item
                try:
                    if ready is not None:
                        ready.synchronize()  # the copy into buf is done
                    now = time.monotonic_ns()
                    late = bool(next_start) and now > next_start + self.period_ns
                    if late:
                        self.late_frames += 1
                    start = max(now, next_start)
                    self.send_frame(buf, ts, start)
                finally:
                    self._free.put(buf)
                # narrow/wide keep the frame grid (a late frame does not shift the ones
                # after it, as epochs would not) unless a whole period was lost
                anchor = next_start if self.timing != "burst" and not late and next_start \
                    else start
                next_start = anchor + self.period_ns
        except BaseException as e:  # noqa: BLE001 - handed to the submitting thread
            self.error = e

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, stop the thread, close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._todo.put(None)
        self._thread.join(timeout)
        self.sock.close()


def pacing_rate(packetizer: VideoPacketizer, fps: float, timing: str, *,
                ipv6: bool = False) -> tuple[float, int]:
    """``(TRS in ns, bytes/s)`` a ``"narrow"`` or ``"wide"`` sender paces to (both the
    gapped TRS, ``TFRAME * 1080/1125 / N``): its largest datagram plus UDP, IP and Ethernet headers (what a
    qdisc counts) once per TRS. Raises ConfigError for another timing."""
    from streamlib.net.st2110_21 import timing_model

    if timing not in ("narrow", "wide"):
        raise ConfigError(f"pacing_rate: timing must be 'narrow' or 'wide', got {timing!r}")
    # wide paces like narrow (the gapped TRS): a linear TRS leaves no slack, so a shaper
    # a fraction slow would push every frame into the next; TPW is the looser promise
    trs = timing_model(packetizer.n_packets, fps, packetizer.height).trs_ns
    wire = int(packetizer.packet_sizes().max()) + 8 + (40 if ipv6 else 20) + _ETHERNET_OVERHEAD
    return trs, math.ceil(wire * 1e9 / trs)


def set_pacing_rate(sock: socket.socket, rate: int) -> bool:
    """Set ``SO_MAX_PACING_RATE`` (bytes/s) on ``sock``; False where the OS refuses it.
    Only the ``fq`` qdisc paces UDP by it (TCP also paces itself)."""
    if not sys.platform.startswith("linux") or not 0 < rate < 1 << 64:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_MAX_PACING_RATE, struct.pack("=Q", rate))
    except OSError:
        try:  # kernels before 4.20 take a u32
            sock.setsockopt(socket.SOL_SOCKET, _SO_MAX_PACING_RATE, min(rate, 0xFFFFFFFF))
        except OSError:
            return False
    return True


def _wait_until(deadline_ns: int) -> None:
    """Sleep until close to ``deadline_ns`` (monotonic), then spin: sleeping alone wakes
    tens to hundreds of microseconds late, a frame start's whole jitter budget."""
    wait = deadline_ns - time.monotonic_ns()
    if wait > _SPIN_NS:
        time.sleep((wait - _SPIN_NS) / 1e9)
    while time.monotonic_ns() < deadline_ns:
        pass
