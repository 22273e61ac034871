"""ST 2110-20 interop with real peers on loopback: GStreamer (rtpvrawpay/rtpvrawdepay)
and FFmpeg (``-f rtp`` / SDP input), both directions, all three formats.

Pixels are compared byte for byte in the pgroup domain (UYVP/UYVY/RGB raw buffers and
FFmpeg's yuv422p10le planes carry exactly the codes on the wire), so no tolerance is
needed. Peers are subprocesses with timeouts, killed in ``finally``; each test skips
with the reason when its tool is missing. Peers start listening at an unknown moment,
so the sender streams distinct frames until the peer has taken its N and exits; the
check is that the peer's frames are N consecutive sent frames (none lost or damaged).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from streamlib.net.assembler import FrameAssembler
from streamlib.net.jitter import VideoStreamReceiver
from streamlib.net.pgroup import pack_rgb, parse_format, ycbcr422_10_to_planes
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.net.video_sender import VideoStreamSender
from streamlib.net.sdp import parse_sdp, video_stream, write_sdp
from streamlib.net.udp import open_receiver, open_sender
from streamlib.core.registry import PortAllocator

PORTS = PortAllocator(40500, 40998)
W, H, N = 64, 48, 5
GST_FORMAT = {"YCbCr-4:2:2/10": "UYVP", "YCbCr-4:2:2/8": "UYVY", "RGB/8": "RGB"}
FF_PIX = {"YCbCr-4:2:2/10": ("bitpacked", "yuv422p10"), "YCbCr-4:2:2/8": ("rawvideo", "uyvy422"),
          "RGB/8": ("rawvideo", "rgb24")}
FORMATS = list(GST_FORMAT)


def _port(key: object) -> int:
    """A port of our range that nothing holds right now (parallel test runs)."""

    def probe(port: int) -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", port))  # EADDRINUSE: the allocator tries the next one
        return port

    return PORTS.allocate_bound(key, probe, tries=PORTS.capacity)[0]


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (apt-get install "
                    f"{'gstreamer1.0-tools gstreamer1.0-plugins-good' if 'gst' in tool else 'ffmpeg'})")


def _kill(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=10)
    return (out or b"").decode(errors="replace")[-3000:]


def _stream_until_exit(proc: subprocess.Popen[bytes], fmt: str, port: int,
                       timeout: float = 30.0) -> list[np.ndarray]:
    """Send distinct random frames at 30 fps until ``proc`` exits; returns them."""
    pk = VideoPacketizer(fmt, W, H)
    tx = VideoStreamSender(open_sender(("127.0.0.1", port)), pk, 30)
    sent: list[np.ndarray] = []
    rng = np.random.default_rng(7)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            buf = tx.acquire(timeout=1.0)
            assert buf is not None
            pack_rgb(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), fmt, buf)
            sent.append(buf.copy())
            tx.submit(buf, 3000 * len(sent))
    finally:
        tx.close()
    return sent


def _consecutive(received: list[np.ndarray], sent: list[np.ndarray]) -> int:
    """Index into ``sent`` where ``received`` starts as a run of consecutive frames."""
    assert received, "the peer produced no frames"
    starts = [i for i, s in enumerate(sent) if np.array_equal(s, received[0])]
    assert starts, "the first frame the peer produced matches no sent frame"
    k = starts[0]
    for j, r in enumerate(received):
        assert k + j < len(sent) and np.array_equal(r, sent[k + j]), \
            f"peer frame {j} is not sent frame {k + j}: a frame was lost or damaged"
    return k


# -- streamlib -> GStreamer ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_streamlib_to_gstreamer(fmt: str, tmp_path: Path) -> None:
    _need("gst-launch-1.0")
    f = parse_format(fmt)
    port = _port(("gst-rx", fmt))
    out = tmp_path / "gst.raw"
    caps = ("application/x-rtp,media=(string)video,clock-rate=(int)90000,"
            f"encoding-name=(string)RAW,sampling=(string){f.sampling},depth=(string){f.depth},"
            f"width=(string){W},height=(string){H},colorimetry=(string)BT709-2,payload=(int)96")
    # identity eos-after=N+1 passes N buffers, then ends the pipeline.
    proc = subprocess.Popen(
        ["gst-launch-1.0", "-q", "udpsrc", "address=127.0.0.1", f"port={port}", f"caps={caps}",
         "!", "rtpvrawdepay", "!", f"video/x-raw,format={GST_FORMAT[fmt]}", "!", "identity",
         f"eos-after={N + 1}", "!", "filesink", f"location={out}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sent = _stream_until_exit(proc, fmt, port)
        log = _kill(proc)
        assert proc.returncode == 0, log
    finally:
        _kill(proc)
        PORTS.release(("gst-rx", fmt))
    data = np.fromfile(out, np.uint8)
    fb = f.frame_bytes(W, H)
    assert data.size == N * fb, f"GStreamer wrote {data.size} bytes, expected {N} frames"
    _consecutive([data[i * fb:(i + 1) * fb] for i in range(N)], sent)


# -- GStreamer -> streamlib ---------------------------------------------------------------

def _receive(fmt: str, port_key: object, sender: list[str], n: int) -> tuple[list[np.ndarray],
                                                                              object]:
    port = _port(port_key)
    rx = VideoStreamReceiver(open_receiver(("127.0.0.1", port)), FrameAssembler(fmt, W, H))
    proc = subprocess.Popen([a.replace("PORT", str(port)) for a in sender],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        got = []
        for _ in range(n):
            frame = rx.get(timeout=20.0)
            if frame is None:
                break
            got.append(frame)
        try:
            proc.wait(timeout=20)  # the peer sent its N frames: let it finish on its own
        except subprocess.TimeoutExpired:
            pass
        log = _kill(proc)
        assert proc.returncode == 0, log
    finally:
        _kill(proc)
        rx.close()
        PORTS.release(port_key)
    assert len(got) == n, f"received {len(got)} of {n} frames; stats {rx.stats()}"
    assert all(g.complete for g in got) and rx.stats().lost == 0, rx.stats()
    return [g.data for g in got], rx.stats()


@pytest.mark.parametrize("fmt", FORMATS)
def test_gstreamer_to_streamlib(fmt: str, tmp_path: Path) -> None:
    _need("gst-launch-1.0")
    ref = tmp_path / "ref.raw"
    got, _ = _receive(fmt, ("gst-tx", fmt), [
        "gst-launch-1.0", "-q", "videotestsrc", f"num-buffers={N}", "pattern=smpte", "!",
        f"video/x-raw,format={GST_FORMAT[fmt]},width={W},height={H},framerate=30/1", "!",
        "tee", "name=t", "t.", "!", "queue", "!", "rtpvrawpay", "pt=96", "mtu=1400", "!",
        "udpsink", "host=127.0.0.1", "port=PORT", "t.", "!", "queue", "!", "filesink",
        f"location={ref}"], N)
    want = np.fromfile(ref, np.uint8)
    fb = parse_format(fmt).frame_bytes(W, H)
    for i, g in enumerate(got):
        assert np.array_equal(g, want[i * fb:(i + 1) * fb]), f"frame {i} differs"


# -- streamlib -> FFmpeg ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_streamlib_to_ffmpeg(fmt: str, tmp_path: Path) -> None:
    _need("ffmpeg")
    f = parse_format(fmt)
    port = _port(("ff-rx", fmt))
    sdp = tmp_path / "stream.sdp"
    # FFmpeg reads our SDP without TP (a burst sender claims no ST 2110-21 type) and with
    tp = "2110TPN" if fmt == "RGB/8" else None
    sdp.write_text(write_sdp([video_stream("127.0.0.1", port, width=W, height=H,
                                           sampling=f.sampling, depth=f.depth, fps=30,
                                           tp=tp)]))
    assert ("TP=2110TPN" in sdp.read_text()) == (tp is not None)
    out = tmp_path / "ff.raw"
    pix = {"YCbCr-4:2:2/10": "yuv422p10le", "YCbCr-4:2:2/8": "uyvy422", "RGB/8": "rgb24"}[fmt]
    proc = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-protocol_whitelist",
         "file,udp,rtp", "-i", str(sdp), "-frames:v", str(N), "-f", "rawvideo", "-pix_fmt", pix,
         str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sent = _stream_until_exit(proc, fmt, port, timeout=40)
        log = _kill(proc)
        assert proc.returncode == 0, log
    finally:
        _kill(proc)
        PORTS.release(("ff-rx", fmt))
    data = np.fromfile(out, np.uint8)
    if fmt == "YCbCr-4:2:2/10":  # planar little-endian 16-bit: compare codes
        fb = W * H * 4
        assert data.size == N * fb
        frames = []
        for i in range(N):
            p = data[i * fb:(i + 1) * fb].view("<u2")
            y = p[:W * H].reshape(H, W)
            cb, cr = p[W * H:W * H * 3 // 2].reshape(H, W // 2), p[W * H * 3 // 2:].reshape(H, -1)
            frames.append((cb, y[:, 0::2], cr, y[:, 1::2]))
        sent_planes = [ycbcr422_10_to_planes(s, W, H) for s in sent]
        starts = [k for k, s in enumerate(sent_planes)
                  if all(np.array_equal(a, b) for a, b in zip(s, frames[0]))]
        assert starts, "FFmpeg's first frame matches no sent frame"
        for j, fr in enumerate(frames):
            assert all(np.array_equal(a, b) for a, b in zip(sent_planes[starts[0] + j], fr)), j
    else:
        fb = f.frame_bytes(W, H)
        assert data.size == N * fb
        _consecutive([data[i * fb:(i + 1) * fb] for i in range(N)], sent)


# -- FFmpeg -> streamlib ------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_ffmpeg_to_streamlib(fmt: str, tmp_path: Path) -> None:
    _need("ffmpeg")
    codec, pix = FF_PIX[fmt]
    ref, sdp = tmp_path / "ref.raw", tmp_path / "ff.sdp"
    src = ["-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=30", "-frames:v", str(N)]
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *src,
                    "-c:v", codec, "-pix_fmt", pix, "-f", "rawvideo", str(ref)],
                   check=True, timeout=60, capture_output=True)
    got, _ = _receive(fmt, ("ff-tx", fmt), [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-re", *src,
        "-c:v", codec, "-pix_fmt", pix, "-f", "rtp", "-pkt_size", "1400", "-sdp_file", str(sdp),
        "rtp://127.0.0.1:PORT"], N)
    want = np.fromfile(ref, np.uint8)
    fb = parse_format(fmt).frame_bytes(W, H)
    for i, g in enumerate(got):
        assert np.array_equal(g, want[i * fb:(i + 1) * fb]), f"frame {i} differs"
    (stream,) = parse_sdp(sdp.read_text())  # FFmpeg's SDP configures a receiver too
    f = parse_format(fmt)
    assert (stream.fmtp["sampling"], stream.fmtp_int("depth"), stream.fmtp_int("width")) == (
        f.sampling, f.depth, W)
