"""Network I/O works on descriptors >= 1024 (issue 10, section 6).

``select()`` fails for those ("filedescriptor out of range in select()"); a process
with many files open (a long-running graph, a server) gets such descriptors for
every new socket. Each test opens ~1100 dummy descriptors first, so the sockets it
then opens are numbered past FD_SETSIZE, and receives real packets on loopback.
"""

from __future__ import annotations

import os
import resource
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from streamlib.actors.network_audio import AudioNetworkReceiveActor
from streamlib.net.audio import AudioFormat, AudioPacketizer
from streamlib.net.assembler import FrameAssembler
from streamlib.net.jitter import VideoStreamReceiver
from streamlib.net.mmsg import BatchReceiver, recv_batch, wait_fd
from streamlib.net.ptp import (
    PTP_GROUP, Announce, PortIdentity, PTPHeader, PTPSlave, PTPTimestamp, encode_message,
)
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.net.udp import open_receiver, open_sender
from streamlib.net.video_sender import VideoStreamSender
from streamlib.testing import ActorHarness

FD_SETSIZE = 1024


@pytest.fixture
def high_fds() -> Iterator[None]:
    """Fill every descriptor below 1100, so the next socket's number is >= 1100."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 1400
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    first = os.open(os.devnull, os.O_RDONLY)
    dummies = [first]
    try:
        while dummies[-1] < FD_SETSIZE + 76:
            dummies.append(os.dup(first))
        yield
    finally:
        for fd in dummies:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _wait(cond: object, what: str, timeout: float = 10.0) -> None:
    ev = threading.Event()
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        ev.wait(0.01)


def test_wait_fd_and_batch_receive_past_fd_setsize(high_fds: None) -> None:
    rx_sock = open_receiver(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert rx_sock.fileno() >= FD_SETSIZE and tx.fileno() >= FD_SETSIZE
        assert wait_fd(rx_sock.fileno(), 0) is False  # nothing yet: a timeout, no error
        assert wait_fd(tx.fileno(), 0, write=True) is True
        rx = BatchReceiver(rx_sock, batch=4)
        tx.sendto(b"abc", rx_sock.getsockname())
        assert rx.recv(timeout=5.0) == 1 and rx.buffers[0, :3].tobytes() == b"abc"
        tx.sendto(b"defg", rx_sock.getsockname())
        bufs = [bytearray(16)]
        assert recv_batch(rx_sock, bufs, timeout=5.0) == [4] and bufs[0][:4] == b"defg"
    finally:
        rx_sock.close()
        tx.close()
    with pytest.raises(ValueError, match=r"^wait_fd: the socket is closed \(fd -1\)$"):
        wait_fd(rx_sock.fileno(), 0)


def test_video_receiver_past_fd_setsize(high_fds: None) -> None:
    fmt, w, h = "RGB/8", 16, 4
    rx_sock = open_receiver(("127.0.0.1", 0))
    rx = VideoStreamReceiver(rx_sock, FrameAssembler(fmt, w, h))
    pk = VideoPacketizer(fmt, w, h)
    tx = VideoStreamSender(open_sender(rx_sock.getsockname()), pk, 120)
    try:
        assert rx_sock.fileno() >= FD_SETSIZE and tx.sock.fileno() >= FD_SETSIZE
        buf = tx.acquire(timeout=2.0)
        assert buf is not None
        buf[:] = np.arange(buf.size, dtype=np.uint8)
        want = buf.copy()
        tx.submit(buf, 3000)
        got = rx.get(timeout=30.0)  # the first push may compile the numba kernel
    finally:
        tx.close()
        rx.close()
    assert rx.error is None
    assert got is not None and got.complete and np.array_equal(got.data, want), rx.stats()
    assert rx.stats().received == pk.n_packets and rx.stats().lost == 0


def test_audio_receiver_past_fd_setsize(high_fds: None) -> None:
    fmt = AudioFormat("L24", 48000, 2)
    with ActorHarness(AudioNetworkReceiveActor, dest="127.0.0.1", frame_ms=1.0,
                      timebase="realtime") as h:
        h.tick()  # setup opens the socket
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            assert tx.fileno() >= FD_SETSIZE
            pkt = AudioPacketizer(fmt, ptime_ms=1.0, ssrc=7)
            samples = np.full((48, 2), 0.5, np.float32)
            for p in pkt.push(samples, time.time_ns()):
                tx.sendto(p, ("127.0.0.1", h.actor.port))
            frames: list[object] = []

            def ticked() -> bool:
                frames.extend(h.tick()["audio"])
                return bool(frames)

            _wait(ticked, "an audio frame")
        finally:
            tx.close()
        assert h.actor.stats.played == 1 and h.actor.stats.malformed == 0
        frame = frames[0]
        assert np.array_equal(frame.data.numpy(), samples)  # type: ignore[attr-defined]


def _announce(seq: int, identity: bytes) -> bytes:
    pid = PortIdentity(identity, 1)
    return encode_message(Announce(
        PTPHeader(0xB, 2, 0, 127, 0, 0, pid, seq, 5, -3), PTPTimestamp.from_ns(time.time_ns()),
        37, 128, 248, 0xFE, 0xFFFF, 128, identity, 0, 0xA0))


def test_ptp_slave_past_fd_setsize(high_fds: None) -> None:
    base = 20000 + 2 * secrets.randbelow(15000)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    slave = PTPSlave(event_port=base, general_port=base + 1)
    try:
        with slave:
            assert min(s.fileno() for s in slave._socks) >= FD_SETSIZE
            seq = 0

            def heard() -> bool:
                nonlocal seq
                seq += 1
                tx.sendto(_announce(seq, b"\x11" * 8), (PTP_GROUP, base + 1))
                return slave.stats()["master"] is not None or slave.stats()["error"] is not None

            _wait(heard, "the slave to hear Announces")
            st = slave.stats()
            assert st["error"] is None and st["state"] == "UNCALIBRATED"
            assert st["master"] == "111111.1111.111111-1" and st["counts"]["announce"] >= 1
    finally:
        tx.close()
