"""A minimal PTP master in Python for loopback tests (TTL 0: nothing leaves this host).

It announces, sends Sync (two-step with a Follow_Up, or one-step) with a chosen skew from
CLOCK_REALTIME and answers Delay_Req, on group 224.0.1.129 with test-chosen ports.
"""

from __future__ import annotations

import select
import socket
import threading
import time

from streamlib.net.ptp import (
    FLAG_TWO_STEP, PTP_GROUP, Announce, DelayReq, DelayResp, FollowUp, PortIdentity, PTPHeader,
    PTPTimestamp, Sync, encode_message, parse_message,
)

SCALED = 1 << 16


class FakeMaster:
    def __init__(self, ports: tuple[int, int], identity: bytes, *, skew_ns: int = 0,
                 priority1: int = 128, domain: int = 127, two_step: bool = True,
                 sync_correction_ns: int = 0, fup_correction_ns: int = 0,
                 log_sync: int = -5, log_announce: int = -4) -> None:
        self.ports, self.skew, self.domain = ports, skew_ns, domain
        self.pid = PortIdentity(identity, 1)
        self.priority1, self.two_step = priority1, two_step
        self.corr = (sync_correction_ns, fup_correction_ns)
        self.log_sync, self.log_announce = log_sync, log_announce
        self.delay_reqs = 0
        self._stop = threading.Event()
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        self.tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.rx.bind((PTP_GROUP, ports[0]))
        self.rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                           socket.inet_aton(PTP_GROUP) + socket.inet_aton("127.0.0.1"))
        self.rx.setblocking(False)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeMaster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.tx.close()
        self.rx.close()

    def now(self) -> int:
        return time.time_ns() + self.skew

    def _header(self, mtype: int, seq: int, flags: int = 0, corr_ns: int = 0,
                log: int = 0x7F) -> PTPHeader:
        return PTPHeader(mtype, 2, 0, self.domain, flags, corr_ns * SCALED, self.pid, seq, 0, log)

    def _send(self, msg: object, port: int) -> None:
        self.tx.sendto(encode_message(msg), (PTP_GROUP, port))  # type: ignore[arg-type]

    def _run(self) -> None:
        seq = 0
        next_sync = next_ann = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ann:
                self._send(Announce(self._header(0xB, seq, log=self.log_announce),
                                    PTPTimestamp.from_ns(self.now()), 37, self.priority1, 248,
                                    0xFE, 0xFFFF, 128, self.pid.clock_identity, 0, 0xA0),
                           self.ports[1])
                next_ann = now + 2.0 ** self.log_announce
            if now >= next_sync:
                seq = (seq + 1) & 0xFFFF
                cs, cf = self.corr
                t1 = self.now()
                if self.two_step:
                    self._send(Sync(self._header(0x0, seq, FLAG_TWO_STEP, cs, self.log_sync),
                                    PTPTimestamp.from_ns(t1)), self.ports[0])
                    # the wire time is t1; the corrections carry part of it
                    self._send(FollowUp(self._header(0x8, seq, 0, cf, self.log_sync),
                                        PTPTimestamp.from_ns(t1 - cs - cf)), self.ports[1])
                else:
                    self._send(Sync(self._header(0x0, seq, 0, cs, self.log_sync),
                                    PTPTimestamp.from_ns(t1 - cs)), self.ports[0])
                next_sync = now + 2.0 ** self.log_sync
            wait = max(0.0, min(next_ann, next_sync) - time.monotonic())
            if select.select([self.rx], [], [], wait)[0]:
                self._answer()

    def _answer(self) -> None:
        while True:
            try:
                data = self.rx.recv(2048)
            except BlockingIOError:
                return
            t4 = self.now()
            try:
                msg = parse_message(data)
            except ValueError:
                continue
            if isinstance(msg, DelayReq) and msg.header.domain == self.domain:
                self.delay_reqs += 1
                h = msg.header
                self._send(DelayResp(self._header(0x9, h.sequence_id, log=self.log_sync),
                                     PTPTimestamp.from_ns(t4), h.source_port_identity),
                           self.ports[1])
