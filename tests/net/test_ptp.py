"""PTPv2 codec, PTPSlave against a Python master on loopback (TTL 0), and against
linuxptp's ptp4l across a veth pair between two network namespaces this module creates
(root, ``ip netns`` and ``ptp4l`` needed; skipped with the reason otherwise)."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers.netns import VethPair, netns_skip_reason
from tests.helpers.ptp_fake_master import FakeMaster
from streamlib.clocks import TimeSource
from streamlib.errors import ClosedError, PTPError
from streamlib.net.ptp import (
    FLAG_TWO_STEP, Announce, DelayReq, DelayResp, FollowUp, PortIdentity, PTPHeader,
    PTPMessage, PTPSlave, PTPTimestamp, Sync, build_delay_req, encode_message, parse_message,
)

PID = PortIdentity(bytes.fromhex("a69203fffe58b4a6"), 1)


def _header(mtype: int, **kw: int) -> PTPHeader:
    fields = dict(message_type=mtype, version=2, message_length=0, domain=127, flags=0,
                  correction=0, source_port_identity=PID, sequence_id=7, control=0,
                  log_message_interval=-3)
    fields.update(kw)
    return PTPHeader(**fields)  # type: ignore[arg-type]


def _normalize(msg: PTPMessage, length: int) -> PTPMessage:
    """The message as parse_message returns it (length/type filled in from the wire)."""
    mtype = {Sync: 0, DelayReq: 1, FollowUp: 8, DelayResp: 9, Announce: 11}[type(msg)]
    return dataclasses.replace(msg, header=dataclasses.replace(
        msg.header, message_length=length, message_type=mtype))


SAMPLES: list[PTPMessage] = [
    Sync(_header(0, flags=FLAG_TWO_STEP), PTPTimestamp(1_700_000_000, 123_456_789)),
    DelayReq(_header(1, log_message_interval=0x7F), PTPTimestamp(0, 0)),
    FollowUp(_header(8, correction=-5 << 16), PTPTimestamp((1 << 48) - 1, 999_999_999)),
    DelayResp(_header(9, sequence_id=0xFFFF), PTPTimestamp(5, 6),
              PortIdentity(b"\x01" * 8, 0xFFFF)),
    Announce(_header(11, flags=0x000C, log_message_interval=-2), PTPTimestamp(0, 1), 37, 1, 248,
             0xFE, 0xFFFF, 128, PID.clock_identity, 0, 0xA0),
]


# ------------------------------------------------------------------ codec

@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_codec_round_trip(msg: PTPMessage) -> None:
    data = encode_message(msg)
    assert len(data) == {Sync: 44, DelayReq: 44, FollowUp: 44, DelayResp: 54,
                         Announce: 64}[type(msg)]
    assert parse_message(data) == _normalize(msg, len(data))
    # TLVs / padding after the body are ignored (messageLength still bounds parsing)
    assert parse_message(data + b"\0" * 8) == _normalize(msg, len(data))


def test_codec_byte_exact_against_hand_built_packets() -> None:
    follow_up = bytes.fromhex(
        "08 02 002c 7f 00 0000 0000000000028000 00000000"  # Follow_Up v2 44 B dom 127 corr 2.5 ns
        "a69203fffe58b4a6 0001 1234 02 fd"                  # port identity, seq, control, log -3
        "0000 6553f100 075bcd15")                           # 1700000000 s, 123456789 ns
    msg = parse_message(follow_up)
    assert isinstance(msg, FollowUp)
    h = msg.header
    assert (h.message_type, h.version, h.message_length, h.domain) == (8, 2, 44, 127)
    assert (h.correction, h.correction_ns, h.sequence_id, h.control) == (0x28000, 3, 0x1234, 2)
    assert h.log_message_interval == -3 and h.flags == 0
    assert str(h.source_port_identity) == "a69203.fffe.58b4a6-1"
    assert msg.precise_origin_timestamp == PTPTimestamp(1_700_000_000, 123_456_789)
    assert msg.precise_origin_timestamp.ns == 1_700_000_000_123_456_789
    assert encode_message(msg) == follow_up

    announce = bytes.fromhex(
        "1b 12 0040 7f 00 000c 0000000000000000 00000000 a69203fffe58b4a6 0001 0005 05 fe"
        "0000 00000000 00000000  0025 00 01 f8 fe ffff 80 a69203fffe58b4a6 0000 a0")
    a = parse_message(announce)
    assert isinstance(a, Announce)
    assert (a.header.transport_specific, a.header.minor_version) == (1, 1)
    assert (a.current_utc_offset, a.grandmaster_priority1) == (37, 1)
    assert (a.grandmaster_clock_class, a.grandmaster_clock_accuracy) == (248, 0xFE)
    assert a.grandmaster_offset_scaled_log_variance == 0xFFFF
    assert (a.grandmaster_priority2, a.steps_removed, a.time_source) == (128, 0, 0xA0)
    assert a.grandmaster_identity == PID.clock_identity and a.header.flags == 0x000C
    assert encode_message(a) == announce

    req = build_delay_req(0x0102, PortIdentity(bytes(range(8)), 3), 127, 5 * 10**9 + 7)
    assert req == bytes.fromhex(
        "01 02 002c 7f 00 0000 0000000000000000 00000000 0001020304050607 0003 0102 01 7f"
        "0000 00000005 00000007")


@pytest.mark.parametrize("data, reason", [
    (b"", "too short"),
    (bytes(33), "too short"),
    (bytes.fromhex("0001002c") + bytes(40), "version 1"),
    (bytes.fromhex("0002002d") + bytes(40), "messageLength 45 exceeds the 44 bytes"),
    (bytes.fromhex("00020022") + bytes(40), "short of the 44 bytes a Sync needs"),
    (bytes.fromhex("0202002c") + bytes(40), "type 0x2 (Pdelay_Req)"),
    (bytes.fromhex("0b02002c") + bytes(40), "short of the 64 bytes a Announce needs"),
    (bytes.fromhex("0002002c") + bytes(36) + b"\x3b\x9a\xca\x00", "nanoseconds field 1000000000"),
])
def test_codec_rejects_malformed_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PTPError, match=re.escape(reason)):
        parse_message(data)


def test_codec_fuzz_only_raises_ptp_error() -> None:
    rng = random.Random(1588)
    seeds = [encode_message(m) for m in SAMPLES]
    parsed = rejected = 0
    t0 = time.perf_counter()
    for i in range(100_000):
        data = bytearray(rng.choice(seeds))
        op = i % 5
        if op == 0:
            data = data[:rng.randrange(len(data))]
        elif op == 1:
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:  # keep version 2 but scramble type/length/timestamps
            data[0] = rng.randrange(256)
            data[2:4] = rng.randrange(70).to_bytes(2, "big")
            data[34:44] = rng.randbytes(10)
        elif op == 3:
            data = bytearray(rng.randbytes(rng.randrange(80)))
        else:
            data += rng.randbytes(rng.randrange(20))
            data[2:4] = rng.randrange(len(data) + 2).to_bytes(2, "big")
        try:
            parse_message(bytes(data))
            parsed += 1
        except PTPError:
            rejected += 1
    assert parsed > 1000 and rejected > 1000  # both paths were exercised
    assert time.perf_counter() - t0 < 10


def test_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="DelayReq"):
        encode_message(DelayReq(_header(1, sequence_id=70000), PTPTimestamp(0, 0)))
    with pytest.raises(ValueError, match="48-bit"):
        PTPTimestamp.from_ns(-1)


# ------------------------------------------------------------------ slave, loopback

def test_slave_rejects_unsafe_or_bad_config() -> None:
    with pytest.raises(ValueError, match="allow_remote=True"):
        PTPSlave("10.99.0.2")
    with pytest.raises(ValueError, match="IPv4 address"):
        PTPSlave("eth0")
    with pytest.raises(ValueError, match="domain"):
        PTPSlave(domain=256)
    with pytest.raises(ValueError, match="lock_samples"):
        PTPSlave(window=4, lock_samples=5)
    slave = PTPSlave("10.99.0.2", allow_remote=True)  # constructing opens nothing
    assert isinstance(slave, TimeSource) and slave.stats()["state"] == "INITIALIZING"
    slave.close()
    slave.close()
    with pytest.raises(ClosedError, match=r"^PTPSlave is closed$"):
        slave.start()


def _ports() -> tuple[int, int]:
    base = 20000 + 2 * secrets.randbelow(15000)
    return base, base + 1


def _wait_for(pred: Callable[[], bool], timeout: float, what: str,
              info: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    done = threading.Event()
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}: {info()}")
        done.wait(0.01)


def test_slave_against_python_masters_on_loopback() -> None:
    """BMCA picks the best master, corrections and the offset sign are right, a lost
    master hands over to the next, and no master at all unlocks."""
    ports = _ports()
    slave = PTPSlave(event_port=ports[0], general_port=ports[1], delay_req_interval_s=0.03)
    a = FakeMaster(ports, b"\xaa" * 8, skew_ns=-2_000_000, priority1=128,
                   sync_correction_ns=2_000_000, fup_correction_ns=1_000_000)
    b = FakeMaster(ports, b"\xbb" * 8, skew_ns=5_000_000, priority1=1, two_step=False,
                   sync_correction_ns=3_000_000)
    other = FakeMaster(ports, b"\xcc" * 8, priority1=0, domain=0)  # other domain: ignored
    with slave, a, other:
        with b:
            _wait_for(lambda: slave.synchronized and slave.stats()["master"] == "bbbbbb.bbbb."
                      "bbbbbb-1", 10, "lock on master b", slave.stats)
            st = slave.stats()
            assert st["foreign_masters"] == 2
            n0, fu0 = st["counts"]["samples"], st["counts"]["follow_up"]
            _wait_for(lambda: slave.stats()["counts"]["samples"] >= n0 + 5,
                      5, "more samples", slave.stats)
            assert slave.stats()["counts"]["follow_up"] == fu0  # b is one-step
            # offset is slave minus master; now_ns() is master time
            assert abs((st["offset_median_ns"] or 0) + 5_000_000) < 1_000_000, st
            assert abs(slave.now_ns() - (time.time_ns() + 5_000_000)) < 1_000_000
            counts = st["counts"]
            assert counts["delay_req_sent"] > 0 and b.delay_reqs > 0 and counts["delay_resp"] > 0
        # b stops: its Announces time out (3 x 62.5 ms), a takes over, two-step
        _wait_for(lambda: slave.synchronized and slave.stats()["master"] == "aaaaaa.aaaa."
                  "aaaaaa-1", 10, "hand-over to master a", slave.stats)
        st = slave.stats()
        assert abs((st["offset_median_ns"] or 0) - 2_000_000) < 1_000_000, st
        counts = st["counts"]
        assert counts["follow_up"] > 0 and counts["master_changes"] >= 2
        assert counts["malformed"] == 0
        a.stop()
        _wait_for(lambda: not slave.synchronized and slave.stats()["state"] == "LISTENING", 5,
                  "unlock after the last master stops", slave.stats)
        assert slave.stats()["master"] is None
    assert slave.stats()["state"] == "CLOSED"
    slave.close()


# ------------------------------------------------------------------ foreign master table

def _ann(identity: bytes, priority1: int, seq: int = 0, log: int = -2) -> Announce:
    pid = PortIdentity(identity, 1)
    return Announce(PTPHeader(0xB, 2, 0, 127, 0, 0, pid, seq & 0xFFFF, 5, log),
                    PTPTimestamp(0, 0), 37, priority1, 248, 0xFE, 0xFFFF, 128, identity, 0, 0xA0)


def test_foreign_master_table_is_bounded_and_a_flood_never_displaces_the_master() -> None:
    """8,000 one-off foreign masters: the table stays at its bound, none qualifies
    (one Announce each), the qualified master stays selected; a flood identity that
    announces again qualifies and wins on priority."""
    slave = PTPSlave(event_port=1, general_port=2, max_foreign_masters=16)
    now = 100.0
    good, standby = b"\x10" * 8, b"\x20" * 8

    def feed(a: Announce) -> None:
        with slave._lock:
            slave._handle(a, 0, now)

    feed(_ann(good, 100))
    assert slave.stats()["master"] is None  # one Announce does not qualify
    now += 0.25
    feed(_ann(good, 100, 1))
    feed(_ann(standby, 120))
    now += 0.25
    feed(_ann(standby, 120, 1))
    st = slave.stats()
    assert st["master"] == "101010.1010.101010-1" and st["foreign_masters"] == 2
    sizes = set()
    for i in range(8000):
        now += 0.00001
        feed(_ann(b"\xf0" + i.to_bytes(7, "big"), 0, i))  # better priority, heard once
        sizes.add(len(slave._foreign))
    st = slave.stats()
    assert max(sizes) == 16 and st["foreign_masters"] == 16
    assert st["counts"]["foreign_evicted"] == 8000 + 2 - 16
    assert st["master"] == "101010.1010.101010-1" and st["counts"]["master_changes"] == 1
    assert standby[:1] * 8 in [r.announce.grandmaster_identity
                               for r in slave._foreign._qualified.values()]  # kept too
    assert slave._foreign.rescans == 0  # no Announce scanned the table
    # the last flood identity announces again (within 4 x 250 ms): qualified, best
    now += 0.25
    feed(_ann(b"\xf0" + (7999).to_bytes(7, "big"), 0, 8000))
    st = slave.stats()
    assert st["master"] == "f00000.0000.001f3f-1" and st["counts"]["master_changes"] == 2
    assert st["state"] == "UNCALIBRATED" and len(slave._foreign) == 16
    # it goes silent: after 3 intervals it expires and the best remaining one takes over
    for seq in range(2, 6):  # the good master keeps announcing every interval
        now += 0.25
        feed(_ann(good, 100, seq))
    with slave._lock:
        slave._expire(now)
    assert slave.stats()["master"] == "101010.1010.101010-1"
    assert slave.stats()["counts"]["master_changes"] == 3


def test_foreign_master_qualification_window() -> None:
    """Two Announces more than 4 announce intervals apart do not qualify a record."""
    slave = PTPSlave(event_port=1, general_port=2)
    for t in (10.0, 11.5, 12.1):  # interval 0.25 s: window 1 s
        with slave._lock:
            slave._handle(_ann(b"\x33" * 8, 128, log=-2), 0, t)
        if t < 12:
            assert slave.stats()["master"] is None, t
    assert slave.stats()["master"] == "333333.3333.333333-1"
    with pytest.raises(ValueError, match=r"^PTPSlave: max_foreign_masters must be an int >= 1, "
                                         r"got 0$"):
        PTPSlave(max_foreign_masters=0)


# ------------------------------------------------------------------ ptp4l in namespaces

NETNS_SKIP = netns_skip_reason((("ptp4l", "linuxptp"),))
needs_netns = pytest.mark.skipif(NETNS_SKIP is not None, reason=NETNS_SKIP or "")


class Namespaces(VethPair):
    """Two namespaces joined by a veth pair (``_netns.VethPair``), ptp4l as ST 2059-2
    master in A."""

    def __init__(self) -> None:
        super().__init__("ptp")
        self.slave_addr = self.addr_b
        self.master_identity = ""
        self.log: list[str] = []
        self.ptp4l: subprocess.Popen[str] | None = None

    def up(self) -> None:
        super().up()
        self.ptp4l = subprocess.Popen(
            ["ip", "netns", "exec", self.a, "ptp4l", "-i", self.va, "-S", "-4", "-m",
             "--domainNumber=127", "--priority1=1", "--logSyncInterval=-3",
             "--logAnnounceInterval=-2", "--logMinDelayReqInterval=-3",
             "--announceReceiptTimeout=3"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        master = threading.Event()
        stdout = self.ptp4l.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                self.log.append(line.rstrip())
                m = re.search(r"selected local clock (\S+) as best master", line)
                if m:
                    self.master_identity = m.group(1)
                if "assuming the grand master role" in line:
                    master.set()

        threading.Thread(target=read, daemon=True).start()
        if not master.wait(15):
            raise RuntimeError("ptp4l did not become master in 15 s:\n" + "\n".join(self.log))

    def down(self) -> None:
        if self.ptp4l is not None:
            self.ptp4l.terminate()
            try:
                self.ptp4l.wait(5)
            except subprocess.TimeoutExpired:
                self.ptp4l.kill()
                self.ptp4l.wait(5)
        super().down()

    def run_in_b(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run_python(self.b, *argv, timeout=timeout)


@pytest.fixture(scope="module")
def netns() -> Iterator[Namespaces]:
    ns = Namespaces()
    try:
        ns.up()
        yield ns
    finally:
        ns.down()
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.a not in leftover and ns.b not in leftover


def _helper(netns: Namespaces, *args: str) -> dict[str, object]:
    proc = netns.run_in_b("tests/helpers/ptp_helper.py", netns.slave_addr, *args)
    assert proc.returncode == 0, (f"slave helper failed ({proc.returncode}):\n{proc.stdout}\n"
                                  f"{proc.stderr}\nptp4l:\n" + "\n".join(netns.log[-20:]))
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _p99(values: list[int]) -> int:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


@needs_netns
def test_slave_locks_to_ptp4l_master(netns: Namespaces) -> None:
    out = _helper(netns, "--measure", "3")
    st = out["stats"]
    assert isinstance(st, dict)
    assert st["grandmaster"] == netns.master_identity and st["state"] == "SLAVE"
    assert st["master"] == f"{netns.master_identity}-1" and out["synchronized_at_end"]
    assert out["stats_after_close"] == "CLOSED"
    samples = out["samples"]
    assert isinstance(samples, list) and len(samples) >= 15  # ~24 at 8 Hz over 3 s
    offsets = [abs(o) for o, _ in samples]
    delays = [d for _, d in samples]
    # both ends use kernel software timestamps on one CLOCK_REALTIME: the true offset
    # is 0. Measured here: median |offset| ~0.6 us, P99 ~1.5 us, delay ~1.5 us.
    assert statistics.median(offsets) < 50_000, samples
    assert 0 < statistics.median(delays) < 100_000, samples
    assert st["counts"]["tx_kernel_ts"] > 0 and st["counts"]["malformed"] == 0
    print(f"\nptp4l veth: {len(samples)} samples, |offset| median "
          f"{statistics.median(offsets):.0f} ns P99 {_p99(offsets)} ns, delay median "
          f"{statistics.median(delays):.0f} ns P99 {_p99(delays)} ns, lock {out['lock_s']:.2f} s")


@needs_netns
def test_ptp_clock_ticks_on_ptp_frame_boundaries(netns: Namespaces) -> None:
    out = _helper(netns, "--ticks", "10", "--fps", "25")
    ticks = out["ticks"]
    assert isinstance(ticks, list) and len(ticks) == 10
    period = 40_000_000
    lateness = []
    for stamp, frame, ptp_now in ticks:
        assert stamp == frame * period  # absolute PTP-epoch boundary k at k * 40 ms
        lateness.append(ptp_now - stamp)
    frames = [f for _, f, _ in ticks]
    assert frames == sorted(set(frames))
    # the tick is handed out once PTP time has reached its boundary, promptly
    assert min(lateness) >= 0 and statistics.median(lateness) < 10_000_000, lateness


@needs_netns
def test_ptp_slave_example(netns: Namespaces) -> None:
    proc = netns.run_in_b("examples/ptp_slave.py", netns.slave_addr, "--allow-remote",
                          "--samples", "3", "--timeout", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"locked to {netns.master_identity}-1" in proc.stdout
    lines = [l for l in proc.stdout.splitlines() if l.startswith("offset")]
    assert len(lines) == 3
    for line in lines:
        offset = int(re.search(r"offset\s+(-?\d+) ns", line).group(1))  # type: ignore[union-attr]
        assert abs(offset) < 50_000, line
