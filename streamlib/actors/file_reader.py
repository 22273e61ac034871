"""``FileReaderActor``: decodes a media file with PyAV, one video frame per tick.

The file is opened and probed at construction, so a missing or unreadable file
fails there with its path in the message, before any graph runs; the decoding
container is opened again in ``setup`` (it belongs to the running actor and is
closed in ``teardown``).

Audio rides along with video: each tick publishes the next video frame and the
audio samples that play during it (from the end of the previous tick's audio
to the end of this frame), so audio stays gap-free and in sync whatever the
tick rate. Timestamps follow the ticks: the video frame gets the tick's
``timestamp_ns``; an audio chunk gets the tick's timestamp shifted by its
offset from the video frame in the file. File positions go to
``metadata["pts_s"]`` (seconds from the start of the stream).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from fractions import Fraction
from typing import Any, Iterator

import numpy as np
import numpy.typing as npt

from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, TimedTick, VirtualClock
from streamlib.core.frames import AudioFrame, VideoFrame
from streamlib.core.ports import StreamOutput
from streamlib.errors import ConfigError

logger = logging.getLogger("streamlib.file_reader")

_NS = 1_000_000_000
_MAX_VIDEO_AHEAD = 48       # decoded video frames held while reading ahead for audio
_MAX_ERRORS_IN_A_ROW = 64   # demux/decode errors without a good frame before giving up
_MAX_CATCHUP_FRAMES = 30    # realtime: most frames skipped in one tick to catch up


class FileReaderActor(Actor):
    """Plays a media file: the next video frame each tick, with its audio.

    ``realtime=True`` ticks at the file's frame rate (``SoftwareClock``); a
    tick that arrives late (missed deadlines) skips frames to stay on time,
    counted in ``frames_skipped``. ``realtime=False`` uses a ``VirtualClock``
    at the file's rate: the graph runs lock-step as fast as downstream takes
    it, losing nothing. ``clock=`` overrides both.

    At the end of the file ``loop=True`` seeks back to the start (frame numbers
    keep increasing, ``metadata["pts_s"]`` restarts at 0); ``loop=False``
    closes the actor's clock, which ends the stream (``Runtime.run()``
    returns). A clock passed in with ``clock=`` is closed too, so do not share
    it with actors that must keep running. ``seek(seconds)`` may be called from
    any thread and applies at the next tick. A packet that fails to demux or
    decode is logged with the path and position, skipped and counted in
    ``decode_errors``; decoding goes on.

    Outputs: ``video`` (RGB24 ``VideoFrame``) and ``audio`` (float32
    ``AudioFrame`` shaped (samples, channels) at the file's sample rate;
    nothing is written when the file has no audio or ``audio=False``).

    Args:
        path: the media file to read.
        loop: restart at the end of the file instead of ending the stream.
        realtime: tick at the file's rate (True) or lock-step (False).
        audio: decode and publish the first audio stream, if there is one.
        actor_id: unique id (default: generated).

    Raises:
        FileNotFoundError: ``path`` does not exist (message names the path).
        ConfigError: ``path`` is not a readable media file or has no video
            stream (message names the path and the FFmpeg error).
    """

    default_output_name = "video"

    def __init__(self, path: str, loop: bool = True, realtime: bool = True, *,
                 audio: bool = True, actor_id: str | None = None,
                 clock: Clock | None = None, **kwargs: Any) -> None:
        label = "FileReaderActor" + ("" if actor_id is None else f" '{actor_id}'")
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ConfigError(f"{label}: path must be a non-empty file path, got {path!r}")
        self.path = os.fspath(path)
        self._probe(label, audio)
        if clock is None:
            clock = SoftwareClock(self.rate) if realtime else VirtualClock(self.rate)
        kwargs.setdefault("dispatcher", "dedicated")  # decode stays off the shared pool
        super().__init__(actor_id=actor_id, clock=clock, **kwargs)
        self.loop, self.realtime = loop, realtime
        self.outputs["video"] = StreamOutput("video")
        self.outputs["audio"] = StreamOutput("audio")

        self.decode_errors = 0
        self.frames_read = 0      # video frames published
        self.frames_skipped = 0   # decoded but skipped (realtime catch-up, seek)
        self.loops = 0            # times the file wrapped around
        self.finished = False
        self.position_s = 0.0     # pts_s of the last frame published
        self._seek_lock = threading.Lock()
        self._seek_to: float | None = None
        self._container: Any = None
        self._packets: Iterator[Any] | None = None
        self._resampler: Any = None
        self._video_q: collections.deque[Any] = collections.deque()
        self._eof = False
        self._errors_in_a_row = 0
        self._frames_this_pass = 0
        self._last_tick: int | None = None
        self._skip_before_s = 0.0
        self._next_pts_s = 0.0    # fallback time of a frame without pts
        # audio timeline: sample k is at anchor_s + k / sample_rate
        self._audio_anchor_s: float | None = None
        self._audio_first = 0     # sample index of the first buffered sample
        self._audio_buf: list[npt.NDArray[np.float32]] = []
        self._audio_buffered = 0
        self._audio_emit: int | None = None  # next sample index to publish

    # -- probing -------------------------------------------------------------
    def _probe(self, label: str, want_audio: bool) -> None:
        import av  # PyAV loads with the first file actor, not with `import streamlib`
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{label}: path {self.path!r} does not exist")
        if not os.path.isfile(self.path):
            raise ConfigError(f"{label}: path {self.path!r} is not a file")
        try:
            container = av.open(self.path)
        except av.error.FFmpegError as exc:
            raise ConfigError(f"{label}: cannot open {self.path!r} as media: {exc}") from exc
        try:
            if not container.streams.video:
                raise ConfigError(f"{label}: {self.path!r} has no video stream")
            vs = container.streams.video[0]
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            if not rate or rate <= 0:
                logger.warning("%s: %s has no frame rate; assuming 30 fps", label, self.path)
                rate = Fraction(30)
            self.rate = Fraction(rate)
            self.fps = float(self.rate)
            self.width, self.height = int(vs.codec_context.width), int(vs.codec_context.height)
            if vs.duration is not None and vs.time_base is not None:
                self.duration_s = float(vs.duration * vs.time_base)
            elif container.duration is not None:
                self.duration_s = container.duration / av.time_base
            else:
                self.duration_s = 0.0
            self._start_s = (float(vs.start_time * vs.time_base)
                             if vs.start_time is not None and vs.time_base is not None else 0.0)
            audio = container.streams.audio[0] if (want_audio and container.streams.audio) else None
            self.has_audio = audio is not None
            self.sample_rate = int(audio.codec_context.sample_rate) if audio is not None else 0
            self.channels = int(audio.codec_context.channels) if audio is not None else 0
        finally:
            container.close()

    # -- lifecycle -----------------------------------------------------------
    def setup(self) -> None:
        import av
        self._container = av.open(self.path)
        vs = self._container.streams.video[0]
        vs.thread_type = "AUTO"  # frame + slice threads: decode is the expensive part
        self._restart(0.0)
        logger.info("%s: reading %s (%dx%d @ %s fps, %.2f s%s)", self.actor_id, self.path,
                    self.width, self.height, self.rate, self.duration_s,
                    f", audio {self.sample_rate} Hz x{self.channels}" if self.has_audio else "")

    def teardown(self) -> None:
        container, self._container = self._container, None
        self._packets = None
        if container is not None:
            container.close()

    def seek(self, seconds: float) -> None:
        """Jump to ``seconds`` from the start of the file at the next tick (any thread).

        Positions are clamped to the file; decoding starts at the keyframe
        before and frames before ``seconds`` are skipped.
        """
        with self._seek_lock:
            self._seek_to = max(0.0, float(seconds))

    def process(self, tick: TimedTick) -> None:
        if self.finished:
            return
        try:
            self._process(tick)
        except Exception:
            # A source that cannot go on would otherwise be ticked forever and a
            # lock-step graph would never finish: end its stream, then report.
            self._finish("failed")
            raise

    # -- ticking -------------------------------------------------------------
    def _process(self, tick: TimedTick) -> None:
        with self._seek_lock:
            target, self._seek_to = self._seek_to, None
        if target is not None:
            self._restart(target)
        advance = 1
        if self.clock is not None and self.clock.realtime and self._last_tick is not None:
            advance = max(1, min(tick.frame_number - self._last_tick, _MAX_CATCHUP_FRAMES))
        self._last_tick = tick.frame_number
        got = self._next_video(advance)
        # a pass that began at 0 and found nothing would loop forever: end instead
        if got is None and self.loop and (self._frames_this_pass or self._skip_before_s > 0):
            self.loops += 1
            logger.debug("%s: end of %s, looping", self.actor_id, self.path)
            self._restart(0.0)
            got = self._next_video(1)
        if got is None:
            self._finish("end of file" if self.frames_read else "no decodable video")
            return
        frame, pts_s = got
        end_s = pts_s + 1.0 / self.fps
        rgb = frame.to_ndarray(format="rgb24")
        self.outputs["video"].write(VideoFrame(
            np.ascontiguousarray(rgb), timestamp_ns=tick.timestamp_ns,
            frame_number=tick.frame_number, clock_id=tick.clock_id,
            metadata={"pts_s": pts_s, "source": self.path},
        ))
        self.frames_read += 1
        self._frames_this_pass += 1
        self.position_s = pts_s
        if self.has_audio:
            self._publish_audio(tick, pts_s, end_s)

    def _finish(self, why: str) -> None:
        if not self.finished:
            self.finished = True
            logger.info("%s: %s: %s after %d frames; ending the stream", self.actor_id,
                        self.path, why, self.frames_read)
            if self.clock is not None:
                self.clock.close()

    def _frame_time(self, frame: Any) -> float:
        t = frame.time
        if t is None:  # no pts: assume constant rate after the previous frame
            return self._next_pts_s
        return float(t) - self._start_s

    def _next_video(self, advance: int) -> tuple[Any, float] | None:
        """Decode up to the ``advance``-th next displayable frame and its time; None at the end."""
        got: tuple[Any, float] | None = None
        while advance > 0:
            while not self._video_q:
                if self._eof:
                    return got  # short of `advance`: show the last frame there is
                self._pump()
            candidate = self._video_q.popleft()
            t = self._frame_time(candidate)
            self._next_pts_s = t + 1.0 / self.fps
            if t < self._skip_before_s - 0.5 / self.fps:  # decoded from the keyframe before a seek
                self.frames_skipped += 1
                continue
            if got is not None:
                self.frames_skipped += 1
            got = (candidate, t)
            advance -= 1
        return got

    def _pump(self) -> None:
        """Demux and decode one packet into the video queue / audio buffer."""
        import av
        assert self._packets is not None
        try:
            packet = next(self._packets)
        except StopIteration:
            self._eof = True
            return
        except av.error.FFmpegError as exc:
            # the demux generator is dead after raising; a new one resumes after the bad data
            self._error("demux", None, exc)
            self._packets = self._container.demux(*self._streams())
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            pos = float(packet.pts * packet.time_base) - self._start_s \
                if packet.pts is not None and packet.time_base is not None else None
            self._error(f"decode ({packet.stream.type})", pos, exc)
            return
        for f in frames:
            if isinstance(f, av.VideoFrame):
                self._video_q.append(f)
                self._errors_in_a_row = 0
            elif isinstance(f, av.AudioFrame):
                self._add_audio(f)

    def _error(self, what: str, pos_s: float | None, exc: Exception) -> None:
        self.decode_errors += 1
        self._errors_in_a_row += 1
        where = f"at {pos_s:.3f} s" if pos_s is not None else f"after {self._next_pts_s:.3f} s"
        logger.warning("%s: %s error in %s %s (skipped): %s", self.actor_id, what, self.path,
                       where, exc)
        if self._errors_in_a_row >= _MAX_ERRORS_IN_A_ROW:
            logger.error("%s: %d errors in a row in %s; treating as end of file",
                         self.actor_id, self._errors_in_a_row, self.path)
            self._eof = True

    def _streams(self) -> list[Any]:
        streams = [self._container.streams.video[0]]
        if self.has_audio:
            streams.append(self._container.streams.audio[0])
        return streams

    def _restart(self, seconds: float) -> None:
        """Position decoding at ``seconds`` (0 = the start) and reset all buffers."""
        import av
        seconds = min(max(0.0, seconds), max(0.0, self.duration_s))
        vs = self._container.streams.video[0]
        if seconds > 0 or self._packets is not None:
            offset = int(seconds / vs.time_base) + (vs.start_time or 0)
            self._container.seek(offset, stream=vs, backward=True)
        self._packets = self._container.demux(*self._streams())
        self._video_q.clear()
        self._eof = False
        self._errors_in_a_row = 0
        self._frames_this_pass = 0
        self._skip_before_s = seconds
        self._next_pts_s = seconds
        self._audio_anchor_s = None
        self._audio_first = 0
        self._audio_buf, self._audio_buffered = [], 0
        self._audio_emit = None
        if self.has_audio:
            layout = self._container.streams.audio[0].codec_context.layout
            self._resampler = av.AudioResampler(format="flt", layout=layout, rate=self.sample_rate)

    # -- audio ---------------------------------------------------------------
    def _add_audio(self, frame: Any) -> None:
        for out in self._resampler.resample(frame):
            if self._audio_anchor_s is None:
                t = out.time if out.time is not None else frame.time
                self._audio_anchor_s = (float(t) - self._start_s) if t is not None else 0.0
            arr = out.to_ndarray().reshape(-1, self.channels)  # packed: (1, n*ch) -> (n, ch)
            self._audio_buf.append(arr)
            self._audio_buffered += len(arr)

    def _audio_end_s(self) -> float:
        if self._audio_anchor_s is None:
            return -1.0
        return self._audio_anchor_s + (self._audio_first + self._audio_buffered) / self.sample_rate

    def _publish_audio(self, tick: TimedTick, pts_s: float, end_s: float) -> None:
        """Publish the samples from the last published one up to ``end_s``."""
        # Audio is interleaved with video in the file: read ahead until it covers end_s.
        while (not self._eof and self._audio_end_s() < end_s
               and len(self._video_q) < _MAX_VIDEO_AHEAD):
            self._pump()
        anchor = self._audio_anchor_s
        if anchor is None or not self._audio_buffered:
            return
        rate = self.sample_rate
        start = self._audio_emit
        if start is None:  # first tick after (re)start: begin with this frame
            start = max(self._audio_first, round((pts_s - anchor) * rate))
        stop = min(round((end_s - anchor) * rate), self._audio_first + self._audio_buffered)
        self._drop_audio_before(start)
        if stop <= start:
            self._audio_emit = start
            return
        data = self._take_audio(stop - start)
        self._audio_emit = stop
        offset_ns = round((anchor + start / rate - pts_s) * _NS)
        self.outputs["audio"].write(AudioFrame(
            data, sample_rate=rate, timestamp_ns=tick.timestamp_ns + offset_ns,
            frame_number=tick.frame_number, clock_id=tick.clock_id,
            metadata={"pts_s": anchor + start / rate},
        ))

    def _drop_audio_before(self, index: int) -> None:
        n = index - self._audio_first
        if n > 0:
            self._take_audio(min(n, self._audio_buffered))

    def _take_audio(self, n: int) -> npt.NDArray[np.float32]:
        """Remove and return the first ``n`` buffered samples as one (n, channels) array."""
        if not self._audio_buf:
            return np.zeros((0, self.channels), np.float32)
        whole = np.concatenate(self._audio_buf) if len(self._audio_buf) > 1 else self._audio_buf[0]
        head, rest = whole[:n], whole[n:]
        self._audio_buf = [rest] if len(rest) else []
        self._audio_buffered -= len(head)
        self._audio_first += len(head)
        return np.ascontiguousarray(head, dtype=np.float32)
