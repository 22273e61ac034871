"""ST 2110-20 receiver core: reassembles RFC 4175 packets into frames.

Packets are placed by their own coordinates (SRD line + pixel offset), so order
within a frame never matters; a frame is identified by its RTP timestamp and held
in one of ``max_pending`` slots until it is complete (every pgroup covered), or
the jitter window runs out. Incomplete frames are never passed off as complete:
``policy="conceal"`` repeats the previous frame's data for each missing line and
flags the frame (``complete=False``, ``missing_lines``), ``policy="drop"`` drops it.

Counting (``ReceiverStats``), RFC 3550 style on the 16-bit sequence number (the
RFC 4175 extended sequence number is ignored: FFmpeg and GStreamer send 0):
``received`` unique packets with a valid header (late ones included); ``lost`` =
expected (highest - first + 1) - received, never below 0; ``late``: arrived
after their frame was output; ``duplicate``: sequence number seen before;
``malformed``: too short, RTP version != 2, bad CSRC/extension/padding, wrong
payload type, interlaced (F=1), SRDs outside the frame, off the pgroup grid, or
lengths past the packet end; ``foreign_ssrc``: well-formed packets of another
SSRC than the one the receiver is locked to; ``foreign_source``: datagrams from
another sender address than the receiver's source lock allows
(``streamlib.net.source_lock``: counted and dropped by ``VideoStreamReceiver``
before they reach the assembler). Malformed and foreign packets are
dropped whole before any byte is written, and every write is bounds-checked
against the frame, so no packet can write outside the frame buffer (the fuzz
tests check guard bytes around it). Every datagram lands in exactly one of
``received``, ``duplicate``, ``malformed``, ``foreign_ssrc`` and ``foreign_source``.

SSRC rule: with ``ssrc=`` given, only that SSRC is accepted, ever. Without it the
receiver locks to the SSRC of the first well-formed packet and keeps it while it
is alive; a packet of another SSRC takes the lock only once the locked SSRC has
sent nothing for ``idle_timeout_ms`` (a restarted sender: a new random SSRC, new
sequence numbers and timestamps). A second sender on the same port therefore
never corrupts or completes the locked stream's frames. On such a change
(``ssrc_changes``) sequence tracking restarts, so the old stream's counts stand
and the new one is counted from its own first packet.

The per-packet work runs in one numba kernel (``streamlib.net.assembly_kernel``;
``nogil``: the receive thread does not hold the GIL while it runs); without numba
the same function runs as plain Python (slow, correct). The receive thread,
``VideoStreamReceiver``, is ``streamlib.net.jitter``, which re-exports every public
name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from streamlib.net.assembly_kernel import (
    _BASE, _CARRY_EXPECTED, _COVERED, _DUP, _EXT_BASE, _FOREIGN, _HAVE_EMITTED, _HAVE_SEQ,
    _HIGHEST, _LAST_TS, _LATE, _MALFORMED, _MARKER, _NOW_NS, _NSTATE, _PACKETS, _PENDING_TS,
    _RECEIVED, _RELOCK_NS, _SSRC, _SSRC_CHANGES, _SSRC_FIXED, _SSRC_LOCKED, _WRONG_PT, _BYTES,
    assemble_kernel,
)
from streamlib.net.pgroup import VideoFormat, parse_format
from streamlib.errors import ConfigError

__all__ = ["FrameAssembler", "AssembledFrame", "ReceiverStats", "Policy", "GUARD"]

Policy = Literal["conceal", "drop"]
GUARD = 64  # guard bytes either side of each frame slot, checked by tests


@dataclass(frozen=True)
class AssembledFrame:
    """A reassembled frame: ``data`` is its pgroup buffer (owned by the frame)."""

    rtp_timestamp: int
    data: npt.NDArray[np.uint8]
    complete: bool
    missing_lines: int        # lines that were incomplete (concealed ones included)
    concealed: bool           # missing lines were filled from the previous frame (or black)
    packets: int
    marker: bool
    first_arrival_ns: int


@dataclass
class ReceiverStats:
    """Packet and frame counters (see the module docstring for the definitions)."""

    received: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    malformed: int = 0
    wrong_payload_type: int = 0
    foreign_ssrc: int = 0       # well-formed packets of another SSRC, dropped
    ssrc_changes: int = 0       # the lock moved to a new SSRC (ssrc=None only)
    ssrc: int | None = None     # the SSRC locked to (None: nothing received yet)
    foreign_source: int = 0     # datagrams from another sender address, dropped
    source_changes: int = 0     # the source lock moved to a new sender address
    source: str | None = None   # the sender address locked to (None: none yet / no lock)
    bytes: int = 0
    frames_complete: int = 0
    frames_concealed: int = 0
    frames_dropped: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("extra", "ssrc", "source")}
        d.update(self.extra)
        return d


@dataclass
class _Slot:
    ts: int = -1
    first_ns: int = 0
    last_ns: int = 0
    newest_seen_ns: int = 0


def _black_line(fmt: VideoFormat, width: int) -> npt.NDArray[np.uint8]:
    """One line of black pgroups (Y at its floor, Cb/Cr mid-scale; RGB 0)."""
    from streamlib.net.pgroup import planes_to_ycbcr422_10  # noqa: PLC0415 - avoid an import cycle at load

    half = width // fmt.pgroup_pixels
    if fmt.sampling == "RGB":
        return np.zeros(fmt.line_bytes(width), np.uint8)
    if fmt.depth == 10:
        c, y = np.full((1, half), 512, np.int32), np.full((1, half), 64, np.int32)
        return planes_to_ycbcr422_10(c, y, c, y)
    return np.tile(np.array([128, 16, 128, 16], np.uint8), half)


class FrameAssembler:
    """Turns RFC 4175 datagrams into frames (see the module docstring).

    Args:
        fmt: ``"YCbCr-4:2:2/10"``, ``"YCbCr-4:2:2/8"`` or ``"RGB/8"``.
        width, height: frame size in pixels.
        payload_type: accept only this RTP payload type (None: any).
        jitter_ms: how long an incomplete frame waits for reordered packets once a
            newer frame has started arriving.
        idle_timeout_ms: an incomplete frame with no newer frame is finalised after
            this long without packets.
        policy: ``"conceal"`` or ``"drop"`` for incomplete frames.
        max_pending: frames assembled at once (older ones are finalised to make room).
        compiled: use the numba kernel when available.
        ssrc: accept only this SSRC (None: lock to the first one seen and move on only
            after ``idle_timeout_ms`` of silence from it; see the module docstring).

    Raises ConfigError for a bad format/size/policy/window/ssrc.
    """

    def __init__(self, fmt: str | VideoFormat, width: int, height: int, *,
                 payload_type: int | None = 96, jitter_ms: float = 5.0,
                 idle_timeout_ms: float = 100.0, policy: Policy = "conceal",
                 max_pending: int = 3, compiled: bool = True,
                 ssrc: int | None = None) -> None:
        self.format = parse_format(fmt)
        if not 1 <= height <= 0x7FFF or not 1 <= width <= 0x7FFF:
            raise ConfigError(f"FrameAssembler: {width}x{height} is outside 1..32767")
        self.line_bytes = self.format.line_bytes(width)
        if policy not in ("conceal", "drop"):
            raise ConfigError(f"FrameAssembler: policy must be 'conceal' or 'drop', got {policy!r}")
        if jitter_ms < 0 or idle_timeout_ms <= 0:
            raise ConfigError(f"FrameAssembler: jitter_ms must be >= 0 and idle_timeout_ms > 0, "
                              f"got {jitter_ms}, {idle_timeout_ms}")
        if max_pending < 1:
            raise ConfigError(f"FrameAssembler: max_pending must be >= 1, got {max_pending}")
        if ssrc is not None and (isinstance(ssrc, bool) or not isinstance(ssrc, int)
                                 or not 0 <= ssrc <= 0xFFFFFFFF):
            raise ConfigError(f"FrameAssembler: ssrc must be a 32-bit unsigned int or None, "
                              f"got {ssrc!r}")
        self.width, self.height, self.policy = width, height, policy
        self.payload_type = -1 if payload_type is None else payload_type
        self.jitter_ns = int(jitter_ms * 1e6)
        self.idle_ns = int(idle_timeout_ms * 1e6)
        self.frame_bytes = self.line_bytes * height
        self.npg = width // self.format.pgroup_pixels * height
        self._kernel = assemble_kernel(compiled)
        self._st = np.zeros(_NSTATE, np.int64)
        self._st[_EXT_BASE] = 1 << 32
        self._st[_RELOCK_NS] = self.idle_ns
        if ssrc is not None:
            self._st[_SSRC_LOCKED], self._st[_SSRC], self._st[_SSRC_FIXED] = 1, ssrc, 1
        self._seen = np.full(65536, -1, np.int64)
        k = max_pending
        self._slot_ts = np.full(k, -1, np.int64)
        self.slot_buf = np.zeros((k, self.frame_bytes + 2 * GUARD), np.uint8)
        self.slot_buf[:, :GUARD] = 0xA5
        self.slot_buf[:, GUARD + self.frame_bytes:] = 0xA5
        self._cov = np.zeros((k, self.npg), np.uint8)
        self._meta = np.zeros((k, 4), np.int64)
        self._slots = [_Slot() for _ in range(k)]
        self._previous: npt.NDArray[np.uint8] | None = None
        self._frames_complete = self._frames_concealed = self._frames_dropped = 0
        self.max_late_ticks = 90000  # 1 s of 90 kHz: older timestamps mean a new stream

    # -- feeding ----------------------------------------------------------------------
    def push_batch(self, bufs: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64],
                   n: int, now_ns: int) -> list[AssembledFrame]:
        """Take datagrams ``bufs[:n]`` (rows, sizes in ``lengths``) arrived at ``now_ns``;
        return the frames that finished, oldest first. A size equal to the row length
        counts as truncated (malformed)."""
        rows = np.ascontiguousarray(bufs)
        width = rows.shape[1]
        lens = np.where(np.asarray(lengths[:n]) >= width, 0, lengths[:n]).astype(np.int64)
        offs = np.arange(n, dtype=np.int64) * width
        return self.push_segments(rows.reshape(-1), offs, lens, n, now_ns)

    def push_segments(self, flat: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64],
                      lengths: npt.NDArray[np.int64], n: int,
                      now_ns: int) -> list[AssembledFrame]:
        """Take datagrams ``flat[offsets[i] : offsets[i] + lengths[i]]`` for i < n,
        arrived at ``now_ns``; return the frames that finished, oldest first."""
        out: list[AssembledFrame] = []
        i = 0
        self._st[_NOW_NS] = now_ns
        touched_before = self._meta[:, _PACKETS].copy()
        while True:
            i = int(self._kernel(flat, offsets, lengths, i, n, self.payload_type, self._st,
                                 self._seen,
                                 self._slot_ts, self.slot_buf, self._cov, self._meta,
                                 self.width, self.height, self.format.pgroup_bytes,
                                 self.format.pgroup_pixels, self.max_late_ticks, GUARD))
            self._note_arrivals(touched_before, now_ns)
            out.extend(self._emit_complete())
            if i >= n:
                break
            out.extend(self._open_slot(int(self._st[_PENDING_TS]), now_ns))
            touched_before = self._meta[:, _PACKETS].copy()
        out.extend(self.poll(now_ns))
        return out

    def push(self, packet: bytes | bytearray | memoryview, now_ns: int) -> list[AssembledFrame]:
        """One datagram (convenience for tests and slow paths)."""
        data = np.frombuffer(bytes(packet), np.uint8)
        return self.push_segments(data, np.zeros(1, np.int64),
                                  np.array([data.size], np.int64), 1, now_ns)

    def poll(self, now_ns: int) -> list[AssembledFrame]:
        """Finalise frames whose window has run out (call when no packets arrive)."""
        out: list[AssembledFrame] = []
        while True:
            order = self._pending_order()
            if not order:
                return out
            oldest = order[0]
            s = self._slots[oldest]
            newer_started = [self._slots[j].first_ns for j in order[1:]]
            quiet = now_ns - s.last_ns
            # After the marker (the frame's last packet) only reordering can still bring
            # packets: the jitter window applies; without it, the idle timeout.
            expired = (bool(newer_started) and now_ns - min(newer_started) >= self.jitter_ns) \
                or quiet >= self.idle_ns or (bool(self._meta[oldest, _MARKER])
                                              and quiet >= self.jitter_ns)
            if not expired:
                return out
            out.extend(self._finalize(oldest))

    def flush(self) -> list[AssembledFrame]:
        """Finalise every pending frame (end of stream), oldest first."""
        out: list[AssembledFrame] = []
        for k in self._pending_order():
            out.extend(self._finalize(k))
        return out

    # -- slots ------------------------------------------------------------------------
    def _ts_key(self, ts: int, ref: int) -> int:
        return ((ts - ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000

    def _pending_order(self) -> list[int]:
        live = [k for k in range(len(self._slots)) if self._slot_ts[k] >= 0]
        if not live:
            return []
        ref = int(self._slot_ts[live[0]])
        return sorted(live, key=lambda k: self._ts_key(int(self._slot_ts[k]), ref))

    def _note_arrivals(self, before: npt.NDArray[np.int64], now_ns: int) -> None:
        for k in np.nonzero(self._meta[:, _PACKETS] != before)[0]:
            s = self._slots[int(k)]
            if s.first_ns == 0:
                s.first_ns = now_ns
            s.last_ns = now_ns

    def _open_slot(self, ts: int, now_ns: int) -> list[AssembledFrame]:
        out: list[AssembledFrame] = []
        free = [k for k in range(len(self._slots)) if self._slot_ts[k] < 0]
        if not free:
            order = self._pending_order()
            # Full: the oldest pending frame is finalised (incomplete) to make room.
            out.extend(self._finalize(order[0]))
            free = [order[0]]
        k = free[0]
        self._slot_ts[k] = ts
        self._cov[k] = 0
        self._meta[k] = 0
        self._slots[k] = _Slot(ts, 0, now_ns)
        return out

    def _emit_complete(self) -> list[AssembledFrame]:
        out: list[AssembledFrame] = []
        order = self._pending_order()
        for idx, k in enumerate(order):
            if self._meta[k, _COVERED] == self.npg:
                # Everything older is overdue: a newer frame has fully arrived.
                for older in order[:idx]:
                    if self._slot_ts[older] >= 0:
                        out.extend(self._finalize(older))
                out.extend(self._finalize(k))
        return out

    def _finalize(self, k: int) -> list[AssembledFrame]:
        ts = int(self._slot_ts[k])
        meta = self._meta[k]
        complete = bool(meta[_COVERED] == self.npg)
        s = self._slots[k]
        self._slot_ts[k] = -1
        self._st[_HAVE_EMITTED] = 1
        self._st[_LAST_TS] = ts
        data = self.slot_buf[k, GUARD:GUARD + self.frame_bytes].copy()
        missing = 0
        if not complete:
            rows = self._cov[k].reshape(self.height, -1).all(axis=1)
            missing_idx = np.nonzero(~rows)[0]
            missing = int(missing_idx.size)
            if self.policy == "drop":
                self._frames_dropped += 1
                return []
            lines = data.reshape(self.height, self.line_bytes)
            if self._previous is not None:
                lines[missing_idx] = self._previous.reshape(self.height, -1)[missing_idx]
            else:
                lines[missing_idx] = _black_line(self.format, self.width)
            self._frames_concealed += 1
        else:
            self._frames_complete += 1
        self._previous = data
        return [AssembledFrame(ts, data, complete, missing, not complete, int(meta[_PACKETS]),
                               bool(meta[_MARKER]), s.first_ns)]

    # -- introspection ----------------------------------------------------------------
    @property
    def stats(self) -> ReceiverStats:
        st = self._st
        expected = int(st[_CARRY_EXPECTED]) + (
            int(st[_HIGHEST] - st[_BASE] + 1) if st[_HAVE_SEQ] else 0)
        return ReceiverStats(
            received=int(st[_RECEIVED]), lost=max(0, expected - int(st[_RECEIVED])),
            late=int(st[_LATE]), duplicate=int(st[_DUP]), malformed=int(st[_MALFORMED]),
            wrong_payload_type=int(st[_WRONG_PT]), foreign_ssrc=int(st[_FOREIGN]),
            ssrc_changes=int(st[_SSRC_CHANGES]),
            ssrc=int(st[_SSRC]) if st[_SSRC_LOCKED] else None, bytes=int(st[_BYTES]),
            frames_complete=self._frames_complete, frames_concealed=self._frames_concealed,
            frames_dropped=self._frames_dropped)

    def guards_intact(self) -> bool:
        """True when no write ever touched the guard bytes around the frame slots."""
        g = self.slot_buf
        return bool((g[:, :GUARD] == 0xA5).all() and (g[:, GUARD + self.frame_bytes:] == 0xA5).all())

    @property
    def pending(self) -> int:
        """Frames being assembled."""
        return int((self._slot_ts >= 0).sum())
