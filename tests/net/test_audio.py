"""ST 2110-30 audio: sample codec, packetizer, depacketizer (loss, reorder, fuzz), actors."""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import sys
import threading
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamlib import Actor, AudioFrame, Runtime, StreamInput, TimedTick, VirtualClock
from streamlib.core.actor import ActorStatus
from streamlib.actors.audio import AudioGeneratorActor
from streamlib.actors.network_audio import AUDIO_PORTS, AudioNetworkReceiveActor, AudioNetworkSendActor
from streamlib.actors.network import VIDEO_PORTS, NetworkSendActor
from streamlib.net.audio import (
    AudioDepacketizer, AudioFormat, AudioPacketizer, PacedSender, decode_samples, encode_samples,
    pace_schedule, rtp_to_ns,
)
from streamlib.net.rtp import media_timestamp, pack_header, parse_header
from streamlib.net.sdp import parse_sdp
from streamlib.net.udp import open_sender
from streamlib.core.registry import default_port_allocator
from streamlib.errors import ClosedError

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "net"
RATE = 48000
T0 = 1_700_000_000 * 1_000_000_000  # a TAI-like time on the 48 kHz grid
FMT = AudioFormat("L24", RATE, 2)


def grid_signal(n: int, channels: int = 2, bits: int = 24, seed: int = 0) -> np.ndarray:
    """Random float32 samples that are exact L24/L16 codes."""
    codes = np.random.default_rng(seed).integers(-(1 << (bits - 1)), 1 << (bits - 1), (n, channels))
    return (codes / float(1 << (bits - 1))).astype(np.float32)


def packetize(x: np.ndarray, chunk: int = 700, t0: int = T0, **kw: Any) -> list[bytes]:
    p = AudioPacketizer(AudioFormat("L24", RATE, x.shape[1]), ssrc=0x1234, first_sequence=0, **kw)
    out: list[bytes] = []
    for i in range(0, len(x), chunk):
        out += p.push(x[i:i + chunk], t0 + i * 1_000_000_000 // RATE)
    return out


def depacketize(packets: Sequence[bytes], flush: bool = True, **kw: Any) -> tuple[AudioDepacketizer, list[AudioFrame]]:
    kw.setdefault("now_ns", lambda: T0)
    d = AudioDepacketizer(kw.pop("fmt", FMT), **kw)
    frames = [f for p in packets for f in d.push(p)]
    if flush:
        frames += d.flush()
    return d, frames


def joined(frames: Sequence[AudioFrame]) -> np.ndarray:
    return np.concatenate([f.data.numpy() for f in frames])


def accounted(d: AudioDepacketizer) -> int:
    s = d.stats
    return (s.played + s.late + s.duplicate + s.malformed + s.wrong_payload_type + s.foreign_ssrc
            + s.stray + s.pending)


# -- sample codec --------------------------------------------------------------------

def test_l24_rule_rounds_half_away_from_zero_and_clips() -> None:
    q = 1 / 8388608
    x = np.array([[1.0, -1.0, 2.0, -2.0, 0.5 * q, -0.5 * q, 1.5 * q, -2.5 * q, 0.49 * q, np.nan]])
    codes = encode_samples(x.reshape(-1, 1), "L24")
    assert codes.hex(" ", 3).split() == ["7fffff", "800000", "7fffff", "800000", "000001", "ffffff",
                                         "000002", "fffffd", "000000", "000000"]


def test_l16_rule_and_exact_round_trip() -> None:
    x = np.array([[1.0], [-1.0], [0.5 / 32768], [-1.5 / 32768], [0.25]])
    assert encode_samples(x, "L16").hex(" ", 2).split() == ["7fff", "8000", "0001", "fffe", "2000"]
    y = grid_signal(1000, 3, bits=16)
    raw = encode_samples(y, "L16")
    assert len(raw) == 6000 and np.array_equal(decode_samples(raw, "L16", 3), y)


def test_l24_decode_encode_is_byte_exact() -> None:
    y = grid_signal(4096, 8)
    raw = encode_samples(y, "L24")
    assert len(raw) == 4096 * 8 * 3
    back = decode_samples(raw, "L24", 8)
    assert back.dtype == np.float32 and np.array_equal(back, y)
    assert encode_samples(back, "L24") == raw
    assert decode_samples(bytes.fromhex("7fffff800000"), "L24", 1).ravel().tolist() == [1 - 1 / 8388608, -1.0]


def test_codec_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="not a whole number of 2-channel sample frames"):
        decode_samples(b"\0" * 7, "L24", 2)
    with pytest.raises(ValueError, match="encoding must be one of"):
        encode_samples(np.zeros((1, 1)), "L20")


# -- packetizer ----------------------------------------------------------------------

