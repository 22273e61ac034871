"""ST 2110-20 video: pgroups, SDP, UDP helpers, RFC 4175 packets, the receiver
(reordering, loss, late, duplicate, malformed, concealment), fuzzing, the actors and
the examples. Peers (GStreamer/FFmpeg) are in test_net_interop_video.py."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from streamlib import Runtime, VirtualClock
from streamlib.core.actor import Actor
from streamlib.actors.network import NetworkReceiveActor, NetworkSendActor
from streamlib.actors.patterns import TestPatternActor
from streamlib.clocks import TimedTick
from streamlib.core.frames import VideoFrame
from streamlib.net import assembler
from streamlib.net.assembler import FrameAssembler
from streamlib.net.jitter import VideoStreamReceiver
from streamlib.net.pgroup import (
    FORMATS, pack_rgb, pack_rgb_fast, parse_format, rgb_to_ycbcr422_10, unpack_to_rgb,
    unpack_to_rgb_fast, ycbcr422_10_to_planes,
)
from streamlib.net.rfc4175 import (
    SRD, VideoPacket, VideoPacketizer, join_packets, parse_packet, serialize_packet, split_packets,
)
from streamlib.errors import RTPError
from streamlib.net.sdp import audio_stream, parse_sdp, video_stream, write_sdp
from streamlib.net.udp import (
    BatchReceiver, BatchSender, open_receiver, open_sender, parse_dest, recv_batch,
)
from streamlib.net.video_sender import VideoStreamSender
from streamlib.core.ports import StreamInput
from streamlib.core.registry import PortAllocator

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "net"
# Ports these tests bind (interop tests use 40500-40998).
PORTS = PortAllocator(40000, 40498)
FMT_NAMES = list(FORMATS)


def _port(key: str) -> int:
    """A port of our range that nothing on this machine holds right now (another test
    run may be using the same range at the same time)."""

    def probe(port: int) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))  # EADDRINUSE: the allocator tries the next one
        return port

    return PORTS.allocate_bound(key, probe, tries=PORTS.capacity)[0]


def _rgb(h: int, w: int, seed: int = 0, pairs: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if pairs:  # equal colours in each 4:2:2 pixel pair
        return np.repeat(rng.integers(0, 256, (h, w // 2, 3), dtype=np.uint8), 2, axis=1)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- pgroups ------------------------------------------------------------------------------

def test_ycbcr10_known_codes() -> None:
    def codes(rgb: tuple[int, int, int]) -> tuple[int, int, int, int]:
        img = np.array([[rgb, rgb]], np.uint8)
        cb, y0, cr, y1 = ycbcr422_10_to_planes(rgb_to_ycbcr422_10(img), 2, 1)
        return int(cb[0, 0]), int(y0[0, 0]), int(cr[0, 0]), int(y1[0, 0])

    assert codes((0, 0, 0)) == (512, 64, 512, 64)
    assert codes((255, 255, 255)) == (512, 940, 512, 940)
    assert codes((255, 0, 0)) == (409, 250, 960, 250)    # BT.709 red, narrow range
    assert codes((0, 255, 0)) == (167, 691, 105, 691)
    assert codes((0, 0, 255)) == (960, 127, 471, 127)


def test_pgroup_sizes_and_layout() -> None:
    img = np.zeros((2, 4, 3), np.uint8)
    assert pack_rgb(img, "YCbCr-4:2:2/10").size == 2 * 4 * 5 // 2
    assert pack_rgb(img, "YCbCr-4:2:2/8").size == 2 * 4 * 2
    assert pack_rgb(img, "RGB/8").size == 2 * 4 * 3
    # 8-bit 4:2:2 is UYVY: Cb Y0 Cr Y1
    assert list(pack_rgb(img, "YCbCr-4:2:2/8")[:4]) == [128, 16, 128, 16]
    # 10-bit: Cb=512 Y0=64 Cr=512 Y1=64 as four big-endian 10-bit fields
    v = (512 << 30) | (64 << 20) | (512 << 10) | 64
    assert bytes(pack_rgb(img, "YCbCr-4:2:2/10")[:5]) == v.to_bytes(5, "big")


@pytest.mark.parametrize("fmt,bound", [("YCbCr-4:2:2/10", 1), ("YCbCr-4:2:2/8", 2),
                                       ("RGB/8", 0)])
def test_round_trip_error_bound(fmt: str, bound: int) -> None:
    img = _rgb(32, 64, seed=3, pairs=True)
    back = unpack_to_rgb(pack_rgb(img, fmt), fmt, 64, 32)
    assert int(np.abs(back.astype(int) - img).max()) <= bound
    if fmt == "YCbCr-4:2:2/10":
        # Arbitrary images: only chroma is shared by a pair; every pixel keeps its own
        # luma code, the one it gets when converted on its own.
        img = _rgb(32, 64, seed=4)
        _, y0, _, y1 = ycbcr422_10_to_planes(pack_rgb(img, fmt), 64, 32)
        alone = np.repeat(img, 2, axis=1)
        _, ya, _, _ = ycbcr422_10_to_planes(pack_rgb(alone, fmt), 128, 32)
        assert np.array_equal(y0, ya[:, 0::2]) and np.array_equal(y1, ya[:, 1::2])


@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_numba_matches_numpy_bit_for_bit(fmt: str) -> None:
    img = _rgb(18, 40, seed=5)
    ref = pack_rgb(img, fmt)
    assert np.array_equal(pack_rgb_fast(torch.from_numpy(img), fmt), ref)
    assert np.array_equal(unpack_to_rgb_fast(ref, fmt, 40, 18), unpack_to_rgb(ref, fmt, 40, 18))
    # RGBA input: alpha ignored
    rgba = np.concatenate([img, np.full((18, 40, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(pack_rgb_fast(rgba, fmt), ref)


def test_pgroup_errors() -> None:
    with pytest.raises(ValueError, match="even width"):
        rgb_to_ycbcr422_10(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        pack_rgb(np.zeros((2, 4, 3), np.float32), "RGB/8")
    with pytest.raises(ValueError, match="unknown video format"):
        parse_format("YCbCr-4:4:4/12")
    with pytest.raises(ValueError, match="needs"):
        unpack_to_rgb(b"\x00" * 10, "YCbCr-4:2:2/10", 4, 4)


# -- SDP ----------------------------------------------------------------------------------

def test_sdp_write_parse_round_trip() -> None:
    v = video_stream("127.0.0.1", 5004, width=1920, height=1080, fps=59.94, tp="2110TPN")
    a = audio_stream("127.0.0.1", 5006)
    text = write_sdp([v, a], session_id=7,
                     ts_refclk="ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0")
    lines = text.split("\r\n")
    for want in ("m=video 5004 RTP/AVP 96", "c=IN IP4 127.0.0.1", "a=rtpmap:96 raw/90000",
                 "a=mediaclk:direct=0", "a=rtpmap:97 L24/48000/2", "a=ptime:1",
                 "a=ts-refclk:ptp=IEEE1588-2008:08-00-11-FF-FE-21-E1-B0:0"):
        assert want in lines
    fmtp = next(x for x in lines if x.startswith("a=fmtp:96 "))
    for part in ("sampling=YCbCr-4:2:2", "width=1920", "height=1080", "depth=10",
                 "exactframerate=60000/1001", "colorimetry=BT709", "PM=2110GPM",
                 "SSN=ST2110-20:2017", "TP=2110TPN"):
        assert part in fmtp
    pv, pa = parse_sdp(text)
    assert pv.fmtp == v.fmtp and pv.port == 5004 and pv.encoding == "raw"
    assert pv.ts_refclk is not None and pv.ts_refclk.startswith("ptp=") and pv.mediaclk == "direct=0"
    assert (pa.encoding, pa.clock_rate, pa.channels, pa.ptime_ms) == ("L24", 48000, 2, 1.0)


def test_sdp_tp_says_what_the_sender_is_configured_for() -> None:
    # no ST 2110-21 claim unless asked: a burst sender meets no class
    assert "TP" not in video_stream("127.0.0.1", 5004, width=64, height=48).fmtp
    for tp in ("2110TPN", "2110TPNL", "2110TPW"):
        assert video_stream("127.0.0.1", 5004, width=64, height=48, tp=tp).fmtp["TP"] == tp
    with pytest.raises(ValueError, match="tp must be"):
        video_stream("127.0.0.1", 5004, width=64, height=48, tp="2110TPX")
    for timing, want in (("burst", None), ("narrow", "2110TPN"), ("wide", "2110TPW")):
        with Runtime():
            a = NetworkSendActor("127.0.0.1:40994", width=64, height=48, timing=timing)
            s = a.sdp_stream()
            assert s is not None and s.fmtp.get("TP") == want
            assert (f"TP={want}" in (a.sdp or "")) == (want is not None)
    with pytest.raises(ValueError, match="NetworkSendActor 'x': timing must be one of"):
        NetworkSendActor(timing="fast", actor_id="x", runtime=Runtime())


def test_paced_sender_configures_the_socket_and_skips_gso() -> None:
    from streamlib.net.udp import open_sender
    from streamlib.net.video_sender import pacing_rate

    pk = VideoPacketizer("YCbCr-4:2:2/10", 1280, 720)
    trs, rate = pacing_rate(pk, 25, "narrow")
    assert trs == pytest.approx(40e6 * 1080 / 1125 / pk.n_packets)
    assert rate == pytest.approx((int(pk.packet_sizes().max()) + 42) * 1e9 / trs, abs=1)
    for timing in ("narrow", "wide", "burst"):
        s = VideoStreamSender(open_sender(("127.0.0.1", 40996)), pk, 25, timing=timing)
        try:
            assert s.timing == timing and s.sdp_tp == {"narrow": "2110TPN",
                                                       "wide": "2110TPW"}.get(timing)
            if timing == "burst":
                assert s.pacing_rate == 0 and s.tc_commands("eth0") == []
            else:
                assert not s.gso and s.per_message == 1 and s.pacing_rate == rate
                if sys.platform.startswith("linux"):
                    assert s.kernel_pacing  # SO_MAX_PACING_RATE = 47 taken
                    got = s.sock.getsockopt(socket.SOL_SOCKET, 47, 8)
                    assert int.from_bytes(got, sys.byteorder) == rate
                assert f"rate {rate * 8}bit" in s.tc_commands("eth0")[1]
        finally:
            s.close()
    with pytest.raises(ValueError, match="timing must be one of"):
        VideoStreamSender(open_sender(("127.0.0.1", 40996)), pk, 25, timing="x")


def test_sdp_parses_peer_files_and_rejects_garbage() -> None:
    ffmpeg_sdp = ("v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\n"
                  "a=tool:libavformat\nm=video 40104 RTP/AVP 96\nb=AS:1843\n"
                  "a=rtpmap:96 raw/90000\n"
                  "a=fmtp:96 sampling=YCbCr-4:2:2; width=64; height=48; depth=10\n")
    (s,) = parse_sdp(ffmpeg_sdp)  # session-level c= is inherited
    assert (s.address, s.port, s.fmtp_int("width"), s.fmtp["depth"]) == ("127.0.0.1", 40104,
                                                                          64, "10")
    with pytest.raises(ValueError, match=r"SDP line 2 'garbage'"):
        parse_sdp("v=0\ngarbage\n")
    with pytest.raises(ValueError, match="line 5.*m=video x"):
        parse_sdp("v=0\no=- 0 0 IN IP4 1.2.3.4\ns=x\nt=0 0\nm=video x RTP/AVP 96\n")
    with pytest.raises(ValueError, match="no 'c=' connection"):
        parse_sdp("v=0\nm=video 5004 RTP/AVP 96\na=rtpmap:96 raw/90000\n")
    with pytest.raises(ValueError, match="no RTP/AVP"):
        parse_sdp("v=0\ns=x\n")


# -- UDP ----------------------------------------------------------------------------------

def test_parse_dest_and_loopback_guard() -> None:
    assert parse_dest("127.0.0.1:5004") == ("127.0.0.1", 5004)
    assert parse_dest("[::1]:5004") == ("::1", 5004)
    assert parse_dest("localhost:9") == ("127.0.0.1", 9)
    assert parse_dest("10.1.2.3:5004", allow_remote=True) == ("10.1.2.3", 5004)
    for bad, why in (("10.1.2.3:5004", "outside loopback"), ("127.0.0.1", "host:port"),
                     ("127.0.0.1:0", "1-65535"), ("::1:5004", "bracket"),
                     ("example.com:5004", "not an IP literal")):
        with pytest.raises(ValueError, match=why):
            parse_dest(bad)
    with pytest.raises(ValueError, match="outside loopback"):
        open_sender(("192.168.1.1", 5004))


def test_batch_send_and_receive() -> None:
    rx_sock = open_receiver(("127.0.0.1", 0))
    tx_sock = open_sender(rx_sock.getsockname())
    try:
        sent = BatchSender(tx_sock).send([b"abc", bytearray(b"defg"), memoryview(b"xy" * 300)])
        assert sent == 3
        rx = BatchReceiver(rx_sock, batch=8)
        got: list[bytes] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            n = rx.recv(timeout=1.0)
            got += [bytes(rx.buffers[i, :rx.lengths[i]]) for i in range(n)]
        assert got == [b"abc", b"defg", b"xy" * 300]
        BatchSender(tx_sock).send([b"q" * 10] * 2)
        sizes: list[int] = []
        while len(sizes) < 2 and time.monotonic() < deadline:
            sizes += recv_batch(rx_sock, [bytearray(64) for _ in range(4)], timeout=1.0)
        assert sizes == [10, 10]
    finally:
        tx_sock.close()
        rx_sock.close()


# -- RFC 4175 packets ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt,w,h", [("YCbCr-4:2:2/10", 1920, 1080), ("YCbCr-4:2:2/8", 1280, 720),
                                     ("RGB/8", 1920, 1080), ("YCbCr-4:2:2/10", 64, 16),
                                     ("RGB/8", 7, 5)])
def test_packetizer_layout(fmt: str, w: int, h: int) -> None:
    pk = VideoPacketizer(fmt, w, h)
    pg = np.random.default_rng(1).integers(0, 256, pk.frame_bytes, dtype=np.uint8)
    pk.stamp(123456)
    rebuilt = np.zeros_like(pg)
    f = parse_format(fmt)
    packets = [bytes(v) for v in pk.build(pg)]
    assert max(len(p) for p in packets) <= 1460
    for i, raw in enumerate(packets):
        p = parse_packet(raw)
        assert serialize_packet(p) == raw
        assert 1 <= len(p.srds) <= 3
        assert p.marker == (i == len(packets) - 1) and p.timestamp == 123456
        assert p.full_sequence == i
        d = 0
        for s in p.srds:
            o = s.line * pk.line_bytes + s.offset // f.pgroup_pixels * f.pgroup_bytes
            rebuilt[o:o + s.length] = np.frombuffer(p.data[d:d + s.length], np.uint8)
            d += s.length
    assert np.array_equal(rebuilt, pg)
    if pk.uniform:  # every packet but the last has the GSO segment size
        assert {len(p) for p in packets[:-1]} == {pk.segment_size}


def test_packet_parser_errors() -> None:
    pk = VideoPacketizer("RGB/8", 8, 2)
    pk.stamp(0)
    good = bytes(pk.build(np.zeros(pk.frame_bytes, np.uint8))[0])
    with pytest.raises(RTPError, match="too short"):
        parse_packet(good[:15])
    with pytest.raises(RTPError, match="version"):
        parse_packet(bytes([0x40]) + good[1:])
    with pytest.raises(RTPError, match="past the payload end"):
        parse_packet(good[:-3])
    pkt = VideoPacket(96, 1, 2, 3, True, 0, (SRD(6, 0, 0),), b"\x01" * 6, csrcs=(9,),
                      extension=b"\xbe\xde\x00\x01abcd", padding=b"\x00\x00\x03")
    assert parse_packet(serialize_packet(pkt)) == pkt


def test_fixture_capture_round_trip_and_reassembly() -> None:
    cases = [("gst_uyvp", "YCbCr-4:2:2/10"), ("gst_uyvy", "YCbCr-4:2:2/8"), ("gst_rgb", "RGB/8"),
             ("ffmpeg_yuv422p10", "YCbCr-4:2:2/10"), ("ffmpeg_uyvy422", "YCbCr-4:2:2/8"),
             ("ffmpeg_rgb24", "RGB/8")]
    for name, fmt in cases:
        blob = (FIXTURES / f"{name}.rtp").read_bytes()
        raw = np.frombuffer((FIXTURES / f"{name}.raw").read_bytes(), np.uint8)
        packets = split_packets(blob)
        assert join_packets(packets) == blob
        for p in packets:
            assert serialize_packet(parse_packet(p)) == p, name
        assert {parse_packet(p).ext_sequence for p in packets} == {0}  # peers send 0
        asm = FrameAssembler(fmt, 64, 32)
        out = [f for i, p in enumerate(packets) for f in asm.push(p, i)] + asm.flush()
        fb = parse_format(fmt).frame_bytes(64, 32)
        assert [f.complete for f in out] == [True] * 3, name
        for i, f in enumerate(out):
            assert np.array_equal(f.data, raw[i * fb:(i + 1) * fb]), name
        assert asm.stats.lost == asm.stats.malformed == 0


# -- receiver: scripted in-memory transport ------------------------------------------------

class Script:
    """Packets of ``n`` frames, then drop/reorder/duplicate by index, delivered to an
    assembler with a scripted clock (1 µs per packet)."""

    def __init__(self, fmt: str = "YCbCr-4:2:2/10", w: int = 64, h: int = 16, n: int = 4,
                 first_sequence: int = 0) -> None:
        self.fmt, self.w, self.h = fmt, w, h
        pk = VideoPacketizer(fmt, w, h, first_sequence=first_sequence)
        self.per_frame = pk.n_packets
        self.frames = [np.random.default_rng(10 + i).integers(0, 256, pk.frame_bytes,
                                                               dtype=np.uint8) for i in range(n)]
        self.packets: list[bytes] = []
        for i, fr in enumerate(self.frames):
            pk.stamp(3000 * (i + 1))
            self.packets += [bytes(v) for v in pk.build(fr)]
        self.line_bytes = pk.line_bytes

    def lines_of(self, index: int) -> set[int]:
        return {s.line for s in parse_packet(self.packets[index]).srds}

    def run(self, order: list[int], asm: FrameAssembler, step_ns: int = 1000) -> list[Any]:
        out: list[Any] = []
        now = 1
        for i in order:
            now += step_ns
            out += asm.push(self.packets[i], now)
        out += asm.poll(now + 10**9)
        return out


@pytest.mark.parametrize("compiled", [True, False])
def test_reorder_within_window_is_lossless(compiled: bool) -> None:
    s = Script()
    order = list(range(len(s.packets)))
    rnd = random.Random(1)
    for f in range(4):  # shuffle inside each frame
        part = order[f * s.per_frame:(f + 1) * s.per_frame]
        rnd.shuffle(part)
        order[f * s.per_frame:(f + 1) * s.per_frame] = part
    # and the first packet of frame 2 overtakes the last of frame 1
    a, b = s.per_frame - 1, s.per_frame
    order[a], order[b] = order[b], order[a]
    asm = FrameAssembler(s.fmt, s.w, s.h, compiled=compiled)
    out = s.run(order, asm)
    assert [f.complete for f in out] == [True] * 4
    assert all(np.array_equal(f.data, s.frames[i]) for i, f in enumerate(out))
    assert [f.rtp_timestamp for f in out] == [3000, 6000, 9000, 12000]
    st = asm.stats
    assert (st.received, st.lost, st.late, st.duplicate, st.malformed) == (len(s.packets), 0, 0,
                                                                           0, 0)
    assert asm.guards_intact()


@pytest.mark.parametrize("policy", ["conceal", "drop"])
def test_loss_is_counted_and_never_complete(policy: str) -> None:
    s = Script()
    dropped = [s.per_frame + 1, s.per_frame + 3]  # two packets of frame 2
    order = [i for i in range(len(s.packets)) if i not in dropped]
    asm = FrameAssembler(s.fmt, s.w, s.h, policy=policy)  # type: ignore[arg-type]
    out = s.run(order, asm)
    assert asm.stats.lost == 2 and asm.stats.late == 0
    missing = sorted(s.lines_of(dropped[0]) | s.lines_of(dropped[1]))
    if policy == "drop":
        assert [f.rtp_timestamp for f in out] == [3000, 9000, 12000]
        assert all(f.complete for f in out) and asm.stats.frames_dropped == 1
        return
    assert [f.complete for f in out] == [True, False, True, True]
    bad = out[1]
    assert bad.concealed and bad.missing_lines == len(missing)
    lines = bad.data.reshape(s.h, -1)
    prev, cur = s.frames[0].reshape(s.h, -1), s.frames[1].reshape(s.h, -1)
    for y in range(s.h):  # missing lines repeat frame 1, the rest are frame 2's
        assert np.array_equal(lines[y], prev[y] if y in missing else cur[y]), y
    assert asm.stats.frames_concealed == 1 and asm.stats.frames_complete == 3


def test_duplicates_and_late_packets() -> None:
    s = Script()
    late = s.per_frame - 2  # a packet of frame 1, delivered after frame 2 completed
    order = [i for i in range(2 * s.per_frame) if i != late] + [late]
    order += [3, 3, 2 * s.per_frame + 1]  # duplicates (and one more late copy)
    order += list(range(2 * s.per_frame, len(s.packets)))
    asm = FrameAssembler(s.fmt, s.w, s.h)
    out = s.run(order, asm)
    st = asm.stats
    assert (st.late, st.duplicate, st.lost) == (1, 3, 0)
    assert [f.complete for f in out] == [False, True, True, True]
    assert out[0].missing_lines == len(s.lines_of(late))


def test_window_and_idle_timeout() -> None:
    s = Script(n=2)
    asm = FrameAssembler(s.fmt, s.w, s.h, jitter_ms=5, idle_timeout_ms=50)
    last = s.per_frame - 2  # frame 1 without its last two packets (marker included)
    out: list[Any] = []
    for i in range(last):
        out += asm.push(s.packets[i], 1000 + i)
    assert out == [] and asm.pending == 1
    assert asm.poll(1000 + 49_000_000) == []          # not idle long enough yet
    (f,) = asm.poll(1000 + last + 50_000_000)         # idle timeout: concealed (black)
    assert not f.complete and f.concealed
    # Frame 2 loses its marker packet: once idle it is output, concealed from frame 1.
    for i in range(s.per_frame, 2 * s.per_frame - 1):
        out += asm.push(s.packets[i], 2_000_000_000 + i)
    assert out == []
    (g,) = asm.poll(2_000_000_000 + 10**9)
    assert not g.complete and g.missing_lines == len(s.lines_of(2 * s.per_frame - 1))


def test_sequence_wrap_counts_exactly() -> None:
    s = Script(first_sequence=0xFFFF - 3)
    order = [i for i in range(len(s.packets)) if i not in (4, 5)]  # seq 0x0000, 0x0001
    asm = FrameAssembler(s.fmt, s.w, s.h)
    s.run(order, asm)
    assert asm.stats.lost == 2 and asm.stats.received == len(s.packets) - 2


def test_malformed_packets_are_counted_and_dropped() -> None:
    s = Script(n=1)
    good = s.packets[0]
    bad = [
        good[:10],                                   # short
        bytes([0x40]) + good[1:],                    # version 1
        good[:1] + bytes([97]) + good[2:],           # wrong payload type
        good[:16] + (0x7FFF).to_bytes(2, "big") + good[18:],  # SRD line past the frame
        good[:18] + (0x7FFE).to_bytes(2, "big") + good[20:],  # offset past the line
        good[:14] + (0xFFFE).to_bytes(2, "big") + good[16:],  # length past the packet
        good[:14] + (3).to_bytes(2, "big") + good[16:],       # length off the pgroup grid
        good[:16] + bytes([0x80 | good[16]]) + good[17:],     # F=1 (interlaced)
        bytes([0x8F]) + good[1:],                    # 15 CSRCs: header past the end
        bytes([0xA0]) + good[1:-1] + b"\xff",        # padding longer than the packet
    ]
    asm = FrameAssembler(s.fmt, s.w, s.h)
    out: list[Any] = []
    for i, p in enumerate(bad):
        out += asm.push(p, i + 1)
    assert asm.stats.malformed == len(bad) and asm.stats.wrong_payload_type == 1
    assert asm.stats.received == 0 and out == [] and asm.pending == 0
    out = s.run(list(range(len(s.packets))), asm)
    assert len(out) == 1 and out[0].complete and np.array_equal(out[0].data, s.frames[0])
    assert asm.guards_intact()


def _fuzz(count: int, seed: int, compiled: bool = True) -> FrameAssembler:
    s = Script(w=32, h=8, n=3)
    rnd = random.Random(seed)
    asm = FrameAssembler(s.fmt, s.w, s.h, compiled=compiled)
    batch = 256
    flat = np.zeros(batch * 2048, np.uint8)
    offs = np.arange(batch, dtype=np.int64) * 2048
    lens = np.zeros(batch, np.int64)
    now = 0
    for start in range(0, count, batch):
        n = min(batch, count - start)
        for j in range(n):
            kind = rnd.random()
            if kind < 0.15:
                p = bytearray(rnd.randbytes(rnd.randrange(0, 1500)))
            else:
                p = bytearray(rnd.choice(s.packets))
                for _ in range(rnd.randrange(1, 6)):
                    if not p:
                        break
                    op = rnd.random()
                    if op < 0.6:
                        p[rnd.randrange(len(p))] = rnd.randrange(256)
                    elif op < 0.8:
                        p = p[:rnd.randrange(len(p) + 1)]
                    else:
                        p += rnd.randbytes(rnd.randrange(1, 40))
                if rnd.random() < 0.3 and len(p) > 20:  # keep the header plausible
                    p[0] = 0x80 | (p[0] & 0x3F)
                    p[1] = 96 | (p[1] & 0x80)
                if rnd.random() < 0.7 and len(p) > 8:  # fresh sequence numbers: not dups
                    p[2:4] = rnd.randrange(65536).to_bytes(2, "big")
                    if rnd.random() < 0.2:
                        p[4:8] = (3000 * rnd.randrange(1, 6)).to_bytes(4, "big")
            p = p[:2048]
            flat[offs[j]:offs[j] + len(p)] = np.frombuffer(bytes(p), np.uint8)
            lens[j] = len(p)
        now += 1_000_000
        asm.push_segments(flat, offs, lens, n, now)
    asm.flush()
    assert asm.guards_intact()
    st = asm.stats
    # every packet accounted for
    assert st.received + st.malformed + st.duplicate + st.foreign_ssrc == count
    return asm


def test_fuzz_receiver_quick() -> None:
    asm = _fuzz(20_000, seed=1)
    st = asm.stats
    assert st.malformed > 1000 and st.received > 5000  # both paths were exercised
    _fuzz(1_500, seed=2, compiled=False)  # the same code uncompiled


@pytest.mark.slow
def test_fuzz_receiver_100k() -> None:
    t0 = time.monotonic()
    _fuzz(100_000, seed=3)
    assert time.monotonic() - t0 < 60


# -- sockets end to end -------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FMT_NAMES)
def test_loopback_sender_to_receiver(fmt: str) -> None:
    rx_sock = open_receiver(("127.0.0.1", 0))
    rx = VideoStreamReceiver(rx_sock, FrameAssembler(fmt, 320, 180))
    pk = VideoPacketizer(fmt, 320, 180)
    tx = VideoStreamSender(open_sender(rx_sock.getsockname()), pk, 120)
    try:
        frames = []
        for i in range(6):
            buf = tx.acquire(timeout=2.0)
            assert buf is not None
            pack_rgb(_rgb(180, 320, seed=i), fmt, buf)
            frames.append(buf.copy())
            tx.submit(buf, 1500 * i)
        got = [rx.get(timeout=5.0) for _ in range(6)]
    finally:
        tx.close()
        rx.close()
    assert [g is not None and g.complete for g in got] == [True] * 6
    for g, f in zip(got, frames):
        assert g is not None and np.array_equal(g.data, f)
    assert rx.stats().lost == 0 and tx.packets_sent == 6 * pk.n_packets


# -- actors -------------------------------------------------------------------------------

class Collect(Actor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # room for every frame a receiver outputs in one tick (it drains its queue)
        self.inputs["video"] = StreamInput("video", slots=64)
        self.frames: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        self.frames += self.inputs["video"].read_all_new()


@pytest.mark.parametrize("fmt", ["YCbCr-4:2:2/10", "RGB/8"])
def test_actors_send_and_receive(fmt: str, tmp_path: Path) -> None:
    n, port = 8, _port(f"actors-{fmt}")
    sdp_path = tmp_path / "v.sdp"
    try:
        with Runtime() as rt:
            src = TestPatternActor(64, 48, pattern="moving_box",
                                   clock=VirtualClock(60, max_ticks=n))
            sent = Collect()
            tx = NetworkSendActor(dest=f"127.0.0.1:{port}", format=fmt, width=64, height=48,
                                  fps=60, sdp_path=str(sdp_path))
            src >> tx
            src >> sent
            # Its own SoftwareClock: each tick outputs every frame finished since the last.
            rx = NetworkReceiveActor(sdp=str(sdp_path), max_frames=n, timeout_s=20)
            got = Collect()
            rx >> got
            assert rt.run(30)
            stats = rx.stats()
        assert len(got.frames) == n and len(sent.frames) == n
        for s, g in zip(sent.frames, got.frames):
            want = unpack_to_rgb(pack_rgb(s.data, fmt), fmt, 64, 48)
            assert np.array_equal(g.data.numpy(), want)  # exactly what the format carries
            assert g.metadata["complete"] and not g.metadata["concealed"]
            assert g.metadata["rtp_timestamp"] == (s.timestamp_ns * 90000 // 10**9) % 2**32
        assert stats.lost == 0 and stats.frames_complete == n
        assert tx.stats()["frames_sent"] == n
    finally:
        PORTS.release(f"actors-{fmt}")


def test_actor_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NetworkSendActor.*format"):
        NetworkSendActor(format="YUV", runtime=Runtime())
    with pytest.raises(ValueError, match="NetworkSendActor 'a'.*outside loopback"):
        NetworkSendActor(dest="8.8.8.8:5004", actor_id="a", runtime=Runtime())
    with pytest.raises(ValueError, match="NetworkSendActor.*width must be a multiple of 2"):
        NetworkSendActor(width=33, height=10, runtime=Runtime())
    with pytest.raises(ValueError, match="NetworkReceiveActor.*sdp= or dest="):
        NetworkReceiveActor(runtime=Runtime())
    with pytest.raises(ValueError, match="NetworkReceiveActor.*width and height"):
        NetworkReceiveActor(dest="127.0.0.1:0", runtime=Runtime())
    with pytest.raises(ValueError, match="NetworkReceiveActor.*sdp: cannot read"):
        NetworkReceiveActor(sdp=str(tmp_path / "missing.sdp"), runtime=Runtime())
    with pytest.raises(ValueError, match="NetworkReceiveActor.*policy"):
        NetworkReceiveActor(dest="127.0.0.1:0", width=8, height=8, policy="x", runtime=Runtime())
    # A host without a port takes one from the allocator and the SDP says which.
    with Runtime() as rt:
        a = NetworkSendActor(dest="127.0.0.1", width=16, height=8, runtime=rt)
        assert a.sdp is not None and f"m=video {a.dest[1]} RTP/AVP 96" in a.sdp
        b = NetworkReceiveActor(dest="127.0.0.1", width=16, height=8, runtime=rt)
        assert 5004 <= b.port <= 6998 and b.port % 2 == 0 and b.port != a.dest[1]
        c = NetworkReceiveActor(sdp=a.sdp, runtime=rt)  # SDP text works as well as a file
        assert (c.port, c.width, c.height) == (a.dest[1], 16, 8)


def test_receiver_skips_an_allocated_port_another_program_holds() -> None:
    from streamlib.actors.network import VIDEO_PORTS

    nxt = VIDEO_PORTS.allocate("probe")
    VIDEO_PORTS.release("probe")  # the port the next allocation will hand out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", nxt))
        with Runtime() as rt:
            rx = NetworkReceiveActor(dest="127.0.0.1", width=16, height=8, runtime=rt)
            assert rx.port != nxt and rx.port % 2 == 0
        assert VIDEO_PORTS.allocate("probe") == nxt  # back in the pool, and rx's port freed
        VIDEO_PORTS.release("probe")
    with Runtime() as rt:  # closed without ever running: its socket and port go too
        rx = NetworkReceiveActor(dest="127.0.0.1", width=16, height=8, runtime=rt)
        port = rx.port
        rx.close()
        assert rx._sock.fileno() == -1 and VIDEO_PORTS.allocate("probe") == port
        VIDEO_PORTS.release("probe")


def test_without_sendmmsg_recvmmsg_gso(monkeypatch: pytest.MonkeyPatch) -> None:
    """The portable paths (send/recv_into loops, no GSO/GRO) give the same frames."""
    from streamlib.net import mmsg, video_sender

    monkeypatch.setattr(mmsg, "_sendmmsg", None)
    monkeypatch.setattr(mmsg, "_recvmmsg", None)
    monkeypatch.setattr(video_sender, "HAVE_MMSG", False)
    rx_sock = open_receiver(("127.0.0.1", 0))
    rx = VideoStreamReceiver(rx_sock, FrameAssembler("YCbCr-4:2:2/8", 64, 32))
    tx = VideoStreamSender(open_sender(rx_sock.getsockname()),
                           VideoPacketizer("YCbCr-4:2:2/8", 64, 32), 120)
    try:
        assert not tx.gso
        frames = []
        for i in range(3):
            buf = tx.acquire(timeout=2.0)
            assert buf is not None
            pack_rgb(_rgb(32, 64, seed=20 + i), "YCbCr-4:2:2/8", buf)
            frames.append(buf.copy())
            tx.submit(buf, 1500 * (i + 1))
        got = [rx.get(timeout=5.0) for _ in range(3)]
    finally:
        tx.close()
        rx.close()
    for g, f in zip(got, frames):
        assert g is not None and g.complete and np.array_equal(g.data, f)


# -- examples -----------------------------------------------------------------------------

def test_examples_send_and_receive(tmp_path: Path) -> None:
    port = _port("examples")
    sdp, snap = tmp_path / "stream.sdp", tmp_path / "received.npy"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tx = subprocess.Popen([sys.executable, "examples/network_send.py", "--frames", "900",
                           "--port", str(port), "--sdp", str(sdp)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert tx.stdout is not None
        first = tx.stdout.readline()  # the sender says when the SDP file is there
        assert "SDP written" in first, first + tx.stdout.read()
        rx = subprocess.run([sys.executable, "examples/network_receive.py", str(sdp),
                             "--frames", "20", "--save", str(snap)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=90)
    finally:
        tx.kill()
        tx.wait(10)
        PORTS.release("examples")
    assert rx.returncode == 0, rx.stdout + rx.stderr
    assert "received=20 " in rx.stdout, rx.stdout
    assert "frames_shown=0 " not in rx.stdout, rx.stdout
    shown = np.load(snap)  # what the display showed last (read back from GL)
    assert shown.shape == (180, 320, 3)
    # SMPTE bars (limited range) through 4:2:2 10-bit: 75% white, then magenta.
    assert np.abs(shown[20, 60].astype(int) - 180).max() <= 3
    assert np.abs(shown[20, 200].astype(int) - [180, 16, 180]).max() <= 3


def test_socket_helpers_close_cleanly() -> None:
    s = open_receiver(("127.0.0.1", 0))
    assert s.type == socket.SOCK_DGRAM
    s.close()
    assert assembler.GUARD > 0


def test_cpu_packing_matches_the_cuda_kernels_reference() -> None:
    """The GPU sender path packs with streamlib.gpu.kernels; its torch reference (the
    oracle the CUDA kernel is tested against) is byte-identical to the CPU packer."""
    from streamlib.gpu.kernel_refs import rgb_to_pgroup422_10_ref
    from streamlib.net.pgroup import pack_rgb_fast

    rgb = torch.randint(0, 256, (6, 10, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    cpu = pack_rgb_fast(rgb, "YCbCr-4:2:2/10")
    ref = rgb_to_pgroup422_10_ref(rgb).reshape(-1).numpy()
    assert bytes(cpu) == bytes(ref)


def test_sender_device_cpu_and_bad_device() -> None:
    from streamlib import NetworkSendActor, Runtime

    with Runtime():
        assert NetworkSendActor("127.0.0.1:40990", device="cpu").device == torch.device("cpu")
        with pytest.raises(ValueError, match="NetworkSendActor.*device"):
            NetworkSendActor("127.0.0.1:40992", device="cuda:7")


# -- multicast ----------------------------------------------------------------------------
# Group 239.255.x.x (administratively scoped), interface 127.0.0.1 and TTL 0: the
# packets never leave this host.

def test_multicast_actors_send_and_receive() -> None:
    n, port, group, fmt = 6, _port("multicast"), "239.255.41.11", "RGB/8"
    try:
        with Runtime() as rt:
            src = TestPatternActor(64, 48, pattern="moving_box",
                                   clock=VirtualClock(60, max_ticks=n))
            sent = Collect()
            tx = NetworkSendActor(dest=f"{group}:{port}", format=fmt, width=64, height=48,
                                  fps=60, allow_remote=True, multicast_interface="127.0.0.1",
                                  multicast_ttl=0)
            assert tx.sdp is not None and f"c=IN IP4 {group}/0\r\n" in tx.sdp
            stream = parse_sdp(tx.sdp)[0]
            assert (stream.address, stream.ttl, stream.port) == (group, 0, port)
            src >> tx
            src >> sent
            # SDP-driven: the multicast c= line makes the receiver join the group
            rx = NetworkReceiveActor(sdp=tx.sdp, max_frames=n, timeout_s=20, allow_remote=True,
                                     multicast_interface="127.0.0.1")
            got = Collect()
            rx >> got
            assert rt.run(30)
            stats = rx.stats()
        assert len(got.frames) == n == len(sent.frames)
        for s, g in zip(sent.frames, got.frames):
            assert np.array_equal(g.data.numpy(), s.data.numpy())  # RGB/8 is lossless
            assert g.metadata["complete"]
        assert stats.lost == 0 and stats.foreign_ssrc == 0 and stats.ssrc == tx.ssrc
    finally:
        PORTS.release("multicast")


def test_multicast_socket_options() -> None:
    group = "239.255.41.13"
    rx = open_receiver((group, 0), multicast_interface="127.0.0.1")
    tx = open_sender((group, rx.getsockname()[1]), allow_remote=True,
                     multicast_interface="127.0.0.1", multicast_ttl=0)
    try:
        assert tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 0
        assert socket.inet_ntoa(tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)) \
            == "127.0.0.1"
        tx.send(b"hello group")
        rx.settimeout(5)
        assert rx.recv(64) == b"hello group"
    finally:
        tx.close()
        rx.close()
    with pytest.raises(ValueError, match="allow_remote"):
        open_sender((group, 5004))
    with pytest.raises(ValueError, match="IPv6 multicast is not supported"):
        open_receiver(("ff15::1", 0))


@pytest.mark.parametrize("cls,kw,message", [
    (NetworkSendActor, {"multicast_ttl": 256}, r"NetworkSendActor 'm': multicast_ttl must be an "
                                               r"int in 0\.\.255, got 256"),
    (NetworkSendActor, {"multicast_ttl": True}, "NetworkSendActor 'm': multicast_ttl"),
    (NetworkSendActor, {"multicast_interface": "lo"},
     "NetworkSendActor 'm': multicast_interface must be an IPv4 address"),
    (NetworkSendActor, {"dest": "239.255.41.15:5004"}, "NetworkSendActor 'm': dest: .*allow_remote"),
    (NetworkSendActor, {"dest": "[ff15::1]:5004", "allow_remote": True},
     "NetworkSendActor 'm': dest: IPv6 multicast is not supported"),
    (NetworkSendActor, {"ssrc": -1}, "NetworkSendActor 'm': ssrc must be"),
    (NetworkReceiveActor, {"dest": "239.255.41.15:5004", "width": 8, "height": 8},
     "NetworkReceiveActor 'm': dest: joining multicast group 239.255.41.15 needs allow_remote"),
    (NetworkReceiveActor, {"sdp": video_stream("239.255.41.15", 5004, width=8, height=8, ttl=0)},
     "NetworkReceiveActor 'm': sdp: joining multicast group .*allow_remote"),
    (NetworkReceiveActor, {"dest": "239.255.41.15:5004", "width": 8, "height": 8,
                           "allow_remote": True, "multicast_interface": "eth0"},
     "NetworkReceiveActor 'm': multicast_interface must be an IPv4 address"),
    (NetworkReceiveActor, {"dest": "127.0.0.1:0", "width": 8, "height": 8, "ssrc": 2**32},
     "NetworkReceiveActor 'm': ssrc must be"),
])
def test_multicast_and_ssrc_configuration_errors(cls: type, kw: dict[str, Any],
                                                message: str) -> None:
    if "sdp" in kw:
        kw = {"sdp": write_sdp([kw["sdp"]])}
    with Runtime() as rt, pytest.raises(ValueError, match=message):
        cls(actor_id="m", runtime=rt, **kw)


# -- SSRC lock ----------------------------------------------------------------------------

def _wait(cond: Any, timeout: float = 10.0) -> None:
    import threading

    ev = threading.Event()
    for _ in range(int(timeout * 100)):
        if cond():
            return
        ev.wait(0.01)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.mark.parametrize("lock", ["first", "explicit"])
def test_second_sender_on_the_port_never_touches_the_locked_stream(lock: str) -> None:
    fmt, w, h, n = "RGB/8", 64, 32, 8
    rx_sock = open_receiver(("127.0.0.1", 0))
    a_pk = VideoPacketizer(fmt, w, h, ssrc=0xAAAA0001)
    b_pk = VideoPacketizer(fmt, w, h, ssrc=0xBBBB0002)
    # explicit: lock to B although A's packets come first
    want_ssrc = 0xBBBB0002 if lock == "explicit" else None
    # A long silence timeout: on a loaded machine A may pause > 100 ms (the default)
    # before its second frame, and this test is about filtering, not about following.
    rx = VideoStreamReceiver(rx_sock, FrameAssembler(fmt, w, h, ssrc=want_ssrc,
                                                     idle_timeout_ms=60_000))
    a = VideoStreamSender(open_sender(rx_sock.getsockname()), a_pk, 240)
    b = VideoStreamSender(open_sender(rx_sock.getsockname()), b_pk, 240)
    a_frames = [_rgb(h, w, seed=40 + i) for i in range(n)]
    b_frames = [_rgb(h, w, seed=80 + i) for i in range(n)]
    try:
        def send(tx: VideoStreamSender, rgb: np.ndarray, ts: int) -> None:
            buf = tx.acquire(timeout=2.0)
            assert buf is not None
            pack_rgb(rgb, fmt, buf)
            tx.submit(buf, ts)

        send(a, a_frames[0], 0)
        first = rx.get(timeout=5.0) if lock == "first" else None  # A is locked to now
        for i in range(1, n):  # same RTP timestamps, other pixels: any leak would show
            send(b, b_frames[i], 1500 * i)
            send(a, a_frames[i], 1500 * i)
        got = [rx.get(timeout=5.0) for _ in range(n - 1)]
        a.close()
        b.close()
        total = a.packets_sent + b.packets_sent
        _wait(lambda: rx.stats().received + rx.stats().foreign_ssrc == total)
    finally:
        a.close()
        b.close()
        rx.close()
    st = rx.stats()
    if lock == "first":
        assert first is not None and np.array_equal(first.data, pack_rgb(a_frames[0], fmt))
        want, foreign = a_frames[1:], b.packets_sent
        assert st.ssrc == 0xAAAA0001
    else:
        want, foreign = b_frames[1:], a.packets_sent
        assert st.ssrc == 0xBBBB0002
    assert st.foreign_ssrc == foreign and st.lost == 0 and st.ssrc_changes == 0
    assert [g is not None and g.complete for g in got] == [True] * (n - 1)
    for g, rgb in zip(got, want):
        assert g is not None and np.array_equal(g.data, pack_rgb(rgb, fmt))
    assert rx.get() is None  # nothing else came out


def test_restarted_sender_is_followed_after_silence() -> None:
    fmt, w, h = "RGB/8", 16, 4
    asm = FrameAssembler(fmt, w, h, jitter_ms=1, idle_timeout_ms=100)
    old, new = VideoPacketizer(fmt, w, h, ssrc=1), VideoPacketizer(fmt, w, h, ssrc=2,
                                                                       first_sequence=100)

    def frame(pk: VideoPacketizer, ts: int, value: int, now: int) -> list[Any]:
        pk.stamp(ts)
        return [f for p in pk.build(np.full(pk.frame_bytes, value, np.uint8))
                for f in asm.push(bytes(p), now)]

    out = frame(old, 3000, 1, 1_000_000) + frame(new, 3000, 2, 2_000_000)  # new: foreign
    out += frame(old, 4500, 3, 3_000_000)
    out += frame(new, 4500, 4, 200_000_000)  # old silent for 197 ms > 100: new is locked
    out += frame(new, 6000, 5, 201_000_000)
    assert [int(f.data[0]) for f in out] == [1, 3, 4, 5] and all(f.complete for f in out)
    st = asm.stats
    assert (st.foreign_ssrc, st.ssrc_changes, st.ssrc, st.lost, st.duplicate) == \
        (old.n_packets, 1, 2, 0, 0)
    assert st.received == 4 * old.n_packets and asm.guards_intact()
