"""RFC 4175 (ST 2110-20) RTP payload for uncompressed video: packets built into
reused buffers, and a byte-exact parser/serialiser for captures and tests.

Payload layout after the 12-byte RTP header::

    extended sequence number (16 bits: the high half of a 32-bit sequence)
    sample row data headers (SRD), 6 bytes each:
        length (16) | F (1) line number (15) | C (1) pixel offset (15)
      C=1: another SRD follows
    pixel data of each SRD in order, in pgroups

``VideoPacketizer`` computes a frame's packet layout once per format (ST 2110-20
general packing mode: lines may span packets, a packet may hold up to 3 SRDs,
no UDP payload above 1460 bytes) into a ``(packets, header)`` uint8 array whose
RTP sequence numbers and timestamp are restamped per frame with a few numpy
writes; pixel data never moves: each packet is ``header[i]`` + a slice of the
frame's pgroup buffer, sent gather-style (two iovecs, sendmmsg) or copied into
reused contiguous buffers (``build``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
import numpy as np
import numpy.typing as npt

from streamlib.net.pgroup import VideoFormat, parse_format
from streamlib.errors import ConfigError, FrameValidationError, RTPError
from streamlib.net.rtp import MAX_UDP_PAYLOAD, RTP_HEADER_SIZE, RTP_VERSION
from streamlib.net.mmsg import MessageVector

__all__ = ["SRD", "VideoPacket", "VideoPacketizer", "parse_packet", "serialize_packet",
           "SRD_SIZE", "PAYLOAD_HEADER_SIZE", "MAX_SRDS_SENT", "split_packets", "join_packets"]

SRD_SIZE = 6
PAYLOAD_HEADER_SIZE = 2  # extended sequence number
MAX_SRDS_SENT = 3        # what we put in one packet; the parser accepts more
MAX_SRDS_PARSED = 32
_SRD = struct.Struct("!HHH")


@dataclass(frozen=True, slots=True)
class SRD:
    """One sample row data header: ``length`` octets of line ``line`` from pixel ``offset``."""

    length: int
    line: int
    offset: int
    field: int = 0
    continuation: bool = False


@dataclass(frozen=True)
class VideoPacket:
    """A parsed RFC 4175 datagram, complete enough to re-serialise byte for byte.

    ``data`` is the concatenated pixel data of the SRDs; ``trailer`` holds bytes
    between the end of that data and the end of the payload (normally empty);
    ``extension`` is the RTP header extension (profile + body) or None;
    ``padding`` the RTP padding bytes (last byte = their count) or empty.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool
    ext_sequence: int
    srds: tuple[SRD, ...]
    data: bytes
    csrcs: tuple[int, ...] = ()
    extension: bytes | None = None
    padding: bytes = b""
    trailer: bytes = b""

    @property
    def full_sequence(self) -> int:
        """32-bit extended sequence number (ext << 16 | seq)."""
        return (self.ext_sequence << 16) | self.sequence


def parse_packet(data: bytes | bytearray | memoryview) -> VideoPacket:
    """Parse one RFC 4175 datagram. Raises RTPError (a ValueError) naming the problem:
    too short, RTP version not 2, bad CSRC/extension/padding lengths, no SRD, more
    than 32 SRDs, or SRD lengths past the packet end. Frame bounds are not checked
    here (the receiver checks them against its format)."""
    buf = bytes(data)
    n = len(buf)
    if n < RTP_HEADER_SIZE + PAYLOAD_HEADER_SIZE + SRD_SIZE:
        raise RTPError(f"RFC 4175 packet too short: {n} bytes")
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", buf, 0)
    if b0 >> 6 != RTP_VERSION:
        raise RTPError(f"RTP version {b0 >> 6}, expected 2")
    cc = b0 & 0x0F
    off = RTP_HEADER_SIZE + 4 * cc
    if off > n:
        raise RTPError(f"{cc} CSRCs past the packet end")
    csrcs = struct.unpack_from(f"!{cc}I", buf, RTP_HEADER_SIZE) if cc else ()
    extension = None
    if b0 & 0x10:
        if off + 4 > n:
            raise RTPError("RTP extension header past the packet end")
        (words,) = struct.unpack_from("!H", buf, off + 2)
        if off + 4 + 4 * words > n:
            raise RTPError("RTP extension body past the packet end")
        extension = buf[off:off + 4 + 4 * words]
        off += 4 + 4 * words
    end, padding = n, b""
    if b0 & 0x20:
        pad = buf[-1]
        if pad == 0 or pad > n - off:
            raise RTPError(f"RTP padding length {pad} is invalid")
        end, padding = n - pad, buf[n - pad:]
    if off + PAYLOAD_HEADER_SIZE + SRD_SIZE > end:
        raise RTPError("RFC 4175 payload has no room for a sample row data header")
    (ext,) = struct.unpack_from("!H", buf, off)
    h = off + PAYLOAD_HEADER_SIZE
    srds: list[SRD] = []
    while True:
        if len(srds) >= MAX_SRDS_PARSED:
            raise RTPError(f"more than {MAX_SRDS_PARSED} sample row data headers")
        if h + SRD_SIZE > end:
            raise RTPError("sample row data header past the payload end")
        length, fl, co = _SRD.unpack_from(buf, h)
        srd = SRD(length, fl & 0x7FFF, co & 0x7FFF, fl >> 15, bool(co >> 15))
        srds.append(srd)
        h += SRD_SIZE
        if not srd.continuation:
            break
    total = sum(s.length for s in srds)
    if h + total > end:
        raise RTPError(f"SRD lengths ({total} bytes) run past the payload end "
                       f"({end - h} bytes of data)")
    return VideoPacket(b1 & 0x7F, seq, ts, ssrc, bool(b1 & 0x80), ext, tuple(srds),
                       buf[h:h + total], tuple(csrcs), extension, padding,
                       buf[h + total:end])