def test_packets_are_continuous_across_frames() -> None:
    x = grid_signal(4800 + 30)
    p = AudioPacketizer(FMT, ssrc=7, first_sequence=65530)
    packets: list[bytes] = []
    for i in range(0, len(x), 700):  # 700 is no multiple of 48: remainders carry over
        packets += p.push(x[i:i + 700], T0 + i * 1_000_000_000 // RATE)
    assert len(packets) == 100 and p.pending_samples == 30 and p.resyncs == 0
    hdrs = [parse_header(b) for b in packets]
    first = media_timestamp(T0, RATE)
    assert [h.sequence for h in hdrs] == [(65530 + k) & 0xFFFF for k in range(100)]
    assert [h.timestamp for h in hdrs] == [(first + 48 * k) & 0xFFFFFFFF for k in range(100)]
    assert [h.marker for h in hdrs] == [True] + [False] * 99
    assert {h.payload_type for h in hdrs} == {97} and {h.ssrc for h in hdrs} == {7}
    assert {len(b) for b in packets} == {12 + 48 * 6}
    assert b"".join(b[12:] for b in packets) == encode_samples(x[:4800], "L24")


def test_timestamps_wrap_and_follow_the_first_samples_time() -> None:
    t0 = (2**32 - 100) * 1_000_000_000 // RATE + 1  # 100 samples before the 32-bit wrap
    p = AudioPacketizer(FMT, ssrc=1)
    hdrs = [parse_header(b) for b in p.push(np.zeros((240, 2), np.float32), t0)]
    assert hdrs[0].timestamp == media_timestamp(t0, RATE) == 2**32 - 100
    assert [h.timestamp for h in hdrs] == [2**32 - 100, 2**32 - 52, 2**32 - 4, 44, 92]


def test_time_jump_reanchors_timestamps() -> None:
    p = AudioPacketizer(FMT, ssrc=1, resync_ms=2.0)
    a = p.push(np.zeros((100, 2), np.float32), T0)  # 2 packets, 4 samples left over
    b = p.push(np.zeros((96, 2), np.float32), T0 + 100 * 20833 + 10**6)  # 1 ms late: absorbed
    assert p.resyncs == 0 and [parse_header(x).timestamp for x in b] == [
        (media_timestamp(T0, RATE) + k) & 0xFFFFFFFF for k in (96, 144)]
    c = p.push(np.zeros((48, 2), np.float32), T0 + 10**9)  # 1 s later: new anchor
    assert p.resyncs == 1 and p.samples_dropped == 4 and len(a) == 2
    (h,) = [parse_header(x) for x in c]
    assert h.timestamp == media_timestamp(T0 + 10**9, RATE) and h.marker


def test_packetizer_validation() -> None:
    with pytest.raises(ValueError, match="44.1 samples"):
        AudioPacketizer(AudioFormat("L24", 44100, 2), ptime_ms=1.0)
    with pytest.raises(ValueError, match="2304 payload bytes"):
        AudioPacketizer(AudioFormat("L24", RATE, 8), ptime_ms=2.0)
    AudioPacketizer(AudioFormat("L24", RATE, 8), ptime_ms=1.0)  # 1152 bytes: level A, 8 channels
    with pytest.raises(ValueError, match="payload_type"):
        AudioPacketizer(FMT, payload_type=128)
    with pytest.raises(ValueError, match=r"expected samples shaped \(n, 2\)"):
        AudioPacketizer(FMT).push(np.zeros((48, 3), np.float32), 0)
    with pytest.raises(ValueError, match="channels must be an int in 1..64"):
        AudioFormat("L24", RATE, 0)


# -- depacketizer --------------------------------------------------------------------

def test_round_trip_frames_and_timestamps() -> None:
    x = grid_signal(4800)
    d, frames = depacketize(packetize(x), frame_samples=960)
    assert [f.samples for f in frames] == [960] * 5
    assert np.array_equal(joined(frames), x)
    assert [f.timestamp_ns for f in frames] == [T0 + k * 20_000_000 for k in range(5)]
    assert all(f.clock_id == "tai" and f.sample_rate == RATE for f in frames)
    assert [f.frame_number for f in frames] == list(range(5))
    assert not any(f.metadata["concealed"] or f.metadata["discontinuity"] for f in frames)
    assert frames[1].metadata["rtp_timestamp"] == (media_timestamp(T0, RATE) + 960) & 0xFFFFFFFF
    s = d.stats
    assert (s.received, s.played, s.lost, s.frames) == (100, 100, 0, 5) and accounted(d) == 100


def test_rtp_time_maps_back_to_the_first_ns_of_the_sample() -> None:
    for t in (T0, T0 + 1, T0 + 20_833, T0 + 20_834, 12345):
        ts = media_timestamp(t, RATE)
        back = rtp_to_ns(t * RATE // 10**9, RATE)
        assert media_timestamp(back, RATE) == ts and back <= t < back + 20_834


def test_unwrap_across_the_32_bit_wrap_and_far_from_now() -> None:
    t0 = (2**32 - 500) * 1_000_000_000 // RATE + 1  # wraps during the stream
    x = grid_signal(2400)
    # the receiver's "now" is 10 minutes later: the nearest unwrap is still the sender's time
    d, frames = depacketize(packetize(x, t0=t0), now_ns=lambda: t0 + 600 * 10**9)
    assert np.array_equal(joined(frames), x)
    stamps = [f.timestamp_ns for f in frames]
    assert stamps == [rtp_to_ns(t0 * RATE // 10**9 + 960 * k, RATE) for k in range(3)]
    assert stamps[0] <= t0 < stamps[0] + 20_834 and d.stats.resyncs == 0


def scripted(order: list[int], packets: list[bytes]) -> list[bytes]:
    return [packets[i] for i in order]


def test_loss_reorder_duplicate_late_are_counted_exactly() -> None:
    x = grid_signal(4800)
    pk = packetize(x)
    order = [i for i in range(100) if i not in (10, 20, 21, 50, 60)]  # 10, 20, 21 never come
    order[order.index(30)], order[order.index(31)] = 31, 30  # swapped: within the window
    order.insert(order.index(40) + 1, 40)                    # duplicated
    order.insert(order.index(63) + 1, 60)                    # after 61..63: within the window
    order.insert(order.index(62) + 1, 50)                    # after 11 later ones: lost, then late
    at = order.index(59)
    assert order[at:at + 8] == [59, 61, 62, 50, 63, 60, 64, 65]
    d, frames = depacketize(scripted(order, pk), reorder_window=8)
    s = d.stats
    assert (s.received, s.played, s.lost, s.late, s.duplicate, s.malformed, s.pending) == \
        (98, 96, 4, 1, 1, 0, 0)
    assert s.concealed_samples == 4 * 48 and accounted(d) == s.received
    want = x.copy()
    for i in (10, 20, 21, 50):
        want[i * 48:(i + 1) * 48] = 0
    assert np.array_equal(joined(frames), want)
    concealed = [f.frame_number for f in frames if f.metadata["concealed"]]
    assert concealed == [0, 1, 2]  # samples 480.., 960.., 2400.. (frames of 960)
    assert [f.metadata["lost_packets"] for f in frames] == [1, 2, 1, 0, 0]
    assert [f.metadata["concealed_samples"] for f in frames] == [48, 96, 48, 0, 0]


def test_window_zero_declares_holes_lost_at_once_and_flush_releases_the_tail() -> None:
    x = grid_signal(960)
    pk = packetize(x)
    # a jump past the window waits for one successor to confirm it (a lone corrupt sequence
    # number must not declare losses): 2 waits, 3 confirms, 1 is lost at once; 19 waits, then
    # 18 arrives in order and 19 follows
    d, frames = depacketize(scripted([0, 2, 3, 1, *range(4, 18), 19, 18], pk), flush=False,
                            reorder_window=0)
    assert (d.stats.lost, d.stats.late, d.stats.played, d.stats.stray) == (1, 1, 19, 0) and d.flush() == []
    assert len(frames) == 1 and frames[0].samples == 960 and accounted(d) == d.stats.received == 20
    assert (frames[0].metadata["concealed_samples"], frames[0].metadata["lost_packets"]) == (48, 1)
    d2, held = depacketize(scripted([0, 2, 3], pk), flush=False, reorder_window=4)
    assert d2.stats.pending == 2 and d2.stats.lost == 0
    out = d2.flush(partial=True)
    assert d2.stats.lost == 1 and d2.stats.pending == 0 and out[0].samples == 192
    assert out[0].metadata["partial"] and out[0].metadata["concealed"]


@pytest.mark.parametrize("window", [8, 0, 3])
def test_two_packets_past_the_window_swapped_after_a_loss_are_both_played(window: int) -> None:
    """Issue 10: after a loss, the two packets just past the reorder window arriving
    swapped used to drop the earlier one as stray and conceal it (lost 2, 1 true)."""
    x = grid_signal(960)
    pk = packetize(x)
    past = window + 6  # packets 6..past-1 are within the window of the hole at 5
    order = [i for i in range(20) if i != 5]
    a, b = order.index(past), order.index(past + 1)
    order[a], order[b] = order[b], order[a]
    assert order[a:b + 1] == [past + 1, past]
    d, frames = depacketize(scripted(order, pk), reorder_window=window)
    s = d.stats
    assert (s.received, s.played, s.lost, s.late, s.duplicate, s.stray, s.pending) == \
        (19, 19, 1, 0, 0, 0, 0)
    assert s.concealed_samples == 48 and accounted(d) == s.received
    want = x.copy()
    want[5 * 48:6 * 48] = 0  # only the packet that never came is silence
    assert np.array_equal(joined(frames), want)
    assert [f.metadata["lost_packets"] for f in frames] == [1]


def _rtp(seq: int, ts: int, payload: bytes, *, ssrc: int = 0x1234, pt: int = 97, first: int = 0) -> bytes:
    buf = bytearray(12)
    pack_header(buf, payload_type=pt, sequence=seq, timestamp=ts, ssrc=ssrc)
    buf[0] |= first
    return bytes(buf) + payload


def test_malformed_packets_are_counted_never_raised() -> None:
    base = media_timestamp(T0, RATE)
    good = encode_samples(grid_signal(48), "L24")
    bad = [
        b"", b"\x80", _rtp(0, base, good)[:11],                 # short
        b"\x40" + _rtp(0, base, good)[1:],                      # version 1
        _rtp(0, base, good[:-1]),                                # 287 bytes: not whole frames
        _rtp(0, base, b""),                                      # empty payload
        _rtp(0, base, b"\x00\x05", first=0x20),                  # padding longer than the payload
        _rtp(0, base, b"\x00\x00", first=0x10),                  # extension past the end
        _rtp(0, base, good[:30], first=0x0F),                    # 15 CSRCs past the end
    ]
    d, frames = depacketize(bad + [_rtp(0, base, good, pt=96)], payload_type=97)
    assert frames == [] and d.stats.malformed == 9 and d.stats.wrong_payload_type == 1
    # CSRCs, an extension and padding are skipped correctly on a valid packet
    csrc = struct.pack("!II", 1, 2) + struct.pack("!HH", 0xBEDE, 1) + b"\1\2\3\4"
    fancy = bytearray(_rtp(0, base, csrc + good + b"\0\0\3", first=0x32))
    d2, frames2 = depacketize([bytes(fancy)])
    assert d2.stats.played == 1 and np.array_equal(joined(frames2), decode_samples(good, "L24", 2))


class StepClock:
    """A receive clock that advances ``step_ns`` on every reading (about one per packet)."""

    def __init__(self, step_ns: int = 1_000_000) -> None:
        self.t, self.step = T0, step_ns

    def __call__(self) -> int:
        self.t += self.step
        return self.t


def test_restarted_sender_is_followed_after_the_old_ssrc_goes_silent() -> None:
    x, y = grid_signal(960, seed=1), grid_signal(960, seed=2)
    a = packetize(x)
    b = [_rtp(500 + k, 77 + 48 * k, p[12:], ssrc=0xBEEF) for k, p in enumerate(packetize(y))]
    clock = StepClock()
    d = AudioDepacketizer(FMT, now_ns=clock)
    frames = [f for p in a[:10] + [b[0]] + a[10:] for f in d.push(p)]
    clock.t += 150_000_000  # the old sender is gone for longer than ssrc_timeout_ms
    frames += [f for p in b[12:] for f in d.push(p)] + d.flush()
    s = d.stats
    assert (s.foreign_ssrc, s.stray, s.resyncs, s.played, s.lost) == (1, 0, 1, 28, 0)
    assert accounted(d) == s.received == 29 and d.ssrc == 0xBEEF
    assert np.array_equal(joined(frames)[:960], x) and np.array_equal(joined(frames)[960:], y[576:])
    assert [f.metadata["discontinuity"] for f in frames] == [False, True]


@pytest.mark.parametrize("lock", [None, 0x1234])
def test_second_sender_on_the_port_is_dropped_and_counted(lock: int | None) -> None:
    x, y = grid_signal(4800, seed=1), grid_signal(4800, seed=2)
    a = packetize(x)
    b = [_rtp(500 + k, 77 + 48 * k, p[12:], ssrc=0xBEEF) for k, p in enumerate(packetize(y))]
    # the two streams interleave in bursts of 1..5 packets, as two live senders would
    rng, mixed, i, j = random.Random(3), [], 0, 0
    if lock is not None:
        mixed, j = b[:3], 3  # the other sender even comes first
    while i < len(a) or j < len(b):
        k, m = rng.randrange(1, 6), rng.randrange(1, 6)
        mixed += a[i:i + k] + b[j:j + m]
        i, j = i + k, j + m
    d = AudioDepacketizer(FMT, now_ns=StepClock(), ssrc=lock)
    frames = [f for p in mixed for f in d.push(p)] + d.flush()
    s = d.stats
    assert (s.foreign_ssrc, s.played, s.lost, s.stray, s.resyncs) == (len(b), len(a), 0, 0, 0)
    assert accounted(d) == s.received == len(a) + len(b) and d.ssrc == 0x1234
    assert np.array_equal(joined(frames), x)


def test_timestamp_jump_starts_a_new_timeline_instead_of_silence() -> None:
    x = grid_signal(960)
    pk = packetize(x)
    jumped = [_rtp(parse_header(p).sequence, parse_header(p).timestamp + 10 * RATE, p[12:]) for p in pk[10:]]
    d, frames = depacketize(pk[:10] + jumped, max_conceal_ms=200)
    assert d.stats.resyncs == 1 and d.stats.concealed_samples == 0 and d.stats.lost == 0
    assert [f.samples for f in frames] == [480, 480] and frames[1].metadata["discontinuity"]
    assert frames[0].metadata["partial"] and frames[1].timestamp_ns - frames[0].timestamp_ns == 10 * 10**9 + 10**7
    assert np.array_equal(joined(frames), x)


def _mutate(rng: random.Random, packets: list[bytes]) -> bytes:
    p = bytearray(rng.choice(packets))
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(40)))
    if kind == 1:  # flip bytes anywhere, the header included
        for _ in range(rng.randrange(1, 6)):
            p[rng.randrange(len(p))] = rng.getrandbits(8)
    elif kind == 2:
        del p[rng.randrange(len(p)):]
    elif kind == 3:  # sequence / timestamp / ssrc scrambled, payload intact
        struct.pack_into("!HII", p, 2, rng.getrandbits(16), rng.getrandbits(32), rng.choice((0x1234, 5)))
    elif kind == 4:
        p[0] = (p[0] & 0xC0) | rng.getrandbits(6)  # padding / extension / CSRC bits
    return bytes(p)


def fuzz(n: int, seed: int) -> tuple[AudioDepacketizer, int]:
    """Half valid packets of a continuing stream (some swapped with a neighbour), half
    mutated copies of packets already sent."""
    rng = random.Random(seed)
    block = grid_signal(48 * 64, seed=seed)
    source = AudioPacketizer(FMT, ssrc=0x1234, first_sequence=rng.getrandbits(16))
    upcoming: list[bytes] = []
    sent: list[bytes] = source.push(block[:48], T0)
    valid = 0
    # receive time passes (1 ms a reading): a garbage SSRC locked to first is let go
    d = AudioDepacketizer(FMT, frame_samples=480, reorder_window=rng.randrange(0, 16), now_ns=StepClock())
    for i in range(n):
        if len(upcoming) < 4:
            upcoming += source.push(block, T0 + source.packets * 1_000_000)
        if rng.random() < 0.5:
            d.push(_mutate(rng, sent))
        else:
            sent = sent[-31:] + [upcoming.pop(rng.randrange(2) if rng.random() < 0.1 else 0)]
            d.push(sent[-1])
            valid += 1
        if i % 997 == 0:  # what the receive actor does when the stream pauses
            d.flush(partial=bool(i % 2))
        assert accounted(d) == d.stats.received
    d.flush()
    s = d.stats
    assert s.received == n and accounted(d) == n and s.malformed > n // 10 and s.stray > n // 50
    # the real stream survives the garbage: nearly every valid packet is played
    assert s.played >= 0.98 * valid and s.lost <= 0.002 * valid
    return d, valid


def test_fuzz_quick_20k() -> None:
    fuzz(20_000, seed=1)  # about 0.3 s


@pytest.mark.parametrize("fmt", [AudioFormat("L16", RATE, 1), AudioFormat("L24", 96000, 8)])
def test_fuzz_receivers_of_other_formats(fmt: AudioFormat) -> None:
    rng = random.Random(5)
    packets = packetize(grid_signal(48 * 40))
    d = AudioDepacketizer(fmt, frame_samples=100, reorder_window=3, payload_type=97)
    for _ in range(5000):
        d.push(_mutate(rng, packets))
    d.flush()
    assert d.stats.received == accounted(d) == 5000 and d.stats.malformed > 500


@pytest.mark.slow
def test_fuzz_100k() -> None:
    for seed in (2, 3, 4):  # about 1.2 s each
        fuzz(100_000, seed)


# -- fixtures captured from GStreamer and FFmpeg ----------------------------------------

def read_packets(path: Path) -> list[bytes]:
    blob, out, i = path.read_bytes(), [], 0
    while i < len(blob):
        n = int.from_bytes(blob[i:i + 4], "big")
        out.append(blob[i + 4:i + 4 + n])
        i += 4 + n
    assert i == len(blob)
    return out


@pytest.mark.parametrize("name,encoding", [("audio_gst_l24.bin", "L24"), ("audio_gst_l16.bin", "L16"),
                                           ("audio_ffmpeg_l24.bin", "L24")])
def test_captured_packets_round_trip_byte_for_byte(name: str, encoding: str) -> None:
    packets = read_packets(FIXTURES / name)
    assert len(packets) >= 40
    for pkt in packets:
        h = parse_header(pkt)
        samples = decode_samples(pkt[h.payload_offset:h.payload_end], encoding, 2)
        again = bytearray(12)
        pack_header(again, payload_type=h.payload_type, sequence=h.sequence, timestamp=h.timestamp,
                    ssrc=h.ssrc, marker=h.marker)
        assert bytes(again) + encode_samples(samples, encoding) == pkt
    fmt = AudioFormat(encoding, RATE, 2)
    d, frames = depacketize(packets, fmt=fmt, frame_samples=480, payload_type=97)
    assert (d.stats.played, d.stats.lost, d.stats.malformed) == (len(packets), 0, 0)
    data = joined(frames)
    spec = np.abs(np.fft.rfft(data[:1920, 0] * np.hanning(1920)))
    assert abs(np.argmax(spec) * RATE / 1920 - 1000) <= 25  # a 1 kHz tone


# -- actors --------------------------------------------------------------------------

class Collect(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["audio"] = StreamInput("audio", slots=64)
        self.frames: list[AudioFrame] = []
        self.cond = threading.Condition()

    def process(self, tick: TimedTick) -> None:
        with self.cond:
            self.frames.extend(self.inputs["audio"].read_all_new())
            self.cond.notify_all()

    def wait_samples(self, n: int, timeout: float = 10) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: sum(f.samples for f in self.frames) >= n, timeout)
        assert ok, f"got {sum(f.samples for f in self.frames)} of {n} samples in {timeout} s"


def wait_running(actor: Actor, timeout: float = 10) -> None:
    ev = threading.Event()
    for _ in range(int(timeout * 100)):
        if actor.status is ActorStatus.RUNNING:
            return
        ev.wait(0.01)
    raise AssertionError(f"{actor} did not start within {timeout} s")


class MemorySink:
    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.closed = False

    def send(self, packets: Sequence[bytes]) -> int:
        self.packets += packets
        return len(packets)

    def close(self) -> None:
        self.closed = True


class MemorySendActor(AudioNetworkSendActor):
    def open_transport(self) -> MemorySink:
        self.memory = MemorySink()
        return self.memory


class ScriptedSource:
    """Hands out one scripted batch of datagrams per poll, then nothing."""

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = list(batches)
        self.closed = False

    def receive(self) -> list[bytes]:
        return self.batches.pop(0) if self.batches else []

    def close(self) -> None:
        self.closed = True


class ScriptedReceiveActor(AudioNetworkReceiveActor):
    def __init__(self, script: list[list[bytes]], **kw: Any) -> None:
        super().__init__(**kw)
        self.script = script

    def open_transport(self) -> ScriptedSource:
        self.source = ScriptedSource(self.script)
        return self.source


def test_send_actor_packetizes_every_frame_in_lock_step() -> None:
    with Runtime() as rt:
        tone = AudioGeneratorActor(RATE, 2, 1000.0, clock=VirtualClock(50, max_ticks=10, start_ns=T0))
        send = MemorySendActor("127.0.0.1:41900", "L24", RATE, 2, ptime_ms=1.0, ssrc=99)
        tone >> send
        assert rt.run(30)
    pk = send.memory.packets
    assert len(pk) == 200 and send.memory.closed
    assert send.stats == {"frames_in": 10, "frames_dropped": 0, "packets_sent": 200,
                          "packets_dropped": 0, "resyncs": 0, "samples_dropped": 0}
    hdrs = [parse_header(p) for p in pk]
    assert [h.timestamp for h in hdrs] == [(media_timestamp(T0, RATE) + 48 * k) & 0xFFFFFFFF for k in range(200)]
    assert b"".join(p[12:] for p in pk) == encode_samples(tone.render(0, 9600), "L24")


class RefusingSink(MemorySink):
    """Like a connected UDP socket after ICMP port unreachable: every other send fails."""

    def send(self, packets: Sequence[bytes]) -> int:
        if len(self.packets) % 40 == 20:
            self.packets += [b""] * len(packets)
            raise ConnectionRefusedError(111, "sendmmsg failed: Connection refused")
        return super().send(packets)


class RefusedSendActor(AudioNetworkSendActor):
    def open_transport(self) -> RefusingSink:
        return RefusingSink()


def test_refused_sends_are_counted_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with Runtime() as rt:
        tone = AudioGeneratorActor(RATE, 2, 1000.0, clock=VirtualClock(50, max_ticks=10))
        send = RefusedSendActor("127.0.0.1:41910")
        tone >> send
        assert rt.run(30)
    assert not send.failed and send.frames_in == 10
    assert (send.packets_sent, send.packets_dropped) == (100, 100)
    assert caplog.text.count("Connection refused") == 1  # warned once


def test_send_actor_drops_frames_of_another_format(caplog: pytest.LogCaptureFixture) -> None:
    with Runtime():
        send = MemorySendActor("127.0.0.1:41900", channels=1)
    frame = AudioFrame(np.zeros((960, 2), np.float32), sample_rate=RATE, timestamp_ns=0)
    assert send.send_frame(frame) == 0 and send.frames_dropped == 1
    assert "differs from the stream's 48000 Hz x1" in caplog.text


def test_receive_actor_with_scripted_loss_and_reorder() -> None:
    x = grid_signal(2400)
    pk = packetize(x)
    order = [i for i in range(50) if i != 7]
    order[order.index(20)], order[order.index(21)] = 21, 20
    batches = [scripted(order[i:i + 5], pk) for i in range(0, len(order), 5)]
    with Runtime() as rt:
        recv = ScriptedReceiveActor(batches, dest="127.0.0.1:41902", clock=VirtualClock(200, max_ticks=40, start_ns=T0),
                                    frame_ms=10.0, flush_after_ms=20.0)
        sink = Collect()
        recv >> sink
        assert rt.run(30)
    assert recv.source.closed
    s = recv.stats
    assert (s.received, s.played, s.lost, s.late, s.duplicate, s.frames) == (49, 49, 1, 0, 0, 5)
    want = x.copy()
    want[7 * 48:8 * 48] = 0
    assert np.array_equal(joined(sink.frames), want)
    assert [f.metadata["concealed"] for f in sink.frames] == [True, False, False, False, False]
    # unwrapped against the real TAI now, so only the low 32 bits of media time are T0's
    stamps = [f.timestamp_ns for f in sink.frames]
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [10**7] * 4
    assert media_timestamp(stamps[0], RATE) == media_timestamp(T0, RATE)


def test_udp_loopback_end_to_end_is_exact() -> None:
    with Runtime() as rt:
        recv = AudioNetworkReceiveActor(dest="127.0.0.1:41904", timebase="monotonic", frame_ms=20.0)
        tone = AudioGeneratorActor(RATE, 2, 997.0, amplitude=0.9)
        send = AudioNetworkSendActor(recv.host_address + f":{recv.port}", "L24", RATE, 2)
        sink, stamps = Collect(), Collect()
        recv >> sink
        tone >> send
        tone >> stamps
        rt.start()
        sink.wait_samples(9600)
    got = joined(sink.frames)
    want = decode_samples(encode_samples(tone.render(0, len(got)), "L24"), "L24", 2)
    assert np.array_equal(got, want)
    assert recv.stats.lost == 0 and recv.stats.malformed == 0 and send.packets_dropped == 0
    # monotonic timebase on both ends: each frame is stamped with its first sample's time
    for sent, received in zip(stamps.frames, sink.frames):
        assert sent.timestamp_ns - 20_834 < received.timestamp_ns <= sent.timestamp_ns
        assert received.clock_id == "monotonic"


def test_sdp_out_and_in(tmp_path: Path) -> None:
    path = tmp_path / "s" / "tx.sdp"
    with Runtime() as rt:
        send = MemorySendActor("127.0.0.1:41906", "L16", RATE, 4, ptime_ms=0.125, payload_type=98,
                               sdp_path=str(path), ts_refclk="ptp=IEEE1588-2008:traceable")
        assert rt.run(10)  # no clock: returns once setup (which writes the SDP) is done
    text = path.read_bytes().decode("ascii")
    for line in ("m=audio 41906 RTP/AVP 98", "c=IN IP4 127.0.0.1", "a=rtpmap:98 L16/48000/4",
                 "a=ptime:0.125", "a=ts-refclk:ptp=IEEE1588-2008:traceable", "a=mediaclk:direct=0"):
        assert line + "\r\n" in text
    with Runtime():
        from_text = AudioNetworkReceiveActor(sdp=text)
        from_path = AudioNetworkReceiveActor(sdp=str(path))
    for r in (from_text, from_path):
        assert (r.format, r.port, r.depacketizer.payload_type) == (AudioFormat("L16", RATE, 4), 41906, 98)


def test_ports_come_from_the_allocator_and_are_released() -> None:
    with Runtime():
        send = AudioNetworkSendActor()
        recv = AudioNetworkReceiveActor(dest="localhost")  # a host alone: a port is allocated
        assert send.port != recv.port and all(AUDIO_PORTS.start <= p <= AUDIO_PORTS.end and p % 2 == 0
                                              for p in (send.port, recv.port))
        held = set(AUDIO_PORTS.allocated().values())
        assert {send.port, recv.port} <= held
        assert "m=audio %d RTP/AVP 97" % send.port in send.sdp
    assert not {send.port, recv.port} & set(AUDIO_PORTS.allocated().values())


def test_video_and_audio_actors_share_one_port_allocator() -> None:
    """Video and audio take ports from one range, so their streams never collide."""
    shared = default_port_allocator()
    assert VIDEO_PORTS is shared and AUDIO_PORTS is shared
    assert (shared.start, shared.end, shared.step) == (5004, 6998, 2)
    with Runtime():
        video = NetworkSendActor(dest="127.0.0.1", width=16, height=8)
        audio = AudioNetworkSendActor()
        audio_rx = AudioNetworkReceiveActor(dest="localhost")
        video_2 = NetworkSendActor(dest="127.0.0.1", width=16, height=8)
        ports = [video.dest[1], audio.port, audio_rx.port, video_2.dest[1]]
        assert len(set(ports)) == 4, ports
        assert all(5004 <= p <= 6998 and p % 2 == 0 for p in ports)
        assert set(ports) <= set(shared.allocated().values())
        assert f"m=video {ports[0]} RTP/AVP 96" in (video.sdp or "")
        assert f"m=audio {ports[1]} RTP/AVP 97" in audio.sdp
    # the audio actors release on close (the video sender releases in teardown, after a run)
    assert not {audio.port, audio_rx.port} & set(shared.allocated().values())


@pytest.mark.parametrize("cls,kw,message", [
    (AudioNetworkSendActor, {"encoding": "L20"}, "AudioNetworkSendActor 'x': encoding must be one of"),
    (AudioNetworkSendActor, {"dest": "10.1.2.3:5004"}, "AudioNetworkSendActor 'x': dest: .*outside loopback"),
    (AudioNetworkSendActor, {"ptime_ms": 0.3}, "AudioNetworkSendActor 'x': ptime_ms: 0.3 ms"),
    (AudioNetworkSendActor, {"channels": 65}, "AudioNetworkSendActor 'x': channels"),
    (AudioNetworkReceiveActor, {"frame_ms": 0.01}, "AudioNetworkReceiveActor 'x': frame_ms"),
    (AudioNetworkReceiveActor, {"sdp": "/nonexistent.sdp"}, "AudioNetworkReceiveActor 'x': sdp: cannot read"),
    (AudioNetworkReceiveActor, {"sdp": "v=0\nm=video 5 RTP/AVP 96\n"}, "AudioNetworkReceiveActor 'x': sdp: "),
    (AudioNetworkReceiveActor, {"timebase": "gps"}, "AudioNetworkReceiveActor 'x': timebase"),
    (AudioNetworkReceiveActor, {"reorder_window": -1}, "AudioNetworkReceiveActor 'x': reorder_window"),
    (AudioNetworkReceiveActor, {"dest": "127.0.0.1:99999"}, "AudioNetworkReceiveActor 'x': dest: invalid"),
    (AudioNetworkSendActor, {"dest": "example.com"}, "AudioNetworkSendActor 'x': dest: .*not an IP literal"),
    (AudioNetworkReceiveActor, {"dest": "239.1.1.1:5004"}, "AudioNetworkReceiveActor 'x': dest: .*allow_remote"),
    (AudioNetworkReceiveActor, {"multicast_interface": "eth0"},
     "AudioNetworkReceiveActor 'x': multicast_interface must be an IPv4 address"),
])
def test_bad_configuration_names_actor_and_field(cls: type, kw: dict[str, Any], message: str) -> None:
    with Runtime(), pytest.raises(ValueError, match=message):
        cls(actor_id="x", **kw)


def test_example_runs_over_loopback(tmp_path: Path) -> None:
    out = tmp_path / "rx.wav"
    proc = subprocess.run([sys.executable, "examples/network_audio.py", str(out), "1.0", "41550"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "lost 0, malformed 0" in proc.stdout
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels()) == (RATE, 2)
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2) / 32768.0
    assert len(data) >= 0.5 * RATE
    spec = np.abs(np.fft.rfft(data[:, 0] * np.hanning(len(data))))
    assert abs(np.argmax(spec) * RATE / len(data) - 1000) < 3
    assert abs(np.abs(data).max() - 0.5) < 0.01


def test_multicast_group_joined_on_loopback() -> None:
    group, port = "239.255.41.7", 41908
    x = grid_signal(960)
    with Runtime() as rt:
        recv = AudioNetworkReceiveActor(dest=f"{group}:{port}", allow_remote=True,
                                        multicast_interface="127.0.0.1", frame_ms=10.0)
        sink = Collect()
        recv >> sink
        rt.start()
        wait_running(recv)  # setup has bound the socket and joined the group
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:  # TTL 0: never leaves the host
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
            for p in packetize(x):
                tx.sendto(p, (group, port))
        sink.wait_samples(960)
    assert np.array_equal(joined(sink.frames), x) and recv.stats.lost == 0


# -- multicast, SSRC lock and pacing of the actors -----------------------------------------

def test_multicast_send_and_receive_actors() -> None:
    """Sender and receiver on 239.255.x.x over interface 127.0.0.1 with TTL 0."""
    group, port = "239.255.41.17", 41912
    with Runtime() as rt:
        recv = AudioNetworkReceiveActor(dest=f"{group}:{port}", allow_remote=True,
                                        multicast_interface="127.0.0.1", timebase="monotonic")
        tone = AudioGeneratorActor(RATE, 2, 997.0, amplitude=0.9)
        send = AudioNetworkSendActor(f"{group}:{port}", allow_remote=True, ssrc=0x5150,
                                     multicast_interface="127.0.0.1", multicast_ttl=0)
        assert f"c=IN IP4 {group}/0\r\n" in send.sdp
        assert parse_sdp(send.sdp)[0].ttl == 0
        sink = Collect()
        recv >> sink
        tone >> send
        rt.start()
        sink.wait_samples(4800)
    got = joined(sink.frames)
    want = decode_samples(encode_samples(tone.render(0, len(got)), "L24"), "L24", 2)
    assert np.array_equal(got, want)
    assert recv.stats.lost == 0 and recv.stats.foreign_ssrc == 0 and recv.depacketizer.ssrc == 0x5150


@pytest.mark.parametrize("cls,kw,message", [
    (AudioNetworkSendActor, {"multicast_ttl": -1}, r"AudioNetworkSendActor 'x': multicast_ttl must be "
                                                  r"an int in 0\.\.255, got -1"),
    (AudioNetworkSendActor, {"multicast_interface": "eth0"},
     "AudioNetworkSendActor 'x': multicast_interface must be an IPv4 address"),
    (AudioNetworkSendActor, {"dest": "239.255.1.1:5004"}, "AudioNetworkSendActor 'x': dest: .*allow_remote"),
    (AudioNetworkSendActor, {"dest": "[ff15::1]:5004", "allow_remote": True},
     "AudioNetworkSendActor 'x': dest: IPv6 multicast is not supported"),
    (AudioNetworkReceiveActor, {"ssrc": 2**32}, "AudioNetworkReceiveActor 'x': ssrc must be"),
])
def test_multicast_and_ssrc_configuration_errors(cls: type, kw: dict[str, Any], message: str) -> None:
    with Runtime(), pytest.raises(ValueError, match=message):
        cls(actor_id="x", **kw)


def test_two_udp_senders_into_one_receiver_locked_by_ssrc() -> None:
    """Two live senders on one port: only the locked SSRC's samples come out, and the
    other's packets are counted exactly."""
    x, y = grid_signal(4800, seed=7), grid_signal(4800, seed=8)
    a = packetize(x)  # SSRC 0x1234
    b = [_rtp(900 + k, 5 + 48 * k, p[12:], ssrc=0xBEEF) for k, p in enumerate(packetize(y))]
    with Runtime() as rt:
        recv = AudioNetworkReceiveActor(dest="127.0.0.1:41914", ssrc=0x1234, frame_ms=10.0)
        sink = Collect()
        recv >> sink
        rt.start()
        wait_running(recv)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ta, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tb:
            for pa, pb in zip(a, b):  # b first: it would be "the first SSRC seen"
                tb.sendto(pb, ("127.0.0.1", 41914))
                ta.sendto(pa, ("127.0.0.1", 41914))
        sink.wait_samples(4800)
        ev = threading.Event()
        for _ in range(500):  # the last foreign packets may be a poll behind
            if recv.stats.foreign_ssrc == len(b):
                break
            ev.wait(0.01)
    assert np.array_equal(joined(sink.frames)[:4800], x)
    s = recv.stats
    assert (s.foreign_ssrc, s.played, s.lost, s.stray) == (len(b), len(a), 0, 0)


def test_pace_schedule_spreads_packets_one_per_packet_time() -> None:
    ms = 1_000_000
    due, nxt = pace_schedule(20, ms, now_ns=5 * ms, next_due_ns=0)
    assert due == [5 * ms + k * ms for k in range(20)] and nxt == 25 * ms
    # the next frame arrives a little early or late (< one packet time): the grid goes on
    for now in (24 * ms, 25 * ms + ms // 2):
        due2, nxt2 = pace_schedule(20, ms, now_ns=now, next_due_ns=nxt)
        assert due2[0] == 25 * ms and nxt2 == 45 * ms
        assert all(b - a == ms for a, b in zip(due2, due2[1:]))
    # more than a packet time late: restart at now (a gap, never a burst to catch up)
    due3, _ = pace_schedule(20, ms, now_ns=27 * ms, next_due_ns=nxt)
    assert due3[0] == 27 * ms and all(b - a == ms for a, b in zip(due3, due3[1:]))
    # a backlog (input faster than the packet clock) drains at 3/4 of the packet time
    due4, nxt4 = pace_schedule(8, 125_000, now_ns=0, next_due_ns=1_000_000, backlog=2)
    assert due4 == [1_000_000 + k * 93_750 for k in range(8)] and nxt4 == 1_750_000
    # 20 packets of one 20 ms frame never fall inside one packet time together
    assert max(sum(1 for t in due if t0 <= t < t0 + ms) for t0 in due) == 1


def test_paced_sender_sends_everything_in_order_and_closes_cleanly() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    tx = PacedSender(open_sender(rx.getsockname()), ptime_ms=0.125)
    packets = packetize(grid_signal(48 * 40))
    try:
        for i in range(0, 40, 10):
            assert tx.submit(packets[i:i + 10]) == 10
        tx.close()  # sends what is queued first
        got = [rx.recv(2048) for _ in range(40)]
    finally:
        tx.close()
        rx.close()
    assert got == packets and tx.packets_sent == 40 and tx.packets_failed == 0
    with pytest.raises(ClosedError, match=r"^PacedSender is closed$"):
        tx.submit(packets[:1])
    with pytest.raises(ValueError, match="ptime_ms"):
        PacedSender(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), 0)
