"""Audio actors: ``AudioGeneratorActor`` (tones and noise) and ``AudioOutputActor``.

The generator computes every sample from its absolute index ``n`` (an exact
integer counter), never by accumulating a phase increment, so chunk boundaries
are seamless and a tone stays exact however long it runs.

The output plays through ``sounddevice`` (PortAudio) when there is an output
device, else writes a 16-bit WAV file or discards samples (``null``), chosen
explicitly or automatically with one log line saying which and why.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
import wave
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, TimedTick
from streamlib.core.frames import AudioFrame
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.errors import ConfigError

logger = logging.getLogger("streamlib.audio")

Waveform = Literal["sine", "square", "noise"]
WAVEFORMS: tuple[str, ...] = ("sine", "square", "noise")
Backend = Literal["auto", "sounddevice", "wav", "null"]
BACKENDS: tuple[str, ...] = ("auto", "sounddevice", "wav", "null")


class AudioGeneratorActor(Actor):
    """Publishes a tone (or noise) on ``outputs['audio']``, one chunk per tick.

    Sample ``n`` of a sine is ``amplitude * sin(2*pi*frequency*n/sample_rate)``
    with ``n`` counted from the first chunk, identical on every channel; a
    square wave is ``+amplitude`` for the first half of each period and
    ``-amplitude`` for the second; noise is uniform in ``[-amplitude, amplitude]``,
    independent per channel, from a generator seeded with ``seed``. Chunks are
    contiguous whatever the tick timing: a late tick delays a chunk but never
    skips samples. ``timestamp_ns`` is the tick's.

    Args:
        sample_rate: samples per second.
        channels: number of channels (1..64).
        frequency: tone frequency in Hz (sine, square); below sample_rate/2.
        waveform: ``sine``, ``square`` or ``noise``.
        amplitude: peak value, 0..1.
        chunk_ms: chunk length; ``sample_rate * chunk_ms / 1000`` must be a
            whole number of samples. The default clock ticks once per chunk.
        seed: seed of the noise generator (same seed, same noise).
        actor_id: unique id (default: generated).

    Raises:
        ConfigError: a parameter is out of range (the message names it).
    """

    def __init__(self, sample_rate: int = 48000, channels: int = 2, frequency: float = 440.0,
                 waveform: Waveform = "sine", *, amplitude: float = 0.5, chunk_ms: float = 20.0,
                 seed: int = 0, actor_id: str | None = None, clock: Clock | None = None,
                 **kwargs: Any) -> None:
        label = "AudioGeneratorActor" + ("" if actor_id is None else f" '{actor_id}'")
        if not isinstance(sample_rate, int) or not (
                AudioFrame.MIN_SAMPLE_RATE <= sample_rate <= AudioFrame.MAX_SAMPLE_RATE):
            raise ConfigError(f"{label}: sample_rate must be an int in {AudioFrame.MIN_SAMPLE_RATE}.."
                              f"{AudioFrame.MAX_SAMPLE_RATE}, got {sample_rate!r}")
        if not isinstance(channels, int) or not 1 <= channels <= AudioFrame.MAX_CHANNELS:
            raise ConfigError(f"{label}: channels must be an int in 1..{AudioFrame.MAX_CHANNELS}, "
                              f"got {channels!r}")
        if waveform not in WAVEFORMS:
            raise ConfigError(f"{label}: waveform must be one of {WAVEFORMS}, got {waveform!r}")
        if waveform != "noise" and not (isinstance(frequency, (int, float)) and math.isfinite(frequency)
                                        and 0 < frequency < sample_rate / 2):
            raise ConfigError(f"{label}: frequency must be > 0 and below sample_rate/2 "
                              f"({sample_rate / 2:g} Hz), got {frequency!r}")
        if not (isinstance(amplitude, (int, float)) and 0 <= amplitude <= 1):
            raise ConfigError(f"{label}: amplitude must be in 0..1, got {amplitude!r}")
        if not (isinstance(chunk_ms, (int, float)) and math.isfinite(chunk_ms) and chunk_ms > 0):
            raise ConfigError(f"{label}: chunk_ms must be > 0, got {chunk_ms!r}")
        exact = sample_rate * chunk_ms / 1000
        if abs(exact - round(exact)) > 1e-9 * max(1.0, exact) or round(exact) < 1:
            raise ConfigError(f"{label}: chunk_ms: {chunk_ms!r} ms at {sample_rate} Hz is "
                              f"{exact:g} samples; it must be a whole number")
        self.chunk_samples = int(round(exact))
        if clock is None:  # exactly one tick per chunk: rate = sample_rate / chunk_samples
            clock = SoftwareClock(Fraction(sample_rate, self.chunk_samples))
        super().__init__(actor_id=actor_id, clock=clock, **kwargs)
        self.sample_rate, self.channels = sample_rate, channels
        self.frequency, self.waveform = float(frequency), waveform
        self.amplitude, self.chunk_ms, self.seed = float(amplitude), float(chunk_ms), seed
        self.samples_generated = 0  # absolute index of the next sample
        self._rng = np.random.default_rng(seed)
        # frequency / sample_rate as an exact fraction: the phase at a chunk start is
        # reduced modulo one period with integers, so float64 never sees a huge n.
        self._cycles_per_sample = Fraction(self.frequency) / sample_rate
        self.outputs["audio"] = StreamOutput("audio")

    def render(self, start: int, count: int) -> npt.NDArray[np.float32]:
        """Samples ``start .. start+count-1`` as a (count, channels) float32 array.

        Deterministic for sine and square; noise draws from the actor's generator.
        """
        if self.waveform == "noise":
            noise = self._rng.uniform(-1.0, 1.0, (count, self.channels))
            return (self.amplitude * noise).astype(np.float32)
        base = float((self._cycles_per_sample * start) % 1)  # cycles at `start`, in [0, 1)
        cycles = base + float(self._cycles_per_sample) * np.arange(count, dtype=np.float64)
        if self.waveform == "sine":
            wave_ = np.sin(2.0 * np.pi * cycles)
        else:
            wave_ = np.where(np.mod(cycles, 1.0) < 0.5, 1.0, -1.0)
        mono = (self.amplitude * wave_).astype(np.float32)
        return np.repeat(mono[:, None], self.channels, axis=1)

    def process(self, tick: TimedTick) -> None:
        data = self.render(self.samples_generated, self.chunk_samples)
        self.samples_generated += self.chunk_samples
        self.outputs["audio"].write(AudioFrame(
            data, sample_rate=self.sample_rate, timestamp_ns=tick.timestamp_ns,
            frame_number=tick.frame_number, clock_id=tick.clock_id,
        ))


def default_output_device() -> tuple[bool, str]:
    """Whether ``sounddevice`` can play here, and why (or why not)."""
    try:
        import sounddevice as sd
    except ImportError:
        return False, "sounddevice is not installed"
    except OSError as exc:  # the module imports but PortAudio is missing
        return False, f"PortAudio is not available ({exc})"
    try:
        info = sd.query_devices(kind="output")
    except Exception as exc:  # noqa: BLE001 - PortAudioError, ValueError: no device
        return False, f"no default output device ({exc})"
    return True, f"default output device {info.get('name', '?')!r}"


class _PlaybackBuffer:
    """Thread-safe FIFO between ``process`` (writer) and the PortAudio callback (reader).

    Holds at most ``max_samples``: past that the oldest samples are dropped
    (``overflow``) so latency stays bounded; the callback fills a shortfall with
    silence (``underruns``).
    """

    def __init__(self, channels: int, max_samples: int) -> None:
        self.channels, self.max_samples = channels, max_samples
        self._chunks: collections.deque[npt.NDArray[np.float32]] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self.underruns = 0
        self.overflow = 0

    def push(self, data: npt.NDArray[np.float32]) -> None:
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)
            while self._size > self.max_samples:
                extra = self._size - self.max_samples
                head = self._chunks[0]
                if len(head) <= extra:
                    self._chunks.popleft()
                    self._size -= len(head)
                    self.overflow += len(head)
                else:
                    self._chunks[0] = head[extra:]
                    self._size -= extra
                    self.overflow += extra

    def pull(self, out: npt.NDArray[np.float32]) -> None:
        """Fill ``out`` (frames, channels) from the queue, zero-padding a shortfall."""
        need, pos = len(out), 0
        with self._lock:
            while pos < need and self._chunks:
                head = self._chunks[0]
                n = min(len(head), need - pos)
                out[pos:pos + n] = head[:n]
                pos += n
                self._size -= n
                if n == len(head):
                    self._chunks.popleft()
                else:
                    self._chunks[0] = head[n:]
            if pos < need:
                out[pos:] = 0
                self.underruns += 1


class AudioOutputActor(Actor):
    """Plays ``inputs['audio']`` through the sound card, or writes it to a WAV file.

    Backends: ``sounddevice`` (a PortAudio ``OutputStream`` whose callback pulls
    from a small thread-safe buffer of at most ``buffer_ms``; overflow drops the
    oldest samples, underruns play silence), ``wav`` (16-bit PCM via the
    ``wave`` module; the header is completed in ``teardown``/``finalize()``),
    ``null`` (counts and discards). ``auto`` picks ``sounddevice`` when it
    imports and a default output device exists, else ``wav`` when ``path`` is
    given, else ``null``, and logs one INFO line with the choice and the reason.
    The stream or file is opened on the first frame (its rate and channels set
    the format); later frames of another format are dropped with a warning.

    No clock: every upstream write ticks it and each tick takes every unseen
    frame (``read_all_new``), so a lock-step graph writes every sample.

    Args:
        backend: ``auto``, ``sounddevice``, ``wav`` or ``null``.
        path: WAV file to write (required for ``wav``; parent folders are created).
        device: sounddevice output device (index or name; None: the default).
        buffer_ms: most audio queued for the sound card before dropping.
        actor_id: unique id (default: generated).

    Raises:
        ConfigError: unknown ``backend``, ``wav`` without ``path``,
            ``sounddevice`` requested where it cannot play, bad ``buffer_ms``.
    """

    def __init__(self, backend: Backend = "auto", path: str | None = None, *,
                 device: int | str | None = None, buffer_ms: float = 200.0,
                 actor_id: str | None = None, **kwargs: Any) -> None:
        label = "AudioOutputActor" + ("" if actor_id is None else f" '{actor_id}'")
        if backend not in BACKENDS:
            raise ConfigError(f"{label}: backend must be one of {BACKENDS}, got {backend!r}")
        if path is not None and (not isinstance(path, (str, os.PathLike)) or not os.fspath(path)):
            raise ConfigError(f"{label}: path must be a non-empty file path or None, got {path!r}")
        if not (isinstance(buffer_ms, (int, float)) and buffer_ms > 0):
            raise ConfigError(f"{label}: buffer_ms must be > 0, got {buffer_ms!r}")
        if backend == "wav" and path is None:
            raise ConfigError(f"{label}: path is required for backend='wav'")
        chosen, why = backend, "requested"
        if backend in ("auto", "sounddevice"):
            ok, reason = default_output_device()
            if backend == "sounddevice" and not ok:
                raise ConfigError(f"{label}: backend='sounddevice' cannot play here: {reason}")
            if ok:
                chosen, why = "sounddevice", reason
            elif path is not None:
                chosen, why = "wav", f"{reason}; writing {os.fspath(path)!r}"
            else:
                chosen, why = "null", f"{reason} and no path given"
        super().__init__(actor_id=actor_id, **kwargs)
        self.backend: str = chosen
        self.path = None if path is None else os.fspath(path)
        # The sound card: ``Actor.device`` is where tensors live, so it has its own name.
        self.sound_device, self.buffer_ms = device, float(buffer_ms)
        logger.info("%s: audio backend %s (%s)", self.actor_id, chosen, why)
        self.inputs["audio"] = StreamInput("audio", slots=64)
        self.samples_written = 0
        self.frames_dropped = 0
        self.sample_rate: int | None = None
        self.channels: int | None = None
        self._lock = threading.Lock()
        self._wav: wave.Wave_write | None = None
        self._stream: Any = None
        self._buffer: _PlaybackBuffer | None = None
        self._finalized = False
        self._warned = False

    @property
    def underruns(self) -> int:
        """Callbacks that found too little audio queued (sounddevice only)."""
        return self._buffer.underruns if self._buffer is not None else 0

    def process(self, tick: TimedTick) -> None:
        frames = self.inputs["audio"].read_all_new()
        with self._lock:
            for frame in frames:
                self._write(frame)

    def teardown(self) -> None:
        self.finalize()

    def finalize(self) -> None:
        """Close the WAV file (completing its header) or the audio stream; idempotent."""
        with self._lock:
            if self._finalized:
                return
            self._finalized = True
            wav, self._wav = self._wav, None
            stream, self._stream = self._stream, None
        if wav is not None:
            wav.close()
        if stream is not None:
            stream.stop()
            stream.close()

    def _write(self, frame: AudioFrame) -> None:
        if self._finalized:
            self.frames_dropped += 1
            return
        if self.sample_rate is None:
            self._open(frame.sample_rate, frame.channels)
        if frame.sample_rate != self.sample_rate or frame.channels != self.channels:
            self.frames_dropped += 1
            if not self._warned:
                self._warned = True
                logger.warning("%s: audio %d Hz x%d differs from the output's %s Hz x%s; dropped",
                               self.actor_id, frame.sample_rate, frame.channels,
                               self.sample_rate, self.channels)
            return
        data = frame.data.detach().cpu().numpy()
        if self._wav is not None:
            pcm = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2")
            self._wav.writeframes(pcm.tobytes())
        elif self._buffer is not None:
            self._buffer.push(np.array(data, dtype=np.float32, copy=True))
        self.samples_written += frame.samples

    def _open(self, rate: int, channels: int) -> None:
        self.sample_rate, self.channels = rate, channels
        if self.backend == "wav":
            assert self.path is not None
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            wav = wave.open(self.path, "wb")
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            self._wav = wav
        elif self.backend == "sounddevice":
            import sounddevice as sd

            buffer = _PlaybackBuffer(channels, max(1, int(rate * self.buffer_ms / 1000)))

            def callback(outdata: npt.NDArray[np.float32], frames: int, time: Any,
                         status: Any) -> None:
                buffer.pull(outdata)  # runs on PortAudio's thread; never blocks for long

            self._buffer = buffer
            self._stream = sd.OutputStream(samplerate=rate, channels=channels, dtype="float32",
                                           device=self.sound_device, callback=callback)
            self._stream.start()
