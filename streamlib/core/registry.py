"""Actor addressing (``actor://host/ActorClass/actor-id`` URIs, ``ActorRegistry``) and
UDP port bookkeeping (``PortAllocator``: one even port per stream, ST 2110 / RTP style).

The actor module imports this one, so it imports nothing from streamlib but errors.
"""

from __future__ import annotations

import bisect
import errno
import dataclasses
import functools
import ipaddress
import keyword
import re
import socket
import threading
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from streamlib.errors import ConfigError, ConfigTypeError, PortRangeExhaustedError, RegistryError

__all__ = ["ActorRegistry", "ActorURI", "PortAllocator", "default_port_allocator",
           "default_registry", "format_actor_uri", "get_actor", "parse_actor_uri",
           "register_actor"]

SCHEME = "actor"
_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "local"})
_ID_RE = re.compile(r"[A-Za-z0-9._~-]+")  # RFC 3986 unreserved: never needs %-encoding
# DNS-style labels; underscores allowed because container/compose names use them.
_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_HOST_RE = re.compile(r"(?:\[(?P<v6>[^\]]*)\]|(?P<name>[^:\[\]]+))(?::(?P<port>[^:]*))?")
_EXPECTED = "expected 'actor://host/ActorClass/actor-id'"


def _bad(uri: str, why: str) -> ConfigError:
    return ConfigError(f"invalid actor URI {uri!r}: {why}")


def _split_host(host: str, uri: str) -> tuple[str, int | None]:
    """Check a name/IPv4/``[IPv6]`` host with optional ``:port``; raises ConfigError quoting uri."""
    if not host:
        raise _bad(uri, f"missing host; {_EXPECTED}")
    if (m := _HOST_RE.fullmatch(host)) is None:
        raise _bad(uri, f"invalid host {host!r} (IPv6 must be bracketed, e.g. '[::1]:9000')")
    name, port = m["name"] if m["v6"] is None else m["v6"], m["port"]
    valid = True
    try:
        if m["v6"] is not None:
            ipaddress.IPv6Address(name)
        elif re.fullmatch(r"[0-9.]+", name):  # digits and dots can only mean IPv4
            ipaddress.IPv4Address(name)
        else:
            valid = len(name) <= 253 and all(_LABEL_RE.fullmatch(p) for p in name.split("."))
    except ValueError:  # ipaddress's own
        valid = False
    if not valid:
        raise _bad(uri, f"invalid host {name!r}")
    if port is None:
        return name, None
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise _bad(uri, f"port must be a number in 1-65535, got {port!r}")
    return name, int(port)


