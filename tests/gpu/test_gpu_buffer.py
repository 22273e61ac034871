"""GPURingBuffer: slot protocol, latest-read, drops, WouldBlock, no allocation per frame."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

import streamlib.gpu.buffer as gpu_buffer
import streamlib.gpu.device as device
from streamlib.gpu.device import new_stream, resolve_device, stream_context
from streamlib.errors import ActorStateError, ClosedError
from streamlib.gpu.buffer import GPURingBuffer, ReadView, WouldBlock

pytestmark = pytest.mark.timeout(60)
SHAPE = (8, 16, 3)


def stamp(t: torch.Tensor, n: int) -> None:
    """Write frame ``n`` into every pixel: its number (mod 251) plus a checksum byte."""
    t[..., 0] = n % 251
    t[..., 1] = (n * 7 + 3) % 256
    t[..., 2] = (n // 251) % 256


def check(t: torch.Tensor, n: int) -> None:
    """Raise unless ``t`` is exactly frame ``n`` in every pixel (no tearing)."""
    want = torch.tensor([n % 251, (n * 7 + 3) % 256, (n // 251) % 256], dtype=torch.uint8,
                        device=t.device)
    bad = int((t != want).any(dim=-1).sum())
    assert bad == 0, f"frame {n}: {bad} pixels from another frame"


def ring(**kw: Any) -> GPURingBuffer:
    kw.setdefault("device", "cpu")
    return GPURingBuffer(SHAPE, **kw)


def write(r: GPURingBuffer, n: int) -> None:
    with r.write(n) as t:
        stamp(t, n)


def test_write_then_read_latest() -> None:
    r = ring()
    assert r.try_read_latest() is None
    with pytest.raises(WouldBlock, match="no committed frame"):
        r.read_latest()
    write(r, 1)
    with r.read_latest() as view:
        assert isinstance(view, ReadView) and view.frame_number == 1 and view.sequence == 1
        check(view.tensor, 1)
    assert r.stats().as_dict() == {"written": 1, "read": 1, "dropped": 0, "unread": 0,
                                   "would_block": 0, "allocations": 3, "slots": 3, "held": 0}


def test_latest_read_skips_and_counts_drops() -> None:
    r = ring()
    for n in range(1, 6):
        write(r, n)
    with r.read_latest() as view:
        assert view.frame_number == 5
        check(view.tensor, 5)
    s = r.stats()
    # slots A,B,C: 1->A 2->B 3->C 4->A (1 dropped) 5->B (2 dropped); 3 and 4 still unread
    assert (s.written, s.read, s.dropped, s.unread) == (5, 1, 2, 2)
    assert s.written == s.read + s.dropped + s.unread
    assert r.try_read_latest(newer_than=5) is None
    view2 = r.try_read_latest(newer_than=4)
    assert view2 is not None and view2.sequence == 5
    view2.release()
    view2.release()  # idempotent
    assert r.stats().read == 1  # the same frame read twice counts once


def test_slow_reader_never_sees_a_torn_frame() -> None:
    r = ring()
    write(r, 1)
    held = r.read_latest()
    ptrs = set()
    for n in range(2, 40):  # the producer keeps going around the other two slots
        with r.write(n) as t:
            assert t.data_ptr() != held.tensor.data_ptr()
            ptrs.add(t.data_ptr())
            stamp(t, n)
    check(held.tensor, 1)
    assert len(ptrs) == 2
    held.release()
    with r.read_latest() as view:
        assert view.frame_number == 39
        check(view.tensor, 39)


def test_concurrent_reader_and_producer_see_whole_frames() -> None:
    r = ring(slots=4)
    done = threading.Event()
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        last = 0
        try:
            while not done.is_set() or r.sequence > last:
                view = r.try_read_latest(newer_than=last)
                if view is None:
                    continue
                with view:
                    check(view.tensor, view.frame_number)
                    assert view.sequence > last
                    last = view.sequence
                    seen.append(view.frame_number)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    blocked = 0
    for n in range(1, 3001):
        try:
            write(r, n)
        except WouldBlock:
            blocked += 1
    done.set()
    thread.join(30)
    assert not thread.is_alive() and not errors
    assert blocked == 0 and seen == sorted(seen) and seen[-1] == 3000
    s = r.stats()
    assert s.written == 3000 - blocked and s.written == s.read + s.dropped + s.unread
    assert s.allocations == 4 and blocked == 0  # one reader never holds more than 1 of 4


def test_would_block_when_every_free_slot_is_held() -> None:
    r = ring()
    write(r, 1)
    a = r.read_latest()       # holds slot of frame 1
    write(r, 2)
    b = r.read_latest()       # holds slot of frame 2
    write(r, 3)               # the third slot; it is now the newest
    with pytest.raises(WouldBlock, match="no free slot"):
        r.acquire()
    assert r.stats().would_block == 1 and r.stats().allocations == 3

    release_now = threading.Event()

    def release_later() -> None:
        release_now.wait(10)
        a.release()

    t = threading.Thread(target=release_later)
    t.start()
    release_now.set()
    slot = r.acquire(timeout=10)  # waits for the release instead of failing
    assert slot.tensor.data_ptr() == a.tensor.data_ptr()
    slot.commit(4)
    t.join(10)
    b.release()
    s = r.stats()
    assert (s.written, s.read, s.dropped, s.unread, s.held) == (4, 2, 0, 2, 0)


def test_abort_and_misuse() -> None:
    r = ring()
    slot = r.acquire()
    slot.abort()
    with pytest.raises(ActorStateError, match="not an open slot"):
        slot.commit(1)
    with pytest.raises(ActorStateError, match="not an open slot"):
        ring().commit(r.acquire(), 1)
    with pytest.raises(RuntimeError, match="boom"):
        with r.write(9) as t:
            t.fill_(9)
            raise RuntimeError("boom")
    assert r.try_read_latest() is None and r.stats().written == 0
    r.close()
    r.close()
    with pytest.raises(ActorStateError, match="closed"):
        r.acquire()


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="slots must be an int >= 2"):
        ring(slots=1)
    with pytest.raises(ValueError, match="shape must be positive ints"):
        GPURingBuffer((0, 3), device="cpu")
    pinned = ring(pin_memory=True)  # falls back to plain memory without CUDA
    write(pinned, 1)
    with pinned.read_latest() as v:
        check(v.tensor, 1)


def test_no_allocation_per_frame_on_cpu() -> None:
    r = ring()
    ptrs = {t.data_ptr() for t in r._buffers}
    for n in range(200):
        write(r, n)
        with r.read_latest() as view:
            assert view.tensor.data_ptr() in ptrs
    assert r.stats().allocations == 3


# ------------------------------------------------------------------ the plan's calls

class FakeStream:
    """A CUDA stream stand-in (not a CPUStream): logs what is recorded and waited on it."""

    def __init__(self, name: str, log: list[tuple[str, str, Any]]) -> None:
        self.name, self.log = name, log

    def wait_event(self, event: Any) -> None:
        self.log.append(("wait", self.name, event))


class FakeEvent:
    def __init__(self, log: list[tuple[str, str, Any]]) -> None:
        self.log = log

    def record(self, stream: FakeStream) -> None:
        self.log.append(("record", stream.name, self))

    def synchronize(self) -> None:
        self.log.append(("sync", "host", self))


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, Any]]:
    """buffer's stream/event calls with fakes: torch.cuda.Event cannot exist without CUDA."""
    log: list[tuple[str, str, Any]] = []

    def record_event(stream: Any = None, event: Any = None) -> Any:
        if isinstance(stream, FakeStream):
            ev = FakeEvent(log) if event is None or not isinstance(event, FakeEvent) else event
            ev.record(stream)
            return ev
        return device.record_event(stream, event)

    def new_event(where: Any = None, timing: bool = False) -> Any:
        return FakeEvent(log) if isinstance(where, FakeStream) else device.new_event(where, timing)

    monkeypatch.setattr(gpu_buffer, "record_event", record_event)
    monkeypatch.setattr(gpu_buffer, "new_event", new_event)
    return log


