"""ST 2110-20 over loopback: 1080p60 4:2:2 10-bit send + receive, packets/s, realtime
factor, loss; pgroup pack/unpack cost; and (``--fuzz``) the receiver fuzz run.

Run from the repository root::

    python -m benchmarks.network [--quick] [--out DIR] [--fuzz [N]]

Cases:

* ``loopback_<speed>x``: a sender (this process: ``VideoStreamSender``, UDP GSO +
  sendmmsg, packets paced over 90% of each frame period) streams F frames of
  1920x1080 ``YCbCr-4:2:2/10`` (3608 packets of <= 1460 bytes per frame) at
  ``speed`` x 60 fps to a receiver in another process (``VideoStreamReceiver``:
  recvmmsg with UDP_GRO, numba reassembly). Reported: packets/s, frames/s and the
  realtime factor (frames/s / 60) over the receiver's first-to-last frame, frames
  received complete, and the receiver's lost/late/malformed counters. Frames are
  packed once before the run: packing is a separate stage (``pack``).
* ``pack``: RGB -> pgroups and back at 1080p (numba path), ms per frame.
* ``fuzz`` (``--fuzz``): N random/mutated packets through the receiver (compiled
  kernel), with guard bytes around the frame slots checked afterwards.
* ``audio_pacing_burst`` / ``audio_pacing_paced``: an ST 2110-30 stream (L24,
  48 kHz stereo, 1 ms packets) from ``AudioGeneratorActor`` (20 ms frames, its own
  SoftwareClock) through ``AudioNetworkSendActor(pacing=False / True)`` to a socket
  on 127.0.0.1 read by a dedicated thread; the gap between consecutive packets is
  taken from kernel receive timestamps (SO_TIMESTAMPNS, so the reading thread's
  scheduling does not count). Reported: gap P50/P99/max in microseconds, the share
  of gaps under 250 us (packets sent back to back) and packets/s.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import struct
import threading
import os
import random
import statistics
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._record import load, percentiles, results_dir, write_record
from streamlib.net.assembler import FrameAssembler
from streamlib.net.jitter import VideoStreamReceiver
from streamlib.net.pgroup import pack_rgb_fast, unpack_to_rgb_fast
from streamlib.net.rfc4175 import VideoPacketizer
from streamlib.net.video_sender import VideoStreamSender
from streamlib.net.udp import open_receiver, open_sender, socket_rcvbuf

FMT, W, H, BASE_FPS = "YCbCr-4:2:2/10", 1920, 1080, 60


def _receiver(port_conn: Connection, frames: int) -> None:
    sock = open_receiver(("127.0.0.1", 0), rcvbuf=64 << 20)
    asm = FrameAssembler(FMT, W, H)
    asm.push(b"\x80" * 20, 0)  # compile/load the kernel before the clock starts
    rx = VideoStreamReceiver(sock, asm)
    port_conn.send((sock.getsockname()[1], socket_rcvbuf(sock)))
    t0 = os.times()
    got, complete, first, last = 0, 0, 0.0, 0.0
    while got < frames:
        f = rx.get(timeout=3.0)
        if f is None:
            break
        now = time.perf_counter()
        first = first or now
        last = now
        got += 1
        complete += f.complete
    stats: dict[str, float] = dict(rx.stats().as_dict())
    rx.close()
    t = os.times()  # from ready to done: the receiving, not the start-up
    stats["cpu_user_s"], stats["cpu_sys_s"] = t.user - t0.user, t.system - t0.system
    stats["malformed"] -= 1  # the warm-up packet
    port_conn.send({"frames": got, "complete": complete, "span_s": last - first, **stats})


def loopback(speed: float, frames: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_receiver, args=(child, frames), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("receiver process did not start")
        port, rcvbuf = parent.recv()
        pk = VideoPacketizer(FMT, W, H)
        tx = VideoStreamSender(open_sender(("127.0.0.1", port)), pk, BASE_FPS * speed)
        src = pack_rgb_fast(np.random.default_rng(0).integers(0, 256, (H, W, 3), np.uint8), FMT)
        t0 = time.perf_counter()
        for i in range(frames):
            buf = tx.acquire(timeout=2.0)
            if buf is None:
                raise RuntimeError("sender stalled")
            buf[:] = src
            tx.submit(buf, i * int(90000 / (BASE_FPS * speed)))
        tx.close(timeout=30)
        send_s = time.perf_counter() - t0
        if not parent.poll(30):
            raise RuntimeError("receiver did not report")
        rx: dict[str, Any] = parent.recv()
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
    span = rx["span_s"] or float("nan")
    fps = (rx["frames"] - 1) / span if rx["frames"] > 1 else 0.0
    return {
        "speed_target": speed, "frames_sent": frames, "packets_per_frame": pk.n_packets,
        "gso": tx.gso, "send_fps": frames / send_s, "send_kpps": tx.packets_sent / send_s / 1e3,
        "late_frames": tx.late_frames, "frames_received": rx["frames"],
        "frames_complete": rx["complete"], "receive_fps": fps,
        "realtime_factor": fps / BASE_FPS, "receive_kpps": fps * pk.n_packets / 1e3,
        "lost": rx["lost"], "late": rx["late"], "duplicate": rx["duplicate"],
        "malformed": rx["malformed"], "rcvbuf_bytes": rcvbuf,
        "receiver_cpu_ms_per_frame": 1e3 * (rx["cpu_user_s"] + rx["cpu_sys_s"]) / max(1, rx["frames"]),
        "receiver_sys_share": rx["cpu_sys_s"] / max(1e-9, rx["cpu_user_s"] + rx["cpu_sys_s"]),
        "zero_loss": rx["lost"] == 0 and rx["complete"] == frames,
    }


def pack_cost(repeats: int) -> dict[str, float]:
    rgb = np.random.default_rng(1).integers(0, 256, (H, W, 3), np.uint8)
    out = pack_rgb_fast(rgb, FMT)
    unpack_to_rgb_fast(out, FMT, W, H)  # compile
    packs, unpacks = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pack_rgb_fast(rgb, FMT, out)
        t1 = time.perf_counter()
        unpack_to_rgb_fast(out, FMT, W, H)
        packs.append((t1 - t0) * 1e3)
        unpacks.append((time.perf_counter() - t1) * 1e3)
    return {"pack_ms_median": statistics.median(packs),
            "unpack_ms_median": statistics.median(unpacks)}


def fuzz(count: int, seed: int = 0) -> dict[str, Any]:
    """``count`` random or mutated packets into a 32x8 receiver; guard bytes checked."""
    rnd = random.Random(seed)
    pk = VideoPacketizer(FMT, 32, 8)
    good: list[bytes] = []
    for i in range(3):
        pk.stamp(3000 * (i + 1))
        good += [bytes(v) for v in pk.build(np.full(pk.frame_bytes, i, np.uint8))]
    asm = FrameAssembler(FMT, 32, 8)
    batch = 256
    flat = np.zeros(batch * 2048, np.uint8)
    offs = np.arange(batch, dtype=np.int64) * 2048
    lens = np.zeros(batch, np.int64)
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        n = min(batch, count - start)
        for j in range(n):
            if rnd.random() < 0.15:
                p = bytearray(rnd.randbytes(rnd.randrange(0, 1500)))
            else:
                p = bytearray(rnd.choice(good))
                for _ in range(rnd.randrange(1, 6)):
                    if p:
                        p[rnd.randrange(len(p))] = rnd.randrange(256)
                if rnd.random() < 0.5 and len(p) > 8:
                    p[2:4] = rnd.randrange(65536).to_bytes(2, "big")
            flat[offs[j]:offs[j] + len(p)] = np.frombuffer(bytes(p), np.uint8)
            lens[j] = len(p)
        asm.push_segments(flat, offs, lens, n, start * 1000)
    asm.flush()
    s = asm.stats
    ok = asm.guards_intact() and \
        s.received + s.malformed + s.duplicate + s.foreign_ssrc == count
    return {"packets": count, "seconds": time.perf_counter() - t0, "guards_intact": ok,
            **{k: v for k, v in s.as_dict().items() if k != "lost"}}


def _timestamped_receiver(sock: socket.socket, stop: threading.Event,
                           stamps: list[int]) -> None:
    """Kernel receive times (CLOCK_REALTIME ns, SO_TIMESTAMPNS) of every datagram."""
    so_timestampns = getattr(socket, "SO_TIMESTAMPNS", 35)
    sock.setsockopt(socket.SOL_SOCKET, so_timestampns, 1)
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            _, anc, _, _ = sock.recvmsg(2048, 64)
        except (TimeoutError, socket.timeout):
            continue
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == so_timestampns:
                sec, nsec = struct.unpack("qq", data[:16])
                stamps.append(sec * 1_000_000_000 + nsec)


def audio_pacing(paced: bool, seconds: float) -> dict[str, Any]:
    """Inter-packet gaps of a 1 ms ST 2110-30 stream sent by the actor, on loopback."""
    from streamlib import Runtime
    from streamlib.actors.audio import AudioGeneratorActor
    from streamlib.actors.network_audio import AudioNetworkSendActor

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stamps: list[int] = []
    stop = threading.Event()
    reader = threading.Thread(target=_timestamped_receiver, args=(sock, stop, stamps),
                              daemon=True)
    reader.start()
    frames = int(seconds * 50)
    with Runtime() as rt:
        from streamlib.clocks import SoftwareClock

        tone = AudioGeneratorActor(48000, 2, 1000.0, clock=SoftwareClock(50))
        send = AudioNetworkSendActor(f"127.0.0.1:{sock.getsockname()[1]}", "L24", 48000, 2,
                                     ptime_ms=1.0, pacing=paced)
        tone >> send
        rt.start()
        deadline = time.monotonic() + seconds + 10
        while send.frames_in < frames and time.monotonic() < deadline:
            stop.wait(0.05)
    # teardown has flushed the sender; let the last datagrams land
    expected = send.stats["packets_sent"]
    deadline = time.monotonic() + 5
    while len(stamps) < expected and time.monotonic() < deadline:
        stop.wait(0.01)
    stop.set()
    reader.join(2)
    sock.close()
    gaps_us = [(b - a) / 1e3 for a, b in zip(stamps, stamps[1:])]
    p = percentiles(gaps_us)
    span = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else float("nan")
    return {"paced": paced, "packets": len(stamps), "packets_sent": expected,
            "gap_us_p50": p["median"], "gap_us_p99": p["p99"], "gap_us_max": p["max"],
            "gap_us_min": p["min"],
            "share_gaps_under_250us": sum(g < 250 for g in gaps_us) / max(1, len(gaps_us)),
            "packets_per_s": (len(stamps) - 1) / span}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.network", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2x only, fewer frames")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--fuzz", type=int, nargs="?", const=100_000, default=None,
                        metavar="N", help="also fuzz the receiver with N packets (100000)")
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=None,
                        help="ignored (no plots for this benchmark)")
    args = parser.parse_args(argv)
    load_at_start = load()
    speeds, frames = ((2.0,), 240) if args.quick else ((1.0, 2.0, 3.0), 600)
    figures: dict[str, Any] = {}
    for speed in speeds:
        r = figures[f"loopback_{speed:g}x"] = loopback(speed, frames)
        print(f"  {speed:g}x: {r['receive_kpps']:.0f} kpps, {r['receive_fps']:.1f} fps "
              f"({r['realtime_factor']:.2f}x realtime), {r['frames_complete']}/{frames} "
              f"complete, lost {r['lost']}, gso {r['gso']}", flush=True)
    figures["pack"] = pack_cost(5 if args.quick else 20)
    print(f"  pack {figures['pack']['pack_ms_median']:.1f} ms, unpack "
          f"{figures['pack']['unpack_ms_median']:.1f} ms per 1080p frame", flush=True)
    for paced in (False, True):
        name = f"audio_pacing_{'paced' if paced else 'burst'}"
        r = figures[name] = audio_pacing(paced, 3.0 if args.quick else 10.0)
        print(f"  {name}: gap P50 {r['gap_us_p50']:.0f} us, P99 {r['gap_us_p99']:.0f} us, "
              f"max {r['gap_us_max']:.0f} us, {100 * r['share_gaps_under_250us']:.0f}% "
              f"under 250 us, {r['packets_per_s']:.0f} packets/s", flush=True)
    if args.fuzz:
        figures["fuzz"] = fuzz(args.fuzz)
        print(f"  fuzz: {figures['fuzz']}", flush=True)
    params = {"format": FMT, "width": W, "height": H, "base_fps": BASE_FPS, "frames": frames,
              "speeds": list(speeds), "quick": args.quick, "fuzz": args.fuzz,
              "audio": {"encoding": "L24", "sample_rate": 48000, "channels": 2,
                        "ptime_ms": 1.0, "frame_ms": 20, "seconds": 3.0 if args.quick else 10.0}}
    path = write_record("network", params, figures, results_dir(args.out, args.quick),
                        load_at_start=load_at_start)
    print(f"  wrote {path}", flush=True)
    return figures


if __name__ == "__main__":
    main()