@dataclass(frozen=True)
class ActorURI:
    """Validated, hashable ``actor://host/ActorClass/actor-id``; ``host`` may carry a port
    (``"node1:9000"``, ``"[::1]:9000"``). Raises ConfigError if any part is invalid."""

    host: str
    actor_class: str
    actor_id: str

    def __post_init__(self) -> None:
        uri, cls, aid = str(self), self.actor_class, self.actor_id
        if not isinstance(self.host, str):
            raise _bad(uri, f"host must be a str, got {type(self.host).__name__}")
        _split_host(self.host, uri)
        if not isinstance(cls, str) or not cls:
            raise _bad(uri, f"actor class must be a non-empty str, got {cls!r}")
        # ASCII only: a URI cannot carry other characters without %-encoding.
        if not (cls.isascii() and cls.isidentifier()) or keyword.iskeyword(cls):
            raise _bad(uri, f"actor class {cls!r} is not a valid Python identifier")
        if not isinstance(aid, str) or not aid:
            raise _bad(uri, f"actor id must be a non-empty str, got {aid!r}")
        if not _ID_RE.fullmatch(aid):
            raise _bad(uri, f"actor id {aid!r} may only contain A-Z a-z 0-9 . _ ~ -")

    def __str__(self) -> str:
        return f"{SCHEME}://{self.host}/{self.actor_class}/{self.actor_id}"

    @property
    def hostname(self) -> str:
        """Host without port or IPv6 brackets."""
        return _split_host(self.host, str(self))[0]

    @property
    def port(self) -> int | None:
        """Port given in the host part, or None."""
        return _split_host(self.host, str(self))[1]

    @property
    def is_local(self) -> bool:
        """True for localhost, loopback addresses, "local" or this machine's hostname."""
        name = self.hostname.lower()
        if name in _LOCAL_NAMES or name == socket.gethostname().lower():
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def with_host(self, host: str) -> ActorURI:
        """Same actor on another host. Raises ConfigError if ``host`` is invalid."""
        return dataclasses.replace(self, host=host)

    # The seed plan's parse_actor_uri returned a dict; a URI also reads like one
    # (uri["host"], uri["actor_class"], uri["instance_id"], dict(uri)).
    _KEYS = ("host", "actor_class", "instance_id")

    def keys(self) -> tuple[str, ...]:
        """The plan's dict keys: ``("host", "actor_class", "instance_id")``."""
        return self._KEYS

    def __getitem__(self, key: str) -> str:
        """``uri["host"]``, ``uri["actor_class"]``, ``uri["instance_id"]`` (the actor id).
        Raises KeyError naming the known keys for any other key."""
        if key == "instance_id":
            return self.actor_id
        if key in ("host", "actor_class"):
            return str(getattr(self, key))
        raise KeyError(f"actor URI has no key {key!r}; keys: {', '.join(self._KEYS)}")


def parse_actor_uri(uri: str) -> ActorURI:
    """Parse ``actor://host/ActorClass/actor-id``. Raises ConfigError (quoting ``uri``) for:
    a non-str (ConfigTypeError); a scheme other than (lowercase) ``actor://``; a query or fragment; a
    missing/invalid host or port; a path that is not exactly ``/Class/id``; an empty part;
    a class that is not a Python identifier; an id with chars outside ``[A-Za-z0-9._~-]``.
    """
    if not isinstance(uri, str):
        raise ConfigTypeError(f"actor URI must be a str, got {type(uri).__name__}: {uri!r}")
    return _parse(uri)


@functools.lru_cache(maxsize=4096)  # the registry parses on every lookup by str
def _parse(uri: str) -> ActorURI:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise _bad(uri, f"missing 'actor://' scheme; {_EXPECTED}")
    if scheme != SCHEME:
        raise _bad(uri, f"scheme {scheme!r} is not supported; expected 'actor://'")
    if "?" in rest or "#" in rest:
        raise _bad(uri, "query strings and fragments are not allowed")
    host, slash, path = rest.partition("/")
    if not host:
        raise _bad(uri, f"missing host; {_EXPECTED}")
    parts = path.split("/") if slash else []
    if len(parts) != 2:
        raise _bad(uri, f"expected exactly 2 path segments '/ActorClass/actor-id', got {len(parts)}")
    # Host and path are kept verbatim, so str(ActorURI) == uri and errors quote it.
    return ActorURI(host, parts[0], parts[1])


def format_actor_uri(host: str, actor_class: str, actor_id: str) -> str:
    """Build ``actor://host/ActorClass/actor-id``; raises ConfigError like ``parse_actor_uri``."""
    return str(ActorURI(host, actor_class, actor_id))


def _as_uri(uri: str | ActorURI) -> ActorURI:
    return uri if isinstance(uri, ActorURI) else parse_actor_uri(uri)


