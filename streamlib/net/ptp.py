"""An IEEE 1588-2008 (PTPv2) ordinary-clock slave, SMPTE ST 2059-2 profile, as a TimeSource.

Codec: :func:`parse_message` turns one UDP payload into a frozen dataclass
(:class:`Announce`, :class:`Sync`, :class:`FollowUp`, :class:`DelayReq`,
:class:`DelayResp`) and raises only PTPError (a ValueError) for malformed input;
:func:`encode_message` and :func:`build_delay_req` go the other way.

:class:`PTPSlave` listens on 224.0.1.129 ports 319 (event) and 320 (general),
picks a master from Announce messages, measures E2E (Delay_Req/Delay_Resp)
and never touches the system clock: ``now_ns()`` is ``CLOCK_REALTIME`` minus
the filtered offset from master, in the master's timescale (TAI for a real
grandmaster; UTC for ``ptp4l -S``, whose time is CLOCK_REALTIME).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import select
import socket
import statistics
import struct
import threading
import time
from collections import deque
from types import TracebackType
from typing import Callable, Self, TypedDict

from streamlib.net.ptp_codec import (
    FLAG_PTP_TIMESCALE, FLAG_TWO_STEP, FLAG_UTC_OFFSET_VALID, NS, PTP_GROUP, Announce,
    DelayReq, DelayResp, FollowUp, PortIdentity, PTPHeader, PTPMessage, PTPTimestamp, Sync,
    build_delay_req, encode_message, parse_message,
)
from streamlib.net.ptp_foreign import ForeignMasterTable, announce_interval_s
from streamlib.net.udp import join_group
from streamlib.errors import ClosedError, ConfigError, PTPError

__all__ = [
    "PTP_GROUP", "PortIdentity", "PTPTimestamp", "PTPHeader", "Sync", "DelayReq", "FollowUp",
    "DelayResp", "Announce", "PTPMessage", "parse_message", "encode_message", "build_delay_req",
    "PTPSlave", "PTPStats", "FLAG_TWO_STEP", "FLAG_UTC_OFFSET_VALID", "FLAG_PTP_TIMESCALE",
]


# ------------------------------------------------------------------ the slave

_SO_TIMESTAMPNS = 35     # SO_TIMESTAMPNS_OLD == SCM_TIMESTAMPNS (struct timespec)
_SO_TIMESTAMPING = 37    # SO_TIMESTAMPING_OLD == SCM_TIMESTAMPING (struct timespec[3])
_TS_TX_SOFTWARE, _TS_SOFTWARE, _TS_OPT_ID, _TS_OPT_TSONLY = 1 << 1, 1 << 4, 1 << 7, 1 << 11
_MSG_ERRQUEUE = 0x2000
_IP_RECVERR = 11
_TX_TS_TIMEOUT_S = 0.02  # ptp4l's tx_timestamp_timeout is 1 ms; Python needs slack
_CMSG_BUF = 512


class State(str, enum.Enum):
    INITIALIZING = "INITIALIZING"
    LISTENING = "LISTENING"        # no master selected
    UNCALIBRATED = "UNCALIBRATED"  # master selected, not (or no longer) locked
    SLAVE = "SLAVE"                # locked: synchronized is True
    FAULTY = "FAULTY"              # the receive thread died (see stats()['error'])
    CLOSED = "CLOSED"


class PTPStats(TypedDict):
    """``PTPSlave.stats()``: times in ns, offset = slave minus master, counts since start."""

    state: str
    synchronized: bool
    domain: int
    port_identity: str
    master: str | None        # sourcePortIdentity, ptp4l style "a69203.fffe.58b4a6-1"
    grandmaster: str | None   # grandmasterIdentity, "a69203.fffe.58b4a6"
    offset_ns: int | None
    offset_median_ns: int | None
    delay_ns: int | None
    delay_median_ns: int | None
    utc_offset: int | None    # the master's currentUtcOffset
    ptp_timescale: bool | None
    foreign_masters: int      # records in the foreign master table (bounded)
    counts: dict[str, int]    # sync, follow_up, delay_resp, announce, delay_req_sent,
    #   samples, malformed, tx_kernel_ts, tx_host_ts, rx_host_ts, master_changes, send_errors,
    #   foreign_evicted (records dropped to keep the table at max_foreign_masters)
    error: str | None


_interval_s = announce_interval_s  # 2**logMessageInterval, the default for 0x7F ("not given")


def _kernel_ts(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind in (_SO_TIMESTAMPNS, _SO_TIMESTAMPING) \
                and len(payload) >= 16:
            sec, nsec = struct.unpack_from("qq", payload)  # ts[0]: the software stamp
            if sec or nsec:
                return int(sec * NS + nsec)
    return None


class PTPSlave:
    """An IEEE 1588 (ST 2059-2) slave on UDP/IPv4 multicast that implements ``TimeSource``.

    ``start()`` (or ``with``) opens sockets bound to 224.0.1.129 ports 319/320,
    joined on the interface whose IPv4 address is ``interface``, with kernel
    receive timestamps, and starts one daemon thread. Masters are chosen from
    Announces in ``domain`` (a BMCA subset: lowest priority1, clockClass,
    clockAccuracy, offsetScaledLogVariance, priority2, grandmasterIdentity,
    stepsRemoved, sourcePortIdentity) among *qualified* foreign masters: 2 Announces
    within 4 announce intervals (IEEE 1588 9.3.2.5), in a table of at most
    ``max_foreign_masters`` records (``streamlib.net.ptp_foreign``: a flood of one-off
    identities never displaces the master; O(1) per Announce).
    One-step and two-step Sync are handled; path delay is E2E: a Delay_Req every
    ``max(delay_req_interval_s, 2**logMinDelayReqInterval)`` to the event port,
    t3 from a kernel software TX timestamp (falls back to the host time just before
    ``send`` when none comes, e.g. TTL 0 on loopback; ``stats()`` counts both).

    Offset from master (slave minus master, as ptp4l prints it) per Sync is
    ``(t2 - t1 - corrections) - delay``, with ``delay`` the median of the last
    ``window`` path delays ``((t2-t1) + (t4-t3)) / 2``; the filter is the median
    of the last ``window`` offsets. The system clock is never adjusted:
    ``now_ns() = CLOCK_REALTIME - median offset`` (holds the last value when
    unlocked). ``synchronized`` is True once the last ``lock_samples`` offsets lie
    within ``lock_threshold_ns`` of their median, and False again after
    ``announce_receipt_timeout`` Sync intervals without a Sync (or master loss).

    Timescale: ``now_ns()`` is the master's time, TAI for a grandmaster that sets
    ptpTimescale (what ``TimeSource`` expects). ``ptp4l -S`` announces ARB and sends
    its CLOCK_REALTIME, i.e. UTC (``stats()["ptp_timescale"]`` tells which).

    Safety: PTP's group is not loopback. A loopback ``interface`` sends with TTL 0
    (nothing leaves this host); any other address needs ``allow_remote=True``
    and sends Delay_Req (TTL 1) onto that interface's link. Tests only do so
    inside network namespaces they create.

    Args:
        interface: IPv4 address of the interface to join on.
        domain: PTP domainNumber (ST 2059-2: 127).
        delay_req_interval_s: shortest time between Delay_Reqs.
        allow_remote: allow a non-loopback ``interface``.
        window: offsets/delays kept for the medians.
        lock_samples: consistent offsets needed to lock.
        lock_threshold_ns: spread allowed around the median to lock.
        announce_receipt_timeout: intervals (Announce for the master, Sync for lock) before loss.
        event_port, general_port: UDP ports (319/320; others only for loopback tests).
        clock_identity: our 8-byte clockIdentity (default: random).
        on_sample: called on the slave thread with ``(offset_ns, delay_ns)`` per sample.
        max_foreign_masters: foreign master records kept (the rest are evicted, counted
            in ``stats()["counts"]["foreign_evicted"]``).

    Raises:
        ConfigError: bad interface, domain, window or intervals, or a non-loopback
            ``interface`` without ``allow_remote=True``. ``start()`` raises OSError
            from the OS (ports below 1024 need root or CAP_NET_BIND_SERVICE).
    """

    def __init__(self, interface: str = "127.0.0.1", domain: int = 127, *,
                 delay_req_interval_s: float = 0.125, allow_remote: bool = False,
                 window: int = 15, lock_samples: int = 8, lock_threshold_ns: int = 1_000_000,
                 announce_receipt_timeout: int = 3, event_port: int = 319,
                 general_port: int = 320, clock_identity: bytes | None = None,
                 on_sample: Callable[[int, int], None] | None = None,
                 max_foreign_masters: int = 16) -> None:
        try:
            addr = ipaddress.IPv4Address(interface)
        except ValueError:
            raise ConfigError(f"PTPSlave: interface must be an IPv4 address literal, "
                              f"got {interface!r}") from None
        self._loopback = addr.is_loopback
        if not self._loopback and not allow_remote:
            raise ConfigError(f"PTPSlave: interface {interface} is not loopback; pass "
                              f"allow_remote=True to send Delay_Req onto its link")
        if isinstance(domain, bool) or not isinstance(domain, int) or not 0 <= domain <= 255:
            raise ConfigError(f"PTPSlave: domain must be an int in 0..255, got {domain!r}")
        if not delay_req_interval_s > 0:
            raise ConfigError(f"PTPSlave: delay_req_interval_s must be > 0, "
                              f"got {delay_req_interval_s!r}")
        if not 1 <= lock_samples <= window:
            raise ConfigError(f"PTPSlave: need 1 <= lock_samples <= window, got "
                              f"lock_samples={lock_samples!r}, window={window!r}")
        if announce_receipt_timeout < 2 or lock_threshold_ns <= 0:
            raise ConfigError("PTPSlave: announce_receipt_timeout must be >= 2 and "
                              "lock_threshold_ns > 0")
        if clock_identity is not None and len(clock_identity) != 8:
            raise ConfigError("PTPSlave: clock_identity must be 8 bytes")
        self.interface, self.domain = interface, domain
        self._dr_interval = float(delay_req_interval_s)
        self._lock_samples, self._lock_threshold = lock_samples, int(lock_threshold_ns)
        self._art = announce_receipt_timeout
        self._ports = (event_port, general_port)
        self.port_identity = PortIdentity(clock_identity or os.urandom(8), 1)
        self._on_sample = on_sample
        self._lock = threading.RLock()  # on_sample runs under it and may call stats()
        self._offsets: deque[int] = deque(maxlen=window)
        self._delays: deque[int] = deque(maxlen=window)
        self._offset_ns = 0           # filtered; read lock-free by now_ns()
        self._state = State.INITIALIZING
        if isinstance(max_foreign_masters, bool) or not isinstance(max_foreign_masters, int) \
                or max_foreign_masters < 1:
            raise ConfigError(f"PTPSlave: max_foreign_masters must be an int >= 1, "
                              f"got {max_foreign_masters!r}")
        self._foreign = ForeignMasterTable(max_foreign_masters, announce_receipt_timeout)
        self._master: Announce | None = None
        self._pending_sync: tuple[int, int, int] | None = None  # seq, t2, correction
        self._pending_fup: tuple[int, int, int] | None = None   # seq, t1, correction
        self._last_ms: int | None = None   # t2 - t1 - corrections of the last Sync
        self._last_sync = 0.0
        self._sync_interval = 0.125
        self._dr_seq = 0
        self._dr_pending: tuple[int, int] | None = None  # seq, t3
        self._dr_next = 0.0
        self._dr_interval_master = 0.0  # 2**logMinDelayReqInterval from Delay_Resp
        self._tx_key = 0
        self._last_offset: int | None = None
        self._last_delay: int | None = None
        self._counts = dict.fromkeys(
            ("sync", "follow_up", "delay_resp", "announce", "delay_req_sent", "samples",
             "malformed", "tx_kernel_ts", "tx_host_ts", "rx_host_ts", "master_changes",
             "send_errors"), 0)
        self._error: str | None = None
        self._socks: list[socket.socket] = []
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------ TimeSource
    def now_ns(self) -> int:
        """Master time in ns: ``CLOCK_REALTIME`` minus the filtered offset from master
        (plain ``CLOCK_REALTIME`` until the first sample)."""
        return time.time_ns() - self._offset_ns

    @property
    def synchronized(self) -> bool:
        with self._lock:
            self._check_sync_timeout(time.monotonic())
            return self._state is State.SLAVE

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        """Open the sockets and start the thread (idempotent; returns self).

        Raises:
            ClosedError: already closed.
            OSError: a socket could not be bound/joined (the slave stays unstarted).
        """
        if self._closed:
            raise ClosedError("PTPSlave is closed")
        if self._thread is not None:
            return self
        ttl = 0 if self._loopback else 1
        try:
            for port in self._ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self._socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((PTP_GROUP, port))
                join_group(s, PTP_GROUP, self.interface)
                s.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                             socket.inet_aton(self.interface))
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
                # TTL 0 only reaches this host through the loop copy
                s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(self._loopback))
                s.setblocking(False)
            try:
                self._socks[0].setsockopt(
                    socket.SOL_SOCKET, _SO_TIMESTAMPING,
                    _TS_TX_SOFTWARE | _TS_SOFTWARE | _TS_OPT_ID | _TS_OPT_TSONLY)
            except OSError:
                pass  # no TX timestamps: t3 falls back to the host time
            self._wake = socket.socketpair()
        except BaseException:
            self._close_sockets()
            raise
        self._state = State.LISTENING
        self._thread = threading.Thread(target=self._run, name="ptp-slave", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close the sockets (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._state = State.CLOSED
        if self._wake is not None:
            try:
                self._wake[1].send(b"x")
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._close_sockets()

    def _close_sockets(self) -> None:
        for s in [*self._socks, *(self._wake or ())]:
            s.close()
        self._socks, self._wake = [], None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------ stats
    def stats(self) -> PTPStats:
        """A snapshot: state, synchronized, master/grandmaster identity, offset/delay
        (last and median, ns; offset = slave minus master), sample and message counts,
        the master's currentUtcOffset/ptpTimescale, and the thread's error if it died."""
        now = time.monotonic()
        with self._lock:
            self._check_sync_timeout(now)
            m = self._master
            return {
                "state": self._state.value, "synchronized": self._state is State.SLAVE,
                "domain": self.domain, "port_identity": str(self.port_identity),
                "master": str(m.header.source_port_identity) if m else None,
                "grandmaster": PortIdentity(m.grandmaster_identity, 0).clock_id_str
                if m else None,
                "offset_ns": self._last_offset,
                "offset_median_ns": int(statistics.median(self._offsets))
                if self._offsets else None,
                "delay_ns": self._last_delay,
                "delay_median_ns": int(statistics.median(self._delays)) if self._delays else None,
                "utc_offset": m.current_utc_offset if m else None,
                "ptp_timescale": bool(m.header.flags & FLAG_PTP_TIMESCALE) if m else None,
                "foreign_masters": len(self._foreign),
                "counts": {**self._counts, "foreign_evicted": self._foreign.evicted},
                "error": self._error,
            }

    # ------------------------------------------------------------ thread
    def _run(self) -> None:
        assert self._wake is not None
        # poll, not select(): select fails for any descriptor >= 1024 (FD_SETSIZE)
        by_fd = {s.fileno(): s for s in [*self._socks, self._wake[0]]}
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, select.POLLIN | select.POLLPRI)
        try:
            while not self._closed:
                now = time.monotonic()
                with self._lock:
                    self._expire(now)
                    due = self._master is not None and self._last_ms is not None
                if due and now >= self._dr_next:
                    self._send_delay_req()
                    now = time.monotonic()
                wait = max(0.0, self._dr_next - now) if due else 0.25
                ready = [by_fd[fd] for fd, _ in poller.poll(min(wait, 0.25) * 1000.0)]
                for s in ready:
                    if s is self._wake[0]:
                        return
                    self._drain(s)
                    if s is self._socks[0]:
                        # a late TX stamp keeps poll() reporting POLLERR: drop it
                        self._drain_errqueue(s, None)
        except Exception as e:  # noqa: BLE001 - report through stats(), not a dead thread
            if self._closed:
                return  # close() from on_sample closed the sockets under us
            with self._lock:
                self._error = f"{type(e).__name__}: {e}"
                self._state = State.FAULTY

    def _drain(self, sock: socket.socket) -> None:
        while True:
            try:
                data, anc, _, _ = sock.recvmsg(2048, _CMSG_BUF)
            except (BlockingIOError, InterruptedError):
                return
            stamp = _kernel_ts(anc)
            if stamp is None:
                self._counts["rx_host_ts"] += 1
                stamp = time.time_ns()
            try:
                msg = parse_message(data)
            except PTPError:
                self._counts["malformed"] += 1
                continue
            if msg.header.domain != self.domain or \
                    msg.header.source_port_identity.clock_identity == \
                    self.port_identity.clock_identity:
                continue
            with self._lock:
                self._handle(msg, stamp, time.monotonic())

    def _handle(self, msg: PTPMessage, t_rx: int, now: float) -> None:
        h = msg.header
        if isinstance(msg, Announce):
            self._counts["announce"] += 1
            if msg.steps_removed < 255:
                self._foreign.update(msg, now)
                self._follow_best()
            return
        m = self._master
        if m is None or h.source_port_identity != m.header.source_port_identity:
            return
        if isinstance(msg, Sync):
            self._counts["sync"] += 1
            self._last_sync = now
            self._sync_interval = _interval_s(h.log_message_interval, self._sync_interval)
            if h.flags & FLAG_TWO_STEP:
                f = self._pending_fup
                if f is not None and f[0] == h.sequence_id:  # its Follow_Up came first
                    self._pending_fup = None
                    self._counts["follow_up"] += 1
                    self._sync_sample(t_rx - f[1] - h.correction_ns - f[2])
                else:
                    self._pending_sync = (h.sequence_id, t_rx, h.correction_ns)
            else:
                self._sync_sample(t_rx - msg.origin_timestamp.ns - h.correction_ns)
        elif isinstance(msg, FollowUp):
            p = self._pending_sync
            if p is not None and p[0] == h.sequence_id:
                self._counts["follow_up"] += 1
                self._pending_sync = None
                self._sync_sample(p[1] - msg.precise_origin_timestamp.ns - p[2] - h.correction_ns)
            else:
                # the two sockets are read in turn, so a Follow_Up can be handled
                # before its Sync: keep it for the Sync
                self._pending_fup = (h.sequence_id, msg.precise_origin_timestamp.ns,
                                     h.correction_ns)
        elif isinstance(msg, DelayResp):
            d = self._dr_pending
            if d is None or d[0] != h.sequence_id or \
                    msg.requesting_port_identity != self.port_identity:
                return
            self._counts["delay_resp"] += 1
            self._dr_pending = None
            self._dr_interval_master = _interval_s(h.log_message_interval, 0.0)
            if self._last_ms is not None:
                sm = msg.receive_timestamp.ns - d[1] - h.correction_ns
                self._last_delay = (self._last_ms + sm) // 2
                self._delays.append(self._last_delay)

    def _sync_sample(self, ms: int) -> None:
        self._last_ms = ms
        if not self._delays:
            return  # no path delay yet: an offset would be off by it
        offset = ms - int(statistics.median(self._delays))
        self._last_offset = offset
        self._offsets.append(offset)
        self._counts["samples"] += 1
        med = int(statistics.median(self._offsets))
        self._offset_ns = med
        if self._state is not State.SLAVE and len(self._offsets) >= self._lock_samples:
            recent = list(self._offsets)[-self._lock_samples:]
            if max(abs(o - med) for o in recent) <= self._lock_threshold:
                self._state = State.SLAVE
        if self._on_sample is not None:
            self._on_sample(offset, self._last_delay or 0)

    def _follow_best(self) -> None:
        # the table keeps the best qualified record; follow it (and its latest Announce)
        best = self._foreign.best
        old, self._master = self._master, best.announce if best is not None else None
        if best is None:
            if old is not None:
                self._reset(State.LISTENING)
        elif old is None or old.header.source_port_identity != \
                best.announce.header.source_port_identity:
            self._counts["master_changes"] += 1
            self._reset(State.UNCALIBRATED)

    def _reset(self, state: State) -> None:
        # a new (or no) master: nothing measured against the old one carries over,
        # except _offset_ns, which now_ns() keeps as holdover
        self._offsets.clear()
        self._delays.clear()
        self._pending_sync = self._pending_fup = self._last_ms = self._dr_pending = None
        if self._state is not State.CLOSED:
            self._state = state

    def _expire(self, now: float) -> None:
        if self._foreign.expire(now):
            self._follow_best()
        self._check_sync_timeout(now)

    def _check_sync_timeout(self, now: float) -> None:
        if self._state is State.SLAVE and \
                now - self._last_sync > self._art * self._sync_interval:
            self._offsets.clear()
            self._state = State.UNCALIBRATED

    def _send_delay_req(self) -> None:
        sock = self._socks[0]
        self._drain_errqueue(sock, None)  # stale stamps of earlier sends
        self._dr_seq = (self._dr_seq + 1) & 0xFFFF
        data = build_delay_req(self._dr_seq, self.port_identity, self.domain)
        self._dr_next = time.monotonic() + max(self._dr_interval, self._dr_interval_master)
        t_host = time.time_ns()
        try:
            sock.sendto(data, (PTP_GROUP, self._ports[0]))
        except OSError as e:  # e.g. no multicast route yet: try again next interval
            with self._lock:
                self._counts["send_errors"] += 1
                self._error = f"Delay_Req send: {e}"
            return
        key = self._tx_key
        self._tx_key += 1
        t3 = None
        poller = select.poll()
        poller.register(sock, select.POLLPRI)  # POLLERR (error queue) is always reported
        deadline = time.monotonic() + _TX_TS_TIMEOUT_S
        while t3 is None and (left := deadline - time.monotonic()) > 0:
            if poller.poll(left * 1000):
                t3 = self._drain_errqueue(sock, key)
        with self._lock:
            self._counts["delay_req_sent"] += 1
            self._counts["tx_kernel_ts" if t3 is not None else "tx_host_ts"] += 1
            self._dr_pending = (self._dr_seq, t3 if t3 is not None else t_host)

    @staticmethod
    def _drain_errqueue(sock: socket.socket, key: int | None) -> int | None:
        """Read the error queue; the TX stamp whose OPT_ID is ``key``, if any."""
        found = None
        while True:
            try:
                _, anc, _, _ = sock.recvmsg(64, _CMSG_BUF, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return found
            stamp = _kernel_ts(anc)
            ids = [struct.unpack_from("=I", p, 12)[0] for lvl, kind, p in anc
                   if lvl == socket.IPPROTO_IP and kind == _IP_RECVERR and len(p) >= 16]
            if key is not None and stamp is not None and (not ids or ids[0] == key):
                found = stamp
