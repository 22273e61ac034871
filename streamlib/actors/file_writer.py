"""``FileWriterActor``: encodes video (and optional audio) into a media file with PyAV.

Timing comes from the frames, not from arrival order: the first video frame's
``timestamp_ns`` is time zero, a video frame's pts is
``round((timestamp_ns - first) * fps / 1e9)`` in a ``1/fps`` time base and an
audio frame's first sample sits at ``round((timestamp_ns - first) * rate / 1e9)``.
So a file written from a realtime source that dropped frames keeps its real
duration (frames are held longer), and a lock-step ``VirtualClock`` render gets
one frame per tick exactly.

Gap policy: the file's declared rate is ``fps`` and a frame that never arrived
is a real gap in the pts (the previous picture is held), never a shift of the
later frames. Missing ``1/fps`` slots are counted in ``frames_missing``, frames
lost on the input link (overwritten unread) in ``link_dropped()``, and
``losses()`` sums them up for reports (``streamlib run`` prints a WARNING).

The container is opened lazily on the first video frame (its size is known
then). When the ``audio`` input is connected, opening waits (buffering at most
``audio_wait_frames`` video frames) for the first audio frame so the audio
stream can be declared before the header is written: a source usually writes
its video and audio in the same tick, but the writer may be ticked in between.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from streamlib.core.actor import Actor
from streamlib.clocks import FpsLike, TimedTick, parse_rate
from streamlib.errors import ConfigError
from streamlib.core.frames import AudioFrame, PixelFormat, VideoFrame
from streamlib.core.ports import StreamInput

logger = logging.getLogger("streamlib.file_writer")

_NS = 1_000_000_000
# PixelFormat -> PyAV format name of the ndarray we hand to av.VideoFrame.from_ndarray.
_AV_FORMATS: dict[PixelFormat, str] = {
    PixelFormat.RGB24: "rgb24", PixelFormat.RGBA: "rgba", PixelFormat.BGR24: "bgr24",
    PixelFormat.BGRA: "bgra", PixelFormat.GRAY8: "gray", PixelFormat.YUV420P: "yuv420p",
    PixelFormat.NV12: "nv12", PixelFormat.RGBF32: "rgb24",  # float frames are quantised first
}
_X26X = ("libx264", "libx265")
_MAX_PENDING_AUDIO = 512  # audio frames held while waiting for the first video frame


class FileWriterActor(Actor):
    """Encodes ``inputs['video']`` (and optional ``inputs['audio']``) into a file.

    No clock: every upstream write ticks it and each tick drains all unseen
    frames of both inputs, so a lock-step graph writes every frame. Frames
    whose pts does not increase (two frames in one ``1/fps`` slot) are skipped
    and counted in ``frames_dropped``; later frames of a different size are
    scaled to the first frame's. ``finalize()`` (also run by ``teardown``,
    i.e. on actor close or runtime close) flushes the encoders and writes the
    container trailer; it is idempotent and frames arriving afterwards are
    ignored.

    Audio is encoded with ``audio_codec`` at the first audio frame's rate and
    channel count (frames that differ are dropped with a warning). Sample
    timestamps within ``rate/100`` samples (10 ms) of the running sample count
    are taken as continuous; larger gaps are filled with silence and overlaps
    are trimmed, so A/V sync holds to 10 ms without clicks from timestamp jitter.

    Args:
        path: output file; the container format follows the extension
            (``.mp4``, ``.mkv``, ``.mov``...). Missing parent folders are
            created; the nearest existing one must be a writable folder.
        codec: video encoder name as known to FFmpeg (``libx264``, ``mpeg4``,
            ``mjpeg``...).
        fps: frame rate of the file's time base (int, float or ``"30000/1001"``).
        crf: constant rate factor for libx264/libx265 (0-51, lower is better);
            None leaves the encoder default.
        preset: libx264/libx265 speed preset (``veryfast`` by default).
        pix_fmt: encoder pixel format; default ``yuv420p`` for libx264/libx265,
            else the encoder's first supported format.
        bit_rate: target video bit rate in bit/s for encoders that use one.
        audio_codec: audio encoder name (``aac`` by default).
        audio_bit_rate: audio bit rate in bit/s.
        options: extra encoder options passed to FFmpeg (``{"tune": "film"}``).
        audio_wait_frames: video frames to buffer while waiting for the first
            audio frame when ``audio`` is connected (0: never wait).
        overwrite: replace an existing file at ``path`` (default: refuse).
        width, height: the file's frame size (both or neither); checked here
            against ``pix_fmt`` and every frame is scaled to it. Without them
            the first frame sets the size, and the upstream actor's declared
            ``width``/``height`` are checked in ``setup`` before any frame.
        actor_id: unique id (default: generated).

    Raises:
        ConfigError (a ValueError): unknown ``codec``/``audio_codec``, bad
            ``fps``, ``crf``, ``audio_wait_frames``, a frame size ``pix_fmt``
            cannot hold (odd for ``yuv420p``), a ``path`` with no known container
            extension, in an unwritable folder, or naming an existing file
            without ``overwrite=True`` (the message names the field).
    """

    def __init__(
        self, path: str, codec: str = "libx264", fps: FpsLike = 30, *,
        crf: int | None = 23, preset: str | None = "veryfast", pix_fmt: str | None = None,
        bit_rate: int | None = None, audio_codec: str = "aac", audio_bit_rate: int = 128_000,
        options: dict[str, str] | None = None, audio_wait_frames: int = 30,
        overwrite: bool = False, width: int | None = None, height: int | None = None,
        actor_id: str | None = None, **kwargs: Any,
    ) -> None:
        label = "FileWriterActor" + ("" if actor_id is None else f" '{actor_id}'")
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError(f"{label}: path must be a non-empty file path, got {path!r}")
        try:
            self.rate: Fraction = parse_rate(fps)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{label}: fps: {exc}") from None
        default_pix_fmt = _check_codec(label, "codec", codec, "video")
        self.pix_fmt = pix_fmt or default_pix_fmt
        _check_codec(label, "audio_codec", audio_codec, "audio")
        if crf is not None and not (isinstance(crf, int) and 0 <= crf <= 51):
            raise ConfigError(f"{label}: crf must be an int in 0..51 or None, got {crf!r}")
        if not isinstance(audio_wait_frames, int) or audio_wait_frames < 0:
            raise ConfigError(f"{label}: audio_wait_frames must be an int >= 0, "
                              f"got {audio_wait_frames!r}")
        if (width is None) != (height is None):
            raise ConfigError(f"{label}: width and height go together, got width={width!r} "
                              f"height={height!r}")
        if width is not None and height is not None:
            for name, value in (("width", width), ("height", height)):
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16384:
                    raise ConfigError(f"{label}: {name} must be an int in 1..16384, got {value!r}")
            _check_size(label, "width/height", self.pix_fmt, width, height)
        check_output_path(label, os.fspath(path), overwrite)
        kwargs.setdefault("dispatcher", "dedicated")  # encode work stays off the shared pool
        super().__init__(actor_id=actor_id, **kwargs)
        self.path = os.fspath(path)
        self.codec, self.audio_codec = codec, audio_codec
        self.fps = float(self.rate)
        self.crf, self.preset, self.bit_rate = crf, preset, bit_rate
        self.audio_bit_rate = audio_bit_rate
        self.options = dict(options or {})
        self.audio_wait_frames = audio_wait_frames
        self.overwrite = bool(overwrite)
        self._size = None if width is None or height is None else (width, height)
        # Deep enough that a realtime source outpacing one slow encode loses nothing.
        self.inputs["video"] = StreamInput("video", slots=8)
        self.inputs["audio"] = StreamInput("audio", slots=64)

        self.frames_written = 0       # video frames handed to the encoder
        self.frames_dropped = 0       # non-increasing pts, or arrived after finalize()
        self.frames_missing = 0       # 1/fps slots with no frame (gaps in the pts)
        self.frames_received = 0      # video frames read from the input
        self.audio_samples_written = 0
        self.audio_frames_dropped = 0
        self.width: int | None = None
        self.height: int | None = None
        self.sample_rate: int | None = None
        self.channels: int | None = None
        # One lock: finalize() may come from any thread while process() runs.
        self._lock = threading.Lock()
        self._container: Any = None
        self._vstream: Any = None
        self._astream: Any = None
        self._finalized = False
        self._closed_ok = False       # the container was closed without an error
        self._first_ts: int | None = None
        self._last_pts = -1
        self._pending_video: list[VideoFrame] = []
        self._pending_audio: list[AudioFrame] = []
        self._audio_next = 0          # next sample index (pts) the audio stream expects
        self._audio_buf: list[npt.NDArray[np.float32]] = []
        self._audio_buffered = 0
        self._audio_frame_size = 1024
        self._warned: set[str] = set()

    @property
    def finalized(self) -> bool:
        return self._finalized

    @property
    def completed(self) -> bool:
        """True when the file exists for real: frames were written and the
        container (trailer included) was closed without an error."""
        return self._closed_ok and self.frames_written > 0

    def link_dropped(self) -> int:
        """Video frames overwritten on the input link before this writer read them."""
        return self.inputs["video"].stats().dropped

    def losses(self) -> dict[str, int]:
        """Frames that did not reach the file: ``link`` (overwritten unread),
        ``gaps`` (missing ``1/fps`` slots), ``skipped`` (non-increasing pts or
        after ``finalize()``); all zero for a lossless render."""
        return {"link": self.link_dropped(), "gaps": self.frames_missing,
                "skipped": self.frames_dropped}

    # -- actor hooks -------------------------------------------------------
    def setup(self) -> None:
        # Fail before the first frame when the upstream declares a size the
        # pixel format cannot hold (what can be known before frames flow).
        if self._size is not None:
            return
        upstream = self.inputs["video"].upstream
        actor = upstream.actor if upstream is not None else None
        width, height = getattr(actor, "width", None), getattr(actor, "height", None)
        if actor is not None and isinstance(width, int) and isinstance(height, int):
            _check_size(self.actor_id, f"upstream {actor.actor_id!r} frame size",
                        self.pix_fmt, width, height)

    def process(self, tick: TimedTick) -> None:
        video = self.inputs["video"].read_all_new()
        audio = self.inputs["audio"].read_all_new()
        with self._lock:
            self.frames_received += len(video)
            if self._finalized:
                if video or audio:
                    self.frames_dropped += len(video)
                    self._warn_once("late", "%s: frames after finalize() are ignored", self.actor_id)
                return
            self._pending_video.extend(video)
            self._pending_audio.extend(audio)
            if len(self._pending_audio) > _MAX_PENDING_AUDIO:  # no video yet: keep the newest
                self.audio_frames_dropped += len(self._pending_audio) - _MAX_PENDING_AUDIO
                del self._pending_audio[:-_MAX_PENDING_AUDIO]
            if self._container is None and not self._ready_to_open():
                return
            try:
                self._drain()
            except Exception:
                # the actor fails; finalize() must not retry what just failed
                self._pending_video.clear()
                self._pending_audio.clear()
                raise

    def teardown(self) -> None:
        self.finalize()

    def finalize(self) -> None:
        """Flush the encoders and close the container; idempotent, any thread.

        Buffered video (still waiting for audio) is written without audio. When
        no video frame ever arrived nothing is created and a warning is logged.
        """
        with self._lock:
            if self._finalized:
                return
            self._finalized = True
            flushed = False
            try:
                if self._container is None and self._pending_video:
                    self._drain()
                if self._container is None:
                    logger.warning("%s: no video frames received; %s not written",
                                   self.actor_id, self.path)
                    return
                self._flush_audio(final=True)
                if self._astream is not None:
                    for packet in self._astream.encode(None):
                        self._container.mux(packet)
                for packet in self._vstream.encode(None):
                    self._container.mux(packet)
                flushed = True
            finally:
                container, self._container = self._container, None
                self._pending_video.clear()
                self._pending_audio.clear()
                if container is not None:
                    container.close()  # writes the trailer: the file is playable from here
                    self._closed_ok = flushed
        logger.info("%s: wrote %s (%d frames, %d audio samples)", self.actor_id, self.path,
                    self.frames_written, self.audio_samples_written)

    # -- opening -----------------------------------------------------------
    def _ready_to_open(self) -> bool:
        if not self._pending_video:
            return False
        if self._pending_audio or not self.inputs["audio"].is_connected:
            return True
        return len(self._pending_video) > self.audio_wait_frames

    def _open(self, first: VideoFrame) -> None:
        import av  # PyAV loads with the first file actor, not with `import streamlib`
        self.width, self.height = self._size or (first.width, first.height)
        _check_size(self.actor_id, "frame size", self.pix_fmt, self.width, self.height)
        # Again at open: the file may have appeared since construction.
        check_output_path(self.actor_id, self.path, self.overwrite)
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        options = dict(self.options)
        if self.codec in _X26X:
            if self.crf is not None:
                options.setdefault("crf", str(self.crf))
            if self.preset:
                options.setdefault("preset", self.preset)
        container = av.open(self.path, "w")
        try:
            vs: Any = container.add_stream(self.codec, rate=self.rate, options=options)
            vs.width, vs.height, vs.pix_fmt = self.width, self.height, self.pix_fmt
            vs.codec_context.time_base = Fraction(self.rate.denominator, self.rate.numerator)
            if self.bit_rate:
                vs.bit_rate = self.bit_rate
            audio = self._pending_audio[0] if self._pending_audio else None
            if audio is not None:
                self.sample_rate, self.channels = audio.sample_rate, audio.channels
                layout = {1: "mono", 2: "stereo"}.get(audio.channels, f"{audio.channels}c")
                self._astream = container.add_stream(self.audio_codec, rate=audio.sample_rate,
                                                     layout=layout)
                self._astream.bit_rate = self.audio_bit_rate
            container.start_encoding()  # opens the codecs: the audio frame size is known now
        except Exception:
            container.close()
            self._astream = None
            raise
        if self._astream is not None:
            self._audio_frame_size = self._astream.codec_context.frame_size or 1024
        self._container, self._vstream = container, vs
        self._first_ts = first.timestamp_ns
        logger.info("%s: writing %s (%s %dx%d @ %s fps%s)", self.actor_id, self.path, self.codec,
                    self.width, self.height, self.rate,
                    f", {self.audio_codec} {self.sample_rate} Hz x{self.channels}"
                    if self._astream is not None else "")

    def _drain(self) -> None:
        if self._container is None:
            self._open(self._pending_video[0])
        video, self._pending_video = self._pending_video, []
        audio, self._pending_audio = self._pending_audio, []
        for frame in video:
            self._write_video(frame)
        for aframe in audio:
            self._write_audio(aframe)

    # -- video -------------------------------------------------------------
    def _write_video(self, frame: VideoFrame) -> None:
        import av
        assert self._first_ts is not None
        pts = round(Fraction(frame.timestamp_ns - self._first_ts) * self.rate / _NS)
        if pts <= self._last_pts:
            self.frames_dropped += 1
            return
        self.frames_missing += max(0, pts - self._last_pts - 1)
        av_frame = av.VideoFrame.from_ndarray(_host_array(frame), format=_AV_FORMATS[frame.format])
        av_frame.pts = pts
        for packet in self._vstream.encode(av_frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.frames_written += 1

    # -- audio -------------------------------------------------------------
    def _write_audio(self, frame: AudioFrame) -> None:
        assert self._first_ts is not None
        if self._astream is None:
            self.audio_frames_dropped += 1
            self._warn_once("noaudio", "%s: audio arrived after %s was opened without an "
                            "audio stream; dropped", self.actor_id, self.path)
            return
        if frame.sample_rate != self.sample_rate or frame.channels != self.channels:
            self.audio_frames_dropped += 1
            self._warn_once("format", "%s: audio %d Hz x%d differs from the stream's %s Hz x%s; "
                            "dropped", self.actor_id, frame.sample_rate, frame.channels,
                            self.sample_rate, self.channels)
            return
        data = frame.data.detach().cpu().numpy()
        start = round(Fraction(frame.timestamp_ns - self._first_ts) * frame.sample_rate / _NS)
        expected = self._audio_next + self._audio_buffered
        tolerance = max(1, frame.sample_rate // 100)
        if start - expected > tolerance:  # a gap: fill with silence to keep sync
            self._queue_audio(np.zeros((start - expected, frame.channels), np.float32))
        elif expected - start > tolerance:  # an overlap (or before time zero): trim
            data = data[expected - start:]
        if len(data):
            self._queue_audio(np.ascontiguousarray(data, dtype=np.float32))
            self._flush_audio(final=False)

    def _queue_audio(self, data: npt.NDArray[np.float32]) -> None:
        self._audio_buf.append(data)
        self._audio_buffered += len(data)

    def _flush_audio(self, final: bool) -> None:
        """Encode whole codec frames from the buffer (and the remainder when ``final``)."""
        import av
        if self._astream is None or not self._audio_buffered:
            return
        size = self._audio_frame_size
        whole = np.concatenate(self._audio_buf) if len(self._audio_buf) > 1 else self._audio_buf[0]
        usable = len(whole) if final else len(whole) // size * size
        for start in range(0, usable, size):
            chunk = whole[start:start + size]
            # planar float, one row per channel: what the AAC encoder takes natively
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.T), format="fltp",
                                            layout=self._astream.layout.name)
            rate = self.sample_rate or 1  # set with the stream in _open
            af.sample_rate = rate
            af.pts = self._audio_next
            af.time_base = Fraction(1, rate)
            for packet in self._astream.encode(af):
                self._container.mux(packet)
            self._audio_next += len(chunk)
            self.audio_samples_written += len(chunk)
        rest = whole[usable:]
        self._audio_buf = [rest] if len(rest) else []
        self._audio_buffered = len(rest)

    def _warn_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)


def _host_array(frame: VideoFrame) -> npt.NDArray[Any]:
    """The frame as a contiguous host ndarray in the layout av.VideoFrame.from_ndarray wants."""
    data = frame.data.detach()
    if frame.format is PixelFormat.RGBF32:
        data = (data.clamp(0, 1) * 255).round().to(torch.uint8)
    if data.device.type != "cpu":
        data = data.cpu()
    arr = data.numpy()
    if frame.format is PixelFormat.GRAY8:
        arr = arr[..., 0]
    return np.ascontiguousarray(arr)


_EVEN_FORMATS = ("yuv420p", "yuvj420p", "nv12", "yuv422p", "yuvj422p")


def _check_size(label: str, field: str, pix_fmt: str, width: int, height: int) -> None:
    """ConfigError when ``pix_fmt`` cannot hold a ``width`` x ``height`` picture."""
    even_height = pix_fmt not in ("yuv422p", "yuvj422p")  # 4:2:2 halves the width only
    if pix_fmt in _EVEN_FORMATS and (width % 2 or (even_height and height % 2)):
        raise ConfigError(
            f"{label}: {field}: {pix_fmt} needs an even frame size, got {width}x{height}; "
            "crop or pass pix_fmt='yuv444p'")


@functools.lru_cache(maxsize=1)
def _muxer_extensions() -> frozenset[str]:
    """File extensions some FFmpeg muxer claims (what ``av.open(path, 'w')`` can guess)."""
    import av
    found: set[str] = set()
    for name in av.formats_available:
        try:
            fmt = av.ContainerFormat(name, "w")
        except (av.error.FFmpegError, ValueError):
            continue
        found.update(e.lower() for e in fmt.extensions)
    return frozenset(found)


def check_output_path(label: str, path: str, overwrite: bool) -> None:
    """ConfigError unless ``path`` can become a new media file: a known container
    extension, the nearest existing folder writable, not an existing file unless
    ``overwrite`` (then it must be a writable file)."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if not ext or ext not in _muxer_extensions():
        raise ConfigError(f"{label}: path: no container format for {path!r} (the format "
                          "follows the extension: .mp4, .mkv, .mov...)")
    if os.path.isdir(path):
        raise ConfigError(f"{label}: path: {path!r} is a folder, not a file")
    if os.path.lexists(path):
        if not overwrite:
            raise ConfigError(f"{label}: path: {path!r} already exists; pass overwrite=True "
                              "to replace it")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{label}: path: {path!r} exists and is not writable")
        return
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(folder):  # created at open; the nearest existing one decides
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"{label}: path: {folder!r} is not a folder, cannot write {path!r}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{label}: path: folder {folder!r} is not writable, cannot write "
                          f"{path!r}")


def _check_codec(label: str, field: str, name: str, kind: str) -> str:
    """The default pixel format of encoder ``name`` ("" for audio); ConfigError if unusable."""
    import av
    try:
        codec = av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError, TypeError):
        raise ConfigError(
            f"{label}: {field}: no {kind} encoder named {name!r} in this FFmpeg") from None
    if codec.type != kind:
        raise ConfigError(f"{label}: {field}: {name!r} is a {codec.type} encoder, not {kind}")
    if kind != "video":
        return ""
    if name in _X26X:
        return "yuv420p"
    formats = codec.video_formats or ()
    return formats[0].name if formats else "yuv420p"