def test_a_pinned_ring_committed_from_a_cuda_stream_keeps_the_written_event(
        fake_cuda: list[tuple[str, str, Any]]) -> None:
    r = GPURingBuffer(SHAPE, device="cpu", pin_memory=True)
    copy = FakeStream("copy", fake_cuda)
    slot = r.acquire()
    slot.commit(1, stream=copy)  # a D2H copy into the slot was queued on "copy"
    (_, _, written), = fake_cuda
    reader = FakeStream("reader", fake_cuda)
    with r.read_latest(stream=reader) as view:
        assert view.frame_number == 1
    assert fake_cuda[1] == ("wait", "reader", written)  # the reader waits for the copy
    with r.read_latest() as view:  # a host reader: blocks until the copy is done
        pass
    assert fake_cuda[-1] == ("sync", "host", written)
    write(r, 2)  # a host commit later: back to a CPU twin, nothing stale is waited on
    before = len(fake_cuda)
    with r.read_latest() as view:
        check(view.tensor, 2)
    assert len(fake_cuda) == before


def test_read_done_is_recorded_on_the_stream_the_read_was_taken_on(
        fake_cuda: list[tuple[str, str, Any]]) -> None:
    r = ring()
    producer, reader = FakeStream("producer", fake_cuda), FakeStream("reader", fake_cuda)
    write(r, 1)
    with r.read_latest(stream=reader):  # current stream (the host's) is not "reader"
        pass
    done = [e for e in fake_cuda if e[0] == "record"]
    assert [(k, s) for k, s, _ in done] == [("record", "reader")]
    write(r, 2)
    r.get_read_buffer(stream=reader)  # plan calls keep the stream too
    r.get_read_buffer()
    assert [(k, s) for k, s, _ in fake_cuda if k == "record"] == [("record", "reader")] * 2
    for n in range(3, 6):  # the producer gets slot 0 back ordered after its read
        slot = r.acquire(stream=producer)
        slot.commit(n)
    waits = [e for k, s, e in fake_cuda if k == "wait" and s == "producer"]
    assert waits == [done[0][2]]  # slot 1 is still held by the plan reader


