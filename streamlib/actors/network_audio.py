"""ST 2110-30 audio over RTP/UDP: ``AudioNetworkSendActor`` and ``AudioNetworkReceiveActor``.

The sender packetizes every AudioFrame it gets (``read_all_new``: lock-step
graphs lose nothing) into ``ptime_ms`` packets stamped from the frames' own
``timestamp_ns`` (ST 2110-10; use a ``PTPClock`` upstream for TAI-traceable
timestamps) and sends them paced, one packet per packet time, from a thread of
its own (``streamlib.net.audio.PacedSender``; ``pacing=False``: each frame's
packets in one ``sendmmsg`` burst). The
receiver polls its socket on its own clock, reorders within a small window,
conceals losses with silence and outputs AudioFrames of ``frame_ms``; see
:mod:`streamlib.net.audio` for the sample rule, the SSRC lock and the
RTP-time-to-ns mapping.

Multicast (IPv4, any-source): a sender to a group sets ``multicast_interface`` and
``multicast_ttl`` and writes ``c=IN IP4 <group>/<ttl>``; a receiver of a group binds
it and joins on ``multicast_interface`` (``streamlib.net.udp.open_receiver``).
Destinations are loopback-only unless ``allow_remote=True`` (``streamlib.net.udp``);
a group is not loopback, so it needs ``allow_remote=True`` too.
Transports are opened in ``setup`` by ``open_transport()``, a method tests
override with in-memory ones.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, SystemTAITimeSource, TimedTick
from streamlib.core.frames import AudioFrame
from streamlib.net.audio import (
    AudioDepacketizer, AudioFormat, AudioPacketizer, AudioReceiveStats, PacedSender,
)
from streamlib.net.sdp import SDPStream, audio_stream, parse_sdp, stream_sources, stream_ssrc, write_sdp
from streamlib.net.source_lock import SourceLock
from streamlib.net.udp import (
    DEFAULT_MULTICAST_TTL, BatchReceiver, BatchSender, check_destination, key_address,
    check_multicast_interface, check_multicast_ttl, is_multicast, open_receiver, open_sender,
    parse_dest,
)
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.core.registry import default_port_allocator
from streamlib.errors import ConfigError, SDPError

logger = logging.getLogger("streamlib.network_audio")

Encoding = Literal["L24", "L16"]
Timebase = Literal["tai", "monotonic", "realtime"]
TIMEBASES: tuple[str, ...] = ("tai", "monotonic", "realtime")

# Ports handed out when no port is given: the process-wide allocator shared with the
# video actors (``VIDEO_PORTS`` is the same object), so no two streams get one port.
AUDIO_PORTS = default_port_allocator()


class PacketSink(Protocol):
    def send(self, packets: Sequence[bytes]) -> int: ...
    def close(self) -> None: ...


class PacketSource(Protocol):
    def receive(self) -> Sequence[bytes | memoryview]:
        """Datagrams queued now (never blocks); empty when there are none."""
        ...

    def close(self) -> None: ...


class _UDPSink:
    """A connected UDP socket; with ``ptime_ms`` packets are paced by a ``PacedSender``
    (its send failures are counted in ``packets_failed``), else sent as they come."""

    def __init__(self, dest: tuple[str, int], allow_remote: bool, *,
                 multicast_interface: str = "0.0.0.0",
                 multicast_ttl: int = DEFAULT_MULTICAST_TTL,
                 ptime_ms: float | None = None) -> None:
        self._sock = open_sender(dest, allow_remote=allow_remote,
                                 multicast_interface=multicast_interface,
                                 multicast_ttl=multicast_ttl)
        self._sender = BatchSender(self._sock)
        self.paced = None if ptime_ms is None else PacedSender(self._sock, ptime_ms)

    @property
    def packets_failed(self) -> int:
        return 0 if self.paced is None else self.paced.packets_failed

    def send(self, packets: Sequence[bytes]) -> int:
        if self.paced is not None:
            return self.paced.submit(list(packets))
        return self._sender.send(packets)

    def close(self) -> None:
        if self.paced is not None:
            self.paced.close()  # sends what is queued, then closes the socket
        self._sock.close()


class _UDPSource:
    """A bound UDP socket read with recvmmsg; ``receive_from`` also gives each
    datagram's sender address (the actor's source lock uses it)."""

    def __init__(self, bind: tuple[str, int], interface: str) -> None:
        self._sock = open_receiver(bind, rcvbuf=4 << 20, multicast_interface=interface)
        self._rx = BatchReceiver(self._sock, batch=256, sources=True)

    def receive(self) -> list[bytes]:
        return [d for d, _ in self.receive_from()]

    def receive_from(self) -> list[tuple[bytes, str | None]]:
        out: list[tuple[bytes, str | None]] = []
        rx = self._rx
        while True:
            n = rx.recv(timeout=0)
            keys = rx.source_keys(n)
            for i in range(n):
                size = int(rx.lengths[i])
                # a full slot means the datagram was truncated: pass a marker the
                # depacketizer counts as malformed (an RTP version of 0)
                out.append((rx.buffers[i, :size].tobytes() if size < rx.slot else b"\0",
                            key_address(rx.family, bytes(keys[i]))))
            if n < rx.batch:
                return out

    def close(self) -> None:
        self._sock.close()


def _release(key: tuple[str, str]) -> None:
    AUDIO_PORTS.release(key)


def _parse_dest(label: str, dest: str, allow_remote: bool) -> tuple[str, int | None]:
    """``host:port`` -> (host, port); a host alone -> (host, None): a port is allocated."""
    try:
        if not isinstance(dest, str):
            raise ConfigError(f"expected a 'host:port' or 'host' str, got {dest!r}")
        if (dest.startswith("[") and "]:" not in dest) or ":" not in dest:
            host = "127.0.0.1" if dest == "localhost" else dest.strip("[]")
            check_destination(host, allow_remote=allow_remote)
            return host, None
        return parse_dest(dest, allow_remote=allow_remote)
    except ValueError as e:
        raise ConfigError(f"{label}: dest: {e}") from None


def _label(cls: str, actor_id: str | None) -> str:
    return cls + ("" if actor_id is None else f" '{actor_id}'")


def _format(label: str, encoding: str, sample_rate: int, channels: int) -> AudioFormat:
    try:
        return AudioFormat(encoding, sample_rate, channels)
    except ValueError as e:
        raise ConfigError(f"{label}: {e}") from None


class AudioNetworkSendActor(Actor):
    """Sends ``inputs['audio']`` as an ST 2110-30 RTP stream (L24/L16) to one UDP port.

    Samples are clipped to [-1, 1] and rounded half away from zero to 24/16-bit
    big-endian; packets hold ``ptime_ms`` of audio (48 samples at 48 kHz, 1 ms)
    and continue across AudioFrames, with RTP timestamps counted from
    ``media_timestamp`` of the first frame's ``timestamp_ns`` (re-anchored when
    a frame's time jumps by more than ``resync_ms``). Frames with another
    sample rate or channel count are dropped with one warning. A refused send
    (no listener on loopback) drops that batch and is counted, never fatal.

    Args:
        dest: ``"host:port"`` to send to; a host alone (or None: 127.0.0.1) takes
            an even port from ``AUDIO_PORTS`` (5004-6998, shared with video), released
            when the actor closes (see ``.port``, ``.sdp``).
        encoding: ``L24`` or ``L16``.
        sample_rate: Hz; input frames must match.
        channels: 1..64 (ST 2110-30 level A: up to 8 at 1 ms); frames must match.
        ptime_ms: packet time in ms (whole samples, at most 1460 bytes a packet).
        payload_type: RTP payload type (96-127 dynamic; 97 is customary for audio).
        ssrc: RTP SSRC (None: random).
        sdp_path: also write the stream's SDP to this file in ``setup``.
        ts_refclk: ``a=ts-refclk`` value for the SDP (None: the SDP module's default).
        resync_ms: largest input-time jump absorbed without re-anchoring timestamps.
        allow_remote: allow a non-loopback ``dest`` (a multicast group included).
        pacing: send one packet per packet time from a thread of its own (ST 2110-30
            receivers expect that); False sends each frame's packets as one burst.
        multicast_interface: for a multicast ``dest``: IPv4 address of the interface
            the stream leaves by (``0.0.0.0``: the kernel's choice; ``127.0.0.1``:
            this host only).
        multicast_ttl: for a multicast ``dest``: IP TTL 0..255 (0: never leaves this
            host); the SDP says ``c=IN IP4 <group>/<ttl>``.
        actor_id: unique id (default: generated).

    Raises:
        ConfigError: a bad parameter (the message names it), a non-loopback dest
            without ``allow_remote``, an IPv6 multicast dest.
    """

    def __init__(self, dest: str | None = None, encoding: Encoding = "L24", sample_rate: int = 48000,
                 channels: int = 2, ptime_ms: float = 1.0, payload_type: int = 97, *,
                 ssrc: int | None = None, sdp_path: str | None = None, ts_refclk: str | None = None,
                 resync_ms: float = 2.0, allow_remote: bool = False, pacing: bool = True,
                 multicast_interface: str = "0.0.0.0", multicast_ttl: int = DEFAULT_MULTICAST_TTL,
                 actor_id: str | None = None, **kwargs: Any) -> None:
        label = _label("AudioNetworkSendActor", actor_id)
        try:
            check_multicast_interface(multicast_interface)
            check_multicast_ttl(multicast_ttl)
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from None
        fmt = _format(label, encoding, sample_rate, channels)
        try:
            packetizer = AudioPacketizer(fmt, ptime_ms=ptime_ms, payload_type=payload_type,
                                         ssrc=ssrc, resync_ms=resync_ms)
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from None
        if sdp_path is not None and (not isinstance(sdp_path, (str, os.PathLike)) or not os.fspath(sdp_path)):
            raise ConfigError(f"{label}: sdp_path must be a non-empty path or None, got {sdp_path!r}")
        host, port = _parse_dest(label, dest, allow_remote) if dest is not None else ("127.0.0.1", None)
        if is_multicast(host) and ":" in host:
            raise ConfigError(f"{label}: dest: IPv6 multicast is not supported, got {dest!r}")
        super().__init__(actor_id=actor_id, **kwargs)
        if port is None:
            key = ("audio-send", str(self.uri))
            port = AUDIO_PORTS.allocate(key)
            self.add_close_callback(lambda: _release(key))
        self.host_address, self.port = host, port
        self.format, self.packetizer = fmt, packetizer
        self.ptime_ms, self.payload_type = float(ptime_ms), payload_type
        self.sdp_path = None if sdp_path is None else os.fspath(sdp_path)
        self.ts_refclk, self.allow_remote = ts_refclk, allow_remote
        self.pacing = bool(pacing)
        self.multicast_interface, self.multicast_ttl = multicast_interface, multicast_ttl
        self.inputs["audio"] = StreamInput("audio", slots=64)
        self.frames_in = 0
        self.frames_dropped = 0
        self.packets_sent = 0
        self.packets_dropped = 0      # lost to send errors (e.g. refused: nobody listening)
        self._failed_closed = 0       # paced send failures of transports already closed
        self._transport: PacketSink | None = None
        self._warned: set[str] = set()

    @property
    def dest(self) -> str:
        """``host:port`` the stream goes to."""
        return f"[{self.host_address}]:{self.port}" if ":" in self.host_address else \
            f"{self.host_address}:{self.port}"

    @property
    def sdp_stream(self) -> SDPStream:
        kw: dict[str, Any] = {} if self.ts_refclk is None else {"ts_refclk": self.ts_refclk}
        if is_multicast(self.host_address):
            kw["ttl"] = self.multicast_ttl
        return audio_stream(self.host_address, self.port, encoding=self.format.encoding,
                            sample_rate=self.format.sample_rate, channels=self.format.channels,
                            ptime_ms=self.ptime_ms, payload_type=self.payload_type, **kw)

    @property
    def sdp(self) -> str:
        """SDP text describing the stream (``a=rtpmap:97 L24/48000/2``, ``a=ptime:1`` ...)."""
        return write_sdp([self.sdp_stream], session_name=self.actor_id)

    @property
    def stats(self) -> dict[str, int]:
        """Frames in/dropped, packets sent (handed to the transport, less paced send
        failures) and dropped, packetizer re-anchors and samples dropped by them."""
        p = self.packetizer
        failed = self._failed_closed + int(getattr(self._transport, "packets_failed", 0))
        return {"frames_in": self.frames_in, "frames_dropped": self.frames_dropped,
                "packets_sent": self.packets_sent - failed,
                "packets_dropped": self.packets_dropped + failed,
                "resyncs": p.resyncs, "samples_dropped": p.samples_dropped}

    def open_transport(self) -> PacketSink:
        """The packet sink ``setup`` uses: a connected UDP socket sending with sendmmsg,
        paced one packet per packet time unless ``pacing=False``."""
        return _UDPSink((self.host_address, self.port), self.allow_remote,
                        multicast_interface=self.multicast_interface,
                        multicast_ttl=self.multicast_ttl,
                        ptime_ms=self.ptime_ms if self.pacing else None)

    def setup(self) -> None:
        if self.sdp_path is not None:
            folder = os.path.dirname(os.path.abspath(self.sdp_path))
            os.makedirs(folder, exist_ok=True)
            with open(self.sdp_path, "w", encoding="ascii", newline="") as f:
                f.write(self.sdp)
        self._transport = self.open_transport()

    def teardown(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
            self._failed_closed += int(getattr(transport, "packets_failed", 0))

    def process(self, tick: TimedTick) -> None:
        for frame in self.inputs["audio"].read_all_new():
            self.send_frame(frame)

    def send_frame(self, frame: AudioFrame) -> int:
        """Packetize and send one frame; returns the packets sent."""
        fmt = self.format
        if frame.sample_rate != fmt.sample_rate or frame.channels != fmt.channels:
            self.frames_dropped += 1
            self._warn_once("format", "%s: frame %d Hz x%d differs from the stream's %d Hz x%d; "
                            "dropped", self.actor_id, frame.sample_rate, frame.channels,
                            fmt.sample_rate, fmt.channels)
            return 0
        self.frames_in += 1
        packets = self.packetizer.push(frame.data.detach().cpu().numpy(), frame.timestamp_ns)
        if not packets or self._transport is None:
            return 0
        try:
            sent = self._transport.send(packets)
        except OSError as e:  # UDP: a refused or failed send loses packets, not the stream
            self.packets_dropped += len(packets)
            self._warn_once("send", "%s: send to %s failed (%s); counting dropped packets",
                            self.actor_id, self.dest, e)
            return 0
        self.packets_sent += sent
        self.packets_dropped += len(packets) - sent
        return sent

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)


def _timebase_now(timebase: str) -> Callable[[], int]:
    if timebase == "monotonic":
        return time.monotonic_ns
    if timebase == "realtime":
        return time.time_ns
    return SystemTAITimeSource().now_ns


def _load_sdp(label: str, sdp: str) -> SDPStream:
    text = sdp
    if "\n" not in sdp and not sdp.lstrip().startswith("v="):
        try:
            with open(sdp, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"{label}: sdp: cannot read {sdp!r}: {e}") from None
    try:
        streams = [s for s in parse_sdp(text) if s.media == "audio"]
    except ValueError as e:
        raise SDPError(f"{label}: sdp: {e}") from None
    if not streams:
        raise SDPError(f"{label}: sdp: no L24/L16 audio stream in the SDP")
    return streams[0]


class AudioNetworkReceiveActor(Actor):
    """Receives an ST 2110-30 RTP stream (L24/L16) and publishes ``outputs['audio']``.

    Configured from an SDP (``sdp``: a file path or the text; its address, port,
    encoding, rate, channels and payload type override the other arguments) or
    from ``dest`` + ``encoding``/``sample_rate``/``channels``. Its clock polls the
    socket (default: twice per frame); packets are reordered within
    ``reorder_window`` packets, holes become silence (``metadata['concealed']``)
    and every datagram is accounted for in ``stats`` (lost, late, duplicate,
    malformed ...). Frames hold ``frame_ms`` of audio, ``timestamp_ns`` from the
    RTP timestamp unwrapped against ``timebase`` (see ``streamlib.net.audio``)
    and ``clock_id`` = ``timebase``. When nothing arrives for ``flush_after_ms``
    of tick time, held packets and the partial frame are output.

    Args:
        sdp: SDP file path or text describing the stream (first audio section).
        dest: ``"host:port"`` to listen on; a host alone (or None: 127.0.0.1)
            takes a port from ``AUDIO_PORTS`` (see ``.port``).
        encoding: ``L24`` or ``L16``.
        sample_rate: Hz.
        channels: 1..64.
        payload_type: accepted RTP payload type; None accepts any.
        frame_ms: output frame length (whole samples).
        reorder_window: later packets that may arrive before a missing one is lost.
        max_conceal_ms: longest hole filled with silence; longer ones re-anchor.
        flush_after_ms: idle time after which held audio is output.
        timebase: ``tai`` (ST 2110 / PTP senders), ``monotonic`` or ``realtime``:
            the clock the sender's timestamps came from.
        poll_hz: socket polls per second (default ``2000 / frame_ms``).
        allow_remote: allow listening on a non-loopback address (needed for multicast).
        multicast_interface: IPv4 address of the interface that joins a multicast
            ``dest`` (``0.0.0.0``: the kernel's choice; ``127.0.0.1``: loopback only).
        ssrc: play only this RTP SSRC (default: the SDP's ``a=ssrc``, if any). None:
            lock to the first SSRC seen; another is
            followed only after the locked one has been silent for 100 ms (a restarted
            sender). Other sources' packets are counted in ``stats.foreign_ssrc``.
        sources: play only datagrams from these sender IP addresses (with an SDP: the
            senders it names, ``streamlib.net.sdp.stream_sources``, unless given).
            Neither: with ``ssrc=None`` the first sender address is locked to and left
            only after 100 ms of its silence (logged, ``stats.source_changes``); with
            ``ssrc=`` any address may carry it. Rejected: ``stats.foreign_source``.
        actor_id: unique id (default: generated).

    Raises:
        ConfigError: a bad parameter or an unreadable SDP file (the message names it).
        SDPError: invalid SDP text, or no L24/L16 stream in it.
    """

    def __init__(self, sdp: str | None = None, dest: str | None = None, encoding: Encoding = "L24",
                 sample_rate: int = 48000, channels: int = 2, payload_type: int | None = None, *,
                 frame_ms: float = 20.0, reorder_window: int = 8, max_conceal_ms: float = 200.0,
                 flush_after_ms: float = 50.0, timebase: Timebase = "tai",
                 poll_hz: float | None = None, allow_remote: bool = False,
                 multicast_interface: str = "0.0.0.0", ssrc: int | None = None,
                 sources: Sequence[str] | None = None,
                 actor_id: str | None = None, clock: Clock | None = None, **kwargs: Any) -> None:
        label = _label("AudioNetworkReceiveActor", actor_id)
        if isinstance(sources, str):
            raise ConfigError(f"{label}: sources must be a sequence of addresses, "
                              f"got {sources!r}")
        named: tuple[str, ...] = tuple(sources) if sources is not None else ()
        if sdp is not None:
            if not isinstance(sdp, str) or not sdp:
                raise ConfigError(f"{label}: sdp must be a file path or SDP text, got {sdp!r}")
            stream = _load_sdp(label, sdp)
            encoding, sample_rate = stream.encoding, stream.clock_rate  # type: ignore[assignment]
            channels, payload_type = stream.channels or 1, stream.payload_type
            if sources is None:
                named = stream_sources(stream)
            try:
                ssrc = stream_ssrc(stream) if ssrc is None else ssrc
            except ValueError as e:
                raise SDPError(f"{label}: sdp: {e}") from None
            dest = f"[{stream.address}]:{stream.port}" if ":" in stream.address else \
                f"{stream.address}:{stream.port}"
        fmt = _format(label, encoding, sample_rate, channels)
        if timebase not in TIMEBASES:
            raise ConfigError(f"{label}: timebase must be one of {TIMEBASES}, got {timebase!r}")
        if not (isinstance(flush_after_ms, (int, float)) and flush_after_ms > 0):
            raise ConfigError(f"{label}: flush_after_ms must be > 0, got {flush_after_ms!r}")
        if poll_hz is not None and not (isinstance(poll_hz, (int, float)) and poll_hz > 0):
            raise ConfigError(f"{label}: poll_hz must be > 0 or None, got {poll_hz!r}")
        lock = SourceLock(named, follow=ssrc is None, name=label)  # names the actor
        try:
            frame_samples = fmt.samples_for_ms(frame_ms, "frame_ms")
            depack = AudioDepacketizer(fmt, frame_samples=frame_samples, payload_type=payload_type,
                                       reorder_window=reorder_window, max_conceal_ms=max_conceal_ms,
                                       now_ns=_timebase_now(timebase), clock_id=timebase,
                                       ssrc=ssrc, source_lock=lock)
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from None
        host, port = _parse_dest(label, dest, allow_remote) if dest is not None else ("127.0.0.1", None)
        if is_multicast(host) and ":" in host:
            raise ConfigError(f"{label}: dest: IPv6 multicast is not supported, got {dest!r}")
        try:
            check_multicast_interface(multicast_interface)
        except ValueError as e:
            raise ConfigError(f"{label}: {e}") from None
        if clock is None:
            clock = SoftwareClock(poll_hz if poll_hz is not None else 2000.0 / float(frame_ms))
        super().__init__(actor_id=actor_id, clock=clock, **kwargs)
        if port is None:
            key = ("audio-receive", str(self.uri))
            port = AUDIO_PORTS.allocate(key)
            self.add_close_callback(lambda: _release(key))
        self.host_address, self.port = host, port
        self.format, self.depacketizer = fmt, depack
        self.sources = named
        self.frame_ms, self.timebase = float(frame_ms), timebase
        self.multicast_interface = multicast_interface
        self.flush_after_ns = int(flush_after_ms * 1_000_000)
        self.outputs["audio"] = StreamOutput("audio")
        self._transport: PacketSource | None = None
        self._last_packet_ns: int | None = None
        self._idle_flushed = True

    @property
    def stats(self) -> AudioReceiveStats:
        """Packet accounting (see :class:`~streamlib.net.audio.AudioReceiveStats`)."""
        return self.depacketizer.stats

    def open_transport(self) -> PacketSource:
        """The packet source ``setup`` uses: a UDP socket bound to ``dest`` (recvmmsg),
        joined to the group on ``multicast_interface`` when ``dest`` is multicast."""
        return _UDPSource((self.host_address, self.port), self.multicast_interface)

    def setup(self) -> None:
        self._transport = self.open_transport()

    def teardown(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def process(self, tick: TimedTick) -> None:
        if self._transport is None:
            return
        out = self.outputs["audio"]
        receive_from = getattr(self._transport, "receive_from", None)
        datagrams: Sequence[tuple[bytes | memoryview, str | None]] = (
            receive_from() if receive_from is not None
            else [(d, None) for d in self._transport.receive()])  # no addresses: no lock
        for datagram, source in datagrams:
            for frame in self.depacketizer.push(datagram, source):
                out.write(frame)
        if datagrams:
            self._last_packet_ns, self._idle_flushed = tick.timestamp_ns, False
        elif not self._idle_flushed and self._last_packet_ns is not None and \
                tick.timestamp_ns - self._last_packet_ns >= self.flush_after_ns:
            self._idle_flushed = True
            for frame in self.depacketizer.flush(partial=True):
                out.write(frame)


__all__ = ["AUDIO_PORTS", "AudioNetworkReceiveActor", "AudioNetworkSendActor", "PacketSink",
           "PacketSource", "TIMEBASES"]
