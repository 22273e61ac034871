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

This module holds the packetizer; the rest lives in ``audio_codec`` (formats,
sample codec, ``rtp_to_ns``), ``audio_depacketizer`` (receive side) and
``pacing`` (``PacedSender``, ``pace_schedule``); every public name is re-exported
here.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from streamlib.net.audio_codec import ENCODINGS, AudioFormat, decode_samples, encode_samples, rtp_to_ns
from streamlib.net.audio_depacketizer import AudioDepacketizer, AudioReceiveStats
from streamlib.net.pacing import PacedSender, pace_schedule
from streamlib.net.rtp import MAX_UDP_PAYLOAD, RTP_HEADER_SIZE, pack_header
from streamlib.errors import ConfigError, FrameValidationError

__all__ = [
    "ENCODINGS", "AudioDepacketizer", "AudioFormat", "AudioPacketizer", "AudioReceiveStats",
    "PacedSender", "decode_samples", "encode_samples", "pace_schedule", "rtp_to_ns",
]

_NS = 1_000_000_000


class AudioPacketizer:
    """Float sample blocks -> RTP packets of ``ptime_ms`` each, continuous across blocks.

    ``push(data, time_ns)`` returns the packets completed by ``data`` (samples
    left over wait for the next block). Packet ``k`` after an anchor carries
    ``timestamp = anchor + k * samples_per_packet`` (mod 2**32); the marker bit
    is set on the first packet after each anchor. Not thread-safe.

    Raises:
        ConfigError: ptime not a whole number of samples, or a packet larger than
            ST 2110-10's 1460-byte UDP payload; bad payload_type/ssrc.
    """

    def __init__(self, fmt: AudioFormat, *, ptime_ms: float = 1.0, payload_type: int = 97,
                 ssrc: int | None = None, first_sequence: int | None = None,
                 resync_ms: float = 2.0) -> None:
        self.format = fmt
        self.samples_per_packet = fmt.samples_for_ms(ptime_ms, "ptime_ms")
        self.payload_bytes = self.samples_per_packet * fmt.frame_bytes
        if self.payload_bytes + RTP_HEADER_SIZE > MAX_UDP_PAYLOAD:
            raise ConfigError(
                f"ptime_ms: {ptime_ms} ms of {fmt.channels}-channel {fmt.encoding} is "
                f"{self.payload_bytes} payload bytes; RTP packets must fit {MAX_UDP_PAYLOAD} bytes")
        if isinstance(payload_type, bool) or not isinstance(payload_type, int) or \
                not 0 <= payload_type <= 127:
            raise ConfigError(f"payload_type must be an int in 0..127, got {payload_type!r}")
        if ssrc is not None and not (isinstance(ssrc, int) and 0 <= ssrc <= 0xFFFFFFFF):
            raise ConfigError(f"ssrc must be a 32-bit unsigned int or None, got {ssrc!r}")
        if not (isinstance(resync_ms, (int, float)) and resync_ms >= 0):
            raise ConfigError(f"resync_ms must be a number >= 0, got {resync_ms!r}")
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

        Raises FrameValidationError when the channel count differs from the format's.
        """
        arr = np.asarray(data)
        if arr.ndim != 2 or arr.shape[1] != self.format.channels:
            raise FrameValidationError(f"expected samples shaped (n, {self.format.channels}), got {arr.shape}")
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
