"""RTP fixed header (RFC 3550), packed into and parsed from reused buffers.

Only what ST 2110 uses: version 2, no padding, no extension, no CSRCs on send;
on receive, padding/extension/CSRCs are skipped correctly so peers that use
them still parse. Timestamps follow ST 2110-10: media clock ticks since the
epoch of the tick's timebase (PTP/TAI, or the clock's own), modulo 2**32.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from streamlib.errors import RTPError

RTP_HEADER_SIZE = 12
RTP_VERSION = 2
# ST 2110-10: the UDP payload (RTP header included) never exceeds 1460 bytes.
MAX_UDP_PAYLOAD = 1460

_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RTPHeader:
    payload_type: int
    sequence: int          # 16-bit
    timestamp: int         # 32-bit media clock
    ssrc: int
    marker: bool = False
    payload_offset: int = RTP_HEADER_SIZE  # where the payload starts in the datagram
    payload_end: int = 0                   # end of payload (padding excluded)


def pack_header(buf: bytearray | memoryview, *, payload_type: int, sequence: int,
                timestamp: int, ssrc: int, marker: bool = False, offset: int = 0) -> None:
    """Write a 12-byte RTP header into ``buf`` at ``offset`` (no allocation)."""
    _HEADER.pack_into(
        buf, offset, RTP_VERSION << 6, (int(marker) << 7) | (payload_type & 0x7F),
        sequence & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF,
    )


def parse_header(data: bytes | bytearray | memoryview) -> RTPHeader:
    """Parse an RTP datagram's header; RTPError on anything malformed."""
    n = len(data)
    if n < RTP_HEADER_SIZE:
        raise RTPError(f"RTP packet too short: {n} bytes")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
    if b0 >> 6 != RTP_VERSION:
        raise RTPError(f"RTP version {b0 >> 6}, expected 2")
    offset = RTP_HEADER_SIZE + 4 * (b0 & 0x0F)  # CSRCs
    if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if n < offset + 4:
            raise RTPError("RTP extension header past the packet end")
        (words,) = struct.unpack_from("!H", data, offset + 2)
        offset += 4 + 4 * words
    end = n
    if b0 & 0x20:  # padding: the last byte counts padding bytes
        pad = data[n - 1]
        if pad == 0 or pad > n - offset:
            raise RTPError(f"RTP padding length {pad} is invalid")
        end = n - pad
    if offset > end:
        raise RTPError("RTP header longer than the packet")
    return RTPHeader(b1 & 0x7F, seq, ts, ssrc, bool(b1 & 0x80), offset, end)


def media_timestamp(time_ns: int, clock_rate: int) -> int:
    """ST 2110-10 RTP timestamp: ``time * rate`` (integer, floor) modulo 2**32."""
    return (time_ns * clock_rate // 1_000_000_000) & 0xFFFFFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between 16-bit sequence numbers (wrap-aware)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000
