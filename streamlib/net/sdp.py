"""SDP (RFC 4566) for ST 2110 streams: write what ST 2110 receivers accept, parse it back.

One ``SDPStream`` per ``m=`` section. ``write_sdp`` emits the ST 2110-10/-20/-30
attributes (``a=rtpmap``, ``a=fmtp``, ``a=ts-refclk``, ``a=mediaclk:direct=0``,
``a=ptime`` for audio); ``parse_sdp`` reads ours and the SDP files that FFmpeg,
GStreamer and broadcast gear write (session-level ``c=``/``a=ts-refclk`` are
inherited by every media section; unknown attributes are kept in ``attributes``).

Senders: ``a=source-filter: incl`` (RFC 4570, session or media level, for the
stream's ``c=`` address or ``*``) is parsed into ``SDPStream.sources`` and written
back from it; the ``o=`` address into ``origin_address``. ``stream_sources`` says
which sender addresses an SDP names for a stream, ``stream_ssrc`` its RFC 5576
``a=ssrc`` (the receivers lock to both).

Example::

    >>> text = write_sdp([video_stream("127.0.0.1", 5004, width=1920, height=1080, fps=60)])
    >>> parse_sdp(text)[0].fmtp["depth"]
    '10'
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from streamlib.errors import ConfigError, SDPError

__all__ = ["SDPStream", "write_sdp", "parse_sdp", "video_stream", "audio_stream",
           "format_rate", "parse_rate", "stream_sources", "stream_ssrc", "DEFAULT_TS_REFCLK"]

DEFAULT_TS_REFCLK = "localmac=00-00-00-00-00-00"
_MEDIA = ("video", "audio")
_ENCODINGS = ("raw", "L24", "L16")


@dataclass(frozen=True)
class SDPStream:
    """One RTP stream of an SDP session (one ``m=`` section).

    Attributes:
        media: ``"video"`` or ``"audio"``.
        address: destination address (``c=`` line), IPv4 or IPv6 literal.
        port: destination UDP port (``m=`` line), 1-65535.
        payload_type: RTP payload type, 96-127 for the dynamic ST 2110 formats.
        encoding: ``"raw"`` (ST 2110-20), ``"L24"`` or ``"L16"`` (ST 2110-30).
        clock_rate: RTP clock, 90000 for video, the sample rate for audio.
        fmtp: ``a=fmtp`` parameters in order (``sampling``, ``width``, ... for video).
        channels: audio channel count (``rtpmap`` encoding parameter), None for video.
        ptime_ms: audio packet time (``a=ptime``), None when absent.
        ts_refclk: ``a=ts-refclk`` value (``ptp=IEEE1588-2008:...`` or ``localmac=...``).
        mediaclk: ``a=mediaclk`` value, ``"direct=0"`` for ST 2110.
        ttl: multicast TTL from ``c=IN IP4 addr/ttl``, else None.
        attributes: other ``a=`` lines of the section, verbatim (without ``a=``).
        sources: sender addresses of ``a=source-filter: incl`` for this stream (RFC 4570).
        origin_address: the session's ``o=`` address (parsed SDP only), else None.

    Raises ConfigError naming the field for an unknown media/encoding, a port or payload
    type out of range, a non-positive clock rate, or an address that is not an IP literal.
    """

    media: str
    address: str
    port: int
    payload_type: int
    encoding: str
    clock_rate: int
    fmtp: dict[str, str] = field(default_factory=dict, hash=False)
    channels: int | None = None
    ptime_ms: float | None = None
    ts_refclk: str | None = DEFAULT_TS_REFCLK
    mediaclk: str | None = "direct=0"
    ttl: int | None = None
    attributes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    origin_address: str | None = None

    def __post_init__(self) -> None:
        if self.media not in _MEDIA:
            raise ConfigError(f"SDPStream.media must be one of {_MEDIA}, got {self.media!r}")
        if self.encoding not in _ENCODINGS:
            raise ConfigError(f"SDPStream.encoding must be one of {_ENCODINGS}, "
                              f"got {self.encoding!r}")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ConfigError(f"SDPStream.port must be an int in 1-65535, got {self.port!r}")
        if not isinstance(self.payload_type, int) or not 0 <= self.payload_type <= 127:
            raise ConfigError(f"SDPStream.payload_type must be in 0-127, got {self.payload_type!r}")
        if not isinstance(self.clock_rate, int) or self.clock_rate <= 0:
            raise ConfigError(f"SDPStream.clock_rate must be a positive int, got {self.clock_rate!r}")
        if self.channels is not None and (not isinstance(self.channels, int) or self.channels < 1):
            raise ConfigError(f"SDPStream.channels must be a positive int, got {self.channels!r}")
        if self.ptime_ms is not None and not self.ptime_ms > 0:
            raise ConfigError(f"SDPStream.ptime_ms must be > 0, got {self.ptime_ms!r}")
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise ConfigError(f"SDPStream.address must be an IP literal, "
                              f"got {self.address!r}") from None
        for src in self.sources:
            try:
                ipaddress.ip_address(src)
            except ValueError:
                raise ConfigError(f"SDPStream.sources must be IP literals, got {src!r}") from None
        # Copy so the frozen stream never aliases a caller's dict.
        object.__setattr__(self, "fmtp", {str(k): str(v) for k, v in self.fmtp.items()})

    @property
    def ip_version(self) -> int:
        """4 or 6."""
        return ipaddress.ip_address(self.address).version

    def fmtp_int(self, name: str) -> int:
        """``fmtp[name]`` as an int. Raises SDPError naming the parameter if absent/bad."""
        try:
            return int(self.fmtp[name])
        except KeyError:
            raise SDPError(f"SDP fmtp has no {name!r} parameter (has {sorted(self.fmtp)})") \
                from None
        except ValueError:
            raise SDPError(f"SDP fmtp {name}={self.fmtp[name]!r} is not an integer") from None


def format_rate(fps: float | int | str | Fraction) -> str:
    """ST 2110-20 ``exactframerate``: ``"60"``, ``"30000/1001"`` (for 29.97), ``"25"``.
    Raises ConfigError for a non-positive rate."""
    rate = parse_rate(fps) if isinstance(fps, str) else _as_fraction(fps)
    if rate <= 0:
        raise ConfigError(f"frame rate must be > 0, got {fps!r}")
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


def _as_fraction(fps: float | int | Fraction) -> Fraction:
    if isinstance(fps, float):
        # 29.97 -> 30000/1001, 59.94 -> 60000/1001: the NTSC rates are never exact floats.
        for base in (24, 30, 48, 60, 120):
            if abs(fps - base * 1000 / 1001) < 0.005:
                return Fraction(base * 1000, 1001)
        return Fraction(fps).limit_denominator(1001)
    return Fraction(fps)


def parse_rate(text: str) -> Fraction:
    """Parse ``"60"``, ``"30000/1001"`` or ``"29.97"``. Raises SDPError quoting the text."""
    try:
        rate = _as_fraction(float(text)) if "." in text else Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise SDPError(f"invalid frame rate {text!r}") from None
    if rate <= 0:
        raise SDPError(f"invalid frame rate {text!r}: must be > 0")
    return rate


def video_stream(address: str, port: int, *, width: int, height: int,
                 sampling: str = "YCbCr-4:2:2", depth: int = 10,
                 fps: float | int | str | Fraction = 60, colorimetry: str = "BT709",
                 payload_type: int = 96, interlace: bool = False, tcs: str = "SDR",
                 range_: str = "NARROW", ts_refclk: str | None = DEFAULT_TS_REFCLK,
                 ttl: int | None = None, tp: str | None = None) -> SDPStream:
    """An ST 2110-20 ``raw/90000`` stream with the fmtp parameters
    (``PM=2110GPM; SSN=ST2110-20:2017``, and ``TP=<tp>`` when given).

    ``tp`` is the ST 2110-21 sender type the sender meets: ``"2110TPN"`` (narrow),
    ``"2110TPNL"`` (narrow linear) or ``"2110TPW"`` (wide); None (default) writes no
    ``TP``: a sender that does not pace to ST 2110-21 claims nothing (FFmpeg and
    GStreamer receivers ignore it). Raises ConfigError for bad sizes or ``tp``."""
    if width < 1 or height < 1:
        raise ConfigError(f"video_stream: width and height must be >= 1, got {width}x{height}")
    if tp not in (None, "2110TPN", "2110TPNL", "2110TPW"):
        raise ConfigError(f"video_stream: tp must be 2110TPN, 2110TPNL, 2110TPW or None, "
                          f"got {tp!r}")
    fmtp = {"sampling": sampling, "width": str(width), "height": str(height),
            "depth": str(depth), "exactframerate": format_rate(fps),
            "colorimetry": colorimetry, "PM": "2110GPM", "SSN": "ST2110-20:2017"}
    if tp is not None:
        fmtp["TP"] = tp
    fmtp.update({"TCS": tcs, "RANGE": range_})
    if interlace:
        fmtp["interlace"] = ""
    return SDPStream("video", address, port, payload_type, "raw", 90000, fmtp,
                     ts_refclk=ts_refclk, ttl=ttl)


def audio_stream(address: str, port: int, *, encoding: str = "L24", sample_rate: int = 48000,
                 channels: int = 2, ptime_ms: float = 1.0, payload_type: int = 97,
                 channel_order: str | None = None, ts_refclk: str | None = DEFAULT_TS_REFCLK,
                 ttl: int | None = None) -> SDPStream:
    """An ST 2110-30 ``L24``/``L16`` stream (``a=rtpmap:97 L24/48000/2``, ``a=ptime:1``).
    ``channel_order`` defaults to ``SMPTE2110.(ST)`` for 2 channels, ``(M)`` for 1, else
    ``(U01,...)`` undefined groups. Raises ConfigError for a bad encoding/rate/count."""
    if channel_order is None:
        channel_order = ("SMPTE2110.(M)" if channels == 1 else "SMPTE2110.(ST)" if channels == 2
                         else "SMPTE2110.(" + ",".join(["U01"] * channels) + ")")
    return SDPStream("audio", address, port, payload_type, encoding, sample_rate,
                     {"channel-order": channel_order}, channels=channels, ptime_ms=ptime_ms,
                     ts_refclk=ts_refclk, ttl=ttl)


def _fmt_ptime(ms: float) -> str:
    return str(int(ms)) if float(ms).is_integer() else f"{ms:.3f}".rstrip("0")


def write_sdp(streams: Sequence[SDPStream], *, session_name: str = "streamlib",
              origin_address: str | None = None, session_id: int | None = None,
              ts_refclk: str | None = None) -> str:
    """SDP text (CRLF line ends, as RFC 4566 requires) describing ``streams``.

    ``ts_refclk`` overrides every stream's ``a=ts-refclk`` (e.g. ``"ptp=IEEE1588-2008:
    08-00-11-FF-FE-21-E1-B0:0"``). ``origin_address`` defaults to the first stream's
    address. Raises ConfigError for an empty list or a session name with a line break.
    """
    if not streams:
        raise ConfigError("write_sdp needs at least one stream")
    if any(c in session_name for c in "\r\n") or not session_name:
        raise ConfigError(f"write_sdp: invalid session_name {session_name!r}")
    origin = origin_address or streams[0].address
    ov = ipaddress.ip_address(origin).version
    sid = session_id if session_id is not None else time.time_ns() // 1000
    lines = ["v=0", f"o=- {sid} {sid} IN IP{ov} {origin}", f"s={session_name}", "t=0 0"]
    for s in streams:
        lines.append(f"m={s.media} {s.port} RTP/AVP {s.payload_type}")
        addr = s.address + (f"/{s.ttl}" if s.ttl is not None and s.ip_version == 4 else "")
        lines.append(f"c=IN IP{s.ip_version} {addr}")
        enc = f"{s.encoding}/{s.clock_rate}" + (f"/{s.channels}" if s.channels else "")
        lines.append(f"a=rtpmap:{s.payload_type} {enc}")
        if s.fmtp:
            params = "; ".join(k if v == "" else f"{k}={v}" for k, v in s.fmtp.items())
            lines.append(f"a=fmtp:{s.payload_type} {params}")
        if s.ptime_ms is not None:
            lines.append(f"a=ptime:{_fmt_ptime(s.ptime_ms)}")
        refclk = ts_refclk if ts_refclk is not None else s.ts_refclk
        if refclk:
            lines.append(f"a=ts-refclk:{refclk}")
        if s.mediaclk:
            lines.append(f"a=mediaclk:{s.mediaclk}")
        if s.sources:
            lines.append(f"a=source-filter: incl IN IP{s.ip_version} {s.address} "
                         + " ".join(s.sources))
        lines.extend(f"a={a}" for a in s.attributes)
    return "\r\n".join(lines) + "\r\n"


def stream_ssrc(stream: SDPStream) -> int | None:
    """The SSRC an SDP gives for ``stream`` (RFC 5576 ``a=ssrc:<id> ...``; the first
    one), else None. Raises SDPError for an ``a=ssrc`` that is not a 32-bit number."""
    for attr in stream.attributes:
        if attr.startswith("ssrc:"):
            text = attr[5:].split(maxsplit=1)[0] if attr[5:].strip() else ""
            if not (text.isascii() and text.isdigit() and int(text) <= 0xFFFFFFFF):
                raise SDPError(f"SDP a={attr!r}: the SSRC must be a 32-bit unsigned number")
            return int(text)
    return None


def stream_sources(stream: SDPStream) -> tuple[str, ...]:
    """The sender addresses an SDP names for ``stream``: its ``a=source-filter: incl``
    list; else the ``o=`` address when it can be the sender, i.e. a unicast address
    other than the stream's destination, not unspecified, and loopback only when the
    destination is too (FFmpeg writes ``o=... 127.0.0.1`` whatever it sends to; our
    ``write_sdp`` writes the destination). Empty: the SDP names no sender."""
    if stream.sources:
        return stream.sources
    if stream.origin_address is None:
        return ()
    try:
        origin = ipaddress.ip_address(stream.origin_address)
        dest = ipaddress.ip_address(stream.address)
    except ValueError:
        return ()
    if origin.is_multicast or origin.is_unspecified or origin == dest or \
            origin.version != dest.version or (origin.is_loopback and not dest.is_loopback):
        return ()
    return (str(origin),)


def _parse_fmtp(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        key, eq, value = part.partition("=")
        out[key.strip()] = value.strip() if eq else ""
    return out


def _parse_c(value: str) -> tuple[str, int | None]:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SDPError("expected 'c=IN IP4 <address>' or 'c=IN IP6 <address>'")
    addr, _, rest = parts[2].partition("/")
    ipaddress.ip_address(addr)  # ValueError for a hostname: ST 2110 uses literals
    ttl = int(rest.split("/")[0]) if rest and parts[1] == "IP4" else None
    return addr, ttl


@dataclass
class _Section:
    media: str
    port: int
    proto: str
    pt: int
    where: str
    c: tuple[str, int | None] | None = None
    enc: str | None = None
    rate: int = 0
    channels: int | None = None
    fmtp: dict[str, str] = field(default_factory=dict)
    ptime: float | None = None
    refclk: str | None = None
    mediaclk: str | None = None
    attrs: list[str] = field(default_factory=list)
    filters: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def _parse_source_filter(value: str) -> tuple[str, tuple[str, ...]] | None:
    """``a=source-filter: incl IN IP4 <dest|*> <src>...`` -> (dest, sources); None for
    ``excl`` (not a sender list). Raises SDPError for a malformed line."""
    parts = value.split()
    if len(parts) < 5 or parts[0] not in ("incl", "excl") or parts[1] != "IN" or \
            parts[2] not in ("IP4", "IP6", "*"):
        raise SDPError("expected 'a=source-filter: incl IN IP4 <dest> <source>...'")
    for src in parts[4:]:
        ipaddress.ip_address(src)  # ValueError for a host name
    return (parts[3], tuple(parts[4:])) if parts[0] == "incl" else None


def _filter_sources(filters: list[tuple[str, tuple[str, ...]]], address: str) -> tuple[str, ...]:
    out: list[str] = []
    for dest, srcs in filters:
        if dest == "*" or dest == address:
            out.extend(srcs)
    return tuple(dict.fromkeys(out))


def _parse_attr(sec: _Section, value: str) -> None:
    name, _, val = value.partition(":")
    if name == "rtpmap":
        pt_s, _, enc = val.partition(" ")
        fields = enc.strip().split("/")
        if len(fields) < 2:
            raise SDPError("expected 'a=rtpmap:<pt> <encoding>/<rate>[/<channels>]'")
        if int(pt_s) == sec.pt:
            sec.enc, sec.rate = fields[0], int(fields[1])
            sec.channels = int(fields[2]) if len(fields) > 2 else None
    elif name == "fmtp":
        pt_s, _, params = val.partition(" ")
        if int(pt_s) == sec.pt:
            sec.fmtp = _parse_fmtp(params)
    elif name == "ptime":
        sec.ptime = float(val)
        if not sec.ptime > 0:
            raise SDPError("ptime must be > 0")
    elif name == "ts-refclk":
        sec.refclk = val
    elif name == "mediaclk":
        sec.mediaclk = val
    elif name == "source-filter":
        f = _parse_source_filter(val)
        if f is not None:
            sec.filters.append(f)
    else:
        sec.attrs.append(value)


def parse_sdp(text: str) -> list[SDPStream]:
    """Parse SDP text into one ``SDPStream`` per ``m=`` section (the first payload type
    of each). Sections that are not RTP/AVP video/audio with raw/L24/L16 are skipped.

    Raises SDPError naming the line number and text for: a line that is not
    ``<letter>=<value>``, a bad ``m=``/``c=``/``rtpmap``/``ptime`` line, a media section
    with no connection address, or text with no usable stream.
    """
    session_c: tuple[str, int | None] | None = None
    session_refclk: str | None = None
    session_filters: list[tuple[str, tuple[str, ...]]] = []
    origin: str | None = None
    sections: list[_Section] = []
    cur: _Section | None = None

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        where = f"SDP line {lineno} {line!r}"
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SDPError(f"{where}: expected '<type>=<value>'")
        kind, value = line[0], line[2:]
        try:
            if kind == "m":
                parts = value.split()
                if len(parts) < 4:
                    raise SDPError("expected 'm=<media> <port> <proto> <fmt>'")
                cur = _Section(parts[0], int(parts[1].split("/")[0]), parts[2], int(parts[3]),
                               where)
                sections.append(cur)
            elif kind == "c":
                c = _parse_c(value)
                if cur is None:
                    session_c = c
                else:
                    cur.c = c
            elif kind == "a":
                if cur is None:
                    if value.startswith("ts-refclk:"):
                        session_refclk = value.partition(":")[2]
                    elif value.startswith("source-filter:"):
                        f = _parse_source_filter(value.partition(":")[2])
                        if f is not None:
                            session_filters.append(f)
                else:
                    _parse_attr(cur, value)
            elif kind == "o" and cur is None:
                parts = value.split()
                # o=<user> <id> <version> IN IP4 <address>; a bad one is not fatal
                origin = parts[5] if len(parts) == 6 and parts[3] == "IN" else None
        except ValueError as e:
            raise SDPError(f"{where}: {e}") from None

    streams: list[SDPStream] = []
    for sec in sections:
        if sec.media not in _MEDIA or not sec.proto.startswith("RTP/AVP"):
            continue
        if sec.enc is None or sec.enc.lower() not in ("raw", "l24", "l16"):
            continue
        conn = sec.c or session_c
        if conn is None:
            raise SDPError(f"{sec.where}: media section has no 'c=' connection address")
        encoding = "raw" if sec.enc.lower() == "raw" else sec.enc.upper()
        try:
            streams.append(SDPStream(
                sec.media, conn[0], sec.port, sec.pt, encoding, sec.rate, sec.fmtp,
                channels=sec.channels, ptime_ms=sec.ptime,
                ts_refclk=sec.refclk if sec.refclk is not None else session_refclk,
                mediaclk=sec.mediaclk, ttl=conn[1], attributes=tuple(sec.attrs),
                sources=_filter_sources(session_filters + sec.filters, conn[0]),
                origin_address=origin))
        except ValueError as e:
            raise SDPError(f"{sec.where}: {e}") from None
    if not streams:
        raise SDPError("SDP has no RTP/AVP video/audio stream with raw, L24 or L16 encoding")
    return streams