def serialize_packet(pkt: VideoPacket) -> bytes:
    """Inverse of ``parse_packet`` (``serialize_packet(parse_packet(b)) == b``).
    Raises ConfigError when the SRD lengths do not add up to ``len(data)``."""
    if sum(s.length for s in pkt.srds) != len(pkt.data):
        raise ConfigError(f"SRD lengths add up to {sum(s.length for s in pkt.srds)}, "
                          f"data holds {len(pkt.data)} bytes")
    b0 = (RTP_VERSION << 6) | (0x20 if pkt.padding else 0) | (
        0x10 if pkt.extension is not None else 0) | len(pkt.csrcs)
    out = bytearray(struct.pack("!BBHII", b0, (int(pkt.marker) << 7) | pkt.payload_type,
                                pkt.sequence, pkt.timestamp, pkt.ssrc))
    for c in pkt.csrcs:
        out += struct.pack("!I", c)
    if pkt.extension is not None:
        out += pkt.extension
    out += struct.pack("!H", pkt.ext_sequence)
    for s in pkt.srds:
        out += _SRD.pack(s.length, (s.field << 15) | s.line, (int(s.continuation) << 15) | s.offset)
    out += pkt.data + pkt.trailer + pkt.padding
    return bytes(out)


def _layout(fmt: VideoFormat, width: int, height: int, max_payload: int,
            max_srds: int) -> list[list[tuple[int, int, int]]]:
    """Greedy ST 2110-20 GPM layout: packets of (line, byte offset in line, length)."""
    line_bytes = fmt.line_bytes(width)
    pg = fmt.pgroup_bytes
    room0 = max_payload - RTP_HEADER_SIZE - PAYLOAD_HEADER_SIZE
    if room0 - SRD_SIZE < pg:
        raise ConfigError(f"max_payload {max_payload} cannot hold one pgroup")
    packets: list[list[tuple[int, int, int]]] = []
    line, off = 0, 0
    while line < height:
        room = room0
        segs: list[tuple[int, int, int]] = []
        while line < height and len(segs) < max_srds:
            take_max = (room - SRD_SIZE) // pg * pg
            if take_max < pg:
                break
            take = min(line_bytes - off, take_max)
            segs.append((line, off, take))
            room -= SRD_SIZE + take
            off += take
            if off < line_bytes:
                break  # the packet is full mid-line
            line, off = line + 1, 0
        packets.append(segs)
    return packets


