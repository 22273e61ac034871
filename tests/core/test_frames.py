"""Tests for streamlib.core.frames: validation, zero-copy wrapping, immutability, reprs."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import pickle
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from streamlib.errors import FrameValidationError
from streamlib.core.frames import (
    FRAME_KINDS,
    AudioFrame,
    DataMessage,
    EventMessage,
    PixelFormat,
    VideoFrame,
    frame_kind,
)


@contextlib.contextmanager
def rejects(match: str) -> Iterator[None]:
    """Expect a FrameValidationError matching ``match`` that is also a ValueError."""
    with pytest.raises(FrameValidationError, match=match) as info:
        yield
    assert isinstance(info.value, ValueError)


def video(shape: tuple[int, ...] = (4, 6, 3), dtype: torch.dtype = torch.uint8, **kw: Any) -> VideoFrame:
    kw.setdefault("timestamp_ns", 0)
    return VideoFrame(torch.zeros(shape, dtype=dtype), **kw)


def audio(samples: int = 480, channels: int = 2, **kw: Any) -> AudioFrame:
    kw.setdefault("sample_rate", 48_000)
    kw.setdefault("timestamp_ns", 0)
    return AudioFrame(np.zeros((samples, channels), np.float32), **kw)


# ---------------------------------------------------------------- PixelFormat

FORMATS = [  # format, valid shape for a 6x4 image, channels, dtype, planar, alpha
    ("rgb24", (4, 6, 3), 3, torch.uint8, False, False),
    ("rgba", (4, 6, 4), 4, torch.uint8, False, True),
    ("bgr24", (4, 6, 3), 3, torch.uint8, False, False),
    ("bgra", (4, 6, 4), 4, torch.uint8, False, True),
    ("gray8", (4, 6, 1), 1, torch.uint8, False, False),
    ("yuv420p", (6, 6), None, torch.uint8, True, False),
    ("nv12", (6, 6), None, torch.uint8, True, False),
    ("rgbf32", (4, 6, 3), 3, torch.float32, False, False),
]


@pytest.mark.parametrize(("name", "shape", "channels", "dtype", "planar", "alpha"), FORMATS)
def test_pixel_format_helpers_and_accepted_shape(
    name: str, shape: tuple[int, ...], channels: int | None, dtype: torch.dtype, planar: bool, alpha: bool
) -> None:
    fmt = PixelFormat(name)
    assert (fmt.channels, fmt.dtype, fmt.is_planar, fmt.has_alpha) == (channels, dtype, planar, alpha)
    assert fmt.expected_shape(6, 4) == shape
    assert str(fmt) == name and PixelFormat.parse(name.upper()) is fmt
    frame = video(shape, dtype, format=name)  # string accepted, stored as the enum member
    assert frame.format is fmt
    assert (frame.width, frame.height, frame.shape, frame.dtype) == (6, 4, shape, dtype)
    assert frame.nbytes == torch.zeros(shape, dtype=dtype).nbytes


@pytest.mark.parametrize(
    ("name", "shape", "dtype", "match"),
    [
        ("rgba", (1080, 1920, 3), torch.uint8, r"format rgba expects shape \(H, W, 4\) uint8, got \(1080, 1920, 3\) uint8"),
        ("rgb24", (4, 6, 3), torch.float32, r"format rgb24 expects .* uint8, got \(4, 6, 3\) float32"),
        ("rgbf32", (4, 6, 3), torch.uint8, r"format rgbf32 expects shape \(H, W, 3\) float32"),
        ("gray8", (4, 6), torch.uint8, r"format gray8 expects shape \(H, W, 1\) uint8, got \(4, 6\)"),
        ("bgra", (2, 4, 6, 4), torch.uint8, r"format bgra expects"),
        ("yuv420p", (4, 6, 3), torch.uint8, r"format yuv420p expects shape \(H\*3//2, W\) uint8 with even H and W"),
        ("yuv420p", (7, 6), torch.uint8, r"got \(7, 6\) uint8"),  # 7 rows is not H*3//2
        ("nv12", (4, 6), torch.uint8, r"format nv12 .*got \(4, 6\)"),  # 4 rows would mean H=8/3
        ("nv12", (6, 5), torch.uint8, r"format nv12 .*even H and W"),
    ],
)
def test_video_rejects_shape_or_dtype_mismatch(name: str, shape: tuple[int, ...], dtype: torch.dtype, match: str) -> None:
    with rejects(match):
        video(shape, dtype, format=name)


@pytest.mark.parametrize(("channels", "fmt"), [(4, PixelFormat.RGBA), (3, PixelFormat.RGB24)])
def test_video_format_is_inferred_from_the_channel_count(channels: int, fmt: PixelFormat) -> None:
    data = torch.arange(4 * 6 * channels, dtype=torch.uint8).reshape(4, 6, channels)
    frame = VideoFrame(data=data, timestamp_ns=5)
    assert frame.format is fmt and frame.format.has_alpha == (channels == 4)
    assert (frame.width, frame.height, frame.shape) == (6, 4, (4, 6, channels))
    assert frame.data is data and int(frame.data[3, 5, channels - 1]) == 4 * 6 * channels - 1
    assert VideoFrame(data.numpy(), 0).format is fmt  # numpy data too


def test_explicit_format_still_wins_over_inference() -> None:
    assert video((4, 6, 4), format="bgra").format is PixelFormat.BGRA
    assert video((4, 6, 3), format="bgr24").format is PixelFormat.BGR24
    with rejects(r"^VideoFrame.data: format rgb24 expects shape \(H, W, 3\) uint8, got \(4, 6, 4\) uint8$"):
        video((4, 6, 4), format="rgb24")


@pytest.mark.parametrize(("shape", "dtype", "got"), [
    ((4, 6, 5), torch.uint8, "(4, 6, 5) uint8"),
    ((4, 6, 1), torch.uint8, "(4, 6, 1) uint8"),
    ((4, 6, 3), torch.float32, "(4, 6, 3) float32"),
    ((6, 6), torch.uint8, "(6, 6) uint8"),
])
def test_video_without_format_rejects_data_no_format_is_inferred_for(
        shape: tuple[int, ...], dtype: torch.dtype, got: str) -> None:
    with pytest.raises(FrameValidationError) as info:
        video(shape, dtype)
    assert str(info.value) == (
        "VideoFrame.data: no format given, and one is inferred only for (H, W, 3) uint8 (rgb24) "
        f"or (H, W, 4) uint8 (rgba), got {got}")


@pytest.mark.parametrize("shape", [(0, 6, 3), (4, 0, 3)])
def test_video_rejects_empty_image(shape: tuple[int, ...]) -> None:
    with rejects(r"VideoFrame.data: width and height must be > 0"):
        video(shape)


def test_unknown_format_lists_valid_formats() -> None:
    with rejects(r"VideoFrame.format: unknown pixel format 'rgb565'; valid formats: rgb24, rgba, .*rgbf32"):
        video(format="rgb565")
    with rejects("unknown pixel format"):
        PixelFormat.parse(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "w", "h"), [("nv12", 5, 4), ("yuv420p", 6, 3), ("rgb24", 0, 4)])
def test_expected_shape_rejects_bad_sizes(fmt: str, w: int, h: int) -> None:
    with rejects("PixelFormat.expected_shape"):
        PixelFormat(fmt).expected_shape(w, h)


# ---------------------------------------------------------------- data wrapping


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_numpy_wrapping_is_zero_copy(kind: str) -> None:
    if kind == "video":
        arr = np.zeros((4, 6, 3), np.uint8)
        frame: VideoFrame | AudioFrame = VideoFrame(arr, 0)
    else:
        arr = np.zeros((4, 6), np.float32)
        frame = AudioFrame(arr, 8000, 0)
    assert isinstance(frame.data, torch.Tensor)
    assert frame.data.data_ptr() == arr.ctypes.data
    arr[1, 2] = 7  # mutate the numpy side, see it through the tensor
    assert (frame.data[1, 2] == 7).all()
    view = frame.numpy()
    assert np.shares_memory(view, arr)
    view[0, 0] = 5
    assert (arr[0, 0] == 5).all()


def test_smallest_planar_frame_accepted() -> None:
    frame = video((3, 2), format="yuv420p")  # 2x2 image: 2 luma rows + 1 chroma row
    assert (frame.width, frame.height) == (2, 2)
    assert frame.shape == PixelFormat.YUV420P.expected_shape(2, 2)


def test_read_only_numpy_accepted_without_copy_or_warning() -> None:
    arr = np.full((4, 6, 3), 9, np.uint8)
    arr.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = VideoFrame(arr, 0)
    assert frame.data.data_ptr() == arr.ctypes.data
    assert int(frame.data[3, 5, 2]) == 9


@pytest.mark.parametrize("bad", [[[1, 2, 3]], (1, 2), "pixels", None, 5])
def test_non_array_data_rejected(bad: object) -> None:
    with rejects(r"VideoFrame.data: expected torch.Tensor or numpy.ndarray"):
        VideoFrame(bad, 0)  # type: ignore[arg-type]
    with rejects(r"AudioFrame.data: expected torch.Tensor or numpy.ndarray"):
        AudioFrame(bad, 48_000, 0)  # type: ignore[arg-type]


def test_negative_stride_numpy_rejected_not_copied() -> None:
    with rejects(r"VideoFrame.data: cannot wrap numpy array without copying"):
        VideoFrame(np.zeros((4, 6, 3), np.uint8)[::-1], 0)


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available() and not os.environ.get("STREAMLIB_REQUIRE_GPU"), reason="needs CUDA"
)
def test_numpy_on_cuda_raises_naming_device() -> None:
    frame = VideoFrame(torch.zeros((4, 6, 3), dtype=torch.uint8, device="cuda"), 0)
    assert frame.device.type == "cuda"
    with rejects(r"VideoFrame.numpy: data is on device cuda"):
        frame.numpy()


def test_numpy_on_non_cpu_raises_naming_device() -> None:
    frame = VideoFrame(torch.zeros((4, 6, 3), dtype=torch.uint8, device="meta"), 0)
    with rejects(r"VideoFrame.numpy: data is on device meta"):
        frame.numpy()


# ---------------------------------------------------------------- timestamps and common fields

MAKERS: dict[str, Callable[..., Any]] = {
    "video": lambda **kw: video(**kw),
    "audio": lambda **kw: audio(**kw),
    "data": lambda **kw: DataMessage({"a": 1}, **{"timestamp_ns": 0, **kw}),
    "event": lambda **kw: EventMessage("key", "press", **{"timestamp_ns": 0, "key": "a", **kw}),
}


@pytest.mark.parametrize("kind", FRAME_KINDS)
@pytest.mark.parametrize("bad", [1.5, 1e9, True, np.float64(1.0), "0", None, 2**63])
def test_timestamp_must_be_int(kind: str, bad: object) -> None:
    with rejects(r"\.timestamp_ns: (expected int \(integer nanoseconds\)|must be between)"):
        MAKERS[kind](timestamp_ns=bad)


@pytest.mark.parametrize("kind", FRAME_KINDS)
def test_numpy_int_timestamp_converted(kind: str) -> None:
    frame = MAKERS[kind](timestamp_ns=np.int64(1_234_567_890), clock_id="virtual")
    assert type(frame.timestamp_ns) is int and frame.timestamp_ns == 1_234_567_890
    assert frame.timestamp == pytest.approx(1.23456789)
    assert "ts=1.234567890s@virtual" in repr(frame)
    assert frame_kind(frame) == kind == frame.KIND


@pytest.mark.parametrize("kind", ["video", "audio", "data"])
@pytest.mark.parametrize(("field", "bad", "match"), [
    ("frame_number", -1, r"frame_number: must be >= 0"),
    ("frame_number", 1.0, r"frame_number: expected int"),
    ("clock_id", "", r"clock_id: expected a non-empty str"),
    ("metadata", [("a", 1)], r"metadata: expected a mapping"),
    ("metadata", {1: "a"}, r"metadata: keys must be str"),
])
def test_common_field_validation(kind: str, field: str, bad: object, match: str) -> None:
    with rejects(match):
        MAKERS[kind](**{field: bad})


@pytest.mark.parametrize("kind", ["video", "audio", "data"])
def test_metadata_is_a_read_only_copy(kind: str) -> None:
    source = {"camera": "front"}
    frame = MAKERS[kind](metadata=source)
    source["camera"] = "back"
    assert frame.metadata["camera"] == "front"
    with pytest.raises(TypeError):
        frame.metadata["camera"] = "side"
    assert dict(MAKERS[kind]().metadata) == {}


@pytest.mark.parametrize("kind", FRAME_KINDS)
@pytest.mark.parametrize("clone", [lambda f: pickle.loads(pickle.dumps(f)), copy.deepcopy, copy.copy])
def test_pickle_and_copy_round_trip(kind: str, clone: Callable[[Any], Any]) -> None:
    kw = {} if kind == "event" else {"metadata": {"camera": "front"}}
    frame = MAKERS[kind](timestamp_ns=99, **kw)
    back = clone(frame)
    assert type(back) is type(frame) and back.timestamp_ns == 99 and repr(back) == repr(frame)
    if kind != "event":
        assert back.metadata == {"camera": "front"}
        with pytest.raises(TypeError):
            back.metadata["camera"] = "back"
    if kind in ("video", "audio"):
        assert torch.equal(back.data, frame.data)


@pytest.mark.parametrize("kind", FRAME_KINDS)
def test_frames_are_frozen(kind: str) -> None:
    frame = MAKERS[kind]()
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.timestamp_ns = 5


@pytest.mark.parametrize(("kind", "field", "bad"), [
    ("video", "format", "rgba"),
    ("video", "timestamp_ns", 0.5),
    ("audio", "sample_rate", 10),
    ("data", "frame_number", -3),
    ("event", "key", None),
])
def test_replace_revalidates(kind: str, field: str, bad: object) -> None:
    frame = MAKERS[kind]()
    assert frame.replace(timestamp_ns=42).timestamp_ns == 42
    assert frame.replace(timestamp_ns=42) is not frame
    with rejects(field):
        frame.replace(**{field: bad})


def test_video_replace_keeps_data_without_copy() -> None:
    frame = video(frame_number=1)
    moved = frame.replace(frame_number=2)
    assert moved.data is frame.data and moved.frame_number == 2 and frame.frame_number == 1


# ---------------------------------------------------------------- reprs


def test_video_repr_shows_shape_device_not_data() -> None:
    frame = VideoFrame(torch.full((1080, 1920, 3), 123, dtype=torch.uint8), 1_234_567_890, frame_number=12)
    text = repr(frame)
    assert text == "VideoFrame(1920x1080 rgb24 uint8, device=cpu, frame=12, ts=1.234567890s@monotonic)"
    assert "123" not in repr(VideoFrame(torch.full((4, 6, 3), 123, dtype=torch.uint8), 0))


def test_audio_repr_shows_shape_device_not_data() -> None:
    frame = AudioFrame(torch.full((480, 2), 0.123, dtype=torch.float32), 48_000, -5, frame_number=3)
    text = repr(frame)
    assert text == "AudioFrame(480x2 float32 @48000Hz, device=cpu, frame=3, ts=-0.000000005s@monotonic)"
    assert "123" not in text and "tensor" not in text


@pytest.mark.parametrize(("payload", "expected"), [
    (torch.full((2, 3), 123.0), "payload=Tensor(2, 3) float32 device=cpu"),
    (np.full((5,), 123, np.int16), "payload=ndarray(5,) int16"),
    ({"k": 123}, "payload=dict"),
])
def test_data_message_repr_shows_payload_type(payload: object, expected: str) -> None:
    text = repr(DataMessage(payload, 0, topic="stats"))
    assert expected in text and "topic='stats'" in text
    assert "123" not in text


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize(("samples", "rate", "duration_ns"), [
    (480, 48_000, 10_000_000),
    (1, 44_100, 22_675),  # floor of 22675.7...
    (44_100, 44_100, 1_000_000_000),
    (1024, 768_000, 1_333_333),
])
def test_audio_duration_exact(samples: int, rate: int, duration_ns: int) -> None:
    frame = audio(samples, 1, sample_rate=rate)
    assert type(frame.duration_ns) is int and frame.duration_ns == duration_ns
    assert (frame.samples, frame.channels, frame.device) == (samples, 1, torch.device("cpu"))


@pytest.mark.parametrize(("data", "rate", "match"), [
    (np.zeros(480, np.float32), 48_000, r"got 1-D shape \(480,\) float32; reshape mono audio to \(samples, 1\)"),
    (np.zeros((480, 2), np.float64), 48_000, r"AudioFrame.data: expected dtype float32, got 2-D .* float64"),
    (np.zeros((480, 2, 1), np.float32), 48_000, r"expected 2-D \(samples, channels\)"),
    (np.zeros((0, 2), np.float32), 48_000, r"need at least 1 sample"),
    (np.zeros((10, 0), np.float32), 48_000, r"channels must be between 1 and 64"),
    (np.zeros((10, 65), np.float32), 48_000, r"channels must be between 1 and 64"),
    (np.zeros((10, 2), np.float32), 999, r"AudioFrame.sample_rate: must be between 1000 and 768000"),
    (np.zeros((10, 2), np.float32), 768_001, r"AudioFrame.sample_rate: must be between"),
    (np.zeros((10, 2), np.float32), 48_000.0, r"AudioFrame.sample_rate: expected int"),
])
def test_audio_rejects(data: np.ndarray[Any, Any], rate: Any, match: str) -> None:
    with rejects(match):
        AudioFrame(data, rate, 0)


def test_audio_accepts_bounds_and_numpy_rate() -> None:
    assert audio(channels=64, sample_rate=np.int32(1000)).sample_rate == 1000
    assert type(audio(sample_rate=np.int32(1000)).sample_rate) is int
    assert audio(sample_rate=768_000).channels == 2


# ---------------------------------------------------------------- events


@pytest.mark.parametrize("kw", [
    dict(kind="key", action="press", key="a"),
    dict(kind="key", action="repeat", key="Enter", modifiers=["ctrl", "shift"]),
    dict(kind="mouse", action="move", x=1, y=2.5),
    dict(kind="mouse", action="press", x=0, y=0, button=0),
    dict(kind="mouse", action="scroll", x=3, y=4),
    dict(kind="window", action="resize", width=640, height=480),
    dict(kind="window", action="close"),
    dict(kind="window", action="unfocus"),
])
def test_event_accepts_valid(kw: dict[str, Any]) -> None:
    event = EventMessage(timestamp_ns=7, source="actor-1", **kw)
    assert frame_kind(event) == "event" and event.source == "actor-1"
    assert isinstance(event.modifiers, frozenset)
    assert event == EventMessage(timestamp_ns=7, source="actor-1", **kw)  # value equality, hashable
    assert len({event, event.replace()}) == 1
    if event.kind == "mouse":
        assert isinstance(event.x, float) and isinstance(event.y, float)


@pytest.mark.parametrize(("kw", "match"), [
    (dict(kind="gamepad", action="press"), r"EventMessage.kind: expected one of 'key', 'mouse', 'window'"),
    (dict(kind="key", action="click", key="a"),
     r"EventMessage.action: .*'click'.* not a valid key action; expected one of press, release, repeat"),
    (dict(kind=["key"], action="press"), r"EventMessage.kind: expected one of"),
    (dict(kind="window", action="focus", modifiers=[[1]]), r"EventMessage.modifiers: every modifier must be a str"),
    (dict(kind="key", action="press"), r"EventMessage.key: required for key press"),
    (dict(kind="key", action="press", key=""), r"EventMessage.key: expected a non-empty str"),
    (dict(kind="mouse", action="move", x=1), r"EventMessage.y: required for mouse move"),
    (dict(kind="mouse", action="press", x=1, y=2), r"EventMessage.button: required for mouse press"),
    (dict(kind="mouse", action="release", x=1, y=2, button=-1), r"EventMessage.button: must be >= 0"),
    (dict(kind="mouse", action="move", x="1", y=2), r"EventMessage.x: expected a finite number"),
    (dict(kind="mouse", action="move", x=float("nan"), y=2), r"EventMessage.x: expected a finite number"),
    (dict(kind="mouse", action="move", x=True, y=2), r"EventMessage.x: expected a finite number"),
    (dict(kind="mouse", action="resize", x=1, y=2), r"not a valid mouse action"),
    (dict(kind="window", action="resize", width=640), r"EventMessage.height: required for window resize"),
    (dict(kind="window", action="resize", width=0, height=480), r"EventMessage.width: must be >= 1"),
    (dict(kind="window", action="focus", modifiers="ctrl"), r"EventMessage.modifiers: expected an iterable of str"),
    (dict(kind="window", action="focus", modifiers=[1]), r"EventMessage.modifiers: every modifier must be a str"),
    (dict(kind="window", action="focus", source=None), r"EventMessage.source: expected str"),
])
def test_event_rejects(kw: dict[str, Any], match: str) -> None:
    with rejects(match):
        EventMessage(timestamp_ns=0, **kw)


def test_event_repr_compact() -> None:
    event = EventMessage("key", "press", 1, key="a", modifiers={"shift", "ctrl"}, source="kbd")
    assert repr(event) == "EventMessage(key press, key='a', modifiers=ctrl+shift, source='kbd', ts=0.000000001s@monotonic)"


# ---------------------------------------------------------------- frame_kind


@pytest.mark.parametrize("item", [None, 3, "video", torch.zeros(2), VideoFrame, {"KIND": "video"}])
def test_frame_kind_none_for_non_frames(item: object) -> None:
    assert frame_kind(item) is None


def test_frame_kinds_constant() -> None:
    assert FRAME_KINDS == ("video", "audio", "event", "data")
    assert [c.KIND for c in (VideoFrame, AudioFrame, EventMessage, DataMessage)] == list(FRAME_KINDS)
