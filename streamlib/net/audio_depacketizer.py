"""ST 2110-30 receive side: RTP audio packets -> AudioFrames (reorder, SSRC lock, concealment).

The depacketizer maps RTP time back to nanoseconds: the first packet's 32-bit
timestamp is unwrapped to the 64-bit media-clock count nearest to
``media_timestamp(now_ns())`` of the receiver's timebase (TAI for PTP senders),
later packets relative to the previous one; a frame whose first sample has the
unwrapped count ``T`` gets ``timestamp_ns = ceil(T * 1e9 / rate)``, the first
nanosecond whose ``media_timestamp`` is ``T``. Sender and receiver sharing a
timebase therefore agree on sample times to the nanosecond.

Every public name here is re-exported by ``streamlib.net.audio``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamlib.core.frames import AudioFrame
from streamlib.net.audio_codec import AudioFormat, decode_samples, rtp_to_ns
from streamlib.errors import ConfigError, RTPError
from streamlib.net.rtp import parse_header, seq_diff
from streamlib.net.source_lock import SourceLock

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "AudioDepacketizer", "AudioReceiveStats"]

MAX_DROPOUT = 3000  # RFC 3550 A.1: larger forward jumps in sequence need confirmation
MAX_MISORDER = 100  # ... and so do packets further back than this
_NS = 1_000_000_000


@dataclass
class AudioReceiveStats:
    """Packet accounting of an :class:`AudioDepacketizer`.

    Every datagram pushed lands in exactly one of ``played``, ``late``,
    ``duplicate``, ``malformed``, ``wrong_payload_type``, ``foreign_ssrc``,
    ``foreign_source``, ``stray`` or is still held (``pending``): ``received`` is
    their sum. ``lost`` counts sequence
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
    foreign_source: int = 0      # datagrams from a sender address the source lock rejects
    source_changes: int = 0      # the source lock moved to another sender address
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
    or a sequence number far off is held as a candidate until a successor (or,
    arriving swapped, its predecessor) confirms it (at most ``reorder_window + 1`` later, its timestamp advanced
    by at most that many packets' samples): the jump is then taken as a loss
    burst (same SSRC) or a new stream is adopted (``resyncs``). Unconfirmed
    candidates count as ``stray``, so one corrupt header costs one packet.
    ``now_ns`` (default: CLOCK_REALTIME + 37 s, TAI) anchors RTP unwrapping.

    Sender addresses: with a ``source_lock`` (``streamlib.net.source_lock``), a
    datagram pushed with its ``source`` address is first checked against it (time:
    ``now_ns``); rejected ones are dropped whole (``foreign_source``), and lock
    moves are counted in ``source_changes``.
    """

    def __init__(self, fmt: AudioFormat, *, frame_samples: int = 960, payload_type: int | None = None,
                 reorder_window: int = 8, max_conceal_ms: float = 200.0,
                 now_ns: Callable[[], int] | None = None, clock_id: str = "tai",
                 ssrc: int | None = None, ssrc_timeout_ms: float = 100.0,
                 source_lock: SourceLock | None = None) -> None:
        if isinstance(frame_samples, bool) or not isinstance(frame_samples, int) or frame_samples < 1:
            raise ConfigError(f"frame_samples must be an int >= 1, got {frame_samples!r}")
        if payload_type is not None and not (isinstance(payload_type, int) and 0 <= payload_type <= 127):
            raise ConfigError("payload_type must be an int in 0..127 or None, got "
                              f"{payload_type!r}")
        if isinstance(reorder_window, bool) or not isinstance(reorder_window, int) or \
                not 0 <= reorder_window <= MAX_MISORDER:
            raise ConfigError(f"reorder_window must be an int in 0..{MAX_MISORDER}, got {reorder_window!r}")
        if not (isinstance(max_conceal_ms, (int, float)) and max_conceal_ms >= 0):
            raise ConfigError(f"max_conceal_ms must be a number >= 0, got {max_conceal_ms!r}")
        if ssrc is not None and (isinstance(ssrc, bool) or not isinstance(ssrc, int)
                                 or not 0 <= ssrc <= 0xFFFFFFFF):
            raise ConfigError(f"ssrc must be a 32-bit unsigned int or None, got {ssrc!r}")
        if not (isinstance(ssrc_timeout_ms, (int, float)) and ssrc_timeout_ms >= 0):
            raise ConfigError(f"ssrc_timeout_ms must be a number >= 0, got {ssrc_timeout_ms!r}")
        self.lock_ssrc = ssrc
        self.source_lock = source_lock if source_lock is not None and source_lock.active \
            else None
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
    def push(self, datagram: bytes | bytearray | memoryview,
             source: str | None = None) -> list[AudioFrame]:
        """Account for one datagram (from sender address ``source``, if known); return
        the AudioFrames it completed. Never raises for bad input (it is counted in
        :attr:`stats`)."""
        st = self.stats
        st.received += 1
        lock = self.source_lock
        if lock is not None and source is not None:
            if not lock.accept(source, self._now_ns()):
                st.foreign_source += 1
                return []
            st.source_changes = lock.source_changes
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
        # The pair confirms itself in either order: the two packets past the window may
        # arrive swapped, and the earlier of them must not be dropped as stray.
        if probe is None or probe.ssrc != pkt.ssrc:
            pair = None
        elif self._follows(probe, pkt):
            pair = (probe, pkt)
        elif self._follows(pkt, probe):
            pair = (pkt, probe)
        else:
            pair = None
        if pair is None:
            st.stray += 1  # this one waits; a replaced probe stays counted as stray
            return
        self._probe = None
        st.stray -= 1  # the probe is used after all
        first, then = pair
        first_off = seq_diff(first.seq, self._next_seq & 0xFFFF)
        if first.ssrc == self.ssrc and -MAX_MISORDER <= first_off <= MAX_DROPOUT:
            self._insert(first, self._next_seq + first_off)  # same stream after a loss burst
            self._insert(then, self._next_seq + seq_diff(then.seq, self._next_seq & 0xFFFF))
            return
        # a new stream (restarted sender, other source): finish the old one, start over
        st.resyncs += 1
        self._drain(partial=True)
        self._discontinuity = True
        self._start(first)
        self._insert(then, self._next_seq + seq_diff(then.seq, self._next_seq & 0xFFFF))

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
