"""The PTP slave's foreign master table: bounded, with IEEE 1588 qualification, O(1) per Announce.

IEEE 1588-2008 9.3.2.5: a foreign master record is *qualified* (a BMCA candidate)
once ``FOREIGN_MASTER_THRESHOLD`` (2) Announce messages from it arrived within
``FOREIGN_MASTER_TIME_WINDOW`` (4) of its announce intervals; a master heard once
(a stray or spoofed message) is never selected. A record expires after
``receipt_timeout`` announce intervals of silence (announceReceiptTimeout).

The table holds at most ``max_records``. A full table makes room by dropping the
least recently heard record that has never qualified; only when every record has
qualified does it drop the least recently heard one other than the selected
master. A flood of one-off identities therefore churns only among themselves and
never displaces the master or the qualified standbys.

Cost: ``update`` (one Announce) is O(1) amortised: the best record is kept, and a
new one is only compared with it; the table is rescanned (O(max_records)) only
when the best record itself got worse or went away. ``expire`` is a scan the
slave's thread runs between reads, not per message.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from streamlib.net.ptp_codec import Announce, PortIdentity
from streamlib.errors import ConfigError

__all__ = ["FOREIGN_MASTER_THRESHOLD", "FOREIGN_MASTER_TIME_WINDOW", "ForeignMasterTable",
           "ForeignRecord", "bmca_key", "announce_interval_s"]

FOREIGN_MASTER_THRESHOLD = 2    # Announces needed within the window to qualify
FOREIGN_MASTER_TIME_WINDOW = 4  # the window, in the record's announce intervals


def announce_interval_s(log_interval: int, default: float = 1.0) -> float:
    """``2**logMessageInterval`` seconds; ``default`` when out of 1588's range (0x7F:
    not given)."""
    return default if not -7 <= log_interval <= 6 else 2.0 ** log_interval


def bmca_key(a: Announce) -> tuple[int, int, int, int, int, bytes, int, bytes, int]:
    """The data set comparison as a sort key (lower is better): priority1, clockClass,
    clockAccuracy, offsetScaledLogVariance, priority2, grandmasterIdentity,
    stepsRemoved, then the sender's port identity as the tie-break."""
    sp = a.header.source_port_identity
    return (a.grandmaster_priority1, a.grandmaster_clock_class, a.grandmaster_clock_accuracy,
            a.grandmaster_offset_scaled_log_variance, a.grandmaster_priority2,
            a.grandmaster_identity, a.steps_removed, sp.clock_identity, sp.port_number)


@dataclass(slots=True)
class ForeignRecord:
    """One foreign master: its latest Announce and the receipt times of the last two."""

    announce: Announce
    key: tuple[int, int, int, int, int, bytes, int, bytes, int]
    interval_s: float
    last: float                 # receipt time (monotonic s) of the latest Announce
    previous: float | None = None

    def qualified(self, now: float) -> bool:
        """Two Announces (the threshold) within the last 4 announce intervals."""
        return self.previous is not None and \
            now - self.previous <= FOREIGN_MASTER_TIME_WINDOW * self.interval_s

    def expired(self, now: float, receipt_timeout: int) -> bool:
        return now - self.last > receipt_timeout * self.interval_s


class ForeignMasterTable:
    """Foreign master records, bounded (see the module docstring). Not thread-safe:
    the slave calls it under its lock.

    Raises ConfigError for ``max_records`` < 1 or ``receipt_timeout`` < 2.
    """

    def __init__(self, max_records: int = 16, receipt_timeout: int = 3) -> None:
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ConfigError(f"ForeignMasterTable: max_records must be an int >= 1, "
                              f"got {max_records!r}")
        if receipt_timeout < 2:
            raise ConfigError(f"ForeignMasterTable: receipt_timeout must be >= 2, "
                              f"got {receipt_timeout!r}")
        self.max_records, self.receipt_timeout = max_records, receipt_timeout
        # least recently heard first; a record moves to _qualified when it first qualifies
        self._unqualified: OrderedDict[PortIdentity, ForeignRecord] = OrderedDict()
        self._qualified: OrderedDict[PortIdentity, ForeignRecord] = OrderedDict()
        self.best: ForeignRecord | None = None
        self.evicted = 0
        self.rescans = 0  # full rescans for the best record (tests check they stay rare)

    def __len__(self) -> int:
        return len(self._unqualified) + len(self._qualified)

    def __contains__(self, pid: object) -> bool:
        return pid in self._qualified or pid in self._unqualified

    def update(self, a: Announce, now: float) -> bool:
        """Record Announce ``a`` received at ``now``; True if the best master changed."""
        pid = a.header.source_port_identity
        rec = self._qualified.get(pid)
        if rec is not None:
            self._qualified.move_to_end(pid)
        else:
            rec = self._unqualified.get(pid)
            if rec is None:
                if len(self) >= self.max_records and not self._evict():
                    return False  # the table is the master alone (max_records=1)
                rec = ForeignRecord(a, bmca_key(a), announce_interval_s(
                    a.header.log_message_interval), now)
                self._unqualified[pid] = rec
                return False  # one Announce never qualifies
            self._unqualified.move_to_end(pid)
        old_key = rec.key
        rec.announce, rec.key = a, bmca_key(a)
        rec.interval_s = announce_interval_s(a.header.log_message_interval)
        rec.previous, rec.last = rec.last, now
        qualified = rec.qualified(now)
        if qualified and pid in self._unqualified:
            del self._unqualified[pid]
            self._qualified[pid] = rec
        if rec is self.best:
            if rec.key <= old_key and qualified:
                return False  # still the best: nothing else can have overtaken it
            return self._rescan(now)
        if qualified and (self.best is None or rec.key < self.best.key):
            self.best = rec
            return True
        return False

    def expire(self, now: float) -> bool:
        """Drop records silent for ``receipt_timeout`` intervals; True if the best changed."""
        for table in (self._unqualified, self._qualified):
            for pid in [p for p, r in table.items() if r.expired(now, self.receipt_timeout)]:
                del table[pid]
        best = self.best
        if best is not None and (
                self._qualified.get(best.announce.header.source_port_identity) is not best
                or not best.qualified(now)):
            return self._rescan(now)
        return False

    def _rescan(self, now: float) -> bool:
        self.rescans += 1
        old = self.best
        self.best = min((r for r in self._qualified.values() if r.qualified(now)),
                        key=lambda r: r.key, default=None)
        return self.best is not old

    def _evict(self) -> bool:
        if self._unqualified:
            self._unqualified.popitem(last=False)
        else:
            for pid, rec in self._qualified.items():  # the oldest; the master is skipped
                if rec is not self.best:
                    del self._qualified[pid]
                    break
            else:
                return False
        self.evicted += 1
        return True
