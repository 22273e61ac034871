"""Hardening shared by streamlib's HTTP servers (the control plane, Prometheus metrics).

What a request meets, in order (see ``docs/architecture.md``, "Securing the control plane"):

* ``Host`` must name the bound address or ``localhost`` (with or without the
  port): anything else is answered **421 Misdirected Request**. A web page that
  rebinds its own DNS name to 127.0.0.1 sends its own name, so it never gets
  this far. A server bound to a wildcard address (``0.0.0.0``, ``::``) also
  accepts IP literals and the names given in ``allowed_hosts``.
* ``Origin``, when present, must be one of ``allowed_origins`` (none by
  default): a browser always sends it on cross-origin requests -> 403.
* ``Authorization: Bearer TOKEN``, compared in constant time -> 401 with
  ``WWW-Authenticate: Bearer`` (control plane only; metrics carry no token).
* Bodies: at most ``max_body`` bytes (413), ``Content-Type: application/json``
  (415), JSON nested at most ``MAX_JSON_DEPTH`` deep (400, checked without
  recursion before ``json.loads``).

Connections: every connection has one read deadline for the request line,
headers and body together (``socket.settimeout`` alone bounds each ``recv``,
so a client sending a byte a second would hold a thread forever). Request
threads are daemon threads that ``GuardedHTTPServer`` tracks: ``ServingThread.close()``
shuts every open connection down (a blocked ``recv`` returns at once), waits
for the threads within its timeout and returns; a thread stuck in a handler
never keeps the process alive. The listen backlog is 512, so a burst of
connections waits in the kernel instead of being dropped (a dropped SYN
is retried after 1, 3, 7 s: a burst of 300 took 8 s to answer with a backlog of 5).
"""

from __future__ import annotations

import hmac
import http.server
import ipaddress
import logging
import os
import re
import secrets
import socket
import socketserver
import stat
import threading
import time
from pathlib import Path
from typing import Any, Collection

from streamlib.errors import ClosedError, ConfigError

logger = logging.getLogger("streamlib.net.httpguard")

BACKLOG = 512  # a burst of hundreds of connections waits in the kernel, none is dropped
READ_DEADLINE_S = 5.0  # request line + headers + body, per connection
WRITE_TIMEOUT_S = 10.0  # per send while replying
MAX_CONNECTIONS = 512  # open at once; more are answered 503 and closed
MAX_JSON_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class Refusal(Exception):
    """An HTTP error reply: ``status``, the ``error`` message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


# -- request checks ----------------------------------------------------------------

def allowed_hosts(host: str, port: int, extra: Collection[str] = ()) -> frozenset[str]:
    """The ``Host`` header values a server bound to ``host:port`` accepts."""
    names = {host.lower().strip("[]"), "localhost", *(h.lower() for h in extra)}
    found: set[str] = set()
    for name in names:
        shown = f"[{name}]" if ":" in name else name
        found.update((shown, f"{shown}:{port}"))
    return frozenset(found)


def check_host(header: str | None, allowed: frozenset[str], *, wildcard: bool = False) -> None:
    """Raise 400 without ``Host``, 421 unless it is one of ``allowed`` (or, on a
    wildcard bind, an IP literal)."""
    if not header:
        raise Refusal(400, "missing Host header")
    value = header.strip().lower()
    if value in allowed:
        return
    if wildcard:
        bare = value.rsplit(":", 1)[0] if value.count(":") == 1 or value.startswith("[") else value
        try:
            ipaddress.ip_address(bare.strip("[]"))
            return
        except ValueError:
            pass
    raise Refusal(421, f"Host {header!r} is not this server (accepted: "
                       f"{', '.join(sorted(allowed))}); DNS-rebound names are refused")


def check_origin(header: str | None, allowed: Collection[str]) -> None:
    """Raise 403 when an ``Origin`` is present and not explicitly allowed."""
    if header is not None and header.strip() not in allowed:
        raise Refusal(403, f"Origin {header.strip()!r} is not allowed (allowed_origins: "
                           f"{', '.join(sorted(allowed)) or 'none'})")


def check_bearer(header: str | None, token: str) -> None:
    """Raise 401 (``WWW-Authenticate: Bearer``) unless ``header`` is ``Bearer <token>``."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                          token.encode()):
        return
    why = "missing" if not header else "wrong"
    raise Refusal(401, f"{why} bearer token: send 'Authorization: Bearer TOKEN' (the token "
                       "was printed or written to the token file when the server started)",
                  {"WWW-Authenticate": 'Bearer realm="streamlib"'})


def check_json_content_type(header: str | None) -> None:
    """Raise 415 unless ``header`` is ``application/json`` (parameters allowed)."""
    if (header or "").split(";", 1)[0].strip().lower() != "application/json":
        raise Refusal(415, f"request body must be sent as Content-Type: application/json, "
                           f"got {header!r}")


def json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of JSON text ``data`` (without recursion); stops counting
    past ``limit`` and returns ``limit + 1``."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for b in brackets:
        depth += 1 if b in (0x5B, 0x7B) else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def check_json_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    if json_depth(data, limit) > limit:
        raise Refusal(400, f"request body is nested more than {limit} levels deep")