def fill(t: torch.Tensor, value: int) -> None:
    t.fill_(value)


def test_plan_write_advance_read_gives_the_last_fill() -> None:
    r = GPURingBuffer(slots=3, shape=SHAPE, device="cpu")
    assert r.get_read_buffer() is None  # nothing committed yet
    tensors = []
    for value in (10, 20, 30):
        buf = r.get_write_buffer()
        assert r.get_write_buffer() is buf  # the same tensor until advance()
        fill(buf, value)
        tensors.append(buf)
        assert r.advance(frame_number=value) == value // 10
    assert len({t.data_ptr() for t in tensors}) == 3  # three distinct slots
    read = r.get_read_buffer()
    assert read is tensors[2] and read.shape == SHAPE
    assert torch.equal(read, torch.full(SHAPE, 30, dtype=torch.uint8))
    assert r.stats().as_dict() == {"written": 3, "read": 1, "dropped": 0, "unread": 2,
                                   "would_block": 0, "allocations": 3, "slots": 3, "held": 1}


def test_plan_reader_lapped_by_the_writer_keeps_its_buffer() -> None:
    r = GPURingBuffer(SHAPE, slots=3, device="cpu")
    for n in range(1, 4):
        stamp(r.get_write_buffer(), n)
        r.advance(n)
    held = r.get_read_buffer()
    assert held is not None
    for n in range(4, 11):  # the writer laps the reader: its held buffer is never reused
        stamp(r.get_write_buffer(), n)
        r.advance(n)
    check(held, 3)
    latest = r.get_read_buffer()  # takes frame 10, then releases frame 3
    assert latest is not None and latest is not held
    check(latest, 10)
    assert r.stats().as_dict() == {"written": 10, "read": 2, "dropped": 7, "unread": 1,
                                   "would_block": 0, "allocations": 3, "slots": 3, "held": 1}


