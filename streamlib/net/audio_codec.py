"""ST 2110-30 audio formats and the L24/L16 sample codec (RFC 3190 / RFC 3551).

Sample conversion (both directions exact for values on the grid):

* float -> integer: ``q = round_half_away_from_zero(x * 2**(bits-1))`` clipped to
  ``[-2**(bits-1), 2**(bits-1) - 1]``; NaN becomes 0. So +1.0 encodes as the
  largest code (0x7FFFFF for L24) and -1.0 as the smallest (0x800000).
* integer -> float: ``x = q / 2**(bits-1)``, exact in float32 for 16 and 24 bits,
  so decode -> encode returns the same codes byte for byte.

``rtp_to_ns`` is the inverse of ``media_timestamp`` that the depacketizer uses
(see ``streamlib.net.audio_depacketizer``). Every public name here is re-exported
by ``streamlib.net.audio``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamlib.core.frames import AudioFrame
from streamlib.errors import ConfigError, RTPError

__all__ = ["ENCODINGS", "MAX_CHANNELS", "AudioFormat", "decode_samples", "encode_samples",
           "rtp_to_ns"]

ENCODINGS: Mapping[str, int] = {"L24": 3, "L16": 2}  # bytes per sample
MAX_CHANNELS = 64   # RFC 3190 allows more; ST 2110-30 levels stop at 64
_NS = 1_000_000_000


def _bits(encoding: str) -> int:
    try:
        return 8 * ENCODINGS[encoding]
    except KeyError:
        raise ConfigError(f"encoding must be one of {tuple(ENCODINGS)}, got {encoding!r}") from None


def encode_samples(data: npt.ArrayLike, encoding: str = "L24") -> bytes:
    """Float samples ``(samples, channels)`` in [-1, 1] -> interleaved big-endian PCM bytes.

    Rounds half away from zero, clips, maps NaN to 0 (see the module docstring).
    Raises ConfigError for an unknown encoding.
    """
    bits = _bits(encoding)
    scale = float(1 << (bits - 1))
    x = np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0) * scale
    # float64 holds x * 2**23 exactly for float32 x, so the +-0.5 below cannot double-round
    q = np.trunc(x + np.copysign(0.5, x))
    q = np.clip(q, -scale, scale - 1).astype(np.int32).reshape(-1)
    if bits == 16:
        return q.astype(">i2").tobytes()
    return q.astype(">i4").view(np.uint8).reshape(-1, 4)[:, 1:].tobytes()


def decode_samples(payload: bytes | bytearray | memoryview, encoding: str = "L24",
                   channels: int = 2) -> npt.NDArray[np.float32]:
    """Interleaved big-endian PCM -> float32 ``(samples, channels)``.

    Raises RTPError when the length is not a whole number of sample frames.
    """
    width = _bits(encoding) // 8
    frame = width * channels
    n = len(payload)
    if channels < 1 or n % frame:
        raise RTPError(f"{encoding} payload of {n} bytes is not a whole number of "
                       f"{channels}-channel sample frames ({frame} bytes each)")
    raw = np.frombuffer(payload, dtype=np.uint8)
    if width == 2:
        ints = raw.view(">i2").astype(np.int32)
        scale = 1.0 / 32768.0
    else:
        wide = np.zeros((n // 3, 4), dtype=np.uint8)
        wide[:, :3] = raw.reshape(-1, 3)
        ints = wide.view(">i4").reshape(-1) >> 8  # arithmetic shift sign-extends
        scale = 1.0 / 8388608.0
    return (ints.astype(np.float32) * np.float32(scale)).reshape(-1, channels)


def rtp_to_ns(ext_timestamp: int, rate: int) -> int:
    """First nanosecond whose ST 2110-10 media timestamp is ``ext_timestamp`` (unwrapped)."""
    return -((-ext_timestamp * _NS) // rate)


@dataclass(frozen=True)
class AudioFormat:
    """Encoding, rate and channel count of one stream; validated on construction.

    Raises:
        ConfigError: unknown encoding, rate outside AudioFrame's range, channels not in 1..64.
    """

    encoding: str = "L24"
    sample_rate: int = 48000
    channels: int = 2

    def __post_init__(self) -> None:
        _bits(self.encoding)
        rate, ch = self.sample_rate, self.channels
        if isinstance(rate, bool) or not isinstance(rate, int) or not (
                AudioFrame.MIN_SAMPLE_RATE <= rate <= AudioFrame.MAX_SAMPLE_RATE):
            raise ConfigError(f"sample_rate must be an int in {AudioFrame.MIN_SAMPLE_RATE}.."
                              f"{AudioFrame.MAX_SAMPLE_RATE}, got {rate!r}")
        if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= MAX_CHANNELS:
            raise ConfigError(f"channels must be an int in 1..{MAX_CHANNELS}, got {ch!r}")

    @property
    def sample_bytes(self) -> int:
        return ENCODINGS[self.encoding]

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (one sample of every channel)."""
        return ENCODINGS[self.encoding] * self.channels

    def samples_for_ms(self, ms: float, what: str) -> int:
        """Whole samples in ``ms`` milliseconds; ConfigError naming ``what`` otherwise."""
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not ms > 0:
            raise ConfigError(f"{what} must be a number > 0, got {ms!r}")
        exact = self.sample_rate * float(ms) / 1000.0
        n = round(exact)
        if n < 1 or abs(exact - n) > 1e-6:
            raise ConfigError(f"{what}: {ms!r} ms at {self.sample_rate} Hz is {exact:g} samples; "
                              "it must be a whole number")
        return n
