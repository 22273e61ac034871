"""Tests for streamlib.core.buffers.RingBuffer: semantics, exact counters, thread safety."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from streamlib.core.buffers import RingBuffer, RingBufferStats
from streamlib.errors import ConfigError


# -- single thread -------------------------------------------------------------------


def test_empty_state() -> None:
    rb: RingBuffer[int] = RingBuffer(name="link")
    assert rb.slots == 3 and rb.name == "link" and rb.sequence == 0
    assert rb.is_empty() and len(rb) == 0
    assert rb.read_latest() is None
    assert rb.read_newer(0) is None
    assert rb.read_since(0) == []
    assert rb.peek_latest() is None
    assert rb.stats() == RingBufferStats(written=0, read=0, dropped=0, unread=0, slots=3)


def test_write_returns_sequence_and_read_latest() -> None:
    rb: RingBuffer[str] = RingBuffer(3)
    assert rb.write("a") == 1
    assert rb.write("b") == 2
    assert rb.sequence == 2 and len(rb) == 2 and not rb.is_empty()
    assert rb.read_latest() == "b"
    assert rb.read_latest() == "b"  # reading does not consume
    assert rb.peek_latest() == (2, "b")


def test_stores_references_not_copies() -> None:
    rb: RingBuffer[list[int]] = RingBuffer(2)
    frame = [1, 2, 3]
    rb.write(frame)
    assert rb.read_latest() is frame


def test_read_newer_semantics() -> None:
    rb: RingBuffer[str] = RingBuffer(3)
    rb.write("a")
    assert rb.read_newer(0) == (1, "a")
    assert rb.read_newer(1) is None  # nothing newer than what we saw
    rb.write("b")
    rb.write("c")
    assert rb.read_newer(1) == (3, "c")  # newest only; "b" is skipped
    assert rb.read_newer(3) is None
    assert rb.read_newer(99) is None


def test_read_since_order_and_truncation() -> None:
    rb: RingBuffer[int] = RingBuffer(3)
    for v in range(1, 6):  # sequences 1..5, values equal sequences
        rb.write(v * 10)
    # only 3..5 still held: older items were overwritten
    assert rb.read_since(0) == [(3, 30), (4, 40), (5, 50)]
    assert rb.read_since(3) == [(4, 40), (5, 50)]
    assert rb.read_since(5) == []
    assert rb.read_since(-7) == [(3, 30), (4, 40), (5, 50)]


def test_overwrite_oldest_and_latest_read_skips_old() -> None:
    rb: RingBuffer[str] = RingBuffer(2)
    for s in "abcd":
        rb.write(s)
    assert len(rb) == 2
    assert rb.read_since(0) == [(3, "c"), (4, "d")]
    rb2: RingBuffer[str] = RingBuffer(3)
    for s in "abc":
        rb2.write(s)
    assert rb2.read_latest() == "c"  # a and b are skipped, not returned
    assert rb2.stats().unread == 2


def test_single_slot() -> None:
    rb: RingBuffer[int] = RingBuffer(1)
    assert rb.write(7) == 1
    assert rb.write(8) == 2
    assert rb.read_since(0) == [(2, 8)]
    s = rb.stats()
    assert (s.written, s.read, s.dropped, s.unread) == (2, 1, 1, 0)


def test_clear() -> None:
    rb: RingBuffer[str] = RingBuffer(3)
    rb.write("a")
    rb.write("b")
    rb.read_latest()  # "b" read, "a" unread
    rb.clear()
    assert rb.is_empty() and len(rb) == 0
    assert rb.read_latest() is None and rb.peek_latest() is None
    assert rb.read_since(0) == [] and rb.read_newer(0) is None
    assert rb.sequence == 2
    s = rb.stats()
    assert (s.written, s.read, s.dropped, s.unread) == (2, 1, 1, 0)
    assert rb.write("c") == 3  # sequence keeps increasing
    assert rb.read_since(0) == [(3, "c")]
    rb.write("d")
    rb.write("e")
    rb.write("f")  # overwrites slot of "c" (read: not a drop)
    s = rb.stats()
    assert (s.written, s.read, s.dropped, s.unread) == (6, 2, 1, 3)
    rb.clear()
    rb.clear()  # idempotent
    assert rb.stats().dropped == 4


def test_clear_releases_references() -> None:
    import weakref

    class Frame:
        pass

    rb: RingBuffer[Frame] = RingBuffer(2)
    f = Frame()
    ref = weakref.ref(f)
    rb.write(f)
    del f
    assert ref() is not None
    rb.clear()
    assert ref() is None


# -- exact counters ------------------------------------------------------------------


def _counts(rb: RingBuffer[Any]) -> tuple[int, int, int, int]:
    s = rb.stats()
    assert s.written == s.read + s.dropped + s.unread  # the invariant, always
    return s.written, s.read, s.dropped, s.unread


def test_counters_without_reads() -> None:
    rb: RingBuffer[int] = RingBuffer(3)
    for v in range(1, 6):
        rb.write(v)
    assert _counts(rb) == (5, 0, 2, 3)


def test_counters_with_latest_read_in_between() -> None:
    rb: RingBuffer[int] = RingBuffer(3)
    rb.write(1)
    rb.write(2)
    assert rb.read_latest() == 2
    assert _counts(rb) == (2, 1, 0, 1)
    rb.write(3)
    rb.write(4)  # overwrites 1 (never read): drop
    assert _counts(rb) == (4, 1, 1, 2)
    rb.write(5)  # overwrites 2 (read): not a drop
    assert _counts(rb) == (5, 1, 1, 3)
    rb.write(6)  # overwrites 3 (skipped by the latest-read, never read): drop
    assert _counts(rb) == (6, 1, 2, 3)


def test_read_counts_distinct_items() -> None:
    rb: RingBuffer[int] = RingBuffer(3)
    rb.write(1)
    for _ in range(5):
        rb.read_latest()
        rb.read_newer(0)
    rb.peek_latest()
    assert _counts(rb) == (1, 1, 0, 0)
    rb.write(2)
    rb.write(3)
    assert rb.read_since(0) == [(1, 1), (2, 2), (3, 3)]  # 1 already counted
    assert _counts(rb) == (3, 3, 0, 0)
    rb.read_since(0)
    assert _counts(rb) == (3, 3, 0, 0)


def test_peek_does_not_mark_read() -> None:
    rb: RingBuffer[int] = RingBuffer(2)
    rb.write(1)
    assert rb.peek_latest() == (1, 1)
    rb.write(2)
    rb.write(3)  # 1 overwritten unread despite the peek
    assert _counts(rb) == (3, 0, 1, 2)


def test_stats_as_dict_and_repr_without_items() -> None:
    rb: RingBuffer[str] = RingBuffer(2, name="cam->det")
    rb.write("SECRET-FRAME")
    assert rb.stats().as_dict() == {"written": 1, "read": 0, "dropped": 0, "unread": 1, "slots": 2}
    r = repr(rb)
    assert "cam->det" in r and "slots=2" in r and "sequence=1" in r and "dropped=0" in r
    assert "SECRET-FRAME" not in r
    with pytest.raises(AttributeError):
        rb.stats().written = 5  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3", None, True])
def test_bad_slots(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        RingBuffer(bad)
    assert str(info.value) == f"slots must be an int >= 1, got {bad!r}"


# -- multi-threaded stress -----------------------------------------------------------


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads often so that the stress tests really interleave."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _checksum(a: int, b: int) -> int:
    return (a * 1_000_003 + b * 7919) & 0xFFFFFFFF


def _run_threads(threads: list[threading.Thread], errors: list[BaseException]) -> None:
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=50)
    assert not any(t.is_alive() for t in threads), "stress threads did not finish"
    if errors:
        raise errors[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("writers", "slots"), [(2, 3), (4, 3), (3, 64)])
def test_stress_many_writers_two_readers(writers: int, slots: int, fast_switching: None) -> None:
    # Many slots make read_since loop longer, so a thread switch can land inside it.
    total = 200_000 - 200_000 % writers
    per_writer = total // writers
    rb: RingBuffer[tuple[int, int, int]] = RingBuffer(slots, name="stress")
    start = threading.Barrier(writers + 2)
    writers_done = threading.Event()
    remaining = [writers]
    remaining_lock = threading.Lock()
    errors: list[BaseException] = []
    written_by: list[dict[int, tuple[int, int, int]]] = [{} for _ in range(writers)]
    observed: list[dict[int, tuple[int, int, int]]] = [{}, {}]

    def writer(wid: int) -> None:
        try:
            log = written_by[wid]
            start.wait()
            for c in range(per_writer):
                item = (wid, c, _checksum(wid, c))
                log[rb.write(item)] = item
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)
        finally:
            with remaining_lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    writers_done.set()

    def check(seen: dict[int, tuple[int, int, int]], last: list[int],
              last_counter: list[int], seq: int, item: tuple[int, int, int]) -> None:
        wid, c, chk = item
        assert chk == _checksum(wid, c), f"corrupt item {item}"
        assert seq > last[0], f"sequence went backwards: {seq} after {last[0]}"
        assert c > last_counter[wid], f"writer {wid} counter went backwards"
        last[0] = seq
        last_counter[wid] = c
        seen[seq] = item

    def reader_newer(rid: int) -> None:
        try:
            seen = observed[rid]
            last, last_counter = [0], [-1] * writers
            start.wait()
            while True:
                done = writers_done.is_set()  # sample before reading: no lost tail
                got = rb.read_newer(last[0])
                if got is not None:
                    check(seen, last, last_counter, got[0], got[1])
                elif done:
                    return
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader_since(rid: int) -> None:
        try:
            seen = observed[rid]
            last, last_counter = [0], [-1] * writers
            start.wait()
            while True:
                done = writers_done.is_set()
                batch = rb.read_since(last[0])
                seqs = [s for s, _ in batch]
                if seqs:  # contiguous: read_since never skips inside what it returns
                    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                assert len(batch) <= rb.slots
                for seq, item in batch:
                    check(seen, last, last_counter, seq, item)
                if not batch and done:
                    return
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    threads += [threading.Thread(target=reader_newer, args=(0,)),
                threading.Thread(target=reader_since, args=(1,))]
    _run_threads(threads, errors)

    written = {seq: item for log in written_by for seq, item in log.items()}
    assert sorted(written) == list(range(1, total + 1))  # every write got a unique seq
    for seen in observed:
        for seq, item in seen.items():
            assert written[seq] == item, f"torn read: seq {seq} returned {item}"
        assert max(seen) == total  # each reader saw the final item
    read_distinct = set(observed[0]) | set(observed[1])
    held = set(range(total - rb.slots + 1, total + 1))
    s = rb.stats()
    assert s.written == total == rb.sequence
    assert s.read == len(read_distinct)
    assert s.unread == len(held - read_distinct)
    assert s.written == len(read_distinct) + s.dropped + len(held - read_distinct)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("slots", [4, 64])
def test_stress_single_writer_ordering(slots: int, fast_switching: None) -> None:
    """One writer, so each item embeds its own sequence: any torn pair is visible."""
    total = 200_000
    rb: RingBuffer[tuple[int, int]] = RingBuffer(slots)
    start = threading.Barrier(4)
    writer_done = threading.Event()
    errors: list[BaseException] = []
    seen: list[set[int]] = [set(), set(), set()]

    def writer() -> None:
        try:
            start.wait()
            for seq in range(1, total + 1):
                got = rb.write((seq, _checksum(seq, 0)))
                assert got == seq
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            writer_done.set()

    def reader(rid: int) -> None:
        try:
            last = 0
            start.wait()
            while True:
                done = writer_done.is_set()
                if rid == 0:
                    got = rb.read_newer(last)
                    batch = [got] if got is not None else []
                elif rid == 1:
                    batch = rb.read_since(last)
                else:  # whole window every time: the longest critical section
                    window = rb.read_since(0)
                    seqs = [q for q, _ in window]
                    if seqs:  # contiguous, and never older than what was seen before
                        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                        assert seqs[-1] >= last
                    batch = [(q, item) for q, item in window if q > last]  # only the new
                    for seq, (own_seq, _) in window:
                        assert seq == own_seq, f"torn pair: seq {seq} with item of {own_seq}"
                for seq, (own_seq, chk) in batch:
                    assert seq == own_seq, f"torn pair: seq {seq} with item of {own_seq}"
                    assert chk == _checksum(own_seq, 0)
                    assert seq > last
                    last = seq
                    seen[rid].add(seq)
                if not batch and done:
                    return
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    _run_threads([threading.Thread(target=writer)]
                 + [threading.Thread(target=reader, args=(r,)) for r in range(3)], errors)

    read_distinct = seen[0] | seen[1] | seen[2]
    held = set(range(total - rb.slots + 1, total + 1))
    s = rb.stats()
    assert s.written == total
    assert s.read == len(read_distinct)
    assert s.written == s.read + s.dropped + len(held - read_distinct)


@pytest.mark.timeout(60)
def test_concurrent_clear_keeps_counters_consistent(fast_switching: None) -> None:
    rb: RingBuffer[int] = RingBuffer(3)
    total = 50_000
    start = threading.Barrier(3)
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            start.wait()
            for v in range(total):
                rb.write(v)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            done.set()

    def clearer() -> None:
        try:
            start.wait()
            while not done.is_set():
                rb.clear()
                s = rb.stats()
                assert s.written == s.read + s.dropped + s.unread
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader() -> None:
        try:
            start.wait()
            last = 0
            while not done.is_set():
                got = rb.read_newer(last)
                if got is not None:
                    assert got[0] > last
                    assert got[1] == got[0] - 1  # value v was written as seq v + 1
                    last = got[0]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    _run_threads([threading.Thread(target=f) for f in (writer, clearer, reader)], errors)
    s = rb.stats()
    assert s.written == total
    assert s.written == s.read + s.dropped + s.unread


# -- benchmark smoke test ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_benchmark_quick(tmp_path: Any) -> None:
    from benchmarks.ringbuffer import main

    result = main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "ringbuffer.json").exists()
    figures = result["figures"]
    assert figures["ratio_queue_over_ring"] > 0
    assert figures["ring_pair_ns"]["median"] > 0
