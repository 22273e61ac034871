"""PTPv2 (IEEE 1588-2008) message codec: the messages an ordinary-clock E2E slave uses.

:func:`parse_message` turns one UDP payload into a frozen dataclass
(:class:`Announce`, :class:`Sync`, :class:`FollowUp`, :class:`DelayReq`,
:class:`DelayResp`) and raises only PTPError (a ValueError) for malformed input (TypeError
for something that is not bytes); :func:`encode_message` and
:func:`build_delay_req` go the other way. ``streamlib.net.ptp`` (the slave)
re-exports all of it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union
from streamlib.errors import ConfigError, PTPError

__all__ = [
    "PTP_GROUP", "PortIdentity", "PTPTimestamp", "PTPHeader", "Sync", "DelayReq", "FollowUp",
    "DelayResp", "Announce", "PTPMessage", "parse_message", "encode_message", "build_delay_req",
    "FLAG_TWO_STEP", "FLAG_UTC_OFFSET_VALID", "FLAG_PTP_TIMESCALE", "NS",
]

PTP_GROUP = "224.0.1.129"
NS = 1_000_000_000
FLAG_TWO_STEP = 0x0200          # flagField octet 0 bit 1
FLAG_UTC_OFFSET_VALID = 0x0004  # octet 1 bit 2
FLAG_PTP_TIMESCALE = 0x0008     # octet 1 bit 3
_HEADER = struct.Struct(">BBHBBHq4s8sHHBb")  # 34 bytes
_TS = struct.Struct(">HII")                  # 48-bit seconds, 32-bit ns
_ANNOUNCE_TAIL = struct.Struct(">hxBBBHB8sHB")  # after originTimestamp: 20 bytes
_TYPE_NAMES = {0x0: "Sync", 0x1: "Delay_Req", 0x2: "Pdelay_Req", 0x3: "Pdelay_Resp",
               0x8: "Follow_Up", 0x9: "Delay_Resp", 0xA: "Pdelay_Resp_Follow_Up",
               0xB: "Announce", 0xC: "Signaling", 0xD: "Management"}
_CONTROL = {0x0: 0, 0x1: 1, 0x8: 2, 0x9: 3, 0xB: 5}  # controlField (1588-2008 Table 23)


@dataclass(frozen=True, slots=True)
class PortIdentity:
    """clockIdentity (8 bytes) + portNumber; ``str()`` is ptp4l's ``a69203.fffe.58b4a6-1``."""

    clock_identity: bytes
    port_number: int

    @property
    def clock_id_str(self) -> str:
        h = self.clock_identity.hex()
        return f"{h[:6]}.{h[6:10]}.{h[10:]}"

    def __str__(self) -> str:
        return f"{self.clock_id_str}-{self.port_number}"