class ActorRegistry:
    """Thread-safe map from ``ActorURI`` to live actors. Objects with ``add_close_callback``
    are unregistered when they close. URI arguments may be str (ValueError if malformed)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: factories may call back in
        self._actors: dict[ActorURI, object] = {}
        self._classes: dict[str, type] = {}

    def register(self, uri: str | ActorURI, actor: object) -> ActorURI:
        """Register ``actor`` at ``uri``; return the parsed URI. The same object again is a
        no-op. Raises RegistryError if held by a different object, ConfigTypeError for None."""
        key = _as_uri(uri)
        if actor is None:
            raise ConfigTypeError(f"cannot register None at {str(key)!r}")
        with self._lock:
            existing = self._actors.get(key)
            if existing is actor:
                return key
            if existing is not None:
                raise RegistryError(f"actor URI {str(key)!r} is already registered to {existing!r}")
            self._actors[key] = actor
        self._hook_close(key, actor)
        return key

    def _hook_close(self, key: ActorURI, actor: object) -> None:
        add = getattr(actor, "add_close_callback", None)
        if not callable(add):
            return
        ref = weakref.ref(self)  # a long-lived actor must not keep a dead registry alive

        def on_close() -> None:
            registry = ref()
            if registry is not None:
                registry._discard_if(key, actor)

        # Outside our lock: the actor may hold its own lock while running close
        # callbacks (which need ours) -> lock-order deadlock if we held ours here.
        try:
            add(on_close)
        except BaseException:
            self._discard_if(key, actor)
            raise

    def _discard_if(self, key: ActorURI, actor: object) -> None:
        with self._lock:  # identity check: a closed old actor must not evict a newer one
            if self._actors.get(key) is actor:
                del self._actors[key]

    def get(self, uri: str | ActorURI) -> object:
        """Return the actor at ``uri``. Raises RegistryError (listing up to 5 known URIs)."""
        key = _as_uri(uri)
        with self._lock:
            try:
                return self._actors[key]
            except KeyError:
                names = sorted(str(u) for u in self._actors)
                known = "registry is empty" if not names else "known: " + ", ".join(names[:5]) + (
                    f" (and {len(names) - 5} more)" if len(names) > 5 else "")
                raise RegistryError(f"no actor registered at {str(key)!r}; {known}") from None

    def register_class(self, cls: type, name: str | None = None) -> type:
        """Let ``get_or_create`` build ``cls`` for URIs naming ``name`` (default ``cls.__name__``).
        Returns ``cls``. Raises RegistryError if ``name`` is another class's, ConfigError if
        it is not an identifier."""
        name = cls.__name__ if name is None else name
        if not (isinstance(name, str) and name.isascii() and name.isidentifier()):
            raise ConfigError(f"actor class name {name!r} is not a valid Python identifier")
        with self._lock:
            existing = self._classes.setdefault(name, cls)
            if existing is not cls:
                raise RegistryError(f"actor class name {name!r} is already registered to {existing!r}")
        return cls

    def get_or_create(self, uri: str | ActorURI,
                      factory: Callable[[ActorURI], object] | None = None) -> object:
        """Return the actor at ``uri``, creating and registering it if missing, with
        ``factory(uri)`` or else ``cls(actor_id=uri.actor_id)`` for the class registered
        under ``uri.actor_class``. Creation runs under the lock so concurrent callers share
        one object (a factory must not wait on threads using this registry). Raises
        RegistryError naming known classes if the class is unknown, ConfigTypeError if the
        factory returns None; factory errors propagate.
        """
        key = _as_uri(uri)
        with self._lock:
            existing = self._actors.get(key)
            if existing is not None:
                return existing
            if factory is None:
                cls = self._classes.get(key.actor_class)
                if cls is None:
                    known = ", ".join(sorted(self._classes)) or "none"
                    raise RegistryError(
                        f"cannot create {str(key)!r}: actor class {key.actor_class!r} "
                        f"is not registered (known classes: {known})")
                actor: object = cls(actor_id=key.actor_id)
            else:
                actor = factory(key)
            if actor is None:
                raise ConfigTypeError(f"factory for {str(key)!r} returned None")
            raced = self._actors.get(key)  # the factory may itself have registered one
            if raced is not None:
                return raced
            self._actors[key] = actor
        self._hook_close(key, actor)
        return actor

    def unregister(self, uri: str | ActorURI) -> bool:
        """Remove ``uri``; return whether anything was removed. Idempotent."""
        key = _as_uri(uri)
        with self._lock:
            return self._actors.pop(key, None) is not None

    def __contains__(self, uri: object) -> bool:
        try:
            key = _as_uri(uri)  # type: ignore[arg-type]  # non-str -> ValueError -> False
        except ValueError:
            return False  # a malformed URI can never be registered
        with self._lock:
            return key in self._actors

    def __len__(self) -> int:
        with self._lock:
            return len(self._actors)

    def uris(self) -> list[ActorURI]:
        """Snapshot of registered URIs."""
        with self._lock:
            return list(self._actors)

    def items(self) -> list[tuple[ActorURI, object]]:
        """Snapshot of ``(uri, actor)`` pairs."""
        with self._lock:
            return list(self._actors.items())

    def clear(self) -> None:
        """Forget all actors (without closing them); registered classes are kept."""
        with self._lock:
            self._actors.clear()


_DEFAULT_REGISTRY = ActorRegistry()


def default_registry() -> ActorRegistry:
    """The process-wide registry."""
    return _DEFAULT_REGISTRY


def register_actor(uri: str | ActorURI, actor: object) -> ActorURI:
    """``default_registry().register(uri, actor)``: raises like ``ActorRegistry.register``."""
    return _DEFAULT_REGISTRY.register(uri, actor)


def get_actor(uri: str | ActorURI, factory: Callable[[ActorURI], object] | None = None) -> Any:
    """The actor at ``uri`` in the default registry, created by ``factory(uri)`` (or the
    class registered under the URI's class name) when missing; raises like
    ``ActorRegistry.get_or_create``."""
    return _DEFAULT_REGISTRY.get_or_create(uri, factory)


_NO_KEY: Hashable = object()  # sentinel: None is a legitimate allocator key
_BUSY: Hashable = object()  # holds ports found in use by another program, during one call
T = TypeVar("T")


class PortAllocator:
    """Thread-safe allocator of even UDP ports in ``[start, end]``, one per key. A key keeps
    its port until released; the lowest free port goes first, so released ports are reused.
    Pure bookkeeping: it does not ask the OS whether a port is in use."""

    def __init__(self, start: int | None = None, end: int = 5998, *, step: int = 2,
                 start_port: int | None = None) -> None:
        """Raises ConfigError naming the field unless ``start`` is even, ``step`` is a
        positive even number and 1024 <= start <= end <= 65534; ConfigTypeError for non-ints
        or when both ``start`` and ``start_port`` (the seed plan's name) are given.
        ``start`` defaults to 5000."""
        if start is not None and start_port is not None:
            raise ConfigTypeError(f"give start or start_port, not both (got {start!r} and {start_port!r})")
        start = start_port if start_port is not None else 5000 if start is None else start
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, end, step)):
            raise ConfigTypeError(f"start, end and step must be ints, got {start!r}, {end!r}, {step!r}")
        if start % 2:
            raise ConfigError(f"start must be even (RTP uses even ports), got {start}")
        if step < 2 or step % 2:
            raise ConfigError(f"step must be a positive even number, got {step}")
        if not 1024 <= start <= 65534:
            raise ConfigError(f"start must be in 1024-65534, got {start}")
        if not start <= end <= 65534:
            raise ConfigError(f"end must be in {start}-65534 (start-65534), got {end}")
        self.start, self.end, self.step = start, end, step
        self._lock = threading.Lock()
        self._by_key: dict[Hashable, int] = {}
        self._by_port: dict[int, Hashable] = {}
        self._free = list(range(start, end + 1, step))  # sorted: lowest free first
        self.capacity = len(self._free)  # total ports in the range

    @property
    def free_count(self) -> int:
        """Number of ports not currently allocated."""
        with self._lock:
            return len(self._free)

    def allocate(self, key: Hashable) -> int:
        """Return ``key``'s port, allocating the lowest free one if it has none.
        Raises PortRangeExhaustedError naming the range if every port is taken."""
        with self._lock:
            port = self._by_key.get(key)
            if port is not None:
                return port
            if not self._free:
                raise PortRangeExhaustedError(
                    f"no free UDP port in range {self.start}-{self.end} (step {self.step}): all "
                    f"{self.capacity} ports are allocated; release one or widen the range")
            port = self._free.pop(0)  # O(n) but n <= 32k and it keeps "lowest first" exact
            self._by_key[key], self._by_port[port] = port, key
            return port

    def allocate_bound(self, key: Hashable, bind: Callable[[int], T], tries: int = 16
                       ) -> tuple[int, T]:
        """Allocate ``key`` a port and return ``(port, bind(port))``. The allocator cannot
        see ports other programs hold, so when ``bind`` raises EADDRINUSE the next free
        port is tried (up to ``tries`` ports; the busy ones go back to the pool after).
        Other errors, and the last EADDRINUSE, propagate with ``key`` holding nothing."""
        busy: list[Hashable] = []
        try:
            for attempt in range(tries):
                port = self.allocate(key)
                try:
                    return port, bind(port)
                except OSError as exc:
                    self.release(key)
                    if exc.errno != errno.EADDRINUSE or attempt == tries - 1:
                        raise
                    busy.append((_BUSY, port))
                    self.reserve(port, busy[-1])  # keeps it out of the next allocate()
            raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
        finally:
            for placeholder in busy:
                self.release(placeholder)

    def reserve(self, port: int, key: Hashable) -> int:
        """Pin ``port`` to ``key`` and return it (no-op if already so pinned). Raises ConfigError
        if the port is out of range or off the step grid (odd), is held by another key, or
        ``key`` already holds another port."""
        if isinstance(port, bool) or not isinstance(port, int):
            raise ConfigTypeError(f"port must be an int, got {type(port).__name__}")
        if not self.start <= port <= self.end or (port - self.start) % self.step:
            raise ConfigError(f"port {port} is not allocatable: must be in {self.start}-{self.end} "
                             f"and start + a multiple of {self.step} (even)")
        with self._lock:
            owner = self._by_port.get(port, _NO_KEY)
            if owner is not _NO_KEY:
                if owner == key:
                    return port
                raise ConfigError(f"port {port} is already allocated to {owner!r}")
            held = self._by_key.get(key)
            if held is not None:
                raise ConfigError(f"key {key!r} already holds port {held}; release it first")
            del self._free[bisect.bisect_left(self._free, port)]
            self._by_key[key], self._by_port[port] = port, key
            return port

    def release(self, key: Hashable) -> bool:
        """Free the port held by ``key``; return whether one was freed. Idempotent."""
        with self._lock:
            return key in self._by_key and self._release_locked(self._by_key[key])

    def release_port(self, port: int) -> bool:
        """Free ``port`` whoever holds it; return whether it was allocated. Idempotent."""
        with self._lock:
            return self._release_locked(port)

    def _release_locked(self, port: int) -> bool:
        key = self._by_port.pop(port, _NO_KEY)
        if key is _NO_KEY:
            return False
        del self._by_key[key]
        bisect.insort(self._free, port)
        return True

    def port_for(self, key: Hashable) -> int | None:
        """Port held by ``key``, or None."""
        with self._lock:
            return self._by_key.get(key)

    def allocated(self) -> dict[Hashable, int]:
        """Snapshot of ``{key: port}``."""
        with self._lock:
            return dict(self._by_key)


# One range for every RTP stream of this process that is given a host but no port,
# video and audio alike, so two streams never get the same port: even ports only,
# one per stream (RTP even, RTCP odd, RFC 3550; ST 2110 sends one stream per port).
# It starts at 5004, the customary RTP/AVP port.
_DEFAULT_PORTS = PortAllocator(5004, 6998)


def default_port_allocator() -> PortAllocator:
    """The process-wide allocator (even ports 5004-6998) that the network actors take
    ports from when no port is given (``VIDEO_PORTS`` and ``AUDIO_PORTS`` are it)."""
    return _DEFAULT_PORTS
