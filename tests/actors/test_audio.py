"""AudioGeneratorActor (exact, seamless waveforms) and AudioOutputActor backends."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import subprocess
import sys
import types
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamlib import Actor, AudioFrame, Runtime, SoftwareClock, StreamInput, TimedTick, VirtualClock
from streamlib.actors import audio as audio_mod
from streamlib.actors.audio import AudioGeneratorActor, AudioOutputActor

ROOT = Path(__file__).resolve().parents[2]
RATE = 48000


class Collect(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["audio"] = StreamInput("audio", slots=64)
        self.frames: list[AudioFrame] = []

    def process(self, tick: TimedTick) -> None:
        self.frames.extend(self.inputs["audio"].read_all_new())


def generate(chunks: int, **kw: Any) -> tuple[AudioGeneratorActor, list[AudioFrame]]:
    """Run a generator lock-step for ``chunks`` ticks; return it and every frame."""
    with Runtime() as rt:
        gen = AudioGeneratorActor(clock=VirtualClock(50, max_ticks=chunks), **kw)
        sink = Collect()
        gen >> sink
        assert rt.run(30)
    assert len(sink.frames) == chunks
    return gen, sink.frames


def joined(frames: list[AudioFrame]) -> np.ndarray:
    return np.concatenate([f.data.numpy() for f in frames])


# -- generator -------------------------------------------------------------------

def test_sine_chunks_equal_one_long_sine() -> None:
    gen, frames = generate(100, sample_rate=RATE, channels=2, frequency=441.3, amplitude=0.8)
    assert gen.chunk_samples == 960 and isinstance(AudioGeneratorActor().clock, SoftwareClock)
    assert all(f.samples == 960 and f.channels == 2 and f.sample_rate == RATE for f in frames)
    assert [f.timestamp_ns for f in frames] == [n * 20_000_000 for n in range(100)]
    got = joined(frames)
    ref = 0.8 * np.sin(2 * np.pi * 441.3 * np.arange(len(got)) / RATE)
    assert np.abs(got[:, 0] - ref).max() < 1e-6
    np.testing.assert_array_equal(got[:, 0], got[:, 1])
    # no click: the step across every chunk boundary is an ordinary step of the wave
    steps = np.abs(np.diff(got[:, 0].astype(np.float64)))
    boundary = steps[959::960]
    assert boundary.max() <= steps.max() <= 0.8 * 2 * np.pi * 441.3 / RATE + 1e-6


def test_phase_stays_exact_after_a_week_of_samples() -> None:
    with Runtime():
        gen = AudioGeneratorActor(RATE, 1, 440.0)
    start = RATE * 3600 * 24 * 7
    got = gen.render(start, 4800)[:, 0]
    n = start + np.arange(4800)
    ref = 0.5 * np.sin(2 * np.pi * ((440 * n) % RATE) / RATE)  # integer-exact phase
    assert np.abs(got - ref).max() < 1e-6


def test_frequency_is_the_fft_peak() -> None:
    _, frames = generate(50, sample_rate=RATE, channels=1, frequency=1234.0)
    spectrum = np.abs(np.fft.rfft(joined(frames)[:, 0]))  # 1 s: 1 Hz bins
    assert int(np.argmax(spectrum)) == 1234


def test_square_wave_values_and_period() -> None:
    _, frames = generate(5, sample_rate=RATE, channels=1, frequency=100.0, waveform="square",
                         amplitude=0.25)
    got = joined(frames)[:, 0]
    period = np.tile(np.r_[np.full(240, 0.25), np.full(240, -0.25)], len(got) // 480)
    np.testing.assert_array_equal(got, period.astype(np.float32))


def test_noise_is_bounded_seeded_and_independent_per_channel() -> None:
    _, a = generate(10, waveform="noise", amplitude=0.3, seed=7)
    _, b = generate(10, waveform="noise", amplitude=0.3, seed=7)
    _, c = generate(10, waveform="noise", amplitude=0.3, seed=8)
    x = joined(a)
    np.testing.assert_array_equal(x, joined(b))
    assert not np.array_equal(x, joined(c))
    assert np.abs(x).max() <= 0.3 and abs(float(x.mean())) < 0.01
    assert abs(float(np.corrcoef(x[:, 0], x[:, 1])[0, 1])) < 0.05


@pytest.mark.parametrize(("kw", "match"), [
    ({"sample_rate": 44100, "chunk_ms": 10.01}, "chunk_ms: 10.01 ms at 44100 Hz is 441.441 samples"),
    ({"frequency": 24000.0}, "frequency must be > 0 and below sample_rate/2"),
    ({"waveform": "saw"}, "waveform must be one of"),
    ({"channels": 0}, "channels must be an int"),
    ({"amplitude": 1.5}, "amplitude must be in 0..1"),
    ({"sample_rate": 10}, "sample_rate must be an int"),
])
def test_generator_bad_parameters_name_the_field(kw: dict[str, Any], match: str) -> None:
    with Runtime():
        with pytest.raises(ValueError, match=f"AudioGeneratorActor 'g': {match}"):
            AudioGeneratorActor(actor_id="g", **kw)


def test_chunk_clock_rate_follows_chunk_ms() -> None:
    with Runtime():
        gen = AudioGeneratorActor(44100, chunk_ms=10)
    assert gen.chunk_samples == 441 and gen.clock is not None and gen.clock.fps == 100.0


# -- output ----------------------------------------------------------------------

def test_generator_to_wav_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tone.wav"
    with Runtime() as rt:
        gen = AudioGeneratorActor(RATE, 2, 440.0, amplitude=0.9,
                                  clock=VirtualClock(50, max_ticks=25))
        out = AudioOutputActor(backend="wav", path=str(path))
        gen >> out
        assert rt.run(30)
    out.finalize()  # already done by teardown: idempotent
    assert out.backend == "wav" and out.samples_written == 25 * 960
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 2, 2)
        assert w.getnframes() == 25 * 960
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    ref = gen.render(0, 25 * 960).astype(np.float64) * 32767
    assert np.abs(pcm - ref).max() <= 0.51  # 16-bit rounding (float32 products) only


def test_auto_backend_falls_back_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(audio_mod, "default_output_device", lambda: (False, "no sound card here"))
    caplog.set_level(logging.INFO, logger="streamlib.audio")
    with Runtime() as rt:
        wav = AudioOutputActor(path=str(tmp_path / "a.wav"), actor_id="aw")
        null = AudioOutputActor(actor_id="an")
        with pytest.raises(ValueError, match="backend='sounddevice' cannot play here: no sound card"):
            AudioOutputActor(backend="sounddevice")
        with pytest.raises(ValueError, match="path is required for backend='wav'"):
            AudioOutputActor(backend="wav")
        with pytest.raises(ValueError, match="backend must be one of"):
            AudioOutputActor(backend="alsa")  # type: ignore[arg-type]
        gen = AudioGeneratorActor(clock=VirtualClock(50, max_ticks=3))
        gen >> null
        assert rt.run(30)
    assert (wav.backend, null.backend) == ("wav", "null")
    assert null.samples_written == 3 * 960
    lines = [r.getMessage() for r in caplog.records]
    assert any("aw: audio backend wav (no sound card here; writing" in m for m in lines)
    assert any("an: audio backend null (no sound card here and no path given)" in m for m in lines)


def test_missing_portaudio_is_no_device(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoPortAudio(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            return importlib.machinery.ModuleSpec(name, self) if name == "sounddevice" else None

        def create_module(self, spec: Any) -> None:
            return None

        def exec_module(self, module: Any) -> None:
            raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    ok, why = audio_mod.default_output_device()
    assert not ok and "PortAudio is not available (PortAudio library not found)" in why


def test_sounddevice_backend_feeds_the_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    """No audio device exists here: a stand-in module checks the buffer and callback wiring."""
    streams: list[Any] = []

    class FakeStream:
        def __init__(self, **kw: Any) -> None:
            self.kw, self.started, self.closed = kw, False, False
            streams.append(self)

        def start(self) -> None:
            self.started = True

        def stop(self) -> None:
            self.started = False

        def close(self) -> None:
            self.closed = True

    fake = types.ModuleType("sounddevice")
    fake.query_devices = lambda kind=None: {"name": "Fake Speakers"}  # type: ignore[attr-defined]
    fake.OutputStream = FakeStream  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    with Runtime() as rt:
        gen = AudioGeneratorActor(RATE, 2, 440.0, clock=VirtualClock(50, max_ticks=5))
        out = AudioOutputActor(buffer_ms=60)  # auto: the fake device is there
        gen >> out
        assert rt.run(30)
        assert out.backend == "sounddevice" and len(streams) == 1
        stream = streams[0]
        assert stream.started and stream.kw["samplerate"] == RATE and stream.kw["channels"] == 2
        played = np.empty((4000, 2), np.float32)
        stream.kw["callback"](played, 4000, None, None)
    # 5 chunks of 960 went in, the 60 ms buffer kept the newest 2880; then silence
    np.testing.assert_allclose(played[:2880], gen.render(1920, 2880), rtol=0, atol=1e-6)
    assert not played[2880:].any() and out.underruns == 1
    assert out.samples_written == 5 * 960 and stream.closed  # runtime close -> teardown


# -- example ---------------------------------------------------------------------

def test_audio_tone_example(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    example = str(ROOT / "examples" / "audio_tone.py")
    proc = subprocess.run([sys.executable, example, str(path), "1.5", "1000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"{path}: 72000 samples at 48000 Hz x2" in proc.stdout
    with wave.open(str(path), "rb") as w:
        assert (w.getnframes(), w.getframerate(), w.getnchannels()) == (72000, RATE, 2)
        pcm = np.frombuffer(w.readframes(72000), "<i2").reshape(-1, 2)[:, 0].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm[:RATE]))
    assert int(np.argmax(spectrum)) == 1000
