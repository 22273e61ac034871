"""ST 2110-21 timing: the model's constants, the CINST/VRX analyser on synthetic arrival
times with known answers, and the sender measured across a veth pair between two
network namespaces (root, ``ip netns`` and ``tc`` needed; skipped with the reason
otherwise): kernel receive timestamps in B, the analyser's verdict per timing mode."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.netns import ROOT, VethPair, netns_skip_reason
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.net.video_sender import pacing_rate
from streamlib.net.st2110_21 import (
    Verdict, analyze, cinst, frame_ids_from_markers, timing_model, vrx,
)


# ------------------------------------------------------------------ the model

def test_model_matches_the_standard_examples() -> None:
    m = timing_model(4320, 50, 1080)  # the notes' example: 1080p50 10-bit
    assert m.trs_ns == pytest.approx(4444.44, abs=0.01)  # 20 ms * 1080/1125 / 4320
    assert m.troffset_ns == pytest.approx(20e6 * 43 / 1125)
    assert m.tdrain_ns == pytest.approx(20e6 / 4320 / 1.1)
    # CMAX narrow = max(4, 4320 / (43200 * 0.96 * 0.02)) = floor(5.2)
    assert (m.cmax_narrow, m.cmax_narrow_linear, m.cmax_wide) == (5, 5, 16)
    assert (m.vrx_full_narrow, m.vrx_full_wide) == (8, 720)
    m60 = timing_model(4320, 60, 1080)  # 1080p60: narrow ~6, wide 16
    assert (m60.cmax_narrow, m60.cmax_wide, m60.vrx_full_narrow) == (6, 16, 9)
    m720 = timing_model(1614, 25, 720)
    assert m720.troffset_ns == pytest.approx(40e6 * 28 / 750)
    assert m720.trs_linear_ns == pytest.approx(40e6 / 1614)
    big = timing_model(17280, 60000 / 1001, 2160)  # UHD 59.94: rates scale the minimums
    assert big.tframe_ns == pytest.approx(1001 / 60 * 1e6)
    # 17280 / (43200 * 0.96 * 1001/60000) = 24.97; 17280 / (27000 * 1001/60000) = 38.4
    assert (big.cmax_narrow, big.vrx_full_narrow, big.cmax_wide) == (24, 38, 47)
    field = timing_model(2160, 25, 1080, interlaced=True)
    assert field.tframe_ns == pytest.approx(20e6) and field.troffset_ns == pytest.approx(
        40e6 * 22 / 1125)
    with pytest.raises(ValueError, match="n_packets >= 1"):
        timing_model(0, 25, 720)


# ------------------------------------------------------------------ synthetic captures

M = timing_model(1000, 25, 720)  # Trs 38.4 us, TDRAIN 36.36 us, CMAX N 4 / W 16
FRAMES = 8


def _frames(offsets_in_frame: np.ndarray, start: float = 1e9) -> tuple[np.ndarray, np.ndarray]:
    t = np.concatenate([start + k * M.tframe_ns + offsets_in_frame for k in range(FRAMES)])
    return np.round(t).astype(np.int64), np.repeat(np.arange(FRAMES) * 3600, M.n_packets)


def test_cinst_counts_bursts_exactly() -> None:
    assert cinst([], 10.0).size == 0
    assert cinst([0, 100, 200, 300], 100.0).tolist() == [0, 0, 0, 0]
    assert cinst([0, 0, 0, 0, 0], 100.0).tolist() == [0, 1, 2, 3, 4]  # burst of 5 -> 4
    # three bursts of 4, far apart: each starts empty
    t = [0, 0, 0, 0, 10_000, 10_000, 10_000, 10_000, 20_000, 20_000, 20_000, 20_000]
    assert cinst(t, 100.0).max() == 3
    # 2 packets per TDRAIN: the bucket fills by one per tick
    assert cinst(np.arange(20) * 50, 100.0).tolist()[-1] == 10
    with pytest.raises(ValueError, match="tdrain_ns"):
        cinst([0], 0.0)


def test_perfect_gapped_sender_is_narrow() -> None:
    t, ids = _frames(np.arange(M.n_packets) * M.trs_ns)
    v = analyze(t, ids, M)
    assert v.sender_type == "narrow" and v.cinst_max == 0
    assert v.vrx_gapped.peak <= 1 and v.vrx_gapped.late == 0
    # against the slower linear schedule the buffer grows by N * (1 - 1080/1125) = 40
    assert v.vrx_linear.peak == pytest.approx(40, abs=1)
    assert v.meets("narrow") and v.meets("wide") and not v.meets("narrow_linear")
    assert (v.frames, v.packets) == (FRAMES, FRAMES * M.n_packets)


def test_perfect_linear_sender_is_narrow_linear() -> None:
    t, ids = _frames(np.arange(M.n_packets) * M.trs_linear_ns)
    v = analyze(t, ids, M)
    assert v.sender_type == "narrow_linear" and v.vrx_linear.peak <= 1
    assert not v.meets("narrow") and v.meets("wide")


@pytest.mark.parametrize("burst", [2, 4, 8, 16, 88])
def test_bursts_of_b_packets_read_b_minus_1(burst: int) -> None:
    # bursts of B back to back, one burst per B * Trs: the average rate is the narrow one
    t, ids = _frames((np.arange(M.n_packets) // burst) * burst * M.trs_ns)
    v = analyze(t, ids, M)
    assert v.cinst_max == burst - 1
    assert v.meets("narrow") == (burst - 1 <= M.cmax_narrow and v.vrx_gapped.peak <= 8)
    assert v.meets("wide") == (burst - 1 <= M.cmax_wide)
    assert v.vrx_gapped.peak == pytest.approx(burst, abs=1)
    assert v.sender_type == ("narrow" if burst <= 4 else "wide" if burst <= 16 else "none")


def test_late_frame_underflows_a_fixed_cadence() -> None:
    offs = np.arange(M.n_packets) * M.trs_ns
    t, ids = _frames(offs)
    t[3 * M.n_packets:4 * M.n_packets] += 500_000  # frame 3 leaves 0.5 ms late
    v = analyze(t, ids, M)
    # the fitted schedule starts 0.5 ms later, so every other frame waits ~13 packets
    assert v.vrx_gapped.late == 0 and v.vrx_gapped.peak == pytest.approx(500_000 / M.trs_ns, abs=1)
    assert v.sender_type == "wide"


def test_epochs_reference_the_read_schedule() -> None:
    offs = np.arange(M.n_packets) * M.trs_ns
    t, ids = _frames(offs, start=1e9 + M.troffset_ns - 3.5 * M.trs_ns)  # 3.5 early
    epochs = 1e9 + np.arange(FRAMES) * M.tframe_ns
    r = vrx(t, ids, M.trs_ns, M.tframe_ns, epochs_ns=epochs, troffset_ns=M.troffset_ns)
    assert (r.alignment, r.late, r.peak) == ("epoch", 0, 4)  # 4 in before the 1st read
    late = vrx(t + 10 * int(M.trs_ns), ids, M.trs_ns, M.tframe_ns, epochs_ns=epochs,
               troffset_ns=M.troffset_ns)
    assert late.late > 0 and late.min < 0  # read before arrival: underflow
    assert analyze(t, ids, M, epochs_ns=epochs).sender_type == "narrow"
    with pytest.raises(ValueError, match="epochs"):
        vrx(t, ids, M.trs_ns, M.tframe_ns, epochs_ns=epochs[:2])


def test_frame_ids_from_markers_and_errors() -> None:
    assert frame_ids_from_markers([0, 0, 1, 0, 1, 0]).tolist() == [0, 0, 0, 1, 1, 2]
    with pytest.raises(ValueError, match="no packets"):
        analyze([], [], M)
    with pytest.raises(ValueError, match="frame ids"):
        analyze([1, 2], [0], M)
    with pytest.raises(ValueError, match="sender type"):
        analyze([1, 2], [0, 0], M).meets("tight")


# ------------------------------------------------------------------ namespaces

NETNS_SKIP = netns_skip_reason((("tc", "iproute2"),))
needs_netns = pytest.mark.skipif(NETNS_SKIP is not None, reason=NETNS_SKIP or "")
PORT = 5020
FMT = "YCbCr-4:2:2/10"


class Capture:
    """Receive times and RTP timestamps of a capture and the analyser's verdict."""

    def __init__(self, ts: np.ndarray, ids: np.ndarray, verdict: Verdict) -> None:
        self.ts, self.ids, self.verdict = ts, ids, verdict
        self.model, self.cinst_max = verdict.model, verdict.cinst_max

    def meets(self, kind: str) -> bool:
        return self.verdict.meets(kind)

    def summary(self) -> str:
        return self.verdict.summary()


