"""The ST 2110-20 per-packet receive kernel: validates RFC 4175 datagrams and writes
their pixel data into frame slots, updating counters in an int64 state vector.

``FrameAssembler`` (``streamlib.net.assembler``) owns the arrays and drives it; the
index constants below are the layout of that state vector and of the per-slot
metadata, shared by both. The kernel runs numba-compiled (``nogil``: the receive
thread does not hold the GIL while it runs); without numba, or with
``STREAMLIB_NO_NUMBA`` set, the same function runs as plain Python (slow, correct).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import Any, Callable

__all__ = ["assemble_kernel"]

# indices into the kernel's int64 state vector
_HAVE_SEQ, _HIGHEST, _BASE, _RECEIVED, _DUP, _MALFORMED, _LATE = 0, 1, 2, 3, 4, 5, 6
_HAVE_EMITTED, _LAST_TS, _BYTES, _PENDING_TS, _WRONG_PT = 7, 8, 9, 10, 11
# SSRC lock: locked?, its SSRC, fixed by the caller?, foreign count, changes, when the
# locked SSRC was last accepted, the batch's arrival time, the relock silence
_SSRC_LOCKED, _SSRC, _SSRC_FIXED, _FOREIGN, _SSRC_CHANGES = 12, 13, 14, 15, 16
_LOCKED_NS, _NOW_NS, _RELOCK_NS = 17, 18, 19
# where extended sequence numbers of a (new) stream start; expected packets of
# streams left behind by an SSRC change
_EXT_BASE, _CARRY_EXPECTED = 20, 21
_NSTATE = 24
# per-slot metadata
_COVERED, _PACKETS, _MARKER = 0, 1, 2


def _assemble(flat: Any, offsets: Any, lengths: Any, start: int, n: int, pt: int, st: Any,
              seen: Any,
              slot_ts: Any, slot_buf: Any, slot_cov: Any, slot_meta: Any, width: int,
              height: int, pg_bytes: int, pg_px: int, max_late: int,
              guard: int) -> int:  # pragma: no cover - compiled by numba (tested both ways)
    """Place packets ``start..n-1``; return the index of the first one whose RTP
    timestamp has no slot (its timestamp in ``st[_PENDING_TS]``), or ``n``."""
    line_bytes = width // pg_px * pg_bytes
    npg_line = width // pg_px
    cap = flat.shape[0]
    n_slots = slot_ts.shape[0]
    i = start
    while i < n:
        o0 = int(offsets[i])
        ln = int(lengths[i])
        i += 1
        if ln < 20 or o0 < 0 or o0 + ln > cap:
            st[_MALFORMED] += 1
            continue
        p = flat[o0:o0 + ln]
        b0 = int(p[0])
        if (b0 >> 6) != 2:
            st[_MALFORMED] += 1
            continue
        off = 12 + 4 * (b0 & 15)
        if b0 & 0x10:
            if off + 4 > ln:
                st[_MALFORMED] += 1
                continue
            off += 4 + 4 * ((int(p[off + 2]) << 8) | int(p[off + 3]))
        end = ln
        if b0 & 0x20:
            pad = int(p[ln - 1])
            if pad == 0 or pad > ln - off:
                st[_MALFORMED] += 1
                continue
            end = ln - pad
        if off + 8 > end:
            st[_MALFORMED] += 1
            continue
        b1 = int(p[1])
        if pt >= 0 and (b1 & 0x7F) != pt:
            st[_MALFORMED] += 1
            st[_WRONG_PT] += 1
            continue
        # Validate every SRD before writing anything.
        h = off + 2
        nsrd = 0
        total = 0
        ok = True
        while True:
            if h + 6 > end or nsrd >= 32:
                ok = False
                break
            length = (int(p[h]) << 8) | int(p[h + 1])
            fl = (int(p[h + 2]) << 8) | int(p[h + 3])
            co = (int(p[h + 4]) << 8) | int(p[h + 5])
            line, offs = fl & 0x7FFF, co & 0x7FFF
            if (fl >> 15) != 0 or line >= height or offs % pg_px != 0 or length == 0 \
                    or length % pg_bytes != 0 or offs // pg_px * pg_bytes + length > line_bytes:
                ok = False
                break
            total += length
            nsrd += 1
            h += 6
            if (co >> 15) == 0:
                break
        if not ok or h + total > end:
            st[_MALFORMED] += 1
            continue
        ssrc = (int(p[8]) << 24) | (int(p[9]) << 16) | (int(p[10]) << 8) | int(p[11])
        if st[_SSRC_LOCKED] == 0:
            st[_SSRC_LOCKED] = 1
            st[_SSRC] = ssrc
        elif ssrc != st[_SSRC]:
            if st[_SSRC_FIXED] != 0 or st[_NOW_NS] - st[_LOCKED_NS] < st[_RELOCK_NS]:
                st[_FOREIGN] += 1
                continue
            # The locked source has gone quiet: a restarted sender. Take the new one and
            # start its sequence numbers above every old one (no false duplicates).
            st[_SSRC] = ssrc
            st[_SSRC_CHANGES] += 1
            if st[_HAVE_SEQ] != 0:
                st[_CARRY_EXPECTED] += st[_HIGHEST] - st[_BASE] + 1
                st[_EXT_BASE] = ((st[_HIGHEST] >> 16) + 2) << 16
            st[_HAVE_SEQ] = 0
            st[_HAVE_EMITTED] = 0
        st[_LOCKED_NS] = st[_NOW_NS]
        seq = (int(p[2]) << 8) | int(p[3])
        ts = (int(p[4]) << 24) | (int(p[5]) << 16) | (int(p[6]) << 8) | int(p[7])
        if st[_HAVE_SEQ] == 0:
            ext = st[_EXT_BASE] + seq
        else:
            ext = st[_HIGHEST] + ((((seq - (st[_HIGHEST] & 0xFFFF)) + 0x8000) & 0xFFFF) - 0x8000)
        if st[_HAVE_SEQ] != 0 and seen[seq] == ext:
            st[_DUP] += 1
            continue
        late = False
        if st[_HAVE_EMITTED] != 0:
            dts = ((ts - st[_LAST_TS] + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            late = -max_late <= dts <= 0
        k = -1
        if not late:
            for j in range(n_slots):
                if slot_ts[j] == ts:
                    k = j
            if k < 0:
                st[_PENDING_TS] = ts
                return i - 1
        # Counted as received from here on (late ones too).
        if st[_HAVE_SEQ] == 0:
            st[_HAVE_SEQ] = 1
            st[_HIGHEST] = ext
            st[_BASE] = ext
        elif ext > st[_HIGHEST]:
            st[_HIGHEST] = ext
        elif ext < st[_BASE]:
            st[_BASE] = ext
        seen[seq] = ext
        st[_RECEIVED] += 1
        st[_BYTES] += ln
        if late:
            st[_LATE] += 1
            continue
        d = h
        h = off + 2
        for _ in range(nsrd):
            length = (int(p[h]) << 8) | int(p[h + 1])
            line = ((int(p[h + 2]) << 8) | int(p[h + 3])) & 0x7FFF
            offs = ((int(p[h + 4]) << 8) | int(p[h + 5])) & 0x7FFF
            dst = guard + line * line_bytes + offs // pg_px * pg_bytes
            slot_buf[k, dst:dst + length] = p[d:d + length]
            g0 = line * npg_line + offs // pg_px
            # pgroups covered for the first time (overlapping SRDs never count twice);
            # branch-free so LLVM vectorises it
            newly = 0
            for g in range(g0, g0 + length // pg_bytes):
                newly += 1 - int(slot_cov[k, g])
                slot_cov[k, g] = 1
            slot_meta[k, _COVERED] += newly
            d += length
            h += 6
        slot_meta[k, _PACKETS] += 1
        if b1 & 0x80:
            slot_meta[k, _MARKER] = 1
    return n


_kernel: list[Callable[..., int]] = []
_kernel_lock = threading.Lock()


def assemble_kernel(compiled: bool = True) -> Callable[..., int]:
    """The numba-compiled kernel (``compiled=False`` or no numba: the plain function)."""
    if not compiled or os.environ.get("STREAMLIB_NO_NUMBA") or \
            importlib.util.find_spec("numba") is None:
        return _assemble
    with _kernel_lock:
        if not _kernel:
            import numba  # noqa: PLC0415 - optional, imported on first use

            _kernel.append(numba.njit(cache=True, nogil=True, boundscheck=False)(_assemble))
        return _kernel[0]
