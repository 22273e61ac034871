"""Batched UDP I/O: Linux ``sendmmsg``/``recvmmsg`` through ctypes, UDP GSO and GRO.

Batching matters: one Python ``sendto`` per packet tops out near 400-600 kpps, and
1080p60 ST 2110-20 needs ~260 kpps per realtime stream. ``BatchSender`` and
``BatchReceiver`` call Linux ``sendmmsg``/``recvmmsg`` through ctypes (the call
releases the GIL) on preallocated ``mmsghdr``/``iovec`` arrays (``MessageVector``);
elsewhere (or with ``STREAMLIB_NO_MMSG`` set) they fall back to a ``send``/``recv_into``
loop with the same results. ``enable_gso`` (UDP_SEGMENT) lets one send leave as many
datagrams; ``BatchReceiver(gro=True)`` (UDP_GRO) takes such runs unsplit
(``STREAMLIB_NO_GSO`` turns both off).

Waiting uses ``poll`` (``wait_fd``), never ``select()``, whose FD_SETSIZE limit
fails any descriptor of 1024 or more ("filedescriptor out of range") in a process
with many files open.

Opening the sockets (loopback guard, multicast, buffer sizes) is ``streamlib.net.udp``,
which re-exports every public name here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import socket
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from streamlib.errors import ConfigError

__all__ = ["BatchSender", "BatchReceiver", "MessageVector", "recv_batch", "HAVE_MMSG",
           "enable_gso", "gso_segments", "MAX_DATAGRAM", "wait_fd", "address_key", "key_address"]

MAX_DATAGRAM = 2048  # receive slot size: ST 2110 datagrams are <= 1460 bytes, jumbo-free
_MSG_DONTWAIT = 0x40
_MSG_WAITFORONE = 0x10000


def wait_fd(fd: int, timeout: float | None, *, write: bool = False) -> bool:
    """Wait up to ``timeout`` seconds (None: forever) until ``fd`` is readable (or
    writable, ``write=True``), or has an error or hang-up to report (the next call on
    it then raises). True if so, False on timeout. ``poll``: any descriptor number
    works, unlike ``select()``. Raises ConfigError for a negative (closed) ``fd``."""
    if fd < 0:
        raise ConfigError(f"wait_fd: the socket is closed (fd {fd})")
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN | select.POLLPRI)
    # poll takes milliseconds and rounds a fraction up, so a short wait never spins
    return bool(poller.poll(None if timeout is None else max(0.0, timeout) * 1000.0))


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _load_mmsg() -> tuple[Any, Any]:
    if not sys.platform.startswith("linux") or os.environ.get("STREAMLIB_NO_MMSG"):
        return None, None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        send, recv = libc.sendmmsg, libc.recvmmsg
    except (OSError, AttributeError):
        return None, None
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    return send, recv


_sendmmsg, _recvmmsg = _load_mmsg()
HAVE_MMSG = _sendmmsg is not None  # False: the send/recv_into loops below are used instead


_UDP_GRO = 104      # Linux >= 5.0: receive GSO runs unsplit, with their segment size
_CTRL = 32          # control buffer per message: CMSG_SPACE(sizeof(int)) = 24, rounded up
_NAME = 32          # sender address buffer per message: sockaddr_in6 is 28 bytes
_UDP_SEGMENT = 103  # Linux >= 4.18: UDP GSO, one send becomes many datagrams of this size


def enable_gso(sock: socket.socket, segment_size: int) -> bool:
    """Turn on UDP GSO for ``sock``: from now on a send of k * ``segment_size`` bytes
    leaves as k datagrams (the last may be shorter). Returns False (and changes
    nothing) where the OS does not support it; 0 turns it off."""
    if not sys.platform.startswith("linux") or os.environ.get("STREAMLIB_NO_GSO"):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_UDP, _UDP_SEGMENT, segment_size)
    except OSError:
        return False
    return True


def gso_segments(segment_size: int) -> int:
    """Most datagrams one GSO send may carry (64 segments, 65507 payload bytes)."""
    return max(1, min(64, 65507 // segment_size))



class MessageVector:
    """Preallocated ``mmsghdr[capacity]`` with ``parts`` iovecs each, for sendmmsg and
    recvmmsg. ``iov`` is a numpy structured view (``base``, ``len``: uint64) of shape
    (capacity, parts) that callers fill vectorised; ``msg_len`` reads the per-message
    byte counts recvmmsg wrote. Callers keep the pointed-to buffers alive.
    ConfigError for a capacity or parts below 1."""

    def __init__(self, capacity: int, parts: int = 1) -> None:
        if capacity < 1 or parts < 1:
            raise ConfigError(f"MessageVector: capacity and parts must be >= 1, "
                              f"got {capacity}, {parts}")
        self.capacity, self.parts = capacity, parts
        self.keep: Any = None  # owners of the memory the iovecs point into, held alive
        self._iov = (_IOVec * (capacity * parts))()
        self._msgs = (_MMsgHdr * capacity)()
        iov_dt = np.dtype([("base", np.uint64), ("len", np.uint64)])
        self.iov = np.frombuffer(memoryview(self._iov).cast("B"),
                                 dtype=iov_dt).reshape(capacity, parts)
        hdr = np.frombuffer(memoryview(self._msgs).cast("B"),
                            dtype=np.uint8).reshape(capacity, ctypes.sizeof(_MMsgHdr))
        self._hdr = hdr
        base = ctypes.addressof(self._iov)
        step = ctypes.sizeof(_IOVec) * parts
        iov_ptr = np.arange(capacity, dtype=np.uint64) * np.uint64(step) + np.uint64(base)
        off_iov, off_iovlen = _MsgHdr.msg_iov.offset, _MsgHdr.msg_iovlen.offset
        hdr[:, off_iov:off_iov + 8] = iov_ptr.view(np.uint8).reshape(capacity, 8)
        hdr[:, off_iovlen:off_iovlen + 8] = (
            np.full(capacity, parts, np.uint64).view(np.uint8).reshape(capacity, 8))
        off_len = _MMsgHdr.msg_len.offset
        self.msg_len: npt.NDArray[np.uint32] = hdr[:, off_len:off_len + 4].view(np.uint32)[:, 0]

    def set_iovlen(self, counts: npt.NDArray[np.integer[Any]] | int) -> None:
        """How many of the ``parts`` iovecs each message uses (default: all)."""
        off = _MsgHdr.msg_iovlen.offset
        arr = np.broadcast_to(np.asarray(counts, dtype=np.uint64), (self.capacity,))
        self._hdr[:, off:off + 8] = np.ascontiguousarray(arr).view(np.uint8).reshape(-1, 8)

    def address(self, index: int = 0) -> int:
        """Address of message ``index`` (for the ctypes calls)."""
        return ctypes.addressof(self._msgs) + index * ctypes.sizeof(_MMsgHdr)


def _addr(buf: Any) -> tuple[int, int, Any]:
    arr = np.frombuffer(buf, dtype=np.uint8)
    return int(arr.ctypes.data), arr.nbytes, arr


class BatchSender:
    """Send many datagrams per syscall on a connected UDP socket (``open_sender``).

    ``send(packets)`` takes any buffers; ``send_vector`` sends messages prebuilt in a
    ``MessageVector`` (the zero-copy path the video sender uses). Without sendmmsg
    both fall back to one ``sock.send`` per packet. OSError (other than EINTR) is raised.
    """

    def __init__(self, sock: socket.socket, *, max_batch: int = 256) -> None:
        self.sock = sock
        self.max_batch = max_batch
        self._vec = MessageVector(max_batch, 1)
        self.packets_sent = 0
        self.syscalls = 0
        self.refused = 0  # sends that reported "connection refused": nobody listening yet

    def _send_one(self, data: Any) -> None:
        try:
            self.sock.send(data)
        except ConnectionRefusedError:
            self.refused += 1

    def send(self, packets: Sequence[memoryview | bytes | bytearray]) -> int:
        """Send ``packets`` in order; returns how many were sent (all, or an OSError)."""
        if _sendmmsg is None:
            for p in packets:
                self._send_one(p)
            self.packets_sent += len(packets)
            self.syscalls += len(packets)
            return len(packets)
        sent = 0
        for first in range(0, len(packets), self.max_batch):
            chunk = packets[first:first + self.max_batch]
            keep = [_addr(p) for p in chunk]  # holds the numpy views alive over the call
            n = len(keep)
            self._vec.iov["base"][:n, 0] = [k[0] for k in keep]
            self._vec.iov["len"][:n, 0] = [k[1] for k in keep]
            sent += self._sendmmsg(self._vec, 0, n)
            del keep
        return sent

    def send_vector(self, vec: MessageVector, first: int, count: int) -> int:
        """Send messages ``first .. first+count-1`` of a prepared ``vec``."""
        if _sendmmsg is None:
            for i in range(first, first + count):
                n_parts = int(vec._hdr[i, _MsgHdr.msg_iovlen.offset])
                data = b"".join(ctypes.string_at(int(vec.iov["base"][i, j]),
                                                 int(vec.iov["len"][i, j]))
                                for j in range(n_parts))
                self._send_one(data)
            self.packets_sent += count
            self.syscalls += count
            return count
        return self._sendmmsg(vec, first, count)

    def _sendmmsg(self, vec: MessageVector, first: int, count: int) -> int:
        fd = self.sock.fileno()
        done = 0
        while done < count:
            n = _sendmmsg(fd, vec.address(first + done), min(count - done, 1024), 0)
            self.syscalls += 1
            if n < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    continue
                if err == errno.ECONNREFUSED:
                    # An earlier datagram met a closed port (ICMP); the kernel reports it
                    # once, on this call, which sent nothing: note it and go on.
                    self.refused += 1
                    continue
                if err in (errno.EAGAIN, errno.ENOBUFS):
                    # Send buffer full: wait until writable rather than spin.
                    wait_fd(fd, 0.05, write=True)
                    continue
                raise OSError(err, f"sendmmsg failed: {os.strerror(err)}")
            done += n
        self.packets_sent += done
        return done


class BatchReceiver:
    """Receive up to ``batch`` datagrams per syscall into a preallocated
    ``(batch, slot)`` uint8 array (``self.buffers``); ``recv`` returns how many
    arrived and ``self.lengths[:n]`` their sizes. Datagrams longer than ``slot`` are
    truncated (and flagged by a length of ``slot``: callers treat them as malformed).

    ``gro=True`` (Linux): the socket gets UDP_GRO, so a run of equal-sized datagrams
    (a UDP GSO send, on loopback) arrives as one message that ``recv`` does not split;
    use ``recv_segments``, which always yields single datagrams as offsets into
    ``flat`` (``seg_offsets``/``seg_lengths``), GRO or not. ``self.gro`` says whether
    the OS accepted it.

    ``sources=True`` also records each message's sender address: ``source_keys(n)``
    gives them as fixed-size byte keys (the raw IPv4/IPv6 address, ``address_key``
    makes one from a string, ``key_address`` turns one back), and ``seg_msg`` maps
    ``recv_segments``' datagrams to their messages.
    """

    def __init__(self, sock: socket.socket, *, batch: int = 256, slot: int = MAX_DATAGRAM,
                 gro: bool = False, sources: bool = False) -> None:
        self.sock = sock
        self.gro = False
        self.family = sock.family
        # the address bytes inside a sockaddr_in (4..8) or sockaddr_in6 (8..24)
        self._key = (8, 24) if sock.family == socket.AF_INET6 else (4, 8)
        if gro and _recvmmsg is not None and not os.environ.get("STREAMLIB_NO_GSO"):
            try:
                sock.setsockopt(socket.IPPROTO_UDP, _UDP_GRO, 1)
                self.gro, slot = True, 65536
            except OSError:
                pass
        self.batch, self.slot = batch, slot
        self.buffers: npt.NDArray[np.uint8] = np.zeros((batch, slot), np.uint8)
        self.flat = self.buffers.reshape(-1)
        self.lengths: npt.NDArray[np.int64] = np.zeros(batch, np.int64)
        self._vec = MessageVector(batch, 1)
        base = np.uint64(self.buffers.ctypes.data)
        self._vec.iov["base"][:, 0] = base + np.arange(batch, dtype=np.uint64) * np.uint64(slot)
        self._vec.iov["len"][:, 0] = slot
        self._views = [memoryview(self.buffers[i]) for i in range(batch)]
        self._row_offsets = np.arange(batch, dtype=np.int64) * slot
        self.seg_offsets: npt.NDArray[np.int64] = self._row_offsets.copy()
        self.seg_lengths: npt.NDArray[np.int64] = self.lengths
        self.seg_msg: npt.NDArray[np.int64] = np.arange(batch, dtype=np.int64)
        self._all_msgs = self.seg_msg
        self.names: npt.NDArray[np.uint8] | None = None
        if sources:
            self.names = np.zeros((batch, _NAME), np.uint8)
            hdr = self._vec._hdr
            on, onl = _MsgHdr.msg_name.offset, _MsgHdr.msg_namelen.offset
            ptrs = np.uint64(self.names.ctypes.data) + np.arange(batch, dtype=np.uint64) * \
                np.uint64(_NAME)
            hdr[:, on:on + 8] = ptrs.view(np.uint8).reshape(batch, 8)
            self._name_len = hdr[:, onl:onl + 4].view(np.uint32)[:, 0]
            self._name_len[:] = _NAME
        if self.gro:
            self._ctrl = np.zeros((batch, _CTRL), np.uint8)
            hdr = self._vec._hdr
            oc, ol = _MsgHdr.msg_control.offset, _MsgHdr.msg_controllen.offset
            ptrs = np.uint64(self._ctrl.ctypes.data) + np.arange(batch, dtype=np.uint64) * \
                np.uint64(_CTRL)
            hdr[:, oc:oc + 8] = ptrs.view(np.uint8).reshape(batch, 8)
            self._ctrl_len = hdr[:, ol:ol + 8].view(np.uint64)[:, 0]
            self._ctrl_len[:] = _CTRL
        self.syscalls = 0

    def recv(self, timeout: float | None = 0.1) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for data, then take every
        datagram already queued, up to ``batch``. Returns 0 on timeout. With GRO a
        message may hold several datagrams: see ``recv_segments``."""
        fd = self.sock.fileno()
        if _recvmmsg is None:
            return self._recv_loop(timeout)
        while True:
            if not wait_fd(fd, timeout):
                return 0
            if self.names is not None:
                self._name_len[:] = _NAME  # the kernel wrote back each address's length
            n = _recvmmsg(fd, self._vec.address(0), self.batch, _MSG_DONTWAIT, None)
            self.syscalls += 1
            if n < 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EINTR):
                    continue
                raise OSError(err, f"recvmmsg failed: {os.strerror(err)}")
            self.lengths[:n] = self._vec.msg_len[:n]
            return int(n)

    def recv_segments(self, timeout: float | None = 0.1) -> int:
        """Like ``recv`` but returns the number of single datagrams, datagram ``i``
        being ``flat[seg_offsets[i] : seg_offsets[i] + seg_lengths[i]]``."""
        n = self.recv(timeout)
        if not self.gro or n == 0:
            self.seg_offsets, self.seg_lengths = self._row_offsets, self.lengths
            self.seg_msg = self._all_msgs
            return n
        # UDP_GRO control message: cmsghdr (len 8, level 4, type 4) then int gso_size.
        ctrl = self._ctrl[:n]
        has = (self._ctrl_len[:n] >= 20) & (ctrl[:, 8:12].view(np.int32)[:, 0] == 17) & (
            ctrl[:, 12:16].view(np.int32)[:, 0] == _UDP_GRO)
        lengths = self.lengths[:n]
        seg = np.where(has, ctrl[:, 16:20].view(np.int32)[:, 0], lengths).astype(np.int64)
        seg = np.maximum(seg, 1)
        self._ctrl_len[:n] = _CTRL
        counts = np.maximum(-(-lengths // seg), 1)
        total = int(counts.sum())
        first = np.repeat(np.cumsum(counts) - counts, counts)
        j = np.arange(total, dtype=np.int64) - first
        msg = np.repeat(np.arange(n, dtype=np.int64), counts)
        self.seg_msg = msg
        self.seg_offsets = self._row_offsets[msg] + j * seg[msg]
        self.seg_lengths = np.minimum(seg[msg], lengths[msg] - j * seg[msg])
        return total

    def _recv_loop(self, timeout: float | None) -> int:
        if not wait_fd(self.sock.fileno(), timeout):
            return 0
        n = 0
        while n < self.batch:
            try:
                size, addr = self.sock.recvfrom_into(self._views[n], self.slot,
                                                     socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            self.syscalls += 1
            self.lengths[n] = size
            if self.names is not None:
                a, b = self._key
                self.names[n, a:b] = np.frombuffer(address_key(self.family, addr[0]), np.uint8)
            n += 1
        return n

    def source_bytes(self, n: int) -> npt.NDArray[np.uint8]:
        """The sender addresses of messages ``0..n-1`` as rows of raw address bytes
        (a view, valid until the next ``recv``). Needs ``sources=True`` (ConfigError
        otherwise)."""
        if self.names is None:
            raise ConfigError("BatchReceiver: source_bytes needs sources=True")
        a, b = self._key
        return self.names[:n, a:b]

    def source_keys(self, n: int) -> npt.NDArray[np.void]:
        """The sender addresses of messages ``0..n-1`` of the last ``recv``, as byte keys
        (compare with ``address_key``). Needs ``sources=True`` (ConfigError otherwise)."""
        if self.names is None:
            raise ConfigError("BatchReceiver: source_keys needs sources=True")
        a, b = self._key
        return np.ascontiguousarray(self.names[:n, a:b]).view(f"V{b - a}").reshape(n)


def address_key(family: int, address: str) -> bytes:
    """The raw bytes of IP ``address`` (``socket.inet_pton``), as ``source_keys`` holds them."""
    return socket.inet_pton(family, address)


def key_address(family: int, key: bytes) -> str:
    """``address_key`` reversed."""
    return socket.inet_ntop(family, key)


def recv_batch(sock: socket.socket, buffers: Sequence[memoryview | bytearray],
               *, timeout: float | None = 0.1) -> list[int]:
    """Fill ``buffers`` (writable, one datagram each) with what has arrived: waits up to
    ``timeout`` seconds for the first datagram, then takes only what is queued.
    Returns the sizes received (``[]`` on timeout). OSError from the OS is raised."""
    if not buffers:
        return []
    if not wait_fd(sock.fileno(), timeout):
        return []
    sizes: list[int] = []
    for buf in buffers:
        try:
            sizes.append(sock.recv_into(buf, 0, socket.MSG_DONTWAIT))
        except (BlockingIOError, InterruptedError):
            break
    return sizes