def rx_role(port: int, out: str, idle_s: float) -> None:
    """Receiver (run in namespace B): kernel receive timestamps (SO_TIMESTAMPNS) with
    RTP timestamp, sequence and marker of each packet, saved to ``out`` (.npz)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
    s.bind(("0.0.0.0", port))
    print("ready", flush=True)
    s.settimeout(10.0)  # the first packet
    buf = bytearray(2048)
    ts: list[int] = []
    rtp: list[int] = []
    marker: list[bool] = []
    try:
        while True:
            n, anc, _, _ = s.recvmsg_into([buf], 64)
            s.settimeout(idle_s)
            stamp = 0
            for _, typ, data in anc:
                if typ == 35:
                    sec, nsec = struct.unpack("qq", data[:16])
                    stamp = sec * 1_000_000_000 + nsec
            ts.append(stamp)
            rtp.append(struct.unpack_from("!I", buf, 4)[0])
            marker.append(bool(buf[1] & 0x80))
    except socket.timeout:
        pass
    np.savez(out, ts=np.array(ts, np.int64), rtp=np.array(rtp, np.int64),
             marker=np.array(marker, bool))


def tx_role(dest: str, timing: str, width: int, height: int, fps: float, frames: int) -> None:
    """Sender (run in namespace A): ``frames`` frames as fast as the sender paces them."""
    from streamlib.net.video_sender import VideoStreamSender
    from streamlib.net.udp import open_sender

    host, port = dest.rsplit(":", 1)
    pk = VideoPacketizer(FMT, width, height, ssrc=0x2110)
    sender = VideoStreamSender(open_sender((host, int(port)), allow_remote=True), pk, fps,
                               timing=timing)
    step = round(90000 / fps)
    for k in range(frames):
        buf = sender.acquire(timeout=2.0)
        assert buf is not None, "no free send buffer in 2 s"
        sender.submit(buf, k * step)
    sender.close(timeout=10)
    print(json.dumps({"late_frames": sender.late_frames, "packets": sender.packets_sent,
                      "gso": sender.gso, "kernel_pacing": sender.kernel_pacing,
                      "pacing_rate": sender.pacing_rate}), flush=True)


def measure(pair: VethPair, timing: str, qdisc: list[str], width: int, height: int,
            fps: float, seconds: float, tmp: Path) -> tuple[dict[str, object], Capture]:
    """Stream ``seconds`` of ``timing`` from A to B with ``qdisc`` (tc arguments after
    ``root``; [] for none) on A's veth; returns (sender report, Verdict)."""
    if qdisc:
        subprocess.run(pair.argv(pair.a, "tc", "qdisc", "replace", "dev", pair.va, "root",
                                 *qdisc), check=True, capture_output=True, text=True, timeout=10)
    else:
        subprocess.run(pair.argv(pair.a, "tc", "qdisc", "del", "dev", pair.va, "root"),
                       capture_output=True, timeout=10)
    out = tmp / f"rx_{timing}_{width}.npz"
    rx = subprocess.Popen(pair.python_argv(pair.b, "-c", (
        f"import tests.net.test_st2110_21 as t; t.rx_role({PORT}, {str(out)!r}, 0.5)")),
        cwd=ROOT, env=pair.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready", rx.stderr
        frames = int(seconds * fps)
        tx = pair.run_python(pair.a, "-c", (
            f"import tests.net.test_st2110_21 as t; t.tx_role('{pair.addr_b}:{PORT}', {timing!r}, "
            f"{width}, {height}, {fps}, {frames})"), timeout=seconds + 30)
        assert tx.returncode == 0, tx.stderr
        report = json.loads(tx.stdout.strip().splitlines()[-1])
        rx.wait(timeout=15)
        assert rx.returncode == 0, rx.stderr.read() if rx.stderr else ""
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    data = np.load(out)
    ts, rtp = data["ts"], data["rtp"]
    n = VideoPacketizer(FMT, width, height).n_packets
    assert ts.size == frames * n, f"lost {frames * n - ts.size} of {frames * n} packets"
    keep = rtp >= rtp[0] + 2 * round(90000 / fps)  # the first frames warm caches up
    model = timing_model(n, fps, height)
    return report, Capture(ts[keep], rtp[keep], analyze(ts[keep], rtp[keep], model))


@pytest.fixture(scope="module")
def pair() -> Iterator[VethPair]:
    p = VethPair("tt")
    try:
        p.up()
        yield p
    finally:
        p.down()
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert p.a not in leftover and p.b not in leftover


def pacing_qdisc(pair: VethPair, timing: str, width: int, height: int,
                 fps: float) -> list[str]:
    """fq (honours the socket's SO_MAX_PACING_RATE) where the kernel has it, else a tbf
    shaper at the stream's rate with a 4-packet bucket."""
    probe = subprocess.run(pair.argv(pair.a, "tc", "qdisc", "replace", "dev", pair.va, "root",
                                     "fq"), capture_output=True, text=True, timeout=10)
    if probe.returncode == 0:
        return ["fq", "quantum", "1514", "initial_quantum", "1514", "flow_limit", "1000"]
    _, rate = pacing_rate(VideoPacketizer(FMT, width, height), fps, timing)
    tbf = ["tbf", "rate", f"{rate * 8}bit", "burst", "6000", "limit", "4mb"]
    probe = subprocess.run(pair.argv(pair.a, "tc", "qdisc", "replace", "dev", pair.va, "root",
                                     *tbf), capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:  # a kernel without sch_fq and sch_tbf cannot pace at all
        pytest.skip(f"no pacing qdisc (fq, tbf) in this kernel: {probe.stderr.strip()}")
    subprocess.run(pair.argv(pair.a, "tc", "qdisc", "del", "dev", pair.va, "root"),
                   capture_output=True, timeout=10)
    return tbf


@needs_netns
def test_kernel_paced_wide_sender_meets_wide(pair: VethPair, tmp_path: Path) -> None:
    """720p25 10-bit (1605 packets a frame, TRS 23.9 us) for 1.5 s through a pacing qdisc,
    ``timing="wide"``: CINST <= 16 and VRX <= 720 hold with a wide margin (measured
    CINST 4-6, VRX 12-28), so a loaded machine does not decide the outcome.

    ``timing="narrow"`` is not asserted here: its margins (CINST <= 4, VRX <= 8 packets
    = 190 us) are of the order of this shared VM's vCPU stalls, so whether it passes is
    a measurement, recorded in docs/benchmarks.md (``python -m tests.net.test_st2110_21``),
    not a test. Meeting it reliably needs launch times (SO_TXTIME with fq/etf).
    """
    w, h, fps = 1280, 720, 25.0
    qdisc = pacing_qdisc(pair, "wide", w, h, fps)
    lines = []
    for _ in range(2):  # a capture spoilt by a stalled vCPU is retried once
        report, v = measure(pair, "wide", qdisc, w, h, fps, 1.5, tmp_path)
        assert report["gso"] is False and report["kernel_pacing"] is True
        lines.append(f"wide {qdisc[0]}: {v.summary()}; sender {report}")
        print(lines[-1])
        if v.meets("wide"):
            return
    pytest.fail("no capture met the wide class:\n" + "\n".join(lines))


@needs_netns
def test_burst_sender_is_not_narrow(pair: VethPair, tmp_path: Path) -> None:
    report, v = measure(pair, "burst", [], 1280, 720, 25.0, 1.0, tmp_path)
    print(f"burst noqueue: {v.summary()} sender {report}")
    assert not v.meets("narrow") and not v.meets("wide") and v.cinst_max > 16


if __name__ == "__main__":  # measure by hand: python -m tests.net.test_st2110_21 WxH fps s
    if NETNS_SKIP:
        sys.exit(NETNS_SKIP)
    w_, h_ = (int(x) for x in sys.argv[1].split("x"))
    fps_, secs = float(sys.argv[2]), float(sys.argv[3])
    p_ = VethPair("tt")
    try:
        p_.up()
        for mode in ("narrow", "wide", "burst"):
            q = pacing_qdisc(p_, mode, w_, h_, fps_) if mode != "burst" else []
            t0 = time.monotonic()
            rep, cap = measure(p_, mode, q, w_, h_, fps_, secs, Path("/tmp"))
            fv = vrx(cap.ts, cap.ids, cap.model.trs_ns, cap.model.tframe_ns, per_frame=True)
            print(f"{w_}x{h_}@{fps_:g} {mode} ({q[0] if q else 'noqueue'}): "
                  f"{cap.summary()}; per-frame VRX {fv.peak}; sender {rep}")
    finally:
        p_.down()
