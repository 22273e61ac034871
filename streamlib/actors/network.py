"""ST 2110-20 video over RTP/UDP: ``NetworkSendActor`` and ``NetworkReceiveActor``.

The sender packs each RGB frame into pgroups (``streamlib.net.pgroup``, BT.709
limited range), stamps it with the 90 kHz RTP time of the frame's own
``timestamp_ns`` (ST 2110-10: streams from one clock line up; use a ``PTPClock``
upstream for TAI-traceable times) and sends RFC 4175 packets paced over the frame
period from a thread of its own (UDP GSO + sendmmsg). It describes the stream in
SDP (``.sdp``, and ``sdp_path`` when given) that GStreamer, FFmpeg and ST 2110
receivers accept, and ``NetworkReceiveActor(sdp=...)`` reads.

The receiver binds one UDP port, reassembles frames on a thread of its own
(``streamlib.net.jitter``: reordering within ``jitter_ms``, loss/late/duplicate/
malformed counters, concealment or dropping of incomplete frames) and each tick
outputs every frame finished since the last tick as an RGB24 ``VideoFrame`` whose
metadata carries ``rtp_timestamp``, ``complete``, ``missing_lines``,
``concealed`` and ``packets``.

Multicast (IPv4, any-source): a sender to a group sets the outgoing interface and
TTL (``multicast_interface``, ``multicast_ttl``) and writes ``c=IN IP4 <group>/<ttl>``;
a receiver whose ``dest`` or SDP ``c=`` address is a group binds to it and joins it on
``multicast_interface``. The receiver locks to one sender address
(``streamlib.net.source_lock``: the SDP's ``a=source-filter``/``o=`` sender, or
``sources=``, else the first one seen) and to one RTP SSRC (``ssrc=``, else the first
it sees; see ``streamlib.net.jitter``), counting other senders' packets in
``stats().foreign_source`` and other SSRCs' in ``stats().foreign_ssrc``.

Destinations are loopback-only unless ``allow_remote=True`` (``streamlib.net.udp``);
a multicast group is not loopback, so sending to or joining one needs it too.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import time
from collections.abc import Sequence
from typing import Any

import torch

from streamlib.core.actor import Actor
from streamlib.actors.network_device import DeviceFramePacker
from streamlib.clocks import SoftwareClock, TimedTick
from streamlib.core.frames import PixelFormat, VideoFrame
from streamlib.net.assembler import FrameAssembler, ReceiverStats
from streamlib.net.jitter import VideoStreamReceiver
from streamlib.net.pgroup import VideoFormat, format_from_fmtp, pack_rgb_fast, parse_format, \
    unpack_to_rgb_fast
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.net.video_sender import SENDER_TIMINGS, VideoStreamSender
from streamlib.net.rtp import media_timestamp
from streamlib.net.sdp import (
    SDPStream, parse_rate, parse_sdp, stream_sources, stream_ssrc, video_stream, write_sdp,
)
from streamlib.net.source_lock import SourceLock
from streamlib.net.udp import (
    DEFAULT_MULTICAST_TTL, check_destination, check_multicast_interface, check_multicast_ttl,
    is_multicast, open_receiver, open_sender, parse_dest,
)
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.core.registry import default_port_allocator
from streamlib.errors import ConfigError, ConfigTypeError, FrameValidationError, SDPError

__all__ = ["NetworkSendActor", "NetworkReceiveActor", "VIDEO_PORTS"]

logger = logging.getLogger("streamlib.network")

# Ports handed out when no port is given: the process-wide allocator shared with the
# audio actors (``AUDIO_PORTS`` is the same object), so no two streams get one port.
VIDEO_PORTS = default_port_allocator()


def _release_port(key: str) -> None:
    VIDEO_PORTS.release(key)


def _who(cls: str, actor_id: str | None) -> str:
    return f"{cls}{f' {actor_id!r}' if actor_id else ''}"


def _check_ssrc(who: str, ssrc: int | None) -> None:
    if ssrc is not None and (isinstance(ssrc, bool) or not isinstance(ssrc, int)
                             or not 0 <= ssrc <= 0xFFFFFFFF):
        raise ConfigError(f"{who}: ssrc must be an int in 0..0xFFFFFFFF or None, got {ssrc!r}")


def _check_multicast(who: str, multicast_interface: str, multicast_ttl: int | None) -> None:
    try:
        check_multicast_interface(multicast_interface)
        if multicast_ttl is not None:
            check_multicast_ttl(multicast_ttl)
    except ValueError as e:
        raise ConfigError(f"{who}: {e}") from None


def _check_size(who: str, width: int | None, height: int | None, fmt: VideoFormat) -> None:
    for name, v in (("width", width), ("height", height)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= 16384):
            raise ConfigError(f"{who}: {name} must be an int in 1..16384 or None, got {v!r}")
    if width is not None and width % fmt.pgroup_pixels:
        raise ConfigError(f"{who}: width must be a multiple of {fmt.pgroup_pixels} for "
                          f"{fmt.name}, got {width}")


class NetworkSendActor(Actor):
    """Sends video as ST 2110-20 (RFC 4175 RTP over UDP), paced, and describes it in SDP.

    Args:
        dest: ``"host:port"`` to send to (``"127.0.0.1:5004"``, ``"[::1]:5004"``); a host
            alone takes an even port from ``VIDEO_PORTS`` (5004-6998, shared with audio).
        format: ``"YCbCr-4:2:2/10"``, ``"YCbCr-4:2:2/8"`` or ``"RGB/8"``.
        width: frame width (None: the first frame's; the SDP is written then).
        height: frame height (None: the first frame's).
        fps: frame rate: packets are spread over ``pacing`` / fps per frame, and the
            SDP says ``exactframerate`` (59.94 is written 60000/1001).
        payload_type: RTP payload type (96-127).
        sdp_path: also write the SDP to this file (as soon as the size is known).
        pacing: fraction of the frame period the packets are spread over (0: bursts).
        gso: send with UDP GSO where the OS has it (about twice the packet rate).
        allow_remote: allow destinations outside 127.0.0.0/8 and ::1 (multicast groups
            included).
        block_s: how long ``process`` waits for a free send buffer before dropping the
            frame (counted in ``stats()["frames_dropped"]``); default two frame periods.
        ssrc: RTP SSRC (None: random).
        ts_refclk: the SDP ``a=ts-refclk`` (``"ptp=IEEE1588-2008:traceable"`` when the
            frames come from a ``PTPClock`` locked to PTP).
        device: ``"cuda"`` makes the sender GPU-resident: CUDA frames reach it
            without staging, and YCbCr-4:2:2/10 frames are packed into pgroups by
            the CUDA kernel (``streamlib.gpu.kernels``); only the packed bytes cross
            to the host, in one non-blocking copy into the sender's page-locked
            buffer that its thread waits for (``streamlib.actors.network_device``).
            Default: the CPU path (numba/numpy packing).
        multicast_interface: for a multicast ``dest``: IPv4 address of the interface
            the stream leaves by (IP_MULTICAST_IF; ``"0.0.0.0"``: the kernel's choice,
            ``"127.0.0.1"``: this host only).
        multicast_ttl: for a multicast ``dest``: IP TTL, 0..255 (0: never leaves this
            host); the SDP says ``c=IN IP4 <group>/<ttl>``.
        timing: ST 2110-21 sender timing. ``"burst"`` (default): steps of 88 packets
            over ``pacing`` of the frame period with UDP GSO, the highest packet rate
            and what loopback needs; it meets no ST 2110-21 class, so the SDP has no
            ``TP``. ``"narrow"`` / ``"wide"``: one packet per TRS paced by the kernel
            (``SO_MAX_PACING_RATE``, no GSO) and SDP ``TP=2110TPN`` / ``2110TPW``; true
            only where the egress qdisc paces (fq, or a tbf at the stream's rate; see
            ``streamlib.net.video_sender.VideoStreamSender``), never on loopback.

    Raises ConfigError (naming the actor and field) for a bad argument, a non-loopback
    ``dest`` without ``allow_remote`` or an IPv6 multicast ``dest``.
    """

    def __init__(self, dest: str = "127.0.0.1:5004", format: str = "YCbCr-4:2:2/10",
                 width: int | None = None, height: int | None = None, fps: float = 60.0,
                 payload_type: int = 96, sdp_path: str | None = None, pacing: float = 0.9,
                 gso: bool = True, allow_remote: bool = False, block_s: float | None = None,
                 ssrc: int | None = None, ts_refclk: str = "localmac=00-00-00-00-00-00",
                 device: str | None = None, *, multicast_interface: str = "0.0.0.0",
                 multicast_ttl: int = DEFAULT_MULTICAST_TTL, timing: str = "burst",
                 actor_id: str | None = None, **kwargs: Any) -> None:
        who = _who("NetworkSendActor", actor_id)
        if timing not in SENDER_TIMINGS:
            raise ConfigError(f"{who}: timing must be one of {SENDER_TIMINGS}, got {timing!r}")
        self.timing = timing
        _check_multicast(who, multicast_interface, multicast_ttl)
        _check_ssrc(who, ssrc)
        from streamlib.gpu.device import resolve_device

        # The staging bridge reads ``self.device``: a CUDA sender gets CUDA frames.
        self.device = None if device is None else resolve_device(device, where=f"{who}: device")
        try:
            self.video_format = parse_format(format)
        except ValueError as e:
            raise ConfigError(f"{who}: format: {e}") from None
        _check_size(who, width, height, self.video_format)
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise ConfigError(f"{who}: fps must be > 0, got {fps!r}")
        if not isinstance(payload_type, int) or not 96 <= payload_type <= 127:
            raise ConfigError(f"{who}: payload_type must be a dynamic type 96-127, "
                              f"got {payload_type!r}")
        if not 0 <= pacing <= 1:
            raise ConfigError(f"{who}: pacing must be in 0..1, got {pacing!r}")
        if not isinstance(dest, str):
            raise ConfigTypeError(f"{who}: dest must be a 'host:port' str, got "
                                  f"{type(dest).__name__}")
        super().__init__(actor_id=actor_id, **kwargs)
        try:
            if dest.rsplit(":", 1)[-1].isdigit() and not dest.endswith("]"):
                self.dest = parse_dest(dest, allow_remote=allow_remote)
            else:
                host = "127.0.0.1" if dest == "localhost" else dest.strip("[]")
                check_destination(host, allow_remote=allow_remote)
                key = str(self.uri)
                self.dest = (host, VIDEO_PORTS.allocate(key))
                self.add_close_callback(functools.partial(_release_port, key))  # also unrun
            if is_multicast(self.dest[0]) and ":" in self.dest[0]:
                raise ConfigError(f"IPv6 multicast is not supported, got {dest!r}")
        except ValueError as e:
            raise ConfigError(f"{who}: dest: {e}") from None
        self.multicast = is_multicast(self.dest[0])
        self.multicast_interface, self.multicast_ttl = multicast_interface, multicast_ttl
        self.width, self.height, self.fps = width, height, float(fps)
        self.payload_type, self.sdp_path = payload_type, sdp_path
        self.pacing, self.gso, self.allow_remote = pacing, gso, allow_remote
        self.block_s = 2.0 / self.fps if block_s is None else float(block_s)
        self.ssrc = random.getrandbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self.ts_refclk = ts_refclk
        self.inputs["video"] = StreamInput("video")
        self._sender: VideoStreamSender | None = None
        self._packer = DeviceFramePacker(self.video_format)  # for CUDA frames
        self._sdp: str | None = None
        self.frames_in = 0
        self._done = {"frames_sent": 0, "frames_dropped": 0, "packets_sent": 0,
                      "late_frames": 0}  # totals of senders already closed
        if width is not None and height is not None:
            self._write_sdp()

    @property
    def sdp(self) -> str | None:
        """The stream's SDP text (None until the frame size is known)."""
        return self._sdp

    def sdp_stream(self) -> SDPStream | None:
        """The stream as an ``SDPStream`` (None until the frame size is known)."""
        if self.width is None or self.height is None:
            return None
        return video_stream(
            self.dest[0], self.dest[1], width=self.width, height=self.height,
            sampling=self.video_format.sampling, depth=self.video_format.depth, fps=self.fps,
            payload_type=self.payload_type, ts_refclk=self.ts_refclk,
            ttl=self.multicast_ttl if self.multicast else None,
            tp={"narrow": "2110TPN", "wide": "2110TPW"}.get(self.timing))

    def _write_sdp(self) -> None:
        stream = self.sdp_stream()
        assert stream is not None
        self._sdp = write_sdp([stream], session_name=f"streamlib {self.actor_id}")
        if self.sdp_path:
            tmp = f"{self.sdp_path}.tmp{os.getpid()}"
            with open(tmp, "w", newline="") as f:
                f.write(self._sdp)
            os.replace(tmp, self.sdp_path)  # readers never see a half-written file

    def _open(self, width: int, height: int, device_frames: bool) -> VideoStreamSender:
        packetizer = VideoPacketizer(self.video_format, width, height,
                                     payload_type=self.payload_type, ssrc=self.ssrc)
        sock = open_sender(self.dest, allow_remote=self.allow_remote,
                           multicast_interface=self.multicast_interface,
                           multicast_ttl=self.multicast_ttl)
        kwargs: dict[str, Any] = {}
        if device_frames and self._packer.direct:  # CUDA frames are copied into pinned buffers
            kwargs["alloc"] = self._packer.alloc
        return VideoStreamSender(sock, packetizer, self.fps, pacing=self.pacing, gso=self.gso,
                                 timing=self.timing, **kwargs)

    def process(self, tick: TimedTick) -> None:
        for frame in self.inputs["video"].read_all_new():
            self._send(frame)

    def _send(self, frame: VideoFrame) -> None:
        who = _who("NetworkSendActor", self.actor_id)
        if frame.format not in (PixelFormat.RGB24, PixelFormat.RGBA):
            raise FrameValidationError(f"{who}: needs rgb24 or rgba frames, got "
                                       f"{frame.format.value}")
        if self._sender is None:
            if self.width is None or self.height is None:
                self.width, self.height = frame.width, frame.height
                _check_size(who, self.width, self.height, self.video_format)
                self._write_sdp()
            self._sender = self._open(self.width, self.height, frame.data.is_cuda)
        if (frame.width, frame.height) != (self.width, self.height):
            raise FrameValidationError(f"{who}: frame is {frame.width}x{frame.height}, "
                                       f"the stream is {self.width}x{self.height}")
        self.frames_in += 1
        buf = self._sender.acquire(timeout=self.block_s)
        if buf is None:
            return
        ready = None  # the event of a device->host copy into buf still running
        try:
            if frame.data.is_cuda:
                ready = self._packer.pack(frame, buf)
            else:
                pack_rgb_fast(frame.data, self.video_format, out=buf)
        except BaseException:
            self._sender.release(buf)
            raise
        self._sender.submit(buf, media_timestamp(frame.timestamp_ns, 90000), ready)

    def stats(self) -> dict[str, Any]:
        """Frames in/sent/dropped, packets sent, frames sent late, whether GSO is on."""
        s = self._sender
        out: dict[str, Any] = {"frames_in": self.frames_in}
        for k, v in self._done.items():
            out[k] = v + (getattr(s, k) if s else 0)
        out["gso"] = s.gso if s else None
        return out

    def flush(self, timeout: float = 5.0) -> None:
        """Send everything queued and stop the sender (the next frame reopens it)."""
        sender, self._sender = self._sender, None
        if sender is not None:
            sender.close(timeout)
            self._packer.forget()  # its pinned buffers go with it
            for k in self._done:
                self._done[k] += getattr(sender, k)

    def teardown(self) -> None:
        self.flush()
        VIDEO_PORTS.release(str(self.uri))


class NetworkReceiveActor(Actor):
    """Receives ST 2110-20 video (RFC 4175 over RTP/UDP) and outputs RGB24 frames.

    Args:
        sdp: SDP text, or the path of an ``.sdp`` file; its first video stream sets the
            address, port, format, size, rate and payload type (other arguments that
            say the same are ignored); a multicast ``c=`` address is joined.
        dest: ``"host:port"`` to listen on without an SDP (port 0: any free port; a
            host alone: an even port from ``VIDEO_PORTS``, 5004-6998 shared with audio;
            either way see ``.port``).
            A multicast group (``"239.1.2.3:5004"``) is bound and joined.
        format: ``"YCbCr-4:2:2/10"``, ``"YCbCr-4:2:2/8"`` or ``"RGB/8"`` (without SDP).
        width: frame width (without SDP).
        height: frame height (without SDP).
        fps: tick rate of the default clock (without SDP: also the stream's rate).
        payload_type: accept only this RTP payload type (without SDP).
        jitter_ms: how long an incomplete frame waits for reordered packets once the
            next frame has started arriving.
        policy: ``"conceal"`` (missing lines repeat the previous frame; metadata says
            so) or ``"drop"`` for incomplete frames.
        max_frames: end the stream (close the clock) after this many frames.
        timeout_s: end the stream when no frame has arrived for this long.
        wait_s: when a tick finds no new frame, wait up to this long for one (with a
            ``VirtualClock``: one frame per tick, as fast as they arrive; note that a
            lock-step runtime holds every other virtual clock while this waits, so do
            not feed the sender from the same lock-step runtime).
        rcvbuf: socket receive buffer in bytes (SO_RCVBUFFORCE is tried past rmem_max).
        allow_remote: allow joining a multicast group (its IGMP reports leave this host
            unless ``multicast_interface`` is ``127.0.0.1``).
        multicast_interface: IPv4 address of the interface that joins a multicast
            group (``"0.0.0.0"``: the kernel's choice; ``"127.0.0.1"``: loopback only).
        ssrc: accept only this RTP SSRC (default: the SDP's ``a=ssrc``, if any). None:
            lock to the first SSRC seen, and move to
            another only after the locked one has been silent for 100 ms (a restarted
            sender). Packets of other SSRCs are dropped and counted in
            ``stats().foreign_ssrc``.
        sources: accept datagrams only from these sender IP addresses (with an SDP:
            the senders it names, ``streamlib.net.sdp.stream_sources``, unless given).
            Neither: with ``ssrc=None`` the receiver locks to the first sender address
            and moves only after 100 ms of its silence, logging and counting the change
            (``stats().source_changes``); with ``ssrc=`` given any address may carry it.
            Rejected datagrams are counted in ``stats().foreign_source``.

    Raises SDPError or ConfigError (naming the field) for a bad SDP or argument, OSError if the
    port cannot be bound or the group not joined.
    """

    def __init__(self, sdp: str | None = None, dest: str | None = None,
                 format: str = "YCbCr-4:2:2/10", width: int | None = None,
                 height: int | None = None, fps: float = 60.0, payload_type: int = 96,
                 jitter_ms: float = 5.0, policy: str = "conceal",
                 max_frames: int | None = None, timeout_s: float | None = None,
                 wait_s: float = 0.0, rcvbuf: int = 64 << 20, *, allow_remote: bool = False,
                 multicast_interface: str = "0.0.0.0", ssrc: int | None = None,
                 sources: Sequence[str] | None = None,
                 actor_id: str | None = None, **kwargs: Any) -> None:
        who = _who("NetworkReceiveActor", actor_id)
        _check_multicast(who, multicast_interface, None)
        _check_ssrc(who, ssrc)
        named: tuple[str, ...] = ()
        if sdp is not None:
            host, port, fmt, width, height, fps_s, payload_type, named, sdp_ssrc = \
                self._from_sdp(who, sdp)
            fps = float(fps_s) if fps_s is not None else fps
            ssrc = sdp_ssrc if ssrc is None else ssrc
        else:
            if dest is None:
                raise ConfigError(f"{who}: give sdp= or dest= (and format/width/height)")
            try:
                fmt = parse_format(format)
                if ":" in dest and dest.rsplit(":", 1)[-1].isdigit() and not dest.endswith("]"):
                    host, port = parse_dest(dest, allow_zero=True, allow_remote=True)
                else:  # a host alone: a port from VIDEO_PORTS (see .port)
                    host, port = ("127.0.0.1" if dest == "localhost" else dest.strip("[]")), -1
            except ValueError as e:
                raise ConfigError(f"{who}: {e}") from None
        if is_multicast(host):
            field = "sdp" if sdp is not None else "dest"
            if ":" in host:
                raise ConfigError(f"{who}: {field}: IPv6 multicast is not supported, "
                                  f"got {host}")
            if not allow_remote:
                raise ConfigError(f"{who}: {field}: joining multicast group {host} needs "
                                  f"allow_remote=True")
        if width is None or height is None:
            raise ConfigError(f"{who}: width and height are required without an SDP")
        _check_size(who, width, height, fmt)
        self.width: int = width
        self.height: int = height
        if policy not in ("conceal", "drop"):
            raise ConfigError(f"{who}: policy must be 'conceal' or 'drop', got {policy!r}")
        if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
            raise ConfigError(f"{who}: max_frames must be a positive int or None, "
                              f"got {max_frames!r}")
        if not jitter_ms >= 0 or wait_s < 0 or (timeout_s is not None and not timeout_s > 0):
            raise ConfigError(f"{who}: jitter_ms and wait_s must be >= 0 and timeout_s > 0, "
                              f"got {jitter_ms!r}, {wait_s!r}, {timeout_s!r}")
        if kwargs.get("clock") is None:
            kwargs["clock"] = SoftwareClock(fps)
        super().__init__(actor_id=actor_id, **kwargs)
        self.video_format, self.fps = fmt, fps
        self.payload_type, self.policy = payload_type, policy
        self.ssrc, self.multicast_interface = ssrc, multicast_interface
        if isinstance(sources, str):
            raise ConfigError(f"{who}: sources must be a sequence of addresses, got {sources!r}")
        self.sources: tuple[str, ...] = tuple(sources) if sources is not None else named
        SourceLock(self.sources, name=who)  # a bad address fails here, naming the actor
        self.jitter_ms, self.max_frames, self.timeout_s, self.wait_s = (
            jitter_ms, max_frames, timeout_s, wait_s)
        self.outputs["video"] = StreamOutput("video")
        # Bound now: a bad or busy port fails at construction, and packets that arrive
        # before the graph starts wait in the socket buffer.
        self._port_key: str | None = None

        def bind(p: int) -> socket.socket:
            return open_receiver((host, p), rcvbuf=rcvbuf, multicast_interface=multicast_interface)

        if port < 0:  # an allocated port another program holds is skipped
            self._port_key = f"{self.uri}#rx"
            port, self._sock = VIDEO_PORTS.allocate_bound(self._port_key, bind)
        else:
            self._sock = bind(port)
        self.add_close_callback(self._close_socket)  # also when the graph never ran
        self.host, self.port = host, int(self._sock.getsockname()[1])
        self._rx: VideoStreamReceiver | None = None
        self.frames_out = 0
        self._last_frame_ns = 0
        self._finished = False

    @staticmethod
    def _from_sdp(who: str, sdp: str) -> tuple[str, int, VideoFormat, int, int, str | None,
                                                int, tuple[str, ...], int | None]:
        text = sdp
        if "\n" not in sdp and "v=0" not in sdp:
            try:
                with open(sdp) as f:
                    text = f.read()
            except OSError as e:
                raise ConfigError(f"{who}: sdp: cannot read {sdp!r}: {e}") from None
        try:
            streams = [s for s in parse_sdp(text) if s.media == "video" and s.encoding == "raw"]
            if not streams:
                raise SDPError("no raw (ST 2110-20) video stream in the SDP")
            s = streams[0]
            fmt = format_from_fmtp(s.fmtp.get("sampling", "?"), s.fmtp_int("depth"))
            rate = s.fmtp.get("exactframerate")
            fps = str(float(parse_rate(rate))) if rate else None
            return (s.address, s.port, fmt, s.fmtp_int("width"), s.fmtp_int("height"), fps,
                    s.payload_type, stream_sources(s), stream_ssrc(s))
        except ValueError as e:
            raise SDPError(f"{who}: sdp: {e}") from None

    def setup(self) -> None:
        assembler = FrameAssembler(self.video_format, self.width, self.height,
                                   payload_type=self.payload_type, jitter_ms=self.jitter_ms,
                                   policy="drop" if self.policy == "drop" else "conceal",
                                   ssrc=self.ssrc)
        lock = SourceLock(self.sources, follow=self.ssrc is None, name=self.actor_id,
                          family=self._sock.family)
        self._rx = VideoStreamReceiver(self._sock, assembler, source_lock=lock)
        self._last_frame_ns = time.monotonic_ns()

    def process(self, tick: TimedTick) -> None:
        rx = self._rx
        if rx is None or self._finished:
            return
        got = rx.get(self.wait_s)
        while got is not None:
            self._emit(got, tick)
            if self._finished:
                return
            got = rx.get()
        if self.timeout_s is not None and \
                time.monotonic_ns() - self._last_frame_ns > self.timeout_s * 1e9:
            logger.info("%s: no frame for %.1f s, ending the stream", self.actor_id,
                        self.timeout_s)
            self._finish()

    def _emit(self, got: Any, tick: TimedTick) -> None:
        rgb = unpack_to_rgb_fast(got.data, self.video_format, self.width, self.height)
        self.outputs["video"].write(VideoFrame(
            torch.from_numpy(rgb), timestamp_ns=tick.timestamp_ns,
            frame_number=self.frames_out, clock_id=tick.clock_id,
            metadata={"rtp_timestamp": got.rtp_timestamp, "complete": got.complete,
                      "missing_lines": got.missing_lines, "concealed": got.concealed,
                      "packets": got.packets}))
        self.frames_out += 1
        self._last_frame_ns = time.monotonic_ns()
        if self.max_frames is not None and self.frames_out >= self.max_frames:
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        if self.clock is not None:
            self.clock.close()

    def stats(self) -> ReceiverStats:
        """Packet/frame counters (``ReceiverStats``); zeros before the graph starts."""
        return self._rx.stats() if self._rx is not None else ReceiverStats()

    def teardown(self) -> None:
        rx, self._rx = self._rx, None
        if rx is not None:
            rx.close()
        self._close_socket()

    def _close_socket(self) -> None:
        self._sock.close()  # idempotent, like the release
        if self._port_key is not None:
            VIDEO_PORTS.release(self._port_key)

