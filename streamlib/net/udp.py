"""UDP sockets for RTP: loopback-guarded destinations, multicast, big socket buffers.

Batched I/O (``sendmmsg``/``recvmmsg``, GSO/GRO: ``BatchSender``, ``BatchReceiver``,
``MessageVector``, ``recv_batch``, ``enable_gso``, ``gso_segments``, ``HAVE_MMSG``,
``MAX_DATAGRAM``) lives in ``streamlib.net.mmsg`` and is re-exported here.

Safety: every destination is checked by ``check_destination``: only 127.0.0.0/8 and
::1 are allowed unless the caller passes ``allow_remote=True``, so tests and examples
can never send traffic off this machine by mistake.

Multicast (IPv4 only, any-source): ``open_receiver`` binds a multicast ``bind``
address to the group (so the socket sees only that group's traffic, with
SO_REUSEADDR so several receivers can share it) and joins it with ``join_group`` on
``multicast_interface``; ``open_sender`` to a group sets IP_MULTICAST_IF and
IP_MULTICAST_TTL (``multicast_ttl``; 0 keeps packets on this host) and keeps
IP_MULTICAST_LOOP on so receivers on this host get them. A group is not loopback, so
both need ``allow_remote=True`` at the actor level; tests use 239.255.x.x on interface
127.0.0.1 with TTL 0.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

from streamlib.net.mmsg import (
    HAVE_MMSG, MAX_DATAGRAM, BatchReceiver, BatchSender, MessageVector, address_key, enable_gso,
    gso_segments, key_address, recv_batch, wait_fd,
)
from streamlib.errors import ConfigError

__all__ = ["parse_dest", "check_destination", "open_sender", "open_receiver", "socket_rcvbuf",
           "is_multicast", "join_group", "check_multicast_interface", "check_multicast_ttl",
           "DEFAULT_MULTICAST_TTL",
           # re-exported from .mmsg
           "BatchSender", "BatchReceiver", "MessageVector", "recv_batch", "HAVE_MMSG", "enable_gso",
           "gso_segments", "MAX_DATAGRAM", "wait_fd", "address_key", "key_address"]

_SO_RCVBUFFORCE = 33  # Linux: like SO_RCVBUF but ignores net.core.rmem_max (needs CAP_NET_ADMIN)
_SO_SNDBUFFORCE = 32
DEFAULT_MULTICAST_TTL = 16  # hops a multicast stream may cross (ST 2110 plants: a few)


def check_destination(host: str, *, allow_remote: bool = False) -> None:
    """Raise ConfigError unless ``host`` is a loopback literal (127.0.0.0/8, ::1) or
    ``"localhost"``; any address is allowed with ``allow_remote=True``."""
    if allow_remote or host == "localhost":
        return
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"destination {host!r} is not an IP literal; only loopback "
                          f"(127.0.0.0/8, ::1) is allowed without allow_remote=True") from None
    if not ip.is_loopback:
        raise ConfigError(f"destination {host} is outside loopback (127.0.0.0/8, ::1); pass "
                          f"allow_remote=True to send off this machine")


def parse_dest(text: str, *, allow_remote: bool = False,
               allow_zero: bool = False) -> tuple[str, int]:
    """Parse ``"127.0.0.1:5004"`` or ``"[::1]:5004"`` into ``(host, port)``
    (``localhost`` becomes ``127.0.0.1``). Raises ConfigError quoting the text for a
    missing/bad port (0 only with ``allow_zero``, for binding), an unbracketed IPv6
    address, or a non-loopback host without ``allow_remote=True``."""
    if not isinstance(text, str):
        raise ConfigError(f"destination must be a 'host:port' str, got {text!r}")
    if text.startswith("["):
        host, sep, port_s = text[1:].partition("]:")
    else:
        host, sep, port_s = text.rpartition(":")
        if ":" in host:
            raise ConfigError(f"invalid destination {text!r}: bracket IPv6, e.g. '[::1]:5004'")
    if not sep or not host:
        raise ConfigError(f"invalid destination {text!r}: expected 'host:port', "
                          f"e.g. '127.0.0.1:5004'")
    if not (port_s.isascii() and port_s.isdigit() and (0 if allow_zero else 1) <= int(port_s)
            <= 65535):
        raise ConfigError(f"invalid destination {text!r}: port must be 1-65535, got {port_s!r}")
    host = "127.0.0.1" if host == "localhost" else host
    try:
        check_destination(host, allow_remote=allow_remote)
    except ValueError as e:
        raise ConfigError(f"invalid destination {text!r}: {e}") from None
    return host, int(port_s)


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


def is_multicast(host: str) -> bool:
    """True for an IPv4 or IPv6 multicast literal (224.0.0.0/4, ff00::/8); False for
    anything else, host names included."""
    try:
        return ipaddress.ip_address(host).is_multicast
    except ValueError:
        return False


def check_multicast_interface(value: object) -> str:
    """``value`` if it is an IPv4 address literal (``"0.0.0.0"``: the kernel's choice,
    ``"127.0.0.1"``: loopback only); ConfigError otherwise (interface names such as
    ``"eth0"`` are not accepted: give the interface's address)."""
    try:
        if isinstance(value, str):
            ipaddress.IPv4Address(value)
            return value
    except ValueError:
        pass
    raise ConfigError(f"multicast_interface must be an IPv4 address (the interface's "
                      f"address, e.g. '127.0.0.1'), got {value!r}")


def check_multicast_ttl(value: object) -> int:
    """``value`` if it is an int in 0..255 (0: never leaves this host); ConfigError else."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ConfigError(f"multicast_ttl must be an int in 0..255, got {value!r}")
    return value


def join_group(sock: socket.socket, group: str, interface: str = "0.0.0.0") -> None:
    """Join IPv4 multicast ``group`` (any source) on the interface whose address is
    ``interface``. Raises ConfigError for a non-multicast or IPv6 group or a bad interface,
    OSError from the OS (e.g. no such interface address)."""
    try:
        ip = ipaddress.ip_address(group)
    except ValueError:
        raise ConfigError(f"multicast group must be an IP literal, got {group!r}") from None
    if not ip.is_multicast:
        raise ConfigError(f"{group} is not a multicast address (224.0.0.0/4)")
    if ip.version != 4:
        raise ConfigError(f"IPv6 multicast is not supported, got {group}")
    check_multicast_interface(interface)
    mreq = socket.inet_aton(group) + socket.inet_aton(interface)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)


def open_sender(dest: tuple[str, int], *, bind: tuple[str, int] | None = None,
                allow_remote: bool = False, sndbuf: int = 4 << 20,
                multicast_interface: str | None = None,
                multicast_ttl: int = DEFAULT_MULTICAST_TTL) -> socket.socket:
    """A UDP socket connected to ``dest`` (so ``send``/``sendmmsg`` need no address).
    ``bind`` defaults to port 0 on loopback for a loopback ``dest``, on
    ``multicast_interface`` (or any address) otherwise. For a multicast ``dest``
    (IPv4 only) IP_MULTICAST_IF is set to ``multicast_interface`` (None: the kernel's
    choice), IP_MULTICAST_TTL to ``multicast_ttl`` and IP_MULTICAST_LOOP on. Raises
    ConfigError for a non-loopback ``dest`` without ``allow_remote=True``, an IPv6 group,
    a bad interface or TTL; OSError from the OS."""
    host, port = dest
    check_destination(host, allow_remote=allow_remote)
    fam = _family(host)
    multicast = is_multicast(host)
    if multicast:
        if fam != socket.AF_INET:
            raise ConfigError(f"IPv6 multicast is not supported, got {host}")
        check_multicast_ttl(multicast_ttl)
        if multicast_interface is not None:
            check_multicast_interface(multicast_interface)
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        _set_buf(sock, socket.SO_SNDBUF, _SO_SNDBUFFORCE, sndbuf)
        if bind is None:
            loop = host == "localhost" or (not multicast and _is_loopback(host))
            if fam == socket.AF_INET6:
                bind = ("::1", 0) if loop else ("::", 0)
            else:
                # A loopback source address cannot reach another host (nor another
                # interface's group): bind where the traffic will leave.
                bind = ("127.0.0.1", 0) if loop else (multicast_interface or "0.0.0.0", 0)
        sock.bind(bind)
        if multicast:
            if multicast_interface is not None:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                socket.inet_aton(multicast_interface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, multicast_ttl)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _set_buf(sock: socket.socket, opt: int, force_opt: int, size: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, opt, size)
    # Linux reports double the request; below that, rmem_max/wmem_max capped it.
    if sock.getsockopt(socket.SOL_SOCKET, opt) < size and sys.platform.startswith("linux"):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force_opt, size)
        except OSError:
            pass  # not root: keep the capped size; socket_rcvbuf() tells what we got


def open_receiver(bind: tuple[str, int], *, rcvbuf: int = 64 << 20,
                  reuse_port: bool = False,
                  multicast_interface: str = "0.0.0.0") -> socket.socket:
    """A UDP socket bound to ``bind`` with a ``rcvbuf``-byte receive buffer (tries
    SO_RCVBUFFORCE when ``net.core.rmem_max`` caps SO_RCVBUF; ``socket_rcvbuf`` reports
    the result). Port 0 binds an ephemeral port (see ``sock.getsockname()``). A multicast
    ``bind`` host (IPv4) is bound with SO_REUSEADDR and joined on the interface whose
    address is ``multicast_interface`` (``join_group``). Raises ConfigError for an IPv6
    group or a bad interface, OSError when the address is in use or not local."""
    multicast = is_multicast(bind[0])
    if multicast:
        if _family(bind[0]) != socket.AF_INET:
            raise ConfigError(f"IPv6 multicast is not supported, got {bind[0]}")
        check_multicast_interface(multicast_interface)
    sock = socket.socket(_family(bind[0]), socket.SOCK_DGRAM)
    try:
        if reuse_port or multicast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _set_buf(sock, socket.SO_RCVBUF, _SO_RCVBUFFORCE, rcvbuf)
        sock.bind(bind)
        if multicast:
            join_group(sock, bind[0], multicast_interface)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_rcvbuf(sock: socket.socket) -> int:
    """Receive buffer the kernel granted, in bytes (Linux reports twice the usable size)."""
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

