"""FileWriterActor and FileReaderActor: files that ffprobe and PyAV agree on."""

from __future__ import annotations

import json
import logging
import shutil
import os
import subprocess
import sys
import threading
import wave
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from streamlib import (
    Actor, AudioFrame, Runtime, SoftwareClock, StreamInput, StreamOutput, TestPatternActor, TimedTick, VideoFrame, VirtualClock,
)
from streamlib.actors import render_pattern
from streamlib.core.actor import ActorStatus
from streamlib.actors.audio import AudioGeneratorActor
from streamlib.errors import ConfigError
from streamlib.actors.file_reader import FileReaderActor
from streamlib.actors.file_writer import FileWriterActor

ROOT = Path(__file__).resolve().parents[2]
W, H, FPS, N = 320, 240, 30, 60   # 2.0 s of video
RATE = 48000
# AAC: the encoder adds 1024 priming samples (hidden again by the mp4 edit list)
# and pads the last frame to 1024, so a decoder may return up to 1024 extra.
AAC_TOLERANCE = 1024


class Collect(Actor):
    """Keeps every video and audio frame it is given."""

    def __init__(self, on_video: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video", slots=16)
        self.inputs["audio"] = StreamInput("audio", slots=64)
        self.video: list[VideoFrame] = []
        self.audio: list[AudioFrame] = []
        self.on_video = on_video

    def process(self, tick: TimedTick) -> None:
        for f in self.inputs["video"].read_all_new():
            self.video.append(f)
            if self.on_video is not None:
                self.on_video(f)
        self.audio.extend(self.inputs["audio"].read_all_new())


class Passive(Actor):
    """A clockless source the test writes into from outside process()."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        pass


def reader_into(reader: FileReaderActor, **kw: Any) -> Collect:
    sink = Collect(**kw)
    reader.outputs["video"] >> sink.inputs["video"]
    reader.outputs["audio"] >> sink.inputs["audio"]
    return sink


def sine(n: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / RATE)


@pytest.fixture(scope="module")
def av_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FileWriterActor]:
    """60 frames of a 320x240 gradient at 30 fps + 2.0 s of a 440 Hz stereo tone."""
    path = tmp_path_factory.mktemp("av") / "nested" / "dir" / "clip.mp4"
    with Runtime() as rt:
        video = TestPatternActor(W, H, pattern="gradient", clock=VirtualClock(FPS, max_ticks=N))
        tone = AudioGeneratorActor(RATE, 2, 440.0, clock=VirtualClock(50, max_ticks=100))
        writer = FileWriterActor(str(path), fps=FPS)
        video >> writer
        tone >> writer
        assert rt.run(60), "writer graph did not finish"
        assert not writer.failed, writer.error
    assert writer.finalized
    return path, writer


# -- writer ----------------------------------------------------------------------

def test_writer_counts(av_file: tuple[Path, FileWriterActor]) -> None:
    path, writer = av_file
    assert path.is_file()  # parent folders were created
    assert writer.frames_written == N and writer.frames_dropped == 0
    assert writer.audio_samples_written == 2 * RATE
    assert (writer.width, writer.height, writer.sample_rate, writer.channels) == (W, H, RATE, 2)


def test_writer_output_passes_ffprobe(av_file: tuple[Path, FileWriterActor]) -> None:
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed (apt install ffmpeg)")
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json",
                          str(av_file[0])], capture_output=True, text=True, timeout=60, check=True)
    streams = {s["codec_type"]: s for s in json.loads(out.stdout)["streams"]}
    v, a = streams["video"], streams["audio"]
    assert v["codec_name"] == "h264" and (v["width"], v["height"]) == (W, H)
    assert int(v["nb_read_frames"]) == N
    assert v["pix_fmt"] == "yuv420p"
    assert Fraction(v["avg_frame_rate"]) == FPS
    assert abs(float(v["duration"]) - 2.0) <= 1 / FPS
    assert a["codec_name"] == "aac" and int(a["sample_rate"]) == RATE and a["channels"] == 2
    assert abs(float(a["duration"]) - 2.0) <= AAC_TOLERANCE / RATE


def test_writer_output_decodes_to_the_source(av_file: tuple[Path, FileWriterActor]) -> None:
    expected = render_pattern("gradient", W, H).numpy().astype(np.float64)
    with av.open(str(av_file[0])) as c:
        frames = list(c.decode(video=0))
        assert len(frames) == N
        assert [round(float(f.time) * FPS) for f in frames] == list(range(N))
        assert (frames[0].width, frames[0].height) == (W, H)
        for f in (frames[0], frames[N // 2], frames[-1]):
            err = np.abs(f.to_ndarray(format="rgb24").astype(np.float64) - expected).mean()
            assert err < 3.0, f"mean abs pixel error {err:.2f}"
        c.seek(0)
        audio = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    assert audio.shape[0] == 2  # planar stereo
    assert abs(audio.shape[1] - 2 * RATE) <= AAC_TOLERANCE
    # in time (no offset) and the right tone: AAC at 128 kb/s is within a few %
    ref = sine(2 * RATE)
    assert np.abs(audio[0, 2048:RATE] - ref[2048:RATE]).max() < 0.05
    spectrum = np.abs(np.fft.rfft(audio[0, :RATE]))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over 1 s


def test_writer_timestamps_set_pts_and_collisions_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "t.mkv"
    img = torch.from_numpy(render_pattern("gradient", 64, 48).numpy())
    stamps = [0, 33_333_333, 100_000_000, 100_000_001, 133_333_333]  # pts 0 1 3 3 4
    with Runtime() as rt:
        src, writer = Passive(), FileWriterActor(str(path), fps=30)
        src >> writer
        rt.start()
        for n, ts in enumerate(stamps):
            src.outputs["video"].write(VideoFrame(img, timestamp_ns=ts, frame_number=n))
            assert rt.wait_idle(10)
        writer.finalize()
        writer.finalize()  # idempotent
        src.outputs["video"].write(VideoFrame(img, timestamp_ns=200_000_000, frame_number=9))
        assert rt.wait_idle(10)
    assert (writer.frames_written, writer.frames_dropped) == (4, 2)  # a collision, a late frame
    with av.open(str(path)) as c:
        assert [round(float(f.time) * 30) for f in c.decode(video=0)] == [0, 1, 3, 4]


def test_writer_stops_waiting_for_audio_that_never_comes(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with Runtime() as rt:
        video = TestPatternActor(64, 48, pattern="moving_box", clock=VirtualClock(30, max_ticks=40))
        mute = AudioGeneratorActor(clock=VirtualClock(50, max_ticks=0))  # connected, never ticks
        writer = FileWriterActor(str(path), fps=30, audio_wait_frames=10)
        video >> writer
        mute >> writer
        assert rt.run(30)
    assert writer.frames_written == 40 and writer.audio_samples_written == 0
    with av.open(str(path)) as c:
        assert not c.streams.audio and sum(1 for _ in c.decode(video=0)) == 40


def test_writer_bad_configuration_names_the_field(tmp_path: Path) -> None:
    out = str(tmp_path / "x.mp4")
    with Runtime():
        with pytest.raises(ValueError, match="FileWriterActor 'w1': codec: no video encoder named 'nope'"):
            FileWriterActor(out, codec="nope", actor_id="w1")
        with pytest.raises(ValueError, match="audio_codec: 'libx264' is a video encoder"):
            FileWriterActor(out, audio_codec="libx264")
        with pytest.raises(ValueError, match="FileWriterActor: fps"):
            FileWriterActor(out, fps=0)
        with pytest.raises(ValueError, match="crf"):
            FileWriterActor(out, crf=99)
        with pytest.raises(ValueError, match="path"):
            FileWriterActor("")


def test_writer_failure_is_isolated_and_names_the_problem(tmp_path: Path) -> None:
    with Runtime() as rt:
        src = TestPatternActor(33, 20, pattern="solid", clock=VirtualClock(30, max_ticks=3))
        writer = FileWriterActor(str(tmp_path / "odd.mp4"), actor_id="odd")
        sink = Collect()
        src >> writer
        src >> sink
        assert rt.run(30)
        assert writer.status is ActorStatus.FAILED
        assert "yuv420p needs an even frame size, got 33x20" in (writer.error or "")
        assert len(sink.video) == 3


# -- reader ----------------------------------------------------------------------

def test_reader_reads_back_every_frame_and_all_audio(av_file: tuple[Path, FileWriterActor]) -> None:
    path = av_file[0]
    with Runtime() as rt:
        reader = FileReaderActor(str(path), loop=False, realtime=False)
        assert (reader.width, reader.height, reader.fps, reader.has_audio) == (W, H, 30.0, True)
        assert abs(reader.duration_s - 2.0) < 1e-6 and isinstance(reader.clock, VirtualClock)
        sink = reader_into(reader)
        assert rt.run(60).finished is True  # loop=False ends the stream
        assert reader.finished and not reader.failed
    assert [f.frame_number for f in sink.video] == list(range(N))
    assert [f.timestamp_ns for f in sink.video] == [n * 1_000_000_000 // FPS for n in range(N)]
    assert [round(f.metadata["pts_s"] * FPS, 6) for f in sink.video] == list(range(N))
    expected = render_pattern("gradient", W, H).numpy().astype(np.float64)
    assert np.abs(sink.video[10].data.numpy() - expected).mean() < 3.0
    # audio: one chunk per frame, contiguous, equal to what PyAV decodes directly
    assert len(sink.audio) == N and all(a.sample_rate == RATE for a in sink.audio)
    got = np.concatenate([a.data.numpy() for a in sink.audio])
    assert got.shape == (2 * RATE, 2)
    assert [a.timestamp_ns for a in sink.audio] == [f.timestamp_ns for f in sink.video]
    with av.open(str(path)) as c:
        direct = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1).T
    np.testing.assert_array_equal(got, direct[:2 * RATE])


def test_reader_loop_wraps_with_continuing_frame_numbers(av_file: tuple[Path, FileWriterActor]) -> None:
    ticks = 2 * N + 15
    with Runtime() as rt:
        reader = FileReaderActor(str(av_file[0]), loop=True,
                                 clock=VirtualClock(FPS, max_ticks=ticks))
        sink = reader_into(reader)
        assert rt.run(60)
    assert [f.frame_number for f in sink.video] == list(range(ticks))
    assert [round(f.metadata["pts_s"] * FPS, 6) for f in sink.video] == [n % N for n in range(ticks)]
    assert reader.loops == 2 and reader.frames_read == ticks
    # audio stays one gap-free chunk per tick across the wrap
    assert [a.samples for a in sink.audio] == [RATE // FPS] * ticks
    assert [a.timestamp_ns for a in sink.audio] == [f.timestamp_ns for f in sink.video]


def test_reader_seek_applies_at_next_tick(av_file: tuple[Path, FileWriterActor]) -> None:
    with Runtime() as rt:
        reader = FileReaderActor(str(av_file[0]), loop=False, realtime=False)

        def seek_once(f: VideoFrame) -> None:
            if f.frame_number == 5:
                reader.seek(1.5)  # from the sink's thread, while the reader runs

        sink = reader_into(reader, on_video=seek_once)
        assert rt.run(60)
    pts = [round(f.metadata["pts_s"] * FPS, 6) for f in sink.video]
    assert pts == list(range(6)) + list(range(45, N))
    assert [f.frame_number for f in sink.video] == list(range(6 + N - 45))
    # the first audio after the seek starts at the seek target
    assert sink.audio[6].metadata["pts_s"] == pytest.approx(1.5, abs=1 / RATE)


def test_reader_seek_past_the_end_loops(av_file: tuple[Path, FileWriterActor]) -> None:
    with Runtime() as rt:
        reader = FileReaderActor(str(av_file[0]), loop=True, clock=VirtualClock(FPS, max_ticks=6))
        sink = reader_into(reader, on_video=lambda f: reader.seek(99) if f.frame_number == 2 else None)
        assert rt.run(60)
    assert [round(f.metadata["pts_s"] * FPS, 6) for f in sink.video] == [0, 1, 2, 0, 1, 2]
    assert reader.loops == 1 and not reader.finished


def test_reader_realtime_ends_and_run_returns(tmp_path: Path) -> None:
    path = tmp_path / "short.mkv"
    with Runtime() as rt:
        src = TestPatternActor(64, 48, pattern="moving_box", clock=VirtualClock(60, max_ticks=12))
        src >> FileWriterActor(str(path), fps=60)
        assert rt.run(30)
    with Runtime() as rt:
        reader = FileReaderActor(str(path), loop=False)  # realtime: SoftwareClock at 60 fps
        assert isinstance(reader.clock, SoftwareClock) and reader.fps == 60.0
        assert not reader.has_audio
        sink = reader_into(reader)
        assert rt.run(30).finished is True
    assert reader.finished and reader.frames_read + reader.frames_skipped == 12
    assert len(sink.video) == reader.frames_read and not sink.audio


def test_reader_missing_and_corrupt_files_fail_at_construction(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    corrupt = tmp_path / "x.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    audio_only = tmp_path / "a.wav"
    with wave.open(str(audio_only), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(1600))
    with Runtime() as rt:
        with pytest.raises(FileNotFoundError, match=f"FileReaderActor 'r1'.*{missing}"):
            FileReaderActor(str(missing), actor_id="r1")
        with pytest.raises(ValueError, match=f"FileReaderActor: cannot open '{corrupt}' as media"):
            FileReaderActor(str(corrupt))
        with pytest.raises(ValueError, match=f"'{audio_only}' has no video stream"):
            FileReaderActor(str(audio_only))
        with pytest.raises(ValueError, match="is not a file"):
            FileReaderActor(str(tmp_path))
        assert rt.actors() == []  # nothing half-built was attached


def test_failing_reader_does_not_stop_other_actors(av_file: tuple[Path, FileWriterActor],
                                                   tmp_path: Path) -> None:
    broken = tmp_path / "copy.mp4"
    shutil.copy(av_file[0], broken)

    class FailsAtFrame3(FileReaderActor):
        def _next_video(self, advance: int) -> Any:
            if self.frames_read == 3:
                raise RuntimeError("simulated decoder crash")
            return super()._next_video(advance)

    with Runtime() as rt:
        gone = FileReaderActor(str(broken), loop=True, realtime=False, actor_id="gone")
        crash = FailsAtFrame3(str(av_file[0]), loop=True, realtime=False, actor_id="crash")
        src = TestPatternActor(32, 24, pattern="solid", clock=VirtualClock(30, max_ticks=20))
        gone_sink, crash_sink, sink = reader_into(gone), reader_into(crash), Collect()
        src >> sink
        broken.write_bytes(b"garbage" * 100)  # the file went bad after construction
        assert rt.run(60).finished is True  # the failed readers closed their clocks
        assert gone.failed and str(broken) in (gone.error or "")
        assert crash.failed and "simulated decoder crash" in (crash.error or "")
        assert len(sink.video) == 20 and src.status is ActorStatus.RUNNING
    assert not gone_sink.video and len(crash_sink.video) == 3


def test_reader_skips_a_corrupt_packet_and_goes_on(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "mj.avi"
    with Runtime() as rt:
        src = TestPatternActor(64, 48, pattern="moving_box", clock=VirtualClock(30, max_ticks=30))
        src >> FileWriterActor(str(path), codec="mjpeg", fps=30)
        assert rt.run(30)
    data = bytearray(path.read_bytes())
    soi = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(soi) == 30  # one JPEG per frame
    data[soi[15]:soi[16] - 16] = bytes(soi[16] - 16 - soi[15])  # blank frame 15's JPEG
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="streamlib.file_reader")
    with Runtime() as rt:
        reader = FileReaderActor(str(path), loop=False, realtime=False)
        sink = reader_into(reader)
        assert rt.run(30)
    assert not reader.failed and reader.decode_errors == 1
    assert len(sink.video) == 29
    assert any(str(path) in r.getMessage() and "0.500 s" in r.getMessage() for r in caplog.records)


# -- example ---------------------------------------------------------------------

def test_transcode_example(av_file: tuple[Path, FileWriterActor], tmp_path: Path) -> None:
    out = tmp_path / "out" / "transcoded.mkv"
    example = str(ROOT / "examples" / "transcode.py")
    proc = subprocess.run([sys.executable, example, str(av_file[0]), str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"{out}: {N} frames" in proc.stdout
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        frames = list(c.decode(video=0))
        c.seek(0)
        samples = sum(f.samples for f in c.decode(audio=0))
    assert len(frames) == N and (frames[0].width, frames[0].height) == (W, H)
    assert [round(float(f.time) * FPS) for f in frames] == list(range(N))
    assert abs(samples - 2 * RATE) <= AAC_TOLERANCE


# -- writer: checked at construction, never overwrites, finalised on any stop ------

def probe(path: Path) -> tuple[int, float]:
    """(video frames ffprobe counts, container duration in s); fails on an unplayable file."""
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed (apt install ffmpeg)")
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=nb_read_frames:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    info = json.loads(out.stdout)
    return int(info["streams"][0]["nb_read_frames"]), float(info["format"]["duration"])


def test_writer_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "keep.mp4"
    path.write_bytes(b"precious")
    with Runtime() as rt:
        with pytest.raises(ConfigError) as info:
            FileWriterActor(str(path), actor_id="w")
        assert str(info.value) == (f"FileWriterActor 'w': path: {str(path)!r} already exists; "
                                   "pass overwrite=True to replace it")
        assert path.read_bytes() == b"precious"
        src = TestPatternActor(64, 48, pattern="solid", clock=VirtualClock(30, max_ticks=5))
        writer = FileWriterActor(str(path), fps=30, overwrite=True, actor_id="w")
        src >> writer
        assert rt.run(30).ok
    assert writer.completed and probe(path)[0] == 5


def test_writer_refuses_a_file_that_appeared_after_construction(tmp_path: Path) -> None:
    path = tmp_path / "late.mp4"
    with Runtime() as rt:
        src = TestPatternActor(64, 48, pattern="solid", clock=VirtualClock(30, max_ticks=3))
        writer = FileWriterActor(str(path), fps=30, actor_id="w")
        src >> writer
        path.write_bytes(b"someone else's")
        result = rt.run(30)
    assert result.failed == ("w",)
    assert "already exists; pass overwrite=True to replace it" in result.errors["w"]
    assert path.read_bytes() == b"someone else's" and not writer.completed


def test_writer_checks_size_format_and_folder_at_construction(tmp_path: Path) -> None:
    with Runtime():
        with pytest.raises(ConfigError) as info:
            FileWriterActor(str(tmp_path / "odd.mp4"), width=33, height=20, actor_id="w")
        assert str(info.value) == ("FileWriterActor 'w': width/height: yuv420p needs an even "
                                   "frame size, got 33x20; crop or pass pix_fmt='yuv444p'")
        FileWriterActor(str(tmp_path / "odd444.mkv"), width=33, height=20, pix_fmt="yuv444p")
        with pytest.raises(ConfigError, match="width and height go together"):
            FileWriterActor(str(tmp_path / "w.mp4"), width=64)
        with pytest.raises(ConfigError) as info:
            FileWriterActor(str(tmp_path / "clip.nope"), actor_id="w")
        assert str(info.value) == (f"FileWriterActor 'w': path: no container format for "
                                   f"{str(tmp_path / 'clip.nope')!r} (the format follows the "
                                   "extension: .mp4, .mkv, .mov...)")
        blocker = tmp_path / "file.txt"
        blocker.write_text("x")
        with pytest.raises(ConfigError) as info:
            FileWriterActor(str(blocker / "sub" / "x.mp4"), actor_id="w")
        assert str(info.value) == (f"FileWriterActor 'w': path: {str(blocker)!r} is not a "
                                   f"folder, cannot write {str(blocker / 'sub' / 'x.mp4')!r}")
        (tmp_path / "dir.mp4").mkdir()
        with pytest.raises(ConfigError, match=r"path: '.*dir\.mp4' is a folder, not a file"):
            FileWriterActor(str(tmp_path / "dir.mp4"))
        FileWriterActor(str(tmp_path / "new" / "deeper" / "x.mp4"))  # created at open


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root may write into any folder")
def test_writer_refuses_an_unwritable_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with Runtime(), pytest.raises(ConfigError) as info:
            FileWriterActor(str(folder / "x.mp4"), actor_id="w")
        assert str(info.value) == (f"FileWriterActor 'w': path: folder {str(folder)!r} is not "
                                   f"writable, cannot write {str(folder / 'x.mp4')!r}")
    finally:
        folder.chmod(0o700)


def test_writer_fails_in_setup_when_the_upstream_size_cannot_be_encoded(tmp_path: Path) -> None:
    with Runtime() as rt:
        src = TestPatternActor(33, 20, pattern="solid", clock=VirtualClock(30, max_ticks=3),
                               actor_id="src")
        writer = FileWriterActor(str(tmp_path / "odd.mp4"), actor_id="w")
        src >> writer
        result = rt.run(30)
    assert result.failed == ("w",)
    assert ("ConfigError: w: upstream 'src' frame size: yuv420p needs an even frame size, "
            "got 33x20") in result.errors["w"]
    assert writer.frames_received == 0 and not (tmp_path / "odd.mp4").exists()


def test_writer_counts_gaps_as_real_gaps(tmp_path: Path) -> None:
    path = tmp_path / "gaps.mkv"
    img = torch.from_numpy(render_pattern("gradient", 64, 48).numpy())
    with Runtime() as rt:
        src, writer = Passive(), FileWriterActor(str(path), fps=30)
        src >> writer
        rt.start()
        for n in (0, 1, 4, 5):  # slots 2 and 3 never arrive
            src.outputs["video"].write(VideoFrame(img, timestamp_ns=round(n * 1e9 / 30),
                                                  frame_number=n))
            assert rt.wait_idle(10)
    assert writer.losses() == {"link": 0, "gaps": 2, "skipped": 0}
    with av.open(str(path)) as c:
        assert [round(float(f.time) * 30) for f in c.decode(video=0)] == [0, 1, 4, 5]


class Boom(Actor):
    """Fails on its first tick."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")

    def process(self, tick: TimedTick) -> None:
        raise RuntimeError("boom")


@pytest.mark.parametrize("how", ["runtime.close", "actor.close"])
def test_writer_finalises_when_another_actor_fails_and_the_graph_is_closed(
        tmp_path: Path, how: str) -> None:
    path = tmp_path / "realtime.mp4"
    ten = threading.Event()
    rt = Runtime()
    with rt:
        src = TestPatternActor(64, 48, pattern="moving_box", clock=SoftwareClock(60),
                               actor_id="src")
        writer = FileWriterActor(str(path), fps=60, actor_id="w")
        boom = Boom(actor_id="boom")
        seen = Collect(on_video=lambda f: ten.set() if f.frame_number >= 10 else None)
        src >> writer
        src.outputs["video"] >> boom
        src.outputs["video"] >> seen.inputs["video"]
        rt.start()
        assert ten.wait(20), "the source never reached frame 10"
        assert rt.result(False).failed == ("boom",)
        if how == "actor.close":
            writer.close()
            assert writer.completed  # before the runtime closes
        rt.close()
    assert writer.completed and writer.frames_written >= 10
    frames, duration = probe(path)
    assert frames == writer.frames_written
    assert abs(duration - frames / 60) < 0.05
