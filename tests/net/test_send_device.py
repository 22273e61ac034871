"""NetworkSendActor with CUDA frames: one non-blocking device->host copy per frame into
reused page-locked memory, ordered by events (``streamlib.actors.network_device``).

Without a GPU the device branch is driven by ``_OnDevice``, a CPU tensor that says it
is on CUDA, with a fake stream and fake events that log what happened in which order."""

from __future__ import annotations

import socket
import threading
from typing import Any, cast

import numpy as np
import pytest
import torch

from streamlib.actors.network import NetworkSendActor
from streamlib.core.frames import VideoFrame
from streamlib.gpu.device import pinned_empty as real_pinned
from streamlib.gpu.device import with_ready_event
from streamlib.net.pgroup import pack_rgb_fast
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.net.udp import open_receiver, open_sender
from streamlib.net.video_sender import VideoStreamSender
from streamlib.testing import ActorHarness

W, H, N = 16, 6, 7   # more frames than the sender has buffers (3)


class _OnDevice(torch.Tensor):
    """A CPU tensor that reports ``is_cuda``: the sender takes its CUDA branch here.
    What torch computes from it is a plain tensor (no subclass dispatch)."""

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


class FakeEvent:
    def __init__(self, log: list[tuple[str, str]], name: str) -> None:
        self.log, self.name = log, name

    def record(self, stream: Any = None) -> None:
        self.log.append(("record", self.name))

    def wait(self, stream: Any = None) -> None:
        self.log.append(("wait", self.name))

    def synchronize(self) -> None:
        self.log.append(("sync", self.name))

    def query(self) -> bool:
        return True


class FakeStream:
    device = torch.device("cuda", 0)  # not the tensor's (cpu): record_stream skips it

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    def wait_event(self, event: FakeEvent) -> None:
        self.log.append(("wait", event.name))


def _frames(channels: int = 3) -> list[tuple[VideoFrame, torch.Tensor]]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(N):
        host = torch.from_numpy(rng.integers(0, 256, (H, W, channels), dtype=np.uint8))
        frame = VideoFrame(host.clone().as_subclass(_OnDevice), timestamp_ns=i * 1_000_000,
                           frame_number=i, format="rgba" if channels == 4 else "rgb24")
        out.append((frame, host))
    return out


