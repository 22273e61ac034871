"""Run a PTPSlave (inside a test's network namespace) and print one JSON line of results.

usage: _ptp_helper.py INTERFACE_ADDR [--lock-timeout S] [--measure S] [--ticks N --fps F]
Exit 2 (with the stats printed) when the slave does not lock before the deadline.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from streamlib.clocks import PTPClock
from streamlib.net.ptp import PTPSlave


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("interface")
    ap.add_argument("--lock-timeout", type=float, default=10.0)
    ap.add_argument("--measure", type=float, default=0.0)
    ap.add_argument("--ticks", type=int, default=0)
    ap.add_argument("--fps", type=int, default=25)
    args = ap.parse_args()
    samples: list[tuple[int, int]] = []
    lock = threading.Lock()

    def on_sample(offset: int, delay: int) -> None:
        with lock:
            samples.append((offset, delay))

    out: dict[str, object] = {}
    with PTPSlave(args.interface, allow_remote=True, on_sample=on_sample) as slave:
        t0 = time.monotonic()
        deadline = t0 + args.lock_timeout
        locked = threading.Event()
        while not slave.synchronized:  # poll the state against a deadline
            if time.monotonic() > deadline or locked.wait(0.01):
                break
        out["lock_s"] = time.monotonic() - t0
        if not slave.synchronized:
            print(json.dumps({"locked": False, "stats": slave.stats()}))
            return 2
        with lock:
            n0 = len(samples)
        if args.measure > 0:
            # wait on the slave's own sample stream, bounded by a deadline
            end = time.monotonic() + args.measure
            while time.monotonic() < end and slave.synchronized:
                locked.wait(0.05)
        if args.ticks:
            ticks = []
            with PTPClock(args.fps, time_source=slave) as clock:
                for _ in range(args.ticks):
                    tick = clock.wait_tick()
                    ticks.append((tick.timestamp_ns, tick.frame_number, slave.now_ns()))
            out["ticks"] = ticks
        with lock:
            out["samples"] = samples[n0:]
        out.update(locked=True, stats=slave.stats(), synchronized_at_end=slave.synchronized)
    out["stats_after_close"] = slave.stats()["state"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
