"""ST 2110-30 audio interop with real peers: GStreamer and FFmpeg, both directions.

Everything stays on 127.0.0.1, on ports 41000-41998 (this file's range; the
example test uses 41500-41598). Peers run as subprocesses with timeouts and
are killed in ``finally``; a missing tool or plugin skips with the reason.

``python -m tests.net.test_interop_audio --write-fixtures`` recaptures the
packet fixtures under tests/fixtures/net/ (see ``write_packets``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamlib import Actor, AudioFrame, Runtime, StreamInput, TimedTick
from streamlib.actors.audio import AudioGeneratorActor
from streamlib.actors.network_audio import AudioNetworkReceiveActor, AudioNetworkSendActor, Encoding
from streamlib.net.audio import encode_samples
from streamlib.net.sdp import parse_sdp

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "net"
RATE = 48000
_next_port = iter(range(41000, 41500, 2))


def free_port() -> int:
    """Next even port of this file's range that is free for UDP on 127.0.0.1."""
    for port in _next_port:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port left in 41000-41498")


def port_bound(port: int) -> bool:
    """True once some process has bound UDP ``port`` (read from /proc/net/udp).

    Probing by binding the port ourselves would race with the peer's own bind
    (the peer then fails with EADDRINUSE), so the kernel's table is read instead.
    """
    want = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        if any(line.split()[1].endswith(want) for line in lines if len(line.split()) > 1):
            return True
    return False


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` on a short Event wait; fail loudly naming ``what`` at ``timeout``."""
    ev = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        ev.wait(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def need(tool: str, *plugins: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    for plugin in plugins:
        ok = subprocess.run(["gst-inspect-1.0", plugin], capture_output=True, timeout=30).returncode == 0
        if not ok:
            pytest.skip(f"GStreamer element {plugin} is missing")


class Peer:
    """A peer subprocess; ``stop()`` interrupts it (EOS for ``gst-launch -e``, clean exit
    for ffmpeg), ``close()`` kills whatever is left."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def stop(self, timeout: float = 10) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 20) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for p in started:
        p.close()


class Collect(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["audio"] = StreamInput("audio", slots=64)
        self.frames: list[AudioFrame] = []
        self.samples = 0

    def process(self, tick: TimedTick) -> None:
        for f in self.inputs["audio"].read_all_new():
            self.frames.append(f)
            self.samples += f.samples


def gst_sender(port: int, encoding: str, count: int, live: bool = True) -> list[str]:
    fmt, pay = ("S24BE", "rtpL24pay") if encoding == "L24" else ("S16BE", "rtpL16pay")
    return ["gst-launch-1.0", "-q", "audiotestsrc", f"num-buffers={count}", "samplesperbuffer=48",
            "wave=sine", "freq=1000", f"is-live={'true' if live else 'false'}", "!",
            f"audio/x-raw,format={fmt},rate=48000,channels=2", "!",
            pay, "pt=97", "min-ptime=1000000", "max-ptime=1000000", "!",
            "udpsink", "host=127.0.0.1", f"port={port}"]


def ffmpeg_sender(port: int, seconds: float, sdp_file: Path | None = None, realtime: bool = True) -> list[str]:
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if realtime:
        args.append("-re")
    args += ["-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=48000:duration={seconds}",
             "-ac", "2", "-c:a", "pcm_s24be", "-f", "rtp", "-payload_type", "97",
             "-pkt_size", "300"]
    if sdp_file is not None:
        args += ["-sdp_file", str(sdp_file)]
    return args + [f"rtp://127.0.0.1:{port}"]


def capture(args: list[str], port: int, timeout: float = 20) -> list[bytes]:
    """Run a sending peer to completion and return every datagram it sent to ``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    peer = Peer(args)
    got: list[bytes] = []
    try:
        peer.wait(timeout)
        while True:
            try:
                got.append(sock.recv(65536))
            except TimeoutError:
                return got
    finally:
        peer.close()
        sock.close()


def write_packets(path: Path, packets: list[bytes]) -> None:
    """Fixture format: per datagram, a 4-byte big-endian length then the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(len(p).to_bytes(4, "big") + p for p in packets))


def tone_peak_hz(data: np.ndarray) -> float:
    mono = data[:, 0].astype(np.float64)
    spec = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spec) * RATE / len(mono))


# -- streamlib -> peers -------------------------------------------------------------

def send_tone(port: int, seconds: float, encoding: Encoding = "L24", *, until: Callable[[], bool] | None = None,
              **kw: Any) -> tuple[bytes, AudioNetworkSendActor]:
    """Send a real-time 1 kHz tone for ``seconds`` (or until ``until()``); return the
    exact bytes sent and the sender."""
    frames = round(seconds * 50)
    with Runtime() as rt:
        tone = AudioGeneratorActor(RATE, 2, 1000.0, "sine", amplitude=0.5)
        send = AudioNetworkSendActor(f"127.0.0.1:{port}", encoding, RATE, 2, **kw)
        tone >> send
        rt.start()
        if until is None:
            wait_until(lambda: send.frames_in >= frames, seconds + 10, f"{frames} frames sent")
            assert send.packets_dropped == 0 and send.packets_sent >= frames * 20
        else:
            wait_until(until, seconds + 10, "the peer")
    return encode_samples(tone.render(0, send.frames_in * 960), encoding), send


def assert_contiguous_slice(got: bytes, sent: bytes, frame_bytes: int, min_fraction: float,
                            log: str = "") -> None:
    """``got`` is one unbroken run of ``sent`` (the peer may miss the start), at least
    ``min_fraction`` of it."""
    assert len(got) % frame_bytes == 0 and len(got) >= min_fraction * len(sent), (len(got), len(sent), log)
    head = got[:frame_bytes * 48]
    start = sent.find(head)
    assert start >= 0 and start % frame_bytes == 0, f"received audio is not a slice of what was sent {log}"
    assert got == sent[start:start + len(got)], log


def test_l24_to_gstreamer_is_bit_exact(tmp_path: Path, peers: list[Peer]) -> None:
    need("gst-launch-1.0", "udpsrc", "rtpjitterbuffer", "rtpL24depay", "filesink")
    port, out = free_port(), tmp_path / "gst.raw"
    caps = ("application/x-rtp,media=(string)audio,clock-rate=(int)48000,encoding-name=(string)L24,"
            "encoding-params=(string)2,channels=(int)2,payload=(int)97")
    peer = Peer(["gst-launch-1.0", "-e", "-q", "udpsrc", f"port={port}", "address=127.0.0.1",
                 f"caps={caps}", "!", "rtpjitterbuffer", "latency=10", "!", "rtpL24depay", "!",
                 "filesink", f"location={out}"])
    peers.append(peer)
    wait_until(lambda: port_bound(port), 15, "gst-launch to bind its UDP port")
    sent, _ = send_tone(port, 0.6)
    log = peer.stop()
    got = out.read_bytes()
    assert_contiguous_slice(got, sent, 6, 0.8, log)


def test_l24_to_ffmpeg_via_our_sdp(tmp_path: Path, peers: list[Peer]) -> None:
    need("ffmpeg")
    port, out, sdp = free_port(), tmp_path / "ff.raw", tmp_path / "our.sdp"
    with Runtime():
        sdp.write_text(AudioNetworkSendActor(f"127.0.0.1:{port}").sdp)
    text = sdp.read_text()
    assert "a=rtpmap:97 L24/48000/2" in text and "a=ptime:1" in text and "a=mediaclk:direct=0" in text
    peer = Peer(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                 "-protocol_whitelist", "file,udp,rtp", "-i", str(sdp),
                 "-t", "0.5", "-f", "s24be", "-c:a", "pcm_s24be", "-y", str(out)])
    peers.append(peer)
    wait_until(lambda: port_bound(port), 15, "ffmpeg to bind its UDP port")
    # ffmpeg ignores SIGINT while blocked on UDP, so -t ends it; send until it exits
    sent, _ = send_tone(port, 1.0, until=lambda: peer.proc.poll() is not None)
    log = peer.wait(10)
    assert peer.proc.returncode == 0, log
    got = out.read_bytes()
    assert len(got) == 0.5 * RATE * 6
    assert_contiguous_slice(got, sent, 6, 0.4)


# -- peers -> streamlib -------------------------------------------------------------

def receive_from(args: list[str], port: int, expect_samples: int, peers: list[Peer],
                 **kw: Any) -> tuple[AudioNetworkReceiveActor, np.ndarray]:
    with Runtime() as rt:
        recv = AudioNetworkReceiveActor(dest=f"127.0.0.1:{port}", **kw)
        sink = Collect()
        recv >> sink
        rt.start()
        wait_until(lambda: port_bound(port), 10, "the receiver to bind")
        peer = Peer(args)
        peers.append(peer)
        log = peer.wait(30)
        assert peer.proc.returncode == 0, log
        wait_until(lambda: sink.samples >= expect_samples, 10,
                   f"{expect_samples} samples (have {sink.samples}; stats {recv.stats})")
    return recv, np.concatenate([f.data.numpy() for f in sink.frames])


@pytest.mark.parametrize("encoding", ["L24", "L16"])
def test_gstreamer_to_streamlib_tone_without_loss(encoding: str, peers: list[Peer]) -> None:
    pay = "rtpL24pay" if encoding == "L24" else "rtpL16pay"
    need("gst-launch-1.0", "audiotestsrc", pay, "udpsink")
    port = free_port()
    recv, data = receive_from(gst_sender(port, encoding, 500), port, 500 * 48, peers,
                              encoding=encoding, payload_type=97)
    st = recv.stats
    assert (st.received, st.played, st.lost, st.late, st.duplicate, st.malformed) == (500, 500, 0, 0, 0, 0)
    assert data.shape == (24000, 2) and st.concealed_samples == 0
    assert abs(tone_peak_hz(data) - 1000) <= 2
    assert 0.7 < np.abs(data).max() <= 0.8 + 1e-4  # audiotestsrc volume 0.8
    assert np.array_equal(data[:, 0], data[:, 1])


def test_ffmpeg_to_streamlib_tone_and_its_sdp(tmp_path: Path, peers: list[Peer]) -> None:
    need("ffmpeg")
    port, sdp = free_port(), tmp_path / "ffmpeg.sdp"
    recv, data = receive_from(ffmpeg_sender(port, 0.5, sdp), port, 24000, peers)
    st = recv.stats
    assert (st.lost, st.late, st.duplicate, st.malformed, st.stray) == (0, 0, 0, 0, 0)
    assert st.received == st.played >= 500 and data.shape == (24000, 2)
    assert abs(tone_peak_hz(data) - 1000) <= 2
    assert abs(np.abs(data).max() - 0.125 / np.sqrt(2)) < 0.005  # lavfi sine 1/8, -ac 2 at -3 dB
    # ffmpeg's own SDP describes what we were configured with, and configures a receiver
    (stream,) = parse_sdp(sdp.read_text())
    assert (stream.encoding, stream.clock_rate, stream.channels, stream.payload_type, stream.port) == \
        ("L24", 48000, 2, 97, port)
    with Runtime():
        again = AudioNetworkReceiveActor(sdp=str(sdp))
    assert (again.format.encoding, again.format.channels, again.port, again.depacketizer.payload_type) == \
        ("L24", 2, port, 97)


# -- captured fixtures ----------------------------------------------------------------

FIXTURE_SOURCES: dict[str, Callable[[int], list[str]]] = {
    "audio_gst_l24.bin": lambda port: gst_sender(port, "L24", 40, live=False),
    "audio_gst_l16.bin": lambda port: gst_sender(port, "L16", 40, live=False),
    "audio_ffmpeg_l24.bin": lambda port: ffmpeg_sender(port, 0.04, realtime=False),
}


@pytest.mark.parametrize("name", sorted(FIXTURE_SOURCES))
def test_live_capture_has_the_fixture_layout(name: str) -> None:
    """What the peers send today still looks like the stored fixture (header fields and sizes)."""
    need("ffmpeg" if "ffmpeg" in name else "gst-launch-1.0")
    port = free_port()
    live = capture(FIXTURE_SOURCES[name](port), port)
    blob = (FIXTURES / name).read_bytes()
    stored, i = [], 0
    while i < len(blob):
        n = int.from_bytes(blob[i:i + 4], "big")
        stored.append(blob[i + 4:i + 4 + n])
        i += 4 + n
    assert len(live) == len(stored) >= 40
    assert [len(p) for p in live] == [len(p) for p in stored]
    assert all(p[0] == 0x80 and p[1] & 0x7F == 97 for p in live + stored)  # RTP v2, PT 97
    assert [p[12:] for p in live] == [p[12:] for p in stored]  # same deterministic tone


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-fixtures"]:
        sys.exit(__doc__)
    for fname, make in FIXTURE_SOURCES.items():
        p = free_port()
        packets = capture(make(p), p)
        write_packets(FIXTURES / fname, packets)
        print(f"{FIXTURES / fname}: {len(packets)} packets, sizes {sorted({len(x) for x in packets})}")
    os.sync()
