"""Lock to a PTP (ST 2059-2) master and print offset and path delay.

usage: python examples/ptp_slave.py IFACE_ADDR [--allow-remote] [--samples N] [--timeout S]
A non-loopback address sends Delay_Req onto that interface's link: pass --allow-remote.
"""

import argparse
import time

from streamlib.net.ptp import PTPSlave

ap = argparse.ArgumentParser()
ap.add_argument("interface", nargs="?", default="127.0.0.1")
ap.add_argument("--allow-remote", action="store_true")
ap.add_argument("--samples", type=int, default=5)
ap.add_argument("--timeout", type=float, default=15.0)
args = ap.parse_args()

deadline = time.monotonic() + args.timeout
with PTPSlave(args.interface, allow_remote=args.allow_remote) as slave:
    while not slave.synchronized:
        if time.monotonic() > deadline:
            raise SystemExit(f"not synchronized after {args.timeout} s: {slave.stats()}")
        time.sleep(0.05)
    print(f"locked to {slave.stats()['master']}")
    for _ in range(args.samples):
        time.sleep(0.5)
        st = slave.stats()
        print(f"offset {st['offset_median_ns']:>7} ns  delay {st['delay_median_ns']:>6} ns  "
              f"PTP time {slave.now_ns() / 1e9:.6f} s")
