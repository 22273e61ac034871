"""ST 2110-30 audio (RFC 3190 L24 / RFC 3551 L16) over RTP: sample codec, packetizer, depacketizer.

Sample conversion (both directions exact for values on the grid):

* float -> integer: ``q = round_half_away_from_zero(x * 2**(bits-1))`` clipped to
  ``[-2**(bits-1), 2**(bits-1) - 1]``; NaN becomes 0. So +1.0 encodes as the
  largest code (0x7FFFFF for L24) and -1.0 as the smallest (0x800000).
* integer -> float: ``x = q / 2**(bits-1)``, exact in float32 for 16 and 24 bits,
  so decode -> encode returns the same codes byte for byte.

RTP timestamps follow ST 2110-10: the packetizer stamps the first packet with
``media_timestamp(first sample's time_ns, rate)`` and counts samples from there
(ptime packets never break at AudioFrame boundaries); it re-anchors only when an
input frame's time differs from that count by more than ``resync_ms``.

The depacketizer maps RTP time back to nanoseconds: the first packet's 32-bit
timestamp is unwrapped to the 64-bit media-clock count nearest to
``media_timestamp(now_ns())`` of the receiver's timebase (TAI for PTP senders),
later packets relative to the previous one; a frame whose first sample has the
unwrapped count ``T`` gets ``timestamp_ns = ceil(T * 1e9 / rate)``, the first
nanosecond whose ``media_timestamp`` is ``T``. Sender and receiver sharing a
timebase therefore agree on sample times to the nanosecond.

Sending is paced (``PacedSender``, ``pace_schedule``): one packet per packet time
from a thread of its own, continuing across frames, rather than a frame's
packets in one burst.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..frames import AudioFrame
from .rtp import MAX_UDP_PAYLOAD, RTP_HEADER_SIZE, RTPError, pack_header, parse_header, seq_diff
from .udp import BatchSender

__all__ = [
    "ENCODINGS", "AudioDepacketizer", "AudioFormat", "AudioPacketizer", "AudioReceiveStats",
    "PacedSender", "decode_samples", "encode_samples", "pace_schedule", "rtp_to_ns",
]

ENCODINGS: Mapping[str, int] = {"L24": 3, "L16": 2}  # bytes per sample
MAX_CHANNELS = 64   # RFC 3190 allows more; ST 2110-30 levels stop at 64
MAX_DROPOUT = 3000  # RFC 3550 A.1: larger forward jumps in sequence need confirmation
MAX_MISORDER = 100  # ... and so do packets further back than this
_NS = 1_000_000_000


def _bits(encoding: str) -> int:
    try:
        return 8 * ENCODINGS[encoding]
    except KeyError:
        raise ValueError(f"encoding must be one of {tuple(ENCODINGS)}, got {encoding!r}") from None


def encode_samples(data: npt.ArrayLike, encoding: str = "L24") -> bytes:
    """Float samples ``(samples, channels)`` in [-1, 1] -> interleaved big-endian PCM bytes.

    Rounds half away from zero, clips, maps NaN to 0 (see the module docstring).
    Raises ValueError for an unknown encoding.
    """
    bits = _bits(encoding)
    scale = float(1 << (bits - 1))
    x = np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0) * scale
    # float64 holds x * 2**23 exactly for float32 x, so the +-0.5 below cannot double-round
    q = np.trunc(x + np.copysign(0.5, x))
    q = np.clip(q, -scale, scale - 1).astype(np.int32).reshape(-1)
    if bits == 16:
        return q.astype(">i2").tobytes()
    return q.astype(">i4").view(np.uint8).reshape(-1, 4)[:, 1:].tobytes()


def decode_samples(payload: bytes | bytearray | memoryview, encoding: str = "L24",
                   channels: int = 2) -> npt.NDArray[np.float32]:
    """Interleaved big-endian PCM -> float32 ``(samples, channels)``.

    Raises ValueError when the length is not a whole number of sample frames.
    """
    width = _bits(encoding) // 8
    frame = width * channels
    n = len(payload)
    if channels < 1 or n % frame:
        raise ValueError(f"{encoding} payload of {n} bytes is not a whole number of "
                         f"{channels}-channel sample frames ({frame} bytes each)")
    raw = np.frombuffer(payload, dtype=np.uint8)
    if width == 2:
        ints = raw.view(">i2").astype(np.int32)
        scale = 1.0 / 32768.0
    else:
        wide = np.zeros((n // 3, 4), dtype=np.uint8)
        wide[:, :3] = raw.reshape(-1, 3)
        ints = wide.view(">i4").reshape(-1) >> 8  # arithmetic shift sign-extends
        scale = 1.0 / 8388608.0
    return (ints.astype(np.float32) * np.float32(scale)).reshape(-1, channels)


def rtp_to_ns(ext_timestamp: int, rate: int) -> int:
    """First nanosecond whose ST 2110-10 media timestamp is ``ext_timestamp`` (unwrapped)."""
    return -((-ext_timestamp * _NS) // rate)


@dataclass(frozen=True)
class AudioFormat:
    """Encoding, rate and channel count of one stream; validated on construction.

    Raises:
        ValueError: unknown encoding, rate outside AudioFrame's range, channels not in 1..64.
    """

    encoding: str = "L24"
    sample_rate: int = 48000
    channels: int = 2

    def __post_init__(self) -> None:
        _bits(self.encoding)
        rate, ch = self.sample_rate, self.channels
        if isinstance(rate, bool) or not isinstance(rate, int) or not (
                AudioFrame.MIN_SAMPLE_RATE <= rate <= AudioFrame.MAX_SAMPLE_RATE):
            raise ValueError(f"sample_rate must be an int in {AudioFrame.MIN_SAMPLE_RATE}.."
                             f"{AudioFrame.MAX_SAMPLE_RATE}, got {rate!r}")
        if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= MAX_CHANNELS:
            raise ValueError(f"channels must be an int in 1..{MAX_CHANNELS}, got {ch!r}")

    @property
    def sample_bytes(self) -> int:
        return ENCODINGS[self.encoding]

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (one sample of every channel)."""
        return ENCODINGS[self.encoding] * self.channels

    def samples_for_ms(self, ms: float, what: str) -> int:
        """Whole samples in ``ms`` milliseconds; ValueError naming ``what`` otherwise."""
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms > 0:
            raise ValueError(f"{what} must be a number > 0, got {ms!r}")
        exact = self.sample_rate * float(ms) / 1000.0
        n = round(exact)
        if n < 1 or abs(exact - n) > 1e-6:
            raise ValueError(f"{what}: {ms!r} ms at {self.sample_rate} Hz is {exact:g} samples; "
                             "it must be a whole number")
        return n