class VideoPacketizer:
    """RFC 4175 packets of one ``fmt`` frame size, restamped per frame.

    Args:
        fmt: ``"YCbCr-4:2:2/10"``, ``"YCbCr-4:2:2/8"`` or ``"RGB/8"``.
        width, height: frame size in pixels (width a multiple of the pgroup width).
        payload_type: RTP payload type (96).
        ssrc: RTP SSRC.
        max_payload: largest UDP payload, RTP header included (1460 per ST 2110-10).
        max_srds: most SRDs per packet (3).
        first_sequence: 32-bit extended sequence number of the first packet.
        uniform: pad packets with RTP padding (RFC 3550 P bit) so every packet but the
            frame's last has the same size, ``segment_size``: what UDP GSO needs to
            send many packets per syscall. The padding is at most a few bytes in the
            packets that carry several SRDs.

    Raises ConfigError for an unknown format, a bad size or a payload limit too small.
    """

    def __init__(self, fmt: str | VideoFormat, width: int, height: int, *,
                 payload_type: int = 96, ssrc: int = 0x2110_0020,
                 max_payload: int = MAX_UDP_PAYLOAD, max_srds: int = MAX_SRDS_SENT,
                 first_sequence: int = 0, uniform: bool = True) -> None:
        self.format = parse_format(fmt)
        if height < 1 or height > 0x7FFF or width > 0x7FFF:
            raise ConfigError(f"VideoPacketizer: {width}x{height} is outside 1..32767")
        if not 0 <= payload_type <= 127:
            raise ConfigError(f"VideoPacketizer: payload_type must be 0-127, got {payload_type}")
        if not 1 <= max_srds <= 16:
            raise ConfigError(f"VideoPacketizer: max_srds must be 1-16, got {max_srds}")
        self.width, self.height = width, height
        self.payload_type, self.ssrc = payload_type, ssrc & 0xFFFFFFFF
        self.max_payload = max_payload
        self.line_bytes = self.format.line_bytes(width)
        self.frame_bytes = self.line_bytes * height
        layout = _layout(self.format, width, height, max_payload, max_srds)
        n = self.n_packets = len(layout)
        hmax = RTP_HEADER_SIZE + PAYLOAD_HEADER_SIZE + SRD_SIZE * max_srds
        self.headers: npt.NDArray[np.uint8] = np.zeros((n, hmax), np.uint8)
        self.header_len = np.empty(n, np.int64)
        self.data_start = np.empty(n, np.int64)
        self.data_len = np.empty(n, np.int64)
        pgb, pgp = self.format.pgroup_bytes, self.format.pgroup_pixels
        for i, segs in enumerate(layout):
            h = self.headers[i]
            struct.pack_into("!BBHII", h, 0, RTP_VERSION << 6,
                             payload_type | (0x80 if i == n - 1 else 0), 0, 0, self.ssrc)
            pos = RTP_HEADER_SIZE + PAYLOAD_HEADER_SIZE
            for j, (line, off, take) in enumerate(segs):
                cont = 0x8000 if j < len(segs) - 1 else 0
                _SRD.pack_into(h, pos, take, line, cont | (off // pgb * pgp))
                pos += SRD_SIZE
            self.header_len[i] = pos
            self.data_start[i] = segs[0][0] * self.line_bytes + segs[0][1]
            self.data_len[i] = sum(t for _, _, t in segs)
        # Each packet's data is contiguous in the frame buffer and they tile it exactly.
        assert int(self.data_len.sum()) == self.frame_bytes
        natural = self.header_len + self.data_len
        self.pad_len = np.zeros(n, np.int64)
        self.segment_size = int(natural.max())
        if uniform and n > 1:
            pad = self.segment_size - natural
            pad[-1] = 0  # the last packet may be short (also for GSO)
            if int(pad.max()) <= 255:
                self.pad_len = pad
                self.headers[pad > 0, 0] |= 0x20
        self.uniform = bool(uniform and n > 1 and (self.pad_len[:-1] + natural[:-1]
                                                   == self.segment_size).all())
        # Padding bytes: zeros, the last one holding the count (RFC 3550 5.1).
        self.pads = np.zeros((n, 256), np.uint8)
        rows = np.nonzero(self.pad_len)[0]
        self.pads[rows, self.pad_len[rows] - 1] = self.pad_len[rows].astype(np.uint8)
        self.next_sequence = first_sequence & 0xFFFFFFFF
        self.timestamp = 0
        self._packet_buf: npt.NDArray[np.uint8] | None = None
        self._vectors: dict[tuple[int, int, int], MessageVector] = {}

    def stamp(self, rtp_timestamp: int) -> None:
        """Give the next frame's packets ``rtp_timestamp`` and the next sequence numbers."""
        n = self.n_packets
        seq = (np.arange(n, dtype=np.uint64) + np.uint64(self.next_sequence)) & np.uint64(
            0xFFFFFFFF)
        be = seq.astype(">u4").view(np.uint8).reshape(n, 4)
        self.headers[:, 2:4] = be[:, 2:4]
        self.headers[:, 12:14] = be[:, 0:2]
        self.headers[:, 4:8] = np.frombuffer(struct.pack("!I", rtp_timestamp & 0xFFFFFFFF),
                                             np.uint8)
        self.timestamp = rtp_timestamp & 0xFFFFFFFF
        self.next_sequence = (self.next_sequence + n) & 0xFFFFFFFF

    def _check(self, pgroup: npt.NDArray[np.uint8]) -> None:
        if pgroup.dtype != np.uint8 or pgroup.ndim != 1 or pgroup.size != self.frame_bytes:
            raise FrameValidationError(f"pgroup buffer must be 1-D uint8 of {self.frame_bytes} "
                                       f"bytes, got {pgroup.shape} {pgroup.dtype}")

    def packet_sizes(self) -> npt.NDArray[np.int64]:
        """Datagram sizes in bytes (all <= ``max_payload``)."""
        return self.header_len + self.data_len + self.pad_len

    def build(self, pgroup: npt.NDArray[np.uint8]) -> list[memoryview]:
        """Contiguous datagrams of the stamped frame, written into one reused buffer
        (valid until the next ``build``). FrameValidationError for a wrong-sized buffer."""
        self._check(pgroup)
        if self._packet_buf is None:
            self._packet_buf = np.zeros((self.n_packets, self.max_payload), np.uint8)
        out, views = self._packet_buf, []
        mv = memoryview(out.reshape(-1))  # type: ignore[arg-type]
        for i in range(self.n_packets):
            hl, ds, dl = int(self.header_len[i]), int(self.data_start[i]), int(self.data_len[i])
            pl = int(self.pad_len[i])
            row = out[i]
            row[:hl] = self.headers[i, :hl]
            row[hl:hl + dl] = pgroup[ds:ds + dl]
            row[hl + dl:hl + dl + pl] = self.pads[i, :pl]
            base = i * self.max_payload
            views.append(mv[base:base + hl + dl + pl])
        return views

    def message_vector(self, pgroup: npt.NDArray[np.uint8], per_message: int = 1) -> MessageVector:
        """A sendmmsg vector over the frame's packets: each message gathers
        ``per_message`` packets (header row, pixel slice of ``pgroup``, padding: three
        iovecs per packet). ``per_message > 1`` is for UDP GSO (``udp.enable_gso`` with
        ``segment_size``; needs ``uniform``). Cached per buffer: keep ``pgroup`` alive at
        one address (write new frames into it) and ``stamp`` before each send.
        FrameValidationError for a wrong-sized buffer, ConfigError for ``per_message > 1``
        without uniform packets."""
        self._check(pgroup)
        if per_message > 1 and not self.uniform:
            raise ConfigError("per_message > 1 (GSO) needs uniform packet sizes")
        key = (int(pgroup.ctypes.data), pgroup.size, per_message)
        vec = self._vectors.get(key)
        if vec is not None:
            return vec
        n, g = self.n_packets, per_message
        msgs = -(-n // g)
        vec = MessageVector(msgs, 3 * g)
        flat_base = vec.iov["base"].reshape(-1)
        flat_len = vec.iov["len"].reshape(-1)
        idx = np.arange(n, dtype=np.uint64)
        flat_base[0:3 * n:3] = np.uint64(self.headers.ctypes.data) + idx * np.uint64(
            self.headers.strides[0])
        flat_len[0:3 * n:3] = self.header_len.astype(np.uint64)
        flat_base[1:3 * n:3] = np.uint64(key[0]) + self.data_start.astype(np.uint64)
        flat_len[1:3 * n:3] = self.data_len.astype(np.uint64)
        flat_base[2:3 * n:3] = np.uint64(self.pads.ctypes.data) + idx * np.uint64(
            self.pads.strides[0])
        flat_len[2:3 * n:3] = self.pad_len.astype(np.uint64)
        counts = np.full(msgs, 3 * g, np.int64)
        counts[-1] = 3 * (n - (msgs - 1) * g)
        vec.set_iovlen(counts)
        vec.keep = (pgroup, self.headers, self.pads)  # the memory the iovecs point into
        if len(self._vectors) >= 8:
            self._vectors.clear()
        self._vectors[key] = vec
        return vec


def split_packets(blob: bytes) -> list[bytes]:
    """Split a length-prefixed capture (4-byte big-endian length, then the datagram,
    repeated) into datagrams. RTPError for a truncated file."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise RTPError(f"capture truncated in a length prefix at byte {pos}")
        (n,) = struct.unpack_from("!I", blob, pos)
        if pos + 4 + n > len(blob):
            raise RTPError(f"capture truncated: packet at byte {pos} needs {n} bytes")
        out.append(blob[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def join_packets(packets: Sequence[bytes | bytearray | memoryview]) -> bytes:
    """Inverse of ``split_packets``."""
    return b"".join(struct.pack("!I", len(p)) + bytes(p) for p in packets)