class Counting:
    """Counts the torch calls that move data: ``.cpu()``, ``.to(<device>)``, ``copy_``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, log: list[tuple[str, str]]) -> None:
        self.cpu = 0
        self.to_device = 0
        self.copies: list[tuple[int, bool]] = []  # (destination data_ptr, non_blocking)
        real_cpu, real_to, real_copy = torch.Tensor.cpu, torch.Tensor.to, torch.Tensor.copy_

        def cpu(t: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
            self.cpu += 1
            return real_cpu(t, *a, **k)

        def to(t: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
            if "device" in k or any(isinstance(x, (str, torch.device)) for x in a):
                self.to_device += 1
            return real_to(t, *a, **k)

        def copy_(t: torch.Tensor, src: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
            self.copies.append((t.data_ptr(), non_blocking))
            log.append(("copy", str(len(self.copies) - 1)))
            return real_copy(t, src, non_blocking=non_blocking)

        monkeypatch.setattr(torch.Tensor, "cpu", cpu)
        monkeypatch.setattr(torch.Tensor, "to", to)
        monkeypatch.setattr(torch.Tensor, "copy_", copy_)


def _run(fmt: str, frames: list[tuple[VideoFrame, torch.Tensor]],
         monkeypatch: pytest.MonkeyPatch, log: list[tuple[str, str]]) -> list[bytes]:
    """Sends ``frames`` through the actor; the bytes each buffer held when packetised."""
    sent: list[bytes] = []
    real_send = VideoStreamSender.send_frame

    def send_frame(self: VideoStreamSender, buf: Any, ts: int, start_ns: int | None = None) -> None:
        log.append(("send", str(len(sent))))
        sent.append(bytes(buf))
        real_send(self, buf, ts, start_ns)

    monkeypatch.setattr(VideoStreamSender, "send_frame", send_frame)
    with open_receiver(("127.0.0.1", 0)) as rx:
        port = rx.getsockname()[1]
        with ActorHarness(NetworkSendActor, f"127.0.0.1:{port}", format=fmt, width=W, height=H,
                          fps=1000.0, pacing=0.0, block_s=10.0, ssrc=7) as h:
            for i, (frame, _) in enumerate(frames):
                h.feed("video", with_ready_event(frame, cast(Any, FakeEvent(log, f"ready{i}"))))
                h.tick()
            h.actor.flush()
            assert h.actor.stats()["frames_sent"] == N
    return sent


@pytest.mark.parametrize("fmt,channels", [("YCbCr-4:2:2/10", 3), ("YCbCr-4:2:2/10", 4),
                                          ("RGB/8", 3), ("RGB/8", 4), ("YCbCr-4:2:2/8", 3)])
def test_device_frames_never_take_the_blocking_cpu_copy(
        fmt: str, channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # .cpu() of a CUDA tensor is a pageable copy that blocks the host until the stream drains
    log: list[tuple[str, str]] = []
    frames = _frames(channels)
    count = Counting(monkeypatch, log)
    sent = _run(fmt, frames, monkeypatch, log)
    assert (count.cpu, count.to_device) == (0, 0)
    assert sent == [bytes(pack_rgb_fast(host, fmt)) for _, host in frames]  # the CPU path's


def test_device_frames_after_a_host_frame_go_into_the_plain_buffers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the first frame opened the sender with plain buffers: the copy still lands in them
    log: list[tuple[str, str]] = []
    frames = _frames()
    frames[0] = (frames[0][0].replace(data=frames[0][1].clone()), frames[0][1])
    count = Counting(monkeypatch, log)
    sent = _run("YCbCr-4:2:2/10", frames, monkeypatch, log)
    # one .cpu(): the host frame's, a no-op in the CPU packer
    assert (count.cpu, len(count.copies)) == (1, N - 1)
    assert sent == [bytes(pack_rgb_fast(host, "YCbCr-4:2:2/10")) for _, host in frames]


@pytest.mark.parametrize("fmt", ["YCbCr-4:2:2/10", "RGB/8"])
def test_device_frames_one_non_blocking_copy_into_the_senders_pinned_buffers(
        fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlib.actors.network_device as nd

    log: list[tuple[str, str]] = []
    stream = FakeStream(log)
    pinned: list[int] = []

    def counting_pinned(shape: Any, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
        t = real_pinned(shape, dtype)
        pinned.append(t.data_ptr())
        return t

    done = iter(range(N))
    monkeypatch.setattr(nd, "pinned_empty", counting_pinned)
    monkeypatch.setattr(nd, "current_stream", lambda device=None: stream)
    monkeypatch.setattr(nd, "_done_event", lambda s: FakeEvent(log, f"done{next(done)}"))
    frames = _frames()
    count = Counting(monkeypatch, log)
    sent = _run(fmt, frames, monkeypatch, log)
    assert sent == [bytes(pack_rgb_fast(host, fmt)) for _, host in frames]
    # the sender's three buffers are pinned once, at open; every frame is one
    # non-blocking copy straight into one of them (no second copy on the host)
    assert len(pinned) == len(set(pinned)) == 3
    assert len(count.copies) == N
    assert all(nb for _, nb in count.copies)
    assert {ptr for ptr, _ in count.copies} == set(pinned)
    for i in range(N):
        steps = [("wait", f"ready{i}"), ("copy", str(i)), ("record", f"done{i}"),
                 ("sync", f"done{i}"), ("send", str(i))]
        at = [log.index(s) for s in steps]
        assert at == sorted(at), (i, log)


def test_ycbcr8_device_frames_stage_through_one_pinned_tensor(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # 4:2:2/8 has no kernel: one copy into a reused pinned RGB tensor, synchronised on
    # this thread before the CPU packer reads it (so one tensor is enough)
    import streamlib.actors.network_device as nd

    log: list[tuple[str, str]] = []
    stream = FakeStream(log)
    pinned: list[tuple[tuple[int, ...], int]] = []

    def counting_pinned(shape: Any, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
        t = real_pinned(shape, dtype)
        pinned.append((tuple(shape), t.data_ptr()))
        return t

    done = iter(range(N))
    monkeypatch.setattr(nd, "pinned_empty", counting_pinned)
    monkeypatch.setattr(nd, "current_stream", lambda device=None: stream)
    monkeypatch.setattr(nd, "_done_event", lambda s: FakeEvent(log, f"done{next(done)}"))
    frames = _frames()
    count = Counting(monkeypatch, log)
    sent = _run("YCbCr-4:2:2/8", frames, monkeypatch, log)
    assert sent == [bytes(pack_rgb_fast(host, "YCbCr-4:2:2/8")) for _, host in frames]
    assert [shape for shape, _ in pinned] == [(H, W, 3)]
    assert count.copies == [(pinned[0][1], True)] * N
    for i in range(N):
        steps = [("wait", f"ready{i}"), ("copy", str(i)), ("record", f"done{i}"),
                 ("sync", f"done{i}"), ("send", str(i))]
        at = [log.index(s) for s in steps]
        assert at == sorted(at), (i, log)
    # each frame's copy waits for the previous frame's packing (its sync) to be done
    for i in range(1, N):
        assert log.index(("sync", f"done{i - 1}")) < log.index(("copy", str(i)))


def test_sender_holds_a_buffer_until_its_ready_event_and_send_are_done() -> None:
    # The copy into a buffer is asynchronous: the thread synchronises the buffer's event
    # before packetising it, and only a sent buffer goes back to the free list.
    gate = threading.Event()

    class Gated:
        def synchronize(self) -> None:
            gate.wait(10)

    with open_receiver(("127.0.0.1", 0)) as rx:
        pk = VideoPacketizer("RGB/8", W, H, ssrc=1)
        sock = open_sender(("127.0.0.1", rx.getsockname()[1]))
        sender = VideoStreamSender(sock, pk, 1000.0, pacing=0.0, buffers=2)
        try:
            a, b = sender.acquire(), sender.acquire()
            assert a is not None and b is not None
            sender.submit(a, 0, ready=Gated())
            sender.submit(b, 90)
            assert sender.acquire() is None  # both still queued: nothing to overwrite
            assert sender.frames_sent == 0
            gate.set()
            again = sender.acquire(timeout=10)
            assert again is not None and again.ctypes.data in (a.ctypes.data, b.ctypes.data)
        finally:
            sender.close()
        assert sender.frames_sent == 2
        assert sender.frames_dropped == 1


def test_sender_buffers_come_from_alloc() -> None:
    made: list[int] = []

    def alloc(n: int) -> np.ndarray:
        made.append(n)
        return np.zeros(n, np.uint8)

    pk = VideoPacketizer("RGB/8", W, H, ssrc=1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        sock = open_sender(("127.0.0.1", probe.getsockname()[1]))
        sender = VideoStreamSender(sock, pk, 60.0, buffers=2, alloc=alloc)
        sender.close()
    assert made == [pk.frame_bytes] * 2


@pytest.mark.gpu
def test_cuda_frames_pack_into_pinned_buffers_byte_identical() -> None:
    from streamlib.actors.network_device import DeviceFramePacker
    from streamlib.net.pgroup import parse_format

    for fmt in ("YCbCr-4:2:2/10", "RGB/8", "YCbCr-4:2:2/8"):
        packer = DeviceFramePacker(parse_format(fmt))
        buf = packer.alloc(parse_format(fmt).frame_bytes(W, H))
        for channels in (3, 4):
            frame, host = _frames(channels)[0]
            ready = packer.pack(frame.replace(data=host.cuda()), buf)
            if ready is not None:
                ready.synchronize()
            assert bytes(buf) == bytes(pack_rgb_fast(host, fmt)), (fmt, channels)
        assert packer._host[buf.ctypes.data].is_pinned()


@pytest.mark.gpu
@pytest.mark.parametrize("fmt", ["YCbCr-4:2:2/10", "RGB/8", "YCbCr-4:2:2/8"])
def test_cuda_frames_through_the_actor_send_the_cpu_paths_bytes(
        fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[tuple[str, str]] = []
    frames = [(f.replace(data=host.cuda()), host) for f, host in _frames()]
    count = Counting(monkeypatch, log)
    sent = _run(fmt, frames, monkeypatch, log)
    assert count.cpu == 0
    assert len(count.copies) == N and all(nb for _, nb in count.copies)
    assert sent == [bytes(pack_rgb_fast(host, fmt)) for _, host in frames]
