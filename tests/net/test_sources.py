"""Receivers lock to the sender address an SDP names (issue 10, section 6).

Before, with ``ssrc=None`` any second sender took over a receiver after 100 ms of
the first one's silence and kept it. Now an SDP's ``a=source-filter: incl`` (or a
sender ``o=`` address) fixes the accepted sender addresses; without one the first
address is locked to, and a change is logged and counted (``source_changes``).
Loopback only: 127.0.0.2 is a loopback address on Linux without any setup.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import numpy as np
import pytest

from streamlib import Runtime
from streamlib.actors.network import NetworkReceiveActor
from streamlib.actors.network_audio import AudioNetworkReceiveActor
from streamlib.net.audio import AudioDepacketizer, AudioFormat, AudioPacketizer
from streamlib.net.assembler import FrameAssembler
from streamlib.net.jitter import VideoStreamReceiver
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.net.sdp import audio_stream, parse_sdp, stream_sources, stream_ssrc, write_sdp
from streamlib.net.source_lock import SourceLock
from streamlib.net.udp import open_receiver, open_sender
from streamlib.net.video_sender import VideoStreamSender
from streamlib.testing import ActorHarness

A, B = "127.0.0.1", "127.0.0.2"


def _sdp(o: str, c: str, extra: str = "", session: str = "") -> str:
    return (f"v=0\r\no=- 1 1 IN IP4 {o}\r\ns=x\r\nt=0 0\r\n{session}"
            f"m=audio 5004 RTP/AVP 97\r\nc=IN IP4 {c}\r\na=rtpmap:97 L24/48000/2\r\n{extra}")


# -- SDP ------------------------------------------------------------------------------------

def test_sdp_names_the_sender_by_source_filter_or_origin() -> None:
    s = parse_sdp(_sdp(A, "239.1.1.1",
                       "a=source-filter: incl IN IP4 239.1.1.1 10.0.0.5 10.0.0.6\r\n"
                       "a=source-filter: incl IN IP4 239.9.9.9 10.0.0.9\r\n"
                       "a=source-filter: excl IN IP4 * 10.0.0.7\r\n",
                       session="a=source-filter: incl IN IP4 * 10.0.0.4\r\n"))[0]
    assert s.sources == ("10.0.0.4", "10.0.0.5", "10.0.0.6") and s.attributes == ()
    assert stream_sources(s) == ("10.0.0.4", "10.0.0.5", "10.0.0.6")
    assert s.origin_address == A
    again = parse_sdp(write_sdp([s]))[0]
    assert again.sources == s.sources
    assert "a=source-filter: incl IN IP4 239.1.1.1 10.0.0.4 10.0.0.5 10.0.0.6\r\n" in write_sdp([s])
    # o= names the sender only when it can be one
    assert stream_sources(parse_sdp(_sdp(B, A))[0]) == (B,)
    assert stream_sources(parse_sdp(_sdp("10.0.0.8", "239.1.1.1"))[0]) == ("10.0.0.8",)
    assert stream_sources(parse_sdp(_sdp(A, A))[0]) == ()            # o= is the destination
    assert stream_sources(parse_sdp(_sdp(A, "10.0.0.1"))[0]) == ()   # FFmpeg's o=127.0.0.1
    assert stream_sources(parse_sdp(_sdp("239.1.1.1", "239.1.1.1"))[0]) == ()  # our writer
    assert stream_sources(parse_sdp(_sdp("0.0.0.0", A))[0]) == ()
    # what our own writer emits names no sender: receivers fall back to the first one seen
    assert stream_sources(parse_sdp(write_sdp([audio_stream(A, 5004)]))[0]) == ()
    assert stream_ssrc(parse_sdp(_sdp(A, A, "a=ssrc:4294967295 cname:x\r\n"))[0]) == 0xFFFFFFFF
    assert stream_ssrc(parse_sdp(_sdp(A, A))[0]) is None
    with pytest.raises(ValueError, match=r"^SDP a='ssrc:4294967296': the SSRC must be a 32-bit "
                                         r"unsigned number$"):
        stream_ssrc(parse_sdp(_sdp(A, A, "a=ssrc:4294967296\r\n"))[0])
    with pytest.raises(ValueError, match=r"^SDP line 8 'a=source-filter: incl IN IP4 \* host': "
                                         r"'host' does not appear to be an IPv4 or IPv6 address$"):
        parse_sdp(_sdp(A, A, "a=source-filter: incl IN IP4 * host\r\n"))


# -- the rule -------------------------------------------------------------------------------

def test_fixed_sources_never_move_even_after_silence() -> None:
    lock = SourceLock([B], name="rx")
    assert lock.source == B
    assert [lock.accept(a, t) for a, t in ((A, 0), (B, 1), (A, 10**9), (A, 10**10), (B, 10**10))] \
        == [False, True, False, False, True]
    assert (lock.foreign_source, lock.source_changes, lock.source) == (3, 0, B)
    with pytest.raises(ValueError, match=r"^rx: sources: 'nowhere' is not an IP address literal$"):
        SourceLock(["nowhere"], name="rx")


def test_first_source_is_followed_only_after_silence_and_the_change_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    lock = SourceLock(name="rx 'v'", idle_ns=100_000_000)
    ms = 1_000_000
    with caplog.at_level(logging.WARNING, logger="streamlib.net.source"):
        got = [lock.accept(a, t * ms) for a, t in
               ((A, 0), (B, 10), (A, 50), (B, 149), (B, 150), (A, 160), (A, 300), (B, 301))]
    assert got == [True, False, True, False, True, False, True, False]
    assert (lock.foreign_source, lock.source_changes, lock.source) == (4, 2, A)
    assert [r.getMessage() for r in caplog.records] == [
        "rx 'v': source changed from 127.0.0.1 to 127.0.0.2 (127.0.0.1 silent for 100 ms)",
        "rx 'v': source changed from 127.0.0.2 to 127.0.0.1 (127.0.0.2 silent for 150 ms)"]
    assert not SourceLock(follow=False).active and SourceLock(follow=False).accept(A, 0)


def test_filter_keys_matches_accept() -> None:
    keys = np.array([socket.inet_aton(a) for a in (A, A, B, A, B)], dtype="V4")
    fixed = SourceLock([B])
    mask = fixed.filter_keys(keys, 0)
    assert mask is not None and mask.tolist() == [False, False, True, False, True]
    assert fixed.foreign_source == 3
    follow = SourceLock()
    mask = follow.filter_keys(keys, 0)
    assert mask is not None and mask.tolist() == [True, True, False, True, False]
    assert follow.filter_keys(keys[:2], 1) is None  # all from the locked sender: fast path
    assert (follow.foreign_source, follow.source) == (2, A)
    raw = np.frombuffer(socket.inet_aton(A) * 2, np.uint8).reshape(2, 4)
    assert follow.all_locked(raw, 2) and not SourceLock([B]).all_locked(raw, 0)
    assert not SourceLock().all_locked(raw, 0)  # nothing locked yet: filter one by one
    assert SourceLock(follow=False).all_locked(raw, 0)
    two = SourceLock([B, "127.0.0.3"])
    mixed = np.array([socket.inet_aton(a) for a in (B, "127.0.0.3", B)], dtype="V4")
    assert two.filter_keys(mixed, 0) is None and two.foreign_source == 0
    assert two.all_locked(np.frombuffer(b"".join(bytes(k) for k in mixed), np.uint8)
                          .reshape(3, 4), 0)
    mask = two.filter_keys(keys, 0)
    assert mask is not None and mask.tolist() == [False, False, True, False, True]
    assert two.foreign_source == 3


# -- video on loopback ------------------------------------------------------------------------

def _video_pair(rx_addr: tuple[str, int], fmt: str, w: int, h: int) -> tuple[Any, Any, Any, Any]:
    a_pk = VideoPacketizer(fmt, w, h, ssrc=0xAAAA0001)
    b_pk = VideoPacketizer(fmt, w, h, ssrc=0xBBBB0002)
    a = VideoStreamSender(open_sender(rx_addr, bind=(A, 0)), a_pk, 240)
    b = VideoStreamSender(open_sender(rx_addr, bind=(B, 0)), b_pk, 240)
    return a, b, a_pk, b_pk


def _send(tx: VideoStreamSender, value: int, ts: int) -> None:
    buf = tx.acquire(timeout=5.0)
    assert buf is not None
    buf[:] = value
    tx.submit(buf, ts)


def _wait(cond: Any, what: str, timeout: float = 30.0) -> None:
    ev, deadline = threading.Event(), time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        ev.wait(0.01)


@pytest.mark.parametrize("mode", ["sdp", "first"])
def test_video_receiver_locks_to_the_sender_address(mode: str) -> None:
    """sdp: the SDP names B (o=127.0.0.2): A's packets never count, though A sends
    first. first: no sender named, A comes first and keeps the lock while alive."""
    fmt, w, h, n = "RGB/8", 16, 4, 6
    rx_sock = open_receiver((A, 0))
    lock = SourceLock([B] if mode == "sdp" else [], name="rx", idle_ns=60 * 10**9)
    rx = VideoStreamReceiver(rx_sock, FrameAssembler(fmt, w, h, idle_timeout_ms=60_000),
                             source_lock=lock)
    a, b, a_pk, b_pk = _video_pair(rx_sock.getsockname(), fmt, w, h)
    try:
        _send(a, 1, 0)
        if mode == "first":
            assert rx.get(timeout=30.0) is not None  # A is locked to now
            _wait(lambda: rx.stats().source == A, "the lock on A")
        for i in range(1, n):  # same RTP timestamps, other pixels: any leak would show
            _send(b, 100 + i, 1500 * i)
            _send(a, i, 1500 * i)
        got = [rx.get(timeout=30.0) for _ in range(n - 1)]
        a.close()
        b.close()
        total = a.packets_sent + b.packets_sent
        _wait(lambda: rx.stats().received + rx.stats().foreign_source == total, "all packets")
    finally:
        a.close()
        b.close()
        rx.close()
    st = rx.stats()
    want_src, values = (B, [100 + i for i in range(1, n)]) if mode == "sdp" else \
        (A, list(range(1, n)))
    foreign = a.packets_sent if mode == "sdp" else b.packets_sent
    assert (st.source, st.foreign_source, st.source_changes, st.foreign_ssrc, st.lost) == \
        (want_src, foreign, 0, 0, 0)
    assert st.ssrc == (0xBBBB0002 if mode == "sdp" else 0xAAAA0001)
    assert [g is not None and g.complete for g in got] == [True] * (n - 1)
    assert [int(g.data[0]) for g in got if g is not None] == values
    assert all(bool((g.data == g.data[0]).all()) for g in got if g is not None)
    assert rx.get() is None


def test_video_actor_takes_the_sender_from_its_sdp() -> None:
    fmt, w, h = "RGB/8", 16, 4
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((A, 0))
    port = probe.getsockname()[1]
    probe.close()
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {B}\r\ns=x\r\nt=0 0\r\nm=video {port} RTP/AVP 96\r\n"
           f"c=IN IP4 {A}\r\na=rtpmap:96 raw/90000\r\n"
           f"a=fmtp:96 sampling=RGB; width={w}; height={h}; depth=8; exactframerate=60\r\n"
           f"a=ssrc:{0xBBBB0002} cname:b@example\r\n")
    rt = Runtime()
    rx = NetworkReceiveActor(sdp=sdp, actor_id="vrx", runtime=rt)
    assert rx.sources == (B,) and rx.ssrc == 0xBBBB0002
    rx.setup()
    a, b, a_pk, b_pk = _video_pair((A, port), fmt, w, h)
    try:
        _send(a, 1, 0)
        _send(b, 2, 0)
        assert rx._rx is not None
        got = rx._rx.get(timeout=30.0)
        a.close()
        b.close()
        _wait(lambda: rx.stats().foreign_source == a.packets_sent, "A's packets counted")
        st = rx.stats()
    finally:
        a.close()
        b.close()
        rx.teardown()
        rt.close()
    assert got is not None and int(got.data[0]) == 2
    assert (st.source, st.ssrc, st.received, st.foreign_ssrc) == (B, 0xBBBB0002, b.packets_sent, 0)
    with pytest.raises(ValueError, match=r"^NetworkReceiveActor 'bad': sources: 'x' is not an "
                                         r"IP address literal$"):
        NetworkReceiveActor(dest="127.0.0.1:0", width=16, height=4, sources=["x"],
                            actor_id="bad", runtime=Runtime())


# -- audio ------------------------------------------------------------------------------------

FMT = AudioFormat("L24", 48000, 2)


class StepClock:
    def __init__(self) -> None:
        self.t = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        self.t += 1_000_000
        return self.t


def _packets(ssrc: int, value: float, count: int) -> list[bytes]:
    p = AudioPacketizer(FMT, ptime_ms=1.0, ssrc=ssrc, first_sequence=ssrc & 0xFF)
    return p.push(np.full((48 * count, 2), value, np.float32), 1_700_000_000 * 10**9)


def test_audio_depacketizer_drops_other_senders_even_after_silence() -> None:
    clock = StepClock()
    d = AudioDepacketizer(FMT, frame_samples=48, now_ns=clock, source_lock=SourceLock([B]))
    ours, theirs = _packets(0x1111, 0.5, 10), _packets(0x2222, -0.25, 10)
    frames = []
    for k in range(5):  # the other sender comes first, then they interleave
        frames += d.push(theirs[k], A) + d.push(ours[k], B)
    clock.t += 10 * 10**9  # ours is silent for 10 s: theirs still never takes over
    for k in range(5, 10):
        frames += d.push(theirs[k], A)
    for k in range(5, 10):
        frames += d.push(ours[k], B)
    frames += d.flush()
    s = d.stats
    assert (s.received, s.played, s.foreign_source, s.foreign_ssrc, s.source_changes, s.lost) == \
        (20, 10, 10, 0, 0, 0)
    assert d.ssrc == 0x1111 and all(bool((f.data.numpy() == 0.5).all()) for f in frames)
    assert sum(f.samples for f in frames) == 480


def test_audio_actor_locks_to_the_sdp_sender_on_loopback() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((A, 0))
    port = probe.getsockname()[1]
    probe.close()
    sdp = write_sdp([audio_stream(A, port)]).replace(
        "a=mediaclk:direct=0\r\n",
        f"a=mediaclk:direct=0\r\na=source-filter: incl IN IP4 {A} {B}\r\n"
        f"a=ssrc:{0x2222}\r\n")
    with ActorHarness(AudioNetworkReceiveActor, sdp=sdp, frame_ms=1.0, timebase="realtime",
                      actor_id="arx") as h:
        assert h.actor.sources == (B,) and h.actor.depacketizer.lock_ssrc == 0x2222
        h.tick()  # setup opens the socket
        tx_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx_a.bind((A, 0))
        tx_b.bind((B, 0))
        try:
            for pa, pb in zip(_packets(0x1111, -0.25, 4), _packets(0x2222, 0.5, 4)):
                tx_a.sendto(pa, (A, port))
                tx_b.sendto(pb, (A, port))
            frames: list[Any] = []

            def ticked() -> bool:
                frames.extend(h.tick()["audio"])
                return h.actor.stats.received == 8

            _wait(ticked, "8 datagrams")
        finally:
            tx_a.close()
            tx_b.close()
        s = h.actor.stats
        assert (s.played, s.foreign_source, s.foreign_ssrc, s.source_changes) == (4, 4, 0, 0)
        assert h.actor.depacketizer.ssrc == 0x2222
        assert [bool((f.data.numpy() == 0.5).all()) for f in frames] == [True] * len(frames)