def test_plan_reader_hold_blocks_a_two_slot_writer_until_it_reads_again() -> None:
    r = ring(slots=2, name="two")
    fill(r.get_write_buffer(), 1)
    r.advance(1)
    assert r.get_read_buffer() is not None  # holds frame 1
    fill(r.get_write_buffer(), 2)
    r.advance(2)
    with pytest.raises(WouldBlock) as blocked:
        r.get_write_buffer()
    assert str(blocked.value) == ("GPURingBuffer 'two': no free slot (1 of 2 held by readers, 1 newest); "
                                  "use more slots or release reads sooner")
    read = r.get_read_buffer()
    assert read is not None and torch.equal(read, torch.full(SHAPE, 2, dtype=torch.uint8))
    fill(r.get_write_buffer(), 3)  # frame 1's slot was released
    assert r.advance(3) == 3


def test_plan_calls_misuse_and_close() -> None:
    r = ring(name="p")
    with pytest.raises(ActorStateError) as no_write:
        r.advance()
    assert str(no_write.value) == "GPURingBuffer 'p': advance() without a get_write_buffer() to commit"
    r.get_write_buffer()
    r.advance()
    with pytest.raises(ActorStateError):
        r.advance()  # committed already
    r.close()
    for call in (r.get_write_buffer, r.get_read_buffer):
        with pytest.raises(ClosedError) as closed:
            call()
        assert str(closed.value) == "GPURingBuffer 'p' is closed"


# ------------------------------------------------------------------ on a GPU

@pytest.mark.gpu
def test_gpu_streams_slow_reader_and_constant_memory() -> None:
    dev = resolve_device("cuda")
    r = GPURingBuffer((1080, 1920, 3), slots=3, device=dev)
    producer, consumer = new_stream(dev), new_stream(dev)
    big = torch.randn(2048, 2048, device=dev)

    def produce(n: int) -> None:
        with stream_context(producer):
            slot = r.acquire(timeout=5)
            (big @ big).sum()  # keep the producer stream busy before the write
            stamp(slot.tensor, n)
            slot.commit(n)

    for n in range(3):  # warm-up: cuBLAS workspaces, caching allocator
        produce(n)
        with stream_context(consumer), r.read_latest():
            (big @ big).sum()
    oks = torch.zeros(64, dtype=torch.bool, device=dev)
    numbers = []
    # built once: a torch.tensor(..., device=cuda) per frame would sync the consumer
    # stream each time and hide the race this test is there to catch
    wants = torch.tensor([[n % 251, (n * 7 + 3) % 256, (n // 251) % 256] for n in range(3, 60)],
                         dtype=torch.uint8, device=dev)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated(dev)
    for i, n in enumerate(range(3, 60)):
        produce(n)
        with stream_context(consumer):
            view = r.read_latest()
            (big @ big).sum()  # a slow reader, on its own stream
            oks[i] = (view.tensor == wants[i]).all()
            numbers.append(view.frame_number)
            view.release()
    torch.cuda.synchronize()
    assert numbers == list(range(3, 60))
    assert bool(oks[:57].all()), "a reader saw a frame other than the one it was handed"
    assert torch.cuda.memory_allocated(dev) == base  # nothing allocated per frame
    assert r.stats().allocations == 3


@pytest.mark.gpu
def test_gpu_plan_calls_on_streams() -> None:
    dev = resolve_device("cuda")
    r = GPURingBuffer(slots=3, shape=(1080, 1920, 3), device=dev)
    producer, consumer = new_stream(dev), new_stream(dev)
    big = torch.randn(2048, 2048, device=dev)
    seen = []
    for n in range(20):
        with stream_context(producer):
            buf = r.get_write_buffer()
            (big @ big).sum()  # keep the producer stream busy before the write
            stamp(buf, n)
            r.advance(n)
        with stream_context(consumer):
            read = r.get_read_buffer()
            assert read is not None
            want = torch.tensor([n % 251, (n * 7 + 3) % 256, (n // 251) % 256],
                                dtype=torch.uint8, device=dev)
            seen.append((read == want).all())
    torch.cuda.synchronize()
    assert all(bool(ok) for ok in seen), "a reader saw a frame other than the latest"
    assert r.stats().allocations == 3