# -- tokens ------------------------------------------------------------------------

def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token_file(path: str | os.PathLike[str], token: str) -> None:
    """Write ``token`` to ``path`` with mode 0600 (created or truncated; a
    symlink is refused)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)


def read_token_file(path: str | os.PathLike[str], where: str = "token_file") -> str:
    """The token in ``path``; ConfigError when it is empty or readable by others."""
    p = Path(path)
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{where}: {str(p)!r} is accessible by other users (mode "
                          f"{stat.S_IMODE(mode):04o}); chmod 600 it")
    token = p.read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"{where}: {str(p)!r} is empty")
    return token


# -- connections -------------------------------------------------------------------

class DeadlineReader:
    """``rfile`` for a request handler: every read shares one deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buf = bytearray()
        self.closed = False

    def _fill(self) -> bool:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("read deadline passed")
        self._sock.settimeout(remaining)
        chunk = self._sock.recv(65536)
        self._buf += chunk
        return bool(chunk)

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0 and (limit < 0 or i < limit):
                return self._take(i + 1)
            if 0 <= limit <= len(self._buf):
                return self._take(limit)
            start = len(self._buf)
            if not self._fill():
                return self._take(len(self._buf))

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buf) < n) and self._fill():
            pass
        return self._take(len(self._buf) if n < 0 else n)

    def close(self) -> None:
        self.closed = True


class GuardedHandler(http.server.BaseHTTPRequestHandler):
    """Installs the per-connection read deadline; subclasses handle methods."""

    read_deadline_s = READ_DEADLINE_S

    def setup(self) -> None:
        super().setup()
        self.rfile = DeadlineReader(self.connection,  # type: ignore[assignment]
                                    time.monotonic() + self.read_deadline_s)

    def send_reply(self, status: int, body: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def drain(self, length: int, limit: int = 8 << 20) -> None:
        """Read and drop up to ``length`` body bytes (at most ``limit``) before an
        early reply, so the kernel does not reset the connection under it."""
        left = min(length, limit)
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    return
                left -= len(chunk)
        except OSError:
            pass


class GuardedHTTPServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server whose request threads are tracked daemons and
    whose open connections ``abort_connections()`` shuts down."""

    request_queue_size = BACKLOG
    daemon_threads = True
    block_on_close = False  # ServingThread.close() joins the workers, with a bound
    timeout = 0.1  # handle_request() returns this often to check for close()
    max_connections = MAX_CONNECTIONS

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._workers: set[threading.Thread] = set()
        self._aborting = False
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS query); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            refused = self._aborting or len(self._open) >= self.max_connections
            if not refused:
                # Finished workers are pruned here, not by themselves: join_workers()
                # must also wait for one that is past its last line of Python.
                self._workers = {w for w in self._workers if w.is_alive()}
                self._open.add(request)
                worker = threading.Thread(target=self._work, args=(request, client_address),
                                          name=f"{self.server_name}:{self.server_port}-request",
                                          daemon=True)
                self._workers.add(worker)
        if refused:
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one connection's failure is logged, not fatal
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._open.discard(request)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s failed", client_address, exc_info=True)

    def abort_connections(self) -> None:
        """Refuse new connections and shut the open ones down (blocked reads return)."""
        with self._lock:
            self._aborting = True
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_workers(self, deadline: float) -> int:
        """Wait for request threads until ``deadline`` (monotonic); how many remain."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))
        return sum(w.is_alive() for w in workers)


class ServingThread:
    """Runs ``server`` on one owned, non-daemon thread until ``close()`` or the
    end of the main thread; ``close()`` is bounded and idempotent."""

    def __init__(self, server: GuardedHTTPServer, name: str) -> None:
        self.server = server
        self._name = name
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.closed = False

    def start(self) -> None:
        """Start the thread (once). Raises ClosedError after ``close()``."""
        with self._lock:
            if self.closed:
                raise ClosedError(f"{self._name}: closed; create a new one")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self._name)
                self._thread.start()

    def _serve(self) -> None:
        main = threading.main_thread()
        try:
            while not self._stop.is_set() and main.is_alive():
                self.server.handle_request()
        finally:
            self.server.abort_connections()
            self.server.server_close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, cut open connections, wait for requests in progress up
        to ``timeout`` in total and release the port."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            thread = self._thread
        deadline = time.monotonic() + timeout
        self._stop.set()
        self.server.abort_connections()
        if thread is None:
            self.server.server_close()
        elif thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        left = self.server.join_workers(deadline)
        if left:
            logger.warning("%s: %d request thread(s) still busy after close(); abandoned "
                           "(daemon threads, they do not keep the process alive)", self._name, left)


__all__ = ["Refusal", "allowed_hosts", "check_host", "check_origin", "check_bearer",
           "check_json_content_type", "check_json_depth", "json_depth", "new_token",
           "write_token_file", "read_token_file", "DeadlineReader", "GuardedHandler",
           "GuardedHTTPServer", "ServingThread", "BACKLOG", "READ_DEADLINE_S", "MAX_JSON_DEPTH"]