@dataclass(frozen=True, slots=True)
class PTPTimestamp:
    """48-bit seconds + 32-bit nanoseconds (< 1e9)."""

    seconds: int
    nanoseconds: int

    @property
    def ns(self) -> int:
        return self.seconds * NS + self.nanoseconds

    @classmethod
    def from_ns(cls, ns: int) -> PTPTimestamp:
        """Raises ConfigError outside 0 .. 2**48 s."""
        if not 0 <= ns < (1 << 48) * NS:
            raise ConfigError(f"timestamp {ns} ns is outside the 48-bit seconds range")
        return cls(ns // NS, ns % NS)


@dataclass(frozen=True, slots=True)
class PTPHeader:
    """The 34-byte common header; ``correction`` is in ns * 2**16 (scaled ns)."""

    message_type: int
    version: int
    message_length: int
    domain: int
    flags: int
    correction: int
    source_port_identity: PortIdentity
    sequence_id: int
    control: int
    log_message_interval: int
    transport_specific: int = 0
    minor_version: int = 0
    minor_sdo_id: int = 0

    @property
    def correction_ns(self) -> int:
        return (self.correction + 0x8000) >> 16  # rounded; sub-ns parts are noise here


@dataclass(frozen=True, slots=True)
class Sync:
    header: PTPHeader
    origin_timestamp: PTPTimestamp


@dataclass(frozen=True, slots=True)
class DelayReq:
    header: PTPHeader
    origin_timestamp: PTPTimestamp


@dataclass(frozen=True, slots=True)
class FollowUp:
    header: PTPHeader
    precise_origin_timestamp: PTPTimestamp


@dataclass(frozen=True, slots=True)
class DelayResp:
    header: PTPHeader
    receive_timestamp: PTPTimestamp
    requesting_port_identity: PortIdentity


@dataclass(frozen=True, slots=True)
class Announce:
    header: PTPHeader
    origin_timestamp: PTPTimestamp
    current_utc_offset: int
    grandmaster_priority1: int
    grandmaster_clock_class: int
    grandmaster_clock_accuracy: int
    grandmaster_offset_scaled_log_variance: int
    grandmaster_priority2: int
    grandmaster_identity: bytes
    steps_removed: int
    time_source: int


PTPMessage = Union[Sync, DelayReq, FollowUp, DelayResp, Announce]
_TYPE_OF: dict[type, int] = {Sync: 0x0, DelayReq: 0x1, FollowUp: 0x8, DelayResp: 0x9,
                             Announce: 0xB}
_BODY_LEN = {0x0: 10, 0x1: 10, 0x8: 10, 0x9: 20, 0xB: 30}


def _ts(data: bytes, off: int) -> PTPTimestamp:
    hi, lo, nsec = _TS.unpack_from(data, off)
    if nsec >= NS:
        raise PTPError(f"timestamp nanoseconds field {nsec} is not below 1e9")
    return PTPTimestamp((hi << 32) | lo, nsec)


def _pid(data: bytes, off: int) -> PortIdentity:
    return PortIdentity(bytes(data[off:off + 8]), int.from_bytes(data[off + 8:off + 10], "big"))


def parse_message(data: bytes | bytearray | memoryview) -> PTPMessage:
    """Parse one PTPv2 message (UDP payload).

    Trailing bytes past ``messageLength`` and TLVs after a body are ignored.

    Raises:
        PTPError: shorter than the header or the type's body, not version 2,
            ``messageLength`` beyond the data or short of the body, an unsupported
            type (Pdelay, Signaling, Management...), nanoseconds >= 1e9.
        TypeError: ``data`` is not bytes-like.
    """
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise PTPError(f"PTP message too short: {len(data)} bytes, the header needs 34")
    (b0, b1, length, domain, sdo, flags, corr, _, cid, port, seq, control,
     log_int) = _HEADER.unpack_from(data)
    mtype, version = b0 & 0x0F, b1 & 0x0F
    if version != 2:
        raise PTPError(f"unsupported PTP version {version} (only PTPv2 is parsed)")
    if length > len(data):
        raise PTPError(f"messageLength {length} exceeds the {len(data)} bytes received")
    if mtype not in _BODY_LEN:
        name = _TYPE_NAMES.get(mtype, "reserved")
        raise PTPError(f"unsupported PTP message type {mtype:#x} ({name})")
    need = _HEADER.size + _BODY_LEN[mtype]
    if length < need:
        raise PTPError(f"messageLength {length} is short of the {need} bytes a "
                       f"{_TYPE_NAMES[mtype]} needs")
    header = PTPHeader(mtype, version, length, domain, flags, corr,
                       PortIdentity(cid, port), seq, control, log_int,
                       b0 >> 4, b1 >> 4, sdo)
    ts = _ts(data, 34)
    if mtype == 0x0:
        return Sync(header, ts)
    if mtype == 0x1:
        return DelayReq(header, ts)
    if mtype == 0x8:
        return FollowUp(header, ts)
    if mtype == 0x9:
        return DelayResp(header, ts, _pid(data, 44))
    utc, p1, cclass, acc, var, p2, gm, steps, tsrc = _ANNOUNCE_TAIL.unpack_from(data, 44)
    return Announce(header, ts, utc, p1, cclass, acc, var, p2, gm, steps, tsrc)


def encode_message(msg: PTPMessage) -> bytes:
    """Serialize ``msg``; messageType and messageLength come from its class (the
    header's values for them are not used).

    Raises:
        ConfigError: a field out of its wire range (struct.error is turned into it).
    """
    h = msg.header
    mtype = _TYPE_OF[type(msg)]
    sp = h.source_port_identity
    try:
        if len(sp.clock_identity) != 8:
            raise ConfigError("clock identity must be 8 bytes")
        if isinstance(msg, DelayResp):
            rp = msg.requesting_port_identity
            if len(rp.clock_identity) != 8:
                raise ConfigError("requesting clock identity must be 8 bytes")
            tail = rp.clock_identity + struct.pack(">H", rp.port_number)
        elif isinstance(msg, Announce):
            if len(msg.grandmaster_identity) != 8:
                raise ConfigError("grandmaster identity must be 8 bytes")
            tail = _ANNOUNCE_TAIL.pack(
                msg.current_utc_offset, msg.grandmaster_priority1, msg.grandmaster_clock_class,
                msg.grandmaster_clock_accuracy, msg.grandmaster_offset_scaled_log_variance,
                msg.grandmaster_priority2, msg.grandmaster_identity, msg.steps_removed,
                msg.time_source)
        else:
            tail = b""
        t = (msg.receive_timestamp if isinstance(msg, DelayResp) else
             msg.precise_origin_timestamp if isinstance(msg, FollowUp) else msg.origin_timestamp)
        if not 0 <= t.nanoseconds < NS:
            raise ConfigError(f"timestamp nanoseconds {t.nanoseconds} out of range")
        body = _TS.pack(t.seconds >> 32, t.seconds & 0xFFFFFFFF, t.nanoseconds) + tail
        head = _HEADER.pack((h.transport_specific << 4) | mtype, (h.minor_version << 4) | 2,
                            _HEADER.size + len(body), h.domain, h.minor_sdo_id, h.flags,
                            h.correction, b"\0" * 4, sp.clock_identity, sp.port_number,
                            h.sequence_id, h.control, h.log_message_interval)
    except struct.error as e:
        raise ConfigError(f"cannot encode {type(msg).__name__}: {e}") from None
    return head + body


def build_delay_req(sequence_id: int, source: PortIdentity, domain: int = 127,
                    origin_ns: int = 0) -> bytes:
    """A 44-byte Delay_Req (controlField 1, logMessageInterval 0x7F, correction 0).

    Raises:
        ConfigError: a field out of its wire range.
    """
    header = PTPHeader(0x1, 2, 44, domain, 0, 0, source, sequence_id, _CONTROL[0x1], 0x7F)
    return encode_message(DelayReq(header, PTPTimestamp.from_ns(origin_ns)))
