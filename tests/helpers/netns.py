"""Two network namespaces joined by a veth pair, for tests that need a real link (root).

``netns_skip_reason(tools)`` says why such a test cannot run here (None: it can);
``VethPair`` creates ``a`` and ``b`` with ``10.99.0.1`` / ``10.99.0.2`` (these
addresses exist only inside the namespaces) and removes everything in ``down``, which
is safe to call after a failed ``up``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def netns_skip_reason(tools: Sequence[tuple[str, str]] = (("ip", "iproute2"),)) -> str | None:
    """Why two namespaces cannot be made here, or None. ``tools``: (program, Debian
    package) pairs the test also needs."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns)"
    for tool, pkg in (("ip", "iproute2"), *tools):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian package {pkg})"
    name = f"slprobe{os.getpid()}{secrets.token_hex(2)}"  # root is not enough in some containers
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
    return None


class VethPair:
    """Namespaces ``a`` (``va``, 10.99.0.1) and ``b`` (``vb``, 10.99.0.2) joined by veth.

    ``tag`` (a few letters) goes into the names, so concurrent test modules never clash.
    """

    addr_a = "10.99.0.1"
    addr_b = "10.99.0.2"

    def __init__(self, tag: str) -> None:
        sfx = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.a, self.b = f"sl{tag}A{sfx}", f"sl{tag}B{sfx}"
        self.va, self.vb = f"s{tag[:1]}A{sfx}", f"s{tag[:1]}B{sfx}"  # <= 15 chars
        self._created: list[str] = []

    def ip(self, *args: str) -> None:
        """Run ``ip args``; CalledProcessError (with its stderr) when it fails."""
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)

    def up(self) -> None:
        """Create both namespaces, the veth pair, addresses, links up, and a multicast
        route in ``b``."""
        for ns in (self.a, self.b):
            self.ip("netns", "add", ns)
            self._created.append(ns)
        self.ip("link", "add", self.va, "type", "veth", "peer", "name", self.vb)
        self._created.append("link:" + self.va)
        self.ip("link", "set", self.va, "netns", self.a)
        self.ip("link", "set", self.vb, "netns", self.b)
        self.ip("-n", self.a, "addr", "add", f"{self.addr_a}/24", "dev", self.va)
        self.ip("-n", self.b, "addr", "add", f"{self.addr_b}/24", "dev", self.vb)
        self.ip("-n", self.a, "link", "set", self.va, "up")
        self.ip("-n", self.b, "link", "set", self.vb, "up")
        self.ip("-n", self.b, "route", "add", "224.0.0.0/4", "dev", self.vb)

    def down(self) -> None:
        """Remove what ``up`` created (idempotent)."""
        for item in reversed(self._created):
            # deleting a namespace destroys the veth end inside it (and so the pair)
            args = ["link", "del", item[5:]] if item.startswith("link:") else ["netns", "del", item]
            subprocess.run(["ip", *args], capture_output=True, timeout=10)
        self._created.clear()

    def argv(self, ns: str, *argv: str) -> list[str]:
        """``argv`` run inside namespace ``ns`` (``ip netns exec``)."""
        return ["ip", "netns", "exec", ns, *argv]

    def python_argv(self, ns: str, *argv: str) -> list[str]:
        """This interpreter run inside ``ns`` with ``argv``."""
        return self.argv(ns, sys.executable, *argv)

    @staticmethod
    def env() -> dict[str, str]:
        """Environment for Python children: the repo on PYTHONPATH (tests import as the package `tests`)."""
        return dict(os.environ, PYTHONPATH=str(ROOT))

    def run_python(self, ns: str, *argv: str,
                   timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run this interpreter in ``ns`` from the repo root; output captured."""
        return subprocess.run(self.python_argv(ns, *argv), cwd=ROOT, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)
