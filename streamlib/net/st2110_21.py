"""SMPTE ST 2110-21 sender timing: the model's constants and a checker over receive times.

ST 2110-21 ("Traffic shaping and delivery timing for video") classifies a sender by two
receiver-side models, both fed with the packets' arrival times:

* the **network compatibility model** (a leaky bucket drained at one packet every
  ``TDRAIN``): its fill ``CINST`` must never exceed ``CMAX``;
* the **virtual receiver buffer** (``VRX``): packets of frame k are read one per
  ``TRS`` from ``TPR0 = epoch(k) + TROFFSET``; the buffer must never hold more than
  ``VRX_FULL`` packets and never underflow (a packet read before it arrived).

Type N (narrow, gapped read schedule), Type NL (narrow, linear schedule) and Type W
(wide) senders have their own ``CMAX``/``VRX_FULL`` (SDP ``TP=2110TPN``, ``2110TPNL``,
``2110TPW``). ``timing_model`` computes the constants of a format; ``analyze`` measures
``CINST`` and ``VRX`` from per-packet receive timestamps (e.g. ``SO_TIMESTAMPNS``) and
returns a ``Verdict``.

Formulas (ST 2110-21:2017 §6; the constants match EBU LIST, the EBU's reference
analyser, which was checked against them):

* ``RACTIVE`` (gapped): 1080/1125 for progressive formats (equal to 720/750) and
  1080i; 576/625 and 487/525 for 625/525-line interlace. Linear schedule: 1.
* ``TRS = TFRAME * RACTIVE / NPACKETS`` (1080p50, 4320 packets: 4.44 µs).
* ``TROFFSET`` default: 43/1125 TFRAME (progressive, >= 1080 lines), 28/750 (below
  1080), 22/1125, 26/625, 20/525 of the frame for interlace.
* narrow: ``CMAX = max(4, floor(NPACKETS / (43200 * RACTIVE * TFRAME)))``,
  ``VRX_FULL = max(8, floor(NPACKETS / (27000 * TFRAME)))``.
* wide: ``CMAX = max(16, floor(NPACKETS / (21600 * TFRAME)))``,
  ``VRX_FULL = max(720, floor(NPACKETS / (300 * TFRAME)))``.
* ``TDRAIN = TFRAME / NPACKETS / beta`` with beta = 1.1.

Simplifications, stated: ``CINST`` is counted as EBU LIST does (drain ticks every
``TDRAIN`` from the first packet; at each arrival ``CINST = max(0, CINST + 1 - ticks
since the last arrival)``, so a burst of B back-to-back packets reads B - 1); packet
sizes are not weighed (the standard's MAXIP 1500 bytes is assumed); reordered packets
are taken in arrival order. Without frame epochs (no PTP-locked sender) the VRX read
schedule is *fitted*: the frame cadence is the nominal frame period and ``TPR0`` of the
first frame is the latest that no packet arrives after its read time; VRX is then the
smallest buffer a receiver locked to the cadence needs, not the epoch-referenced
figure. Pass ``epochs_ns`` to use the real epochs (``TPR0 = epoch + TROFFSET``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from streamlib.errors import ConfigError

__all__ = ["TimingModel", "Verdict", "timing_model", "cinst", "vrx", "analyze",
           "frame_ids_from_markers", "SENDER_TYPES", "TP_BY_TYPE", "BETA"]

BETA = Fraction(11, 10)  # ST 2110-21 drain factor of the network compatibility model
SENDER_TYPES = ("narrow", "narrow_linear", "wide")
TP_BY_TYPE = {"narrow": "2110TPN", "narrow_linear": "2110TPNL", "wide": "2110TPW"}


def _fraction(fps: float | int | Fraction | str) -> Fraction:
    if isinstance(fps, Fraction):
        return fps
    if isinstance(fps, str):
        return Fraction(fps)
    if isinstance(fps, float):
        for base in (24, 30, 48, 60, 120):  # 29.97 and friends are never exact floats
            if abs(fps - base * 1000 / 1001) < 0.005:
                return Fraction(base * 1000, 1001)
        return Fraction(fps).limit_denominator(1001)
    return Fraction(fps)


@dataclass(frozen=True)
class TimingModel:
    """ST 2110-21 constants of one video format (times in ns, floats).

    ``tframe_ns`` is the period of the drain unit: the frame, or the field for
    interlace. ``trs_ns`` is the gapped schedule's packet time, ``trs_linear_ns`` the
    linear one's (``TFRAME / NPACKETS``).
    """

    n_packets: int
    tframe_ns: float
    height: int
    interlaced: bool
    ractive: Fraction
    trs_ns: float
    trs_linear_ns: float
    troffset_ns: float
    tdrain_ns: float
    cmax_narrow: int
    cmax_narrow_linear: int
    cmax_wide: int
    vrx_full_narrow: int
    vrx_full_wide: int

    def cmax(self, sender_type: str) -> int:
        """``CMAX`` of ``"narrow"``, ``"narrow_linear"`` or ``"wide"``."""
        return {"narrow": self.cmax_narrow, "narrow_linear": self.cmax_narrow_linear,
                "wide": self.cmax_wide}[sender_type]

    def vrx_full(self, sender_type: str) -> int:
        """``VRX_FULL`` of a sender type."""
        return self.vrx_full_wide if sender_type == "wide" else self.vrx_full_narrow


def _ractive(height: int, interlaced: bool) -> Fraction:
    # ST 2110-21 §6.3.2 (progressive) and §6.3.3 (interlace/PsF)
    if not interlaced:
        return Fraction(1080, 1125)
    if height < 576:
        return Fraction(487, 525)
    if height < 1080:
        return Fraction(576, 625)
    return Fraction(1080, 1125)


def _troffset_fraction(height: int, interlaced: bool) -> Fraction:
    if not interlaced:
        return Fraction(43, 1125) if height >= 1080 else Fraction(28, 750)
    if height < 576:
        return Fraction(20, 525)
    if height < 1080:
        return Fraction(26, 625)
    return Fraction(22, 1125)


def timing_model(n_packets: int, fps: float | int | Fraction | str, height: int, *,
                 interlaced: bool = False) -> TimingModel:
    """ST 2110-21 constants for ``n_packets`` per frame (per field when ``interlaced``)
    at ``fps`` frames per second and ``height`` lines. ``fps`` as a float maps 59.94
    to 60000/1001. Raises ConfigError for a non-positive count, rate or height.

    >>> m = timing_model(4320, 50, 1080)
    >>> round(m.trs_ns), m.cmax_narrow, m.vrx_full_narrow, m.cmax_wide, m.vrx_full_wide
    (4444, 5, 8, 16, 720)
    """
    rate = _fraction(fps)
    if n_packets < 1 or rate <= 0 or height < 1:
        raise ConfigError(f"timing_model: need n_packets >= 1, fps > 0, height >= 1; got "
                          f"{n_packets}, {fps!r}, {height}")
    # TFRAME is the drain unit's period: a field for interlace (two per frame)
    tframe = 1 / rate / (2 if interlaced else 1)
    ra = _ractive(height, interlaced)
    tro = _troffset_fraction(height, interlaced) / rate  # of the frame, in seconds
    n = n_packets
    return TimingModel(
        n_packets=n, tframe_ns=float(tframe * 10**9), height=height, interlaced=interlaced,
        ractive=ra, trs_ns=float(tframe * ra / n * 10**9), trs_linear_ns=float(tframe / n * 10**9),
        troffset_ns=float(tro * 10**9), tdrain_ns=float(tframe / n / BETA * 10**9),
        cmax_narrow=max(4, math.floor(n / (43200 * ra * tframe))),
        cmax_narrow_linear=max(4, math.floor(n / (43200 * tframe))),
        cmax_wide=max(16, math.floor(n / (21600 * tframe))),
        vrx_full_narrow=max(8, math.floor(n / (27000 * tframe))),
        vrx_full_wide=max(720, math.floor(n / (300 * tframe))))


def cinst(arrivals_ns: npt.ArrayLike, tdrain_ns: float) -> npt.NDArray[np.int64]:
    """Fill of the network compatibility bucket at each arrival (EBU LIST convention:
    ticks every ``tdrain_ns`` from the first arrival; ``c = max(0, c + 1 - ticks)``).
    Packets that arrive ``tdrain_ns`` or more apart read 0; a burst of B read B - 1.
    Raises ConfigError for a non-positive ``tdrain_ns``."""
    if not tdrain_ns > 0:
        raise ConfigError(f"cinst: tdrain_ns must be > 0, got {tdrain_ns}")
    t = np.asarray(arrivals_ns, dtype=np.int64)
    out = np.zeros(t.size, np.int64)
    if t.size == 0:
        return out
    ticks = np.floor((t - t[0]) / tdrain_ns).astype(np.int64)
    cleared = np.diff(ticks, prepend=ticks[0]).tolist()
    c = 0
    res = [0] * t.size
    for i in range(1, t.size):  # a Lindley recursion: sequential by nature
        c = c + 1 - cleared[i]
        if c < 0:
            c = 0
        res[i] = c
    out[:] = res
    return out


def frame_ids_from_markers(markers: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Frame index of each packet from RTP marker bits (the marker closes a frame)."""
    m = np.asarray(markers, dtype=bool)
    return np.concatenate(([0], np.cumsum(m[:-1]))).astype(np.int64) if m.size else \
        np.zeros(0, np.int64)


