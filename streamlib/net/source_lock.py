"""Which sender a receiver listens to: ``SourceLock``, by source IP address.

Rule (ST 2110 receivers, one sender per stream):

* Fixed sources (an SDP's ``a=source-filter: incl`` list or its sender ``o=``
  address, see ``streamlib.net.sdp.stream_sources``, or ``sources=`` given to the
  receiver): only datagrams from those addresses are accepted, ever; the rest are
  dropped and counted in ``foreign_source``.
* Otherwise (``follow=True``) the lock is the first sender address seen; datagrams
  from another address are dropped (``foreign_source``) while the locked one is
  alive, and take the lock only once it has sent nothing for ``idle_ns`` (a sender
  restarted elsewhere). Each such change is logged (a warning naming both
  addresses) and counted in ``source_changes``.

Two senders on one host share an address: telling them apart is the SSRC lock's
work (``streamlib.net.assembler``, ``streamlib.net.audio_depacketizer``).
``filter_keys`` applies the rule to a batch of raw address keys
(``BatchReceiver.source_keys``) with one vectorised comparison in the common case
(every datagram from the locked sender).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from streamlib.net.mmsg import address_key, key_address
from streamlib.errors import ConfigError

__all__ = ["SourceLock"]

logger = logging.getLogger("streamlib.net.source")


class SourceLock:
    """The source-address rule of one receiver (see the module docstring). Not
    thread-safe: one receive thread owns it.

    Args:
        sources: the only sender addresses accepted (empty: lock to the first seen).
        follow: without ``sources``, lock to the first sender (False: accept any).
        idle_ns: silence of the locked sender after which another may take over.
        name: the receiver, for the log line.
        family: the socket's address family (for ``filter_keys``).

    Raises ConfigError naming the address for a source that is not an IP literal.
    """

    def __init__(self, sources: Iterable[str] = (), *, follow: bool = True,
                 idle_ns: int = 100_000_000, name: str = "receiver",
                 family: int = socket.AF_INET) -> None:
        fixed: list[str] = []
        for s in sources:
            try:
                ip = ipaddress.ip_address(s)
            except ValueError:
                raise ConfigError(f"{name}: sources: {s!r} is not an IP address literal") \
                    from None
            fixed.append(str(ip))
        self.fixed = tuple(dict.fromkeys(fixed))
        self.follow, self.idle_ns, self.name, self.family = follow, idle_ns, name, family
        self.source: str | None = self.fixed[0] if len(self.fixed) == 1 else None
        self.foreign_source = 0
        self.source_changes = 0
        self._last_ns = 0
        self._fixed_keys = {self._key(a) for a in self.fixed
                            if ipaddress.ip_address(a).version == (6 if family == socket.AF_INET6
                                                                  else 4)}
        self._key_of_source: bytes | None = None

    def _key(self, address: str) -> bytes:
        return address_key(self.family, address)

    @property
    def active(self) -> bool:
        """False when the lock accepts everything (nothing to filter)."""
        return bool(self.fixed) or self.follow

    def accept(self, address: str | None, now_ns: int) -> bool:
        """Whether a datagram from ``address`` (None: unknown, accepted) arriving at
        ``now_ns`` is accepted; counts it when not, and moves the lock when the rule says."""
        if address is None:
            return True
        if self.fixed:
            if address in self.fixed:
                self.source = address
                return True
            self.foreign_source += 1
            return False
        if not self.follow:
            return True
        if self.source is None or address == self.source:
            self.source, self._last_ns = address, now_ns
            return True
        if now_ns - self._last_ns >= self.idle_ns:
            logger.warning("%s: source changed from %s to %s (%s silent for %.0f ms)",
                           self.name, self.source, address, self.source,
                           (now_ns - self._last_ns) / 1e6)
            self.source_changes += 1
            self.source, self._last_ns = address, now_ns
            return True
        self.foreign_source += 1
        return False

    def all_locked(self, raw: npt.NDArray[np.uint8], now_ns: int) -> bool:
        """True when every address in ``raw`` (one row of address bytes per message,
        ``BatchReceiver.source_bytes``) is accepted without a question: one of the fixed
        sources, or the locked sender. The common case, checked per message before the
        per-datagram ``filter_keys``; notes the locked sender alive at ``now_ns``."""
        if not self.active:
            return True
        if self.fixed:
            keys = self._fixed_keys
        elif self.source is not None:
            if self._key_of_source is None:
                self._key_of_source = self._key(self.source)
            keys = {self._key_of_source}
        else:
            return False  # nothing locked yet: the first datagram decides
        if len(keys) == 1:  # the usual single sender: one comparison
            key = next(iter(keys))
            if len(key) != raw.shape[1] or not bool((raw == np.frombuffer(key, np.uint8)).all()):
                return False
        else:
            ok = np.zeros(raw.shape[0], np.bool_)
            for key in keys:
                if len(key) == raw.shape[1]:
                    ok |= (raw == np.frombuffer(key, np.uint8)).all(axis=1)
            if not ok.all():
                return False
        self._last_ns = now_ns
        return True

    def filter_keys(self, keys: npt.NDArray[np.void],
                    now_ns: int) -> npt.NDArray[np.bool_] | None:
        """Apply the rule to datagrams from ``keys`` (raw addresses, arrival order);
        the mask of those accepted, or None when all are."""
        if not self.active or keys.size == 0:
            return None
        if self.fixed:
            mask = np.zeros(keys.size, np.bool_)
            for key in self._fixed_keys:  # a few addresses; vectorised over the datagrams
                mask |= np.asarray(keys == np.void(key), np.bool_)
            if mask.all():
                return None
            self.foreign_source += int(keys.size - np.count_nonzero(mask))
            return mask
        if self.source is not None:
            if self._key_of_source is None:
                self._key_of_source = self._key(self.source)
            if bool((keys == np.void(self._key_of_source)).all()):
                self._last_ns = now_ns
                return None
        # a foreign sender (or the first packet): datagram by datagram
        names: dict[bytes, str] = {}
        out = np.empty(keys.size, np.bool_)
        for i, k in enumerate(keys):
            raw = bytes(k)
            addr = names.get(raw)
            if addr is None:
                addr = names[raw] = key_address(self.family, raw)
            before = self.source
            out[i] = self.accept(addr, now_ns)
            if self.source != before:
                self._key_of_source = raw
        return None if out.all() else out