class AudioPacketizer:
    """Float sample blocks -> RTP packets of ``ptime_ms`` each, continuous across blocks.

    ``push(data, time_ns)`` returns the packets completed by ``data`` (samples
    left over wait for the next block). Packet ``k`` after an anchor carries
    ``timestamp = anchor + k * samples_per_packet`` (mod 2**32); the marker bit
    is set on the first packet after each anchor. Not thread-safe.

    Raises:
        ValueError: ptime not a whole number of samples, or a packet larger than
            ST 2110-10's 1460-byte UDP payload; bad payload_type/ssrc.
    """

    def __init__(self, fmt: AudioFormat, *, ptime_ms: float = 1.0, payload_type: int = 97,
                 ssrc: int | None = None, first_sequence: int | None = None,
                 resync_ms: float = 2.0) -> None:
        self.format = fmt
        self.samples_per_packet = fmt.samples_for_ms(ptime_ms, "ptime_ms")
        self.payload_bytes = self.samples_per_packet * fmt.frame_bytes
        if self.payload_bytes + RTP_HEADER_SIZE > MAX_UDP_PAYLOAD:
            raise ValueError(
                f"ptime_ms: {ptime_ms} ms of {fmt.channels}-channel {fmt.encoding} is "
                f"{self.payload_bytes} payload bytes; RTP packets must fit {MAX_UDP_PAYLOAD} bytes")
        if isinstance(payload_type, bool) or not isinstance(payload_type, int) or \
                not 0 <= payload_type <= 127:
            raise ValueError(f"payload_type must be an int in 0..127, got {payload_type!r}")
        if ssrc is not None and not (isinstance(ssrc, int) and 0 <= ssrc <= 0xFFFFFFFF):
            raise ValueError(f"ssrc must be a 32-bit unsigned int or None, got {ssrc!r}")
        if not (isinstance(resync_ms, (int, float)) and resync_ms >= 0):
            raise ValueError(f"resync_ms must be a number >= 0, got {resync_ms!r}")
        rand = int.from_bytes(os.urandom(6), "big")
        self.payload_type = payload_type
        self.ssrc = (rand >> 16) if ssrc is None else ssrc
        self.sequence = (rand & 0xFFFF) if first_sequence is None else first_sequence & 0xFFFF
        self._resync_ticks = int(resync_ms * fmt.sample_rate / 1000)
        self._next_ts: int | None = None  # unwrapped media time of the next packet's first sample
        self._rest = b""                  # encoded samples not yet in a packet
        self._marker = True
        self.packets = 0
        self.samples_in = 0
        self.resyncs = 0
        self.samples_dropped = 0          # partial packets discarded at a re-anchor

    @property
    def pending_samples(self) -> int:
        """Samples waiting for the next packet."""
        return len(self._rest) // self.format.frame_bytes

    def push(self, data: npt.ArrayLike, time_ns: int) -> list[bytes]:
        """Packetize ``data`` ``(samples, channels)`` whose first sample is at ``time_ns``.

        Raises ValueError when the channel count differs from the format's.
        """
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] != self.format.channels:
            raise ValueError(f"expected samples shaped (n, {self.format.channels}), got {arr.shape}")
        fb, rate = self.format.frame_bytes, self.format.sample_rate
        media = time_ns * rate // _NS
        if self._next_ts is None:
            self._next_ts = media
        elif abs(media - (self._next_ts + len(self._rest) // fb)) > self._resync_ticks:
            # input time jumped (gap, clock step, new source): re-anchor rather than drift
            self.samples_dropped += len(self._rest) // fb
            self._rest, self._next_ts, self._marker = b"", media, True
            self.resyncs += 1
        self.samples_in += arr.shape[0]
        buf = self._rest + encode_samples(arr, self.format.encoding)
        size, spp = self.payload_bytes, self.samples_per_packet
        count = len(buf) // size
        out: list[bytes] = []
        for k in range(count):
            pkt = bytearray(RTP_HEADER_SIZE + size)
            pack_header(pkt, payload_type=self.payload_type, sequence=self.sequence,
                        timestamp=self._next_ts + k * spp, ssrc=self.ssrc, marker=self._marker)
            pkt[RTP_HEADER_SIZE:] = buf[k * size:(k + 1) * size]
            out.append(bytes(pkt))
            self.sequence = (self.sequence + 1) & 0xFFFF
            self._marker = False
        self._next_ts += count * spp
        self._rest = buf[count * size:]
        self.packets += count
        return out


@dataclass
class AudioReceiveStats:
    """Packet accounting of an :class:`AudioDepacketizer`.

    Every datagram pushed lands in exactly one of ``played``, ``late``,
    ``duplicate``, ``malformed``, ``wrong_payload_type``, ``foreign_ssrc``,
    ``stray`` or is still held (``pending``): ``received`` is their sum. ``lost`` counts sequence
    numbers skipped when output moved past them (concealed with silence when a
    later packet shows how long the hole is); a lost packet that turns up
    afterwards is also counted ``late``.
    """

    received: int = 0            # datagrams pushed
    played: int = 0              # packets whose samples went to the output
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    malformed: int = 0           # not RTP v2, truncated, payload not whole sample frames
    wrong_payload_type: int = 0
    foreign_ssrc: int = 0        # well-formed packets of another SSRC than the locked one
    stray: int = 0               # other SSRC / sequence far off, not confirmed by its successor
    pending: int = 0             # held in the reorder buffer
    resyncs: int = 0             # new stream (SSRC / sequence / timestamp jump) adopted
    concealed_samples: int = 0   # silence inserted for lost packets
    dropped_samples: int = 0     # samples whose time was already output (bad timestamps)
    frames: int = 0              # AudioFrames produced

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(slots=True)
class _Packet:
    seq: int                     # 16-bit as received
    ts: int                      # 32-bit as received
    ssrc: int
    samples: npt.NDArray[np.float32]


class AudioDepacketizer:
    """RTP audio packets -> AudioFrames of ``frame_samples``, with a small reorder buffer.

    ``push(datagram)`` returns the frames completed by it (usually none or one).
    A missing packet is waited for until ``reorder_window`` later packets have
    arrived, then declared lost; the hole is filled with silence, sized from
    the next packet's timestamp (frames carrying silence have
    ``metadata['concealed'] = True``). Holes longer than ``max_conceal_ms``, and
    timestamps jumping back, start a new timeline instead (``resyncs``; the next
    frame has ``metadata['discontinuity'] = True``). ``flush()`` releases all
    held packets (the caller does this when the stream goes idle). Malformed
    input is counted, never raised. Not thread-safe.

    SSRC rule: with ``ssrc`` given only that SSRC is ever played. Without it
    the depacketizer locks to the first well-formed packet's SSRC. Either way
    packets of another SSRC are dropped and counted in ``foreign_ssrc`` while
    the locked SSRC is alive; with ``ssrc=None`` only, once the locked SSRC has
    sent nothing for ``ssrc_timeout_ms`` (receive time, ``now_ns``) a packet of
    another SSRC may take over as below: a restarted sender (new random SSRC)
    is followed, a second sender on the same port never is.

    A packet that would jump past the window, carries another SSRC (see above)
    or a sequence number far off is held as a candidate until a successor
    confirms it (at most ``reorder_window + 1`` later, its timestamp advanced
    by at most that many packets' samples): the jump is then taken as a loss
    burst (same SSRC) or a new stream is adopted (``resyncs``). Unconfirmed
    candidates count as ``stray``, so one corrupt header costs one packet.
    ``now_ns`` (default: CLOCK_REALTIME + 37 s, TAI) anchors RTP unwrapping.
    """

    def __init__(self, fmt: AudioFormat, *, frame_samples: int = 960, payload_type: int | None = None,
                 reorder_window: int = 8, max_conceal_ms: float = 200.0,
                 now_ns: Callable[[], int] | None = None, clock_id: str = "tai",
                 ssrc: int | None = None, ssrc_timeout_ms: float = 100.0) -> None:
        if isinstance(frame_samples, bool) or not isinstance(frame_samples, int) or frame_samples < 1:
            raise ValueError(f"frame_samples must be an int >= 1, got {frame_samples!r}")
        if payload_type is not None and not (isinstance(payload_type, int) and 0 <= payload_type <= 127):
            raise ValueError(f"payload_type must be an int in 0..127 or None, got {payload_type!r}")
        if isinstance(reorder_window, bool) or not isinstance(reorder_window, int) or \
                not 0 <= reorder_window <= MAX_MISORDER:
            raise ValueError(f"reorder_window must be an int in 0..{MAX_MISORDER}, got {reorder_window!r}")
        if not (isinstance(max_conceal_ms, (int, float)) and max_conceal_ms >= 0):
            raise ValueError(f"max_conceal_ms must be a number >= 0, got {max_conceal_ms!r}")
        if ssrc is not None and (isinstance(ssrc, bool) or not isinstance(ssrc, int)
                                 or not 0 <= ssrc <= 0xFFFFFFFF):
            raise ValueError(f"ssrc must be a 32-bit unsigned int or None, got {ssrc!r}")
        if not (isinstance(ssrc_timeout_ms, (int, float)) and ssrc_timeout_ms >= 0):
            raise ValueError(f"ssrc_timeout_ms must be a number >= 0, got {ssrc_timeout_ms!r}")
        self.lock_ssrc = ssrc
        self._ssrc_timeout_ns = int(ssrc_timeout_ms * 1_000_000)
        self._locked_ns = 0                # receive time of the locked SSRC's last packet
        self.format, self.frame_samples = fmt, frame_samples
        self.payload_type, self.reorder_window = payload_type, reorder_window
        self.clock_id = clock_id
        self._now_ns = now_ns if now_ns is not None else (lambda: time.time_ns() + 37 * _NS)
        self._max_gap = int(max_conceal_ms * fmt.sample_rate / 1000)
        self.stats = AudioReceiveStats()
        self.ssrc: int | None = None
        self._next_seq = 0                 # extended sequence number of the next packet to play
        self._held: dict[int, _Packet] = {}
        self._lost_seqs: set[int] = set()  # recent holes, to tell late from duplicate
        self._probe: _Packet | None = None
        self._cursor = 0                   # unwrapped media time of the next output sample
        self._ts_ref = 0                   # unwrapped timestamp of the last packet played
        self._started = False
        self._buf = np.zeros((frame_samples, fmt.channels), dtype=np.float32)
        self._fill = 0
        self._frame_ts = 0
        self._frame_meta = self._fresh_meta()
        self._lost_pending = 0             # lost packets not yet attributed to a frame
        self._discontinuity = False
        self._out: list[AudioFrame] = []

    # -- input -------------------------------------------------------------
    def push(self, datagram: bytes | bytearray | memoryview) -> list[AudioFrame]:
        """Account for one datagram; return the AudioFrames it completed. Never raises
        for bad input (it is counted in :attr:`stats`)."""
        st = self.stats
        st.received += 1
        try:
            hdr = parse_header(datagram)
        except RTPError:
            st.malformed += 1
            return []
        if self.payload_type is not None and hdr.payload_type != self.payload_type:
            st.wrong_payload_type += 1
            return []
        n = hdr.payload_end - hdr.payload_offset
        if n <= 0 or n % self.format.frame_bytes:
            st.malformed += 1
            return []
        locked = self.lock_ssrc if self.lock_ssrc is not None else self.ssrc
        if locked is None or hdr.ssrc == locked:
            self._locked_ns = self._now_ns()
        elif self.lock_ssrc is not None or \
                self._now_ns() - self._locked_ns < self._ssrc_timeout_ns:
            st.foreign_ssrc += 1  # another source while ours is alive: never played
            return []
        view = memoryview(datagram)[hdr.payload_offset:hdr.payload_end]
        pkt = _Packet(hdr.sequence, hdr.timestamp, hdr.ssrc,
                      decode_samples(view, self.format.encoding, self.format.channels))
        self._out = []
        if not self._started:
            self._start(pkt)
        else:
            self._accept(pkt)
        st.pending = len(self._held)
        return self._out

    def flush(self, partial: bool = True) -> list[AudioFrame]:
        """Play every held packet (declaring holes lost); with ``partial``, also emit
        the incomplete frame being assembled. Returns the frames produced."""
        self._out = []
        self._drain(partial)
        self.stats.pending = len(self._held)
        return self._out

    def _drain(self, partial: bool) -> None:
        if self._held:
            self._release(max(self._held))
        if partial and self._fill:
            self._emit()

    # -- sequencing --------------------------------------------------------
    def _start(self, pkt: _Packet) -> None:
        anchor = self._anchor()
        self.ssrc, self._started = pkt.ssrc, True
        self._next_seq = pkt.seq
        self._held.clear()
        self._lost_seqs.clear()
        self._ts_ref = anchor + _s32(pkt.ts - anchor)
        self._cursor = self._ts_ref
        self._held[pkt.seq] = pkt
        self._release(pkt.seq)

    def _accept(self, pkt: _Packet) -> None:
        st = self.stats
        off = seq_diff(pkt.seq, self._next_seq & 0xFFFF)
        if pkt.ssrc == self.ssrc and -MAX_MISORDER <= off <= self.reorder_window:
            self._insert(pkt, self._next_seq + off)
            probe = self._probe
            if probe is not None and probe.ssrc == self.ssrc:  # did the stream catch up with it?
                probe_off = seq_diff(probe.seq, self._next_seq & 0xFFFF)
                if -MAX_MISORDER <= probe_off <= self.reorder_window:
                    self._probe = None
                    st.stray -= 1
                    self._insert(probe, self._next_seq + probe_off)
            return
        # A jump that would declare packets lost, another SSRC, or a sequence far off:
        # wait for a successor to confirm it, so one corrupt packet cannot derail the stream.
        probe, self._probe = self._probe, pkt
        if probe is None or probe.ssrc != pkt.ssrc or not self._follows(probe, pkt):
            st.stray += 1  # this one waits; a replaced probe stays counted as stray
            return
        self._probe = None
        st.stray -= 1  # the probe is used after all
        probe_off = seq_diff(probe.seq, self._next_seq & 0xFFFF)
        if probe.ssrc == self.ssrc and -MAX_MISORDER <= probe_off <= MAX_DROPOUT:
            self._insert(probe, self._next_seq + probe_off)  # same stream after a loss burst
            self._insert(pkt, self._next_seq + seq_diff(pkt.seq, self._next_seq & 0xFFFF))
            return
        # a new stream (restarted sender, other source): finish the old one, start over
        st.resyncs += 1
        self._drain(partial=True)
        self._discontinuity = True
        self._start(probe)
        self._insert(pkt, self._next_seq + seq_diff(pkt.seq, self._next_seq & 0xFFFF))

    def _follows(self, first: _Packet, then: _Packet) -> bool:
        """Could ``then`` come shortly after ``first`` in one stream? Sequence numbers
        within the window, timestamps advancing by at most that many packets' samples."""
        d = seq_diff(then.seq, first.seq)
        most = d * max(len(first.samples), len(then.samples))
        return 1 <= d <= self.reorder_window + 1 and 0 < _s32(then.ts - first.ts) <= most

    def _insert(self, pkt: _Packet, ext: int) -> None:
        st = self.stats
        if ext < self._next_seq:
            if ext in self._lost_seqs:
                self._lost_seqs.discard(ext)
                st.late += 1
            else:
                st.duplicate += 1
            return
        if ext in self._held:
            st.duplicate += 1
            return
        self._held[ext] = pkt
        self._release(ext - self.reorder_window - 1)

    def _release(self, limit: int) -> None:
        """Play held packets in order; holes at or before ``limit`` are declared lost."""
        st, held = self.stats, self._held
        while held:
            seq = self._next_seq
            pkt = held.pop(seq, None)
            if pkt is not None:
                self._play(pkt)
                self._next_seq = seq + 1
                continue
            if seq > limit:
                break
            upto = min(min(held), limit + 1)  # skip the whole hole at once
            st.lost += upto - seq
            self._lost_pending += upto - seq
            self._lost_seqs.update(range(max(seq, upto - MAX_MISORDER), upto))
            self._next_seq = upto
        if len(self._lost_seqs) > 2 * MAX_MISORDER:
            floor = self._next_seq - MAX_MISORDER
            self._lost_seqs = {s for s in self._lost_seqs if s >= floor}

    # -- timeline ------------------------------------------------------------
    def _play(self, pkt: _Packet) -> None:
        st = self.stats
        st.played += 1
        ts = self._ts_ref + _s32(pkt.ts - self._ts_ref)
        self._ts_ref = ts
        samples = pkt.samples
        gap = ts - self._cursor
        if gap < -self._max_gap or gap > self._max_gap:
            # timestamps jumped: start a new timeline rather than emit a long silence, and
            # unwrap against the timebase again so times stay within +-2**31 ticks of now
            if self._fill:
                self._emit()
            st.resyncs += 1
            self._discontinuity = True
            anchor = self._anchor()
            ts = self._ts_ref = self._cursor = anchor + _s32(pkt.ts - anchor)
            gap = 0
        if self._lost_pending:  # attributed to the frame the hole (or what follows it) is in
            self._frame_meta["lost_packets"] += self._lost_pending
            self._lost_pending = 0
        if gap > 0:
            st.concealed_samples += gap
            self._write(None, gap)
        elif gap < 0:
            cut = min(-gap, len(samples))
            st.dropped_samples += cut
            samples = samples[cut:]
        if len(samples):
            self._write(samples, len(samples))

    def _write(self, samples: npt.NDArray[np.float32] | None, count: int) -> None:
        done = 0
        while done < count:
            if self._fill == 0:
                self._frame_ts = self._cursor
            n = min(count - done, self.frame_samples - self._fill)
            dst = self._buf[self._fill:self._fill + n]
            if samples is None:
                dst[:] = 0.0
                self._frame_meta["concealed_samples"] += n
            else:
                dst[:] = samples[done:done + n]
            self._fill += n
            self._cursor += n
            done += n
            if self._fill == self.frame_samples:
                self._emit()

    def _emit(self) -> None:
        meta = self._frame_meta
        meta["concealed"] = meta["concealed_samples"] > 0
        meta["discontinuity"], self._discontinuity = self._discontinuity, False
        meta["rtp_timestamp"] = self._frame_ts & 0xFFFFFFFF
        meta["ssrc"] = self.ssrc
        meta["partial"] = self._fill < self.frame_samples
        self._out.append(AudioFrame(
            self._buf[:self._fill].copy(), sample_rate=self.format.sample_rate,
            timestamp_ns=rtp_to_ns(self._frame_ts, self.format.sample_rate),
            frame_number=self.stats.frames, clock_id=self.clock_id, metadata=meta,
        ))
        self.stats.frames += 1
        self._fill = 0
        self._frame_meta = self._fresh_meta()

    def _anchor(self) -> int:
        """Media-clock count of the receiver's timebase now, the reference for unwrapping."""
        return self._now_ns() * self.format.sample_rate // _NS

    @staticmethod
    def _fresh_meta() -> dict[str, Any]:
        return {"concealed_samples": 0, "lost_packets": 0}


def _s32(x: int) -> int:
    """``x`` modulo 2**32 as a signed distance in [-2**31, 2**31)."""
    return ((x + 0x80000000) & 0xFFFFFFFF) - 0x80000000


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

    Raises ValueError for ``ptime_ms <= 0``.
    """

    def __init__(self, sock: socket.socket, ptime_ms: float) -> None:
        if not (isinstance(ptime_ms, (int, float)) and ptime_ms > 0):
            raise ValueError(f"PacedSender: ptime_ms must be > 0, got {ptime_ms!r}")
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
        Raises the thread's unexpected error, if it died, and RuntimeError after close."""
        if self.error is not None:
            raise self.error
        if self._closed:
            raise RuntimeError("PacedSender is closed")
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