def _frame_index(frame_ids: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(frame number 0.., index in frame 0..) per packet from any per-frame label."""
    ids = np.asarray(frame_ids)
    if ids.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    new = np.concatenate(([True], ids[1:] != ids[:-1]))
    frame = np.cumsum(new).astype(np.int64) - 1
    starts = np.flatnonzero(new)
    j = np.arange(ids.size, dtype=np.int64) - starts[frame]
    return frame, j


@dataclass(frozen=True)
class VRXResult:
    """Virtual receiver buffer over a capture: ``peak`` and ``min`` fill at arrivals,
    ``late`` packets that arrived after their read time (underflow), ``tpr0_ns`` of the
    first frame, ``alignment`` ``"epoch"`` or ``"fitted"``."""

    peak: int
    min: int
    late: int
    tpr0_ns: float
    alignment: str


def vrx(arrivals_ns: npt.ArrayLike, frame_ids: npt.ArrayLike, trs_ns: float, tframe_ns: float,
        *, epochs_ns: npt.ArrayLike | None = None, troffset_ns: float = 0.0,
        per_frame: bool = False) -> VRXResult:
    """Virtual receiver buffer fill at each arrival: packets arrived so far minus packets
    read, frame k's packet j being read at ``TPR0(k) + j * trs_ns`` (reads counted when
    their time is <= the arrival time, as EBU LIST does).

    ``epochs_ns`` (one per frame, the receive clock's time of each frame's epoch):
    ``TPR0(k) = epochs_ns[k] + troffset_ns``. Without it the schedule is fitted:
    ``TPR0(k) = T0 + k * tframe_ns`` with the smallest ``T0`` for which no packet is late.
    ``per_frame=True`` fits each frame's ``TPR0`` on its own (EBU LIST's "first packet
    each frame" kind; alignment ``"frame"``): it leaves out frame-start jitter and so
    measures only the pacing inside frames, a weaker test than a fixed cadence.
    Raises ConfigError when the arrays differ in length or ``epochs_ns`` is too short.
    """
    t = np.asarray(arrivals_ns, dtype=np.int64)
    frame, j = _frame_index(frame_ids)
    if frame.size != t.size:
        raise ConfigError(f"vrx: {t.size} arrivals but {frame.size} frame ids")
    if t.size == 0:
        return VRXResult(0, 0, 0, 0.0, "fitted" if epochs_ns is None else "epoch")
    nf = int(frame[-1]) + 1
    rel = (t - t[0]).astype(np.float64)  # float ns relative to the first arrival
    if epochs_ns is not None:
        ep = np.asarray(epochs_ns, dtype=np.int64)
        if ep.size < nf:
            raise ConfigError(f"vrx: {nf} frames but {ep.size} epochs")
        tpr0 = (ep[:nf] - t[0]).astype(np.float64) + troffset_ns
        alignment = "epoch"
    elif per_frame:
        starts = np.flatnonzero(np.concatenate(([True], frame[1:] != frame[:-1])))
        tpr0 = np.maximum.reduceat(rel - j * trs_ns, starts)
        alignment = "frame"
    else:
        t0 = float(np.max(rel - frame * tframe_ns - j * trs_ns))
        tpr0 = t0 + np.arange(nf, dtype=np.float64) * tframe_ns
        alignment = "fitted"
    counts = np.bincount(frame, minlength=nf).astype(np.int64)
    before = np.concatenate(([0], np.cumsum(counts)))  # packets of frames < k

    def reads(k: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        ok = (k >= 0) & (k < nf)
        kc = np.clip(k, 0, nf - 1)
        r = np.floor((rel - tpr0[kc]) / trs_ns).astype(np.int64) + 1
        return np.where(ok, np.clip(r, 0, counts[kc]), 0)

    # frames before k-1 are fully read by now; k-1, k, k+1 may be part-way
    km1 = np.maximum(frame - 1, 0)
    read = before[km1] + reads(frame - 1) * (frame >= 1) + reads(frame) + reads(frame + 1)
    fill = np.arange(1, t.size + 1, dtype=np.int64) - read
    late = int(np.count_nonzero(rel > tpr0[frame] + j * trs_ns + 1e-6))
    return VRXResult(int(fill.max()), int(fill.min()), late, float(tpr0[0]) + float(t[0]),
                     alignment)


@dataclass(frozen=True)
class Verdict:
    """What a capture shows about a sender.

    ``sender_type``: the tightest class met, ``"narrow"``, ``"narrow_linear"``,
    ``"wide"`` or ``"none"``; ``meets(type)`` checks one class on its own.
    ``cinst_max``: peak ``CINST``; ``vrx_gapped``/``vrx_linear``: the buffer against
    each read schedule; ``frames``, ``packets``: what was analysed; ``model``: the
    constants compared against.
    """

    sender_type: str
    cinst_max: int
    vrx_gapped: VRXResult
    vrx_linear: VRXResult
    frames: int
    packets: int
    model: TimingModel

    def meets(self, sender_type: str) -> bool:
        """Whether the capture meets ``"narrow"``, ``"narrow_linear"`` or ``"wide"``.
        Raises ConfigError for another name."""
        m = self.model
        if sender_type == "narrow":
            return self.cinst_max <= m.cmax_narrow and _fits(self.vrx_gapped, m.vrx_full_narrow)
        if sender_type == "narrow_linear":
            return self.cinst_max <= m.cmax_narrow_linear and _fits(self.vrx_linear,
                                                                    m.vrx_full_narrow)
        if sender_type == "wide":
            return self.cinst_max <= m.cmax_wide and (
                _fits(self.vrx_gapped, m.vrx_full_wide) or _fits(self.vrx_linear,
                                                                 m.vrx_full_wide))
        raise ConfigError(f"sender type must be one of {SENDER_TYPES}, got {sender_type!r}")

    def summary(self) -> str:
        """One line: type, CINST against the CMAXs, VRX peaks against VRX_FULL."""
        m = self.model
        return (f"{self.sender_type}: Cinst max {self.cinst_max} (Cmax N {m.cmax_narrow} / "
                f"W {m.cmax_wide}), VRX gapped {self.vrx_gapped.peak} (late "
                f"{self.vrx_gapped.late}), linear {self.vrx_linear.peak} (late "
                f"{self.vrx_linear.late}) (VRX_FULL N {m.vrx_full_narrow} / W "
                f"{m.vrx_full_wide}, {self.vrx_gapped.alignment}); {self.frames} frames, "
                f"{self.packets} packets, Trs {m.trs_ns / 1000:.2f} us")


def _fits(r: VRXResult, full: int) -> bool:
    return r.late == 0 and r.peak <= full


def analyze(arrivals_ns: npt.ArrayLike, frame_ids: npt.ArrayLike, model: TimingModel, *,
            epochs_ns: npt.ArrayLike | None = None) -> Verdict:
    """Classify a sender from its packets' receive times (ns, arrival order) and a
    per-packet frame label (RTP timestamp, or ``frame_ids_from_markers``). Partial first
    and last frames should be cut off by the caller. ``epochs_ns``: see ``vrx``.
    Raises ConfigError for mismatched lengths or an empty capture."""
    t = np.asarray(arrivals_ns, dtype=np.int64)
    if t.size == 0:
        raise ConfigError("analyze: no packets")
    frame, _ = _frame_index(frame_ids)
    if frame.size != t.size:
        raise ConfigError(f"analyze: {t.size} arrivals but {frame.size} frame ids")
    c = int(cinst(t, model.tdrain_ns).max())
    gapped = vrx(t, frame_ids, model.trs_ns, model.tframe_ns, epochs_ns=epochs_ns,
                 troffset_ns=model.troffset_ns)
    linear = vrx(t, frame_ids, model.trs_linear_ns, model.tframe_ns, epochs_ns=epochs_ns,
                 troffset_ns=model.troffset_ns)
    v = Verdict("none", c, gapped, linear, int(frame[-1]) + 1, int(t.size), model)
    for kind in SENDER_TYPES:
        if v.meets(kind):
            return Verdict(kind, c, gapped, linear, v.frames, v.packets, model)
    return v
