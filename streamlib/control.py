"""The agent control plane: create, connect and inspect actors of a running graph over HTTP.

``ControlServer(runtime)`` serves JSON on loopback (``allow_remote=True`` to
bind elsewhere)::

    with Runtime() as rt, ControlServer(rt, port=8765) as server:
        rt.start()
        ...  # curl -s -X POST server.url/actors -d '{"id": "bars", "type": "TestPatternActor"}'

Routes (request and response bodies are JSON):

* ``GET /``: the runtime's name and these routes.
* ``GET /types``: the actor catalogue (what ``streamlib actors --json`` prints).
* ``GET /graph``: ``runtime.graph()``. ``GET /metrics``: ``runtime.metrics().as_dict()``.
* ``GET /actors``: every actor's entry of ``graph()``; ``GET /actors/<id>``: one.
* ``POST /actors`` ``{"type": ..., "id": ..., "params": {...}, "clock": ..., "dispatcher": ...}``
  creates an actor, validated like an actor of a pipeline file (201, its entry).
  ``clock`` is ``{"fps": 30}`` (a ``SoftwareClock``), ``{"fps": 30, "type":
  "virtual", "max_ticks": 90}`` (a ``VirtualClock``) or the id of an actor whose
  clock to share; left out, the actor makes its own (sources) or has none.
* ``POST /connections`` ``{"from": "bars.video", "to": "stats.in"}`` links two
  ports (ports optional, as in pipeline files; 201, or 200 when already linked);
  ``DELETE /connections`` with the same body unlinks them.
* ``DELETE /actors/<id>``: closes that actor (its final entry); the rest runs on.
* ``POST /start``: starts a runtime that was not started (wire first, then start).

Errors are ``{"error": "..."}``: 400 for a bad request (the message names the
field, actor or port), 404 for an unknown actor or route, 405 for a method a
route does not have, 409 for a conflict (duplicate actor id, input already
linked, runtime closed), 500 for a bug (logged). The server and the graph keep
running after any of them.

Threads: the server runs ``http.server.ThreadingHTTPServer`` on one owned,
non-daemon thread, one short-lived thread per request; ``close()`` stops it,
waits for requests in progress and releases the port, and it stops by itself
once the main thread has finished. Request threads never touch the runtime's
loop directly: they use the runtime's cross-thread entry points (actors are
created with ``runtime=`` and attach under its lock, start through
``call_soon_threadsafe``; ``Actor.close`` waits on the loop with
``run_coroutine_threadsafe``; port links are copy-on-write under the port's
lock), and one lock serialises this server's mutations so that checks such as
"is this id free" and the change they guard are atomic among requests.

Security: there is no authentication. Anyone who can connect can create any
actor type, including ``package.module:Class`` (which imports that module), so
the default is loopback only; on a shared machine other local users can reach
loopback too.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import socketserver
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

from .errors import PortError, PortKindError

if TYPE_CHECKING:
    from .actor import Actor
    from .clocks import Clock
    from .graph import Runtime

logger = logging.getLogger("streamlib.control")

MAX_BODY = 1 << 20  # bytes; a request body is a small JSON object
_ACTOR_FIELDS = ("type", "id", "params", "clock", "dispatcher")
_CLOCK_FIELDS = ("fps", "type", "max_ticks")
_LINK_FIELDS = ("from", "to")
# Route key -> method -> handler name; a key is the path with "<id>" for an actor id.
_ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "_index"},
    "/types": {"GET": "_types"},
    "/graph": {"GET": "_graph"},
    "/metrics": {"GET": "_metrics"},
    "/actors": {"GET": "_list_actors", "POST": "_create_actor"},
    "/actors/<id>": {"GET": "_get_actor", "DELETE": "_delete_actor"},
    "/connections": {"POST": "_connect", "DELETE": "_disconnect"},
    "/start": {"POST": "_start_runtime"},
}


class _Reply(Exception):
    """An error response: HTTP ``status`` and the ``error`` message."""

    def __init__(self, status: int, message: str, allow: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.allow = allow


def _bad(message: str) -> _Reply:
    return _Reply(400, message)


def check_bind_host(host: str, *, allow_remote: bool = False) -> None:
    """Raise ValueError naming ``host`` unless it is loopback (127.0.0.0/8, ::1,
    ``localhost``); any host is accepted with ``allow_remote=True``."""
    from .net.udp import check_destination

    try:
        check_destination(host, allow_remote=allow_remote)
    except ValueError:
        raise ValueError(
            f"ControlServer: field 'host': {host!r} is not a loopback address (127.0.0.0/8, "
            "::1, localhost); pass allow_remote=True to accept other machines (the control "
            "plane has no authentication)") from None


def parse_control_address(text: str) -> tuple[str, int]:
    """``"8765"``, ``"127.0.0.1:0"`` or ``"[::1]:8765"`` as ``(host, port)``; the host
    defaults to 127.0.0.1 and must be loopback. Raises ValueError quoting ``text``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port_s = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"control address {text!r}: expected '[::1]:PORT'")
    elif ":" in text:
        host, _, port_s = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"control address {text!r}: bracket IPv6, e.g. '[::1]:8765'")
    else:
        host, port_s = "127.0.0.1", text
    try:
        port = int(port_s)
    except ValueError:
        port = -1
    if not host or not 0 <= port <= 65535:
        raise ValueError(f"control address {text!r}: expected [HOST:]PORT with PORT in "
                         "0..65535 (0 picks a free one)")
    check_bind_host(host)
    return host, port


class _Server(http.server.ThreadingHTTPServer):
    # Request threads are joined by server_close() (so close() leaves none
    # behind) rather than abandoned as daemons.
    daemon_threads = False
    block_on_close = True
    timeout = 0.1  # handle_request() returns this often to check for close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN (a DNS query); skip it.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class _ServerV6(_Server):
    address_family = socket.AF_INET6


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "streamlib-control"
    timeout = 10.0  # a silent client cannot hold a request thread (and close()) for long
    control: ControlServer  # set on the per-server subclass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        allow = None
        try:
            # Read the body before any reply: closing with unread bytes makes
            # the kernel reset the connection, and the client may lose the reply.
            body = self._read_body()
            status, payload = self.control._dispatch(method, self.path, body)
        except _Reply as reply:
            status, payload, allow = reply.status, {"error": reply.message}, reply.allow
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill the server
            logger.exception("control: %s %s failed", method, self.path)
            status, payload = 500, {"error": f"internal error: {type(exc).__name__}: {exc}"}
        data = (json.dumps(payload, default=repr) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow is not None:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes | None:
        text = self.headers.get("Content-Length")
        if not text:
            return None
        try:
            length = int(text)
        except ValueError:
            raise _bad(f"bad Content-Length {text!r}") from None
        if length > MAX_BODY:
            raise _bad(f"request body too large ({length} bytes; at most {MAX_BODY})")
        return self.rfile.read(length) if length > 0 else None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("control: " + format, *args)


class ControlServer:
    """Serves the control plane of ``runtime`` as JSON over HTTP (see the module doc).

    Args:
        runtime: the runtime to drive (started or not).
        host: the address to listen on; loopback unless ``allow_remote``.
        port: TCP port; 0 picks a free one (see ``port``/``url``).
        allow_remote: accept a non-loopback ``host`` (no authentication!).

    The socket is bound at construction; ``start()`` (or entering the ``with``
    block) starts serving; ``close()`` is idempotent.

    Raises:
        ValueError: ``host`` is not loopback without ``allow_remote``, or ``port``
            is out of range (the message names the field).
        OSError: the address cannot be bound.
    """

    def __init__(self, runtime: Runtime, host: str = "127.0.0.1", port: int = 0, *,
                 allow_remote: bool = False) -> None:
        check_bind_host(host, allow_remote=allow_remote)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"ControlServer: field 'port' must be an int in 0..65535, got {port!r}")
        self.runtime = runtime
        self._mutations = threading.Lock()
        self._state = threading.Lock()
        handler = type("ControlHandler", (_Handler,), {"control": self})
        server_cls = _ServerV6 if ":" in host else _Server
        self._server = server_cls((host, port), handler)
        self.host = host
        self.port: int = int(self._server.server_address[1])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); routes are appended to it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> ControlServer:
        """Start serving on the server's own thread (once); returns self.

        Raises RuntimeError after ``close()``."""
        with self._state:
            if self._closed:
                raise RuntimeError("ControlServer: closed; create a new one")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve,
                                                name=f"streamlib-control-{self.port}")
                self._thread.start()
        return self

    def _serve(self) -> None:
        main = threading.main_thread()
        try:
            while not self._stop.is_set() and main.is_alive():
                self._server.handle_request()
        finally:
            self._server.server_close()  # joins the request threads still running

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, wait for requests in progress, release the port. Idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is None:
            self._server.server_close()
        elif thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- routing (request threads) ---------------------------------------------
    def _dispatch(self, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(path).path.split("/") if p]
        args: tuple[str, ...] = ()
        if not parts:
            key = "/"
        elif len(parts) == 1 and f"/{parts[0]}" in _ROUTES:
            key = f"/{parts[0]}"
        elif len(parts) == 2 and parts[0] == "actors":
            key, args = "/actors/<id>", (parts[1],)
        else:
            raise _Reply(404, f"no route {method} {path} (routes: {', '.join(_route_list())})")
        methods = _ROUTES[key]
        if method not in methods:
            allow = ", ".join(methods)
            raise _Reply(405, f"{path} accepts {allow}, not {method}", allow=allow)
        handler: Callable[..., tuple[int, Any]] = getattr(self, methods[method])
        if method in ("POST", "DELETE") and key != "/actors/<id>":
            return handler(_json_object(body), *args)
        return handler(*args)

    def _actor(self, actor_id: str, where: str = "") -> Actor:
        try:
            return self.runtime.get(actor_id)
        except KeyError as exc:
            raise _Reply(404, f"{where}{exc.args[0]}") from None

    # -- reads ------------------------------------------------------------------
    def _index(self) -> tuple[int, Any]:
        return 200, {"runtime": self.runtime.name, "routes": _route_list()}

    def _types(self) -> tuple[int, Any]:
        from .catalog import builtin_actor_types

        return 200, [t.as_dict() for t in builtin_actor_types().values()]

    def _graph(self) -> tuple[int, Any]:
        return 200, self.runtime.graph()

    def _metrics(self) -> tuple[int, Any]:
        return 200, self.runtime.metrics().as_dict()

    def _list_actors(self) -> tuple[int, Any]:
        return 200, [a.describe() for a in self.runtime.actors()]

    def _get_actor(self, actor_id: str) -> tuple[int, Any]:
        return 200, self._actor(actor_id).describe()

    # -- mutations --------------------------------------------------------------
    def _create_actor(self, body: dict[str, Any]) -> tuple[int, Any]:
        from .pipeline import (
            check_actor_name, check_dispatcher, check_params, create_actor, resolve_type_field,
        )

        _check_fields(body, _ACTOR_FIELDS)
        for name in ("id", "type"):
            if name not in body:
                raise _bad(f"field {name!r} is required")
        actor_id = check_actor_name(body["id"], _bad)
        atype = resolve_type_field(actor_id, body["type"], _bad)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise _bad(f"actor {actor_id!r}: field 'params' must be a JSON object, "
                       f"got {type(params).__name__}")
        check_params(actor_id, atype, params, _bad,
                     also="id, type, clock and dispatcher go beside 'params'")
        dispatcher = check_dispatcher(actor_id, body.get("dispatcher"), _bad)
        rt = self.runtime
        with self._mutations:
            self._check_open()
            if any(a.actor_id == actor_id for a in rt.actors()):
                raise _Reply(409, f"runtime {rt.name!r} already has an actor {actor_id!r}")
            clock, owned = self._clock(actor_id, body.get("clock"))
            try:
                actor = create_actor(atype, actor_id, params, rt, clock=clock,
                                     dispatcher=dispatcher)
            except Exception as exc:  # noqa: BLE001 - constructor errors are bad requests
                if owned and clock is not None:
                    clock.close()
                self._check_open()
                if isinstance(exc, ValueError) and any(a.actor_id == actor_id
                                                       for a in rt.actors()):
                    # Created meanwhile by code in the runtime's own process.
                    raise _Reply(409, str(exc)) from None
                raise _bad(f"actor {actor_id!r} ({atype.name}): {exc}") from None
        return 201, actor.describe()

    def _clock(self, actor_id: str, spec: Any) -> tuple[Clock | None, bool]:
        """The clock a request names, and whether this server made it."""
        from .clocks import SoftwareClock, VirtualClock, parse_rate

        where = f"actor {actor_id!r}: field 'clock'"
        if spec is None:
            return None, False
        if isinstance(spec, str):
            other = self._actor(spec, f"{where}: ")
            if other.clock is None:
                raise _bad(f"{where}: actor {spec!r} has no clock to share")
            return other.clock, False
        if not isinstance(spec, dict):
            raise _bad(f"{where}: expected {{\"fps\": N}} (optional \"type\": \"software\" or "
                       f"\"virtual\", \"max_ticks\": N) or the id of an actor whose clock to "
                       f"share, got {spec!r}")
        _check_fields(spec, _CLOCK_FIELDS, f"{where}: ")
        if "fps" not in spec:
            raise _bad(f"{where}: field 'fps' is required")
        kind = spec.get("type", "software")
        if kind not in ("software", "virtual"):
            raise _bad(f"{where}: field 'type': {kind!r} is not one of software, virtual")
        max_ticks = spec.get("max_ticks")
        if max_ticks is not None and (kind != "virtual" or isinstance(max_ticks, bool)
                                      or not isinstance(max_ticks, int) or max_ticks < 1):
            raise _bad(f"{where}: field 'max_ticks' must be an int >= 1 on a virtual clock, "
                       f"got {max_ticks!r} (type {kind})")
        try:
            rate = parse_rate(spec["fps"])
        except (TypeError, ValueError) as exc:
            raise _bad(f"{where}: field 'fps': {exc}") from None
        if kind == "virtual":
            return VirtualClock(rate, max_ticks=max_ticks, clock_id="virtual"), True
        return SoftwareClock(rate, clock_id="monotonic"), True

    def _delete_actor(self, actor_id: str) -> tuple[int, Any]:
        with self._mutations:
            actor = self._actor(actor_id)
            actor.close()
        return 200, actor.describe()

    def _endpoints(self, body: dict[str, Any]) -> tuple[tuple[Actor, str | None],
                                                         tuple[Actor, str | None]]:
        from .pipeline import parse_endpoint

        _check_fields(body, _LINK_FIELDS)
        found = []
        for name in _LINK_FIELDS:
            if name not in body:
                raise _bad(f"field {name!r} is required")
            parsed = parse_endpoint(body[name])
            if parsed is None:
                raise _bad(f"field {name!r}: expected 'actor' or 'actor.port', got {body[name]!r}")
            found.append((self._actor(parsed[0], f"field {name!r}: "), parsed[1]))
        return found[0], found[1]

    def _connect(self, body: dict[str, Any]) -> tuple[int, Any]:
        from .pipeline import resolve_link

        with self._mutations:
            self._check_open()
            (src, src_port), (dst, dst_port) = self._endpoints(body)
            try:
                out, inp = resolve_link(src, src_port, dst, dst_port)
            except (KeyError, TypeError, ValueError) as exc:
                raise _bad(str(exc)) from None
            upstream = inp.upstream
            if upstream is not None and upstream is not out:
                raise _Reply(409, f"input {inp.qualified_name!r} is already connected to "
                                  f"{upstream.qualified_name!r}; DELETE /connections first")
            try:
                out.connect(inp)
            except PortKindError as exc:
                raise _bad(str(exc)) from None
            except PortError as exc:  # linked meanwhile by the runtime's own process
                raise _Reply(409, str(exc)) from None
        return (200 if upstream is out else 201), _link(out.qualified_name, inp.qualified_name)

    def _disconnect(self, body: dict[str, Any]) -> tuple[int, Any]:
        with self._mutations:
            (src, src_port), (dst, dst_port) = self._endpoints(body)
            try:
                out = src.outputs[src_port] if src_port else src.default_output()
                inp = dst.inputs[dst_port] if dst_port else None
            except PortError as exc:
                raise _bad(str(exc)) from None
            if inp is None:
                inp = next((i for i in out.links if i.actor is dst), None)
            elif inp.upstream is not out:
                inp = None
            if inp is None:
                to = f"{dst.actor_id}.{dst_port}" if dst_port else dst.actor_id
                raise _Reply(404, f"no connection {out.qualified_name} -> {to}")
            out.disconnect(inp)
        return 200, _link(out.qualified_name, inp.qualified_name)

    def _start_runtime(self, body: dict[str, Any]) -> tuple[int, Any]:
        _check_fields(body, ())
        with self._mutations:
            self._check_open()
            self.runtime.start()
        return 200, {"runtime": self.runtime.name, "started": self.runtime.started}

    def _check_open(self) -> None:
        if self.runtime.closed:
            raise _Reply(409, f"runtime {self.runtime.name!r} is closed")


def _route_list() -> list[str]:
    return [f"{m} {path}" for path, methods in _ROUTES.items() for m in methods]


def _json_object(body: bytes | None) -> dict[str, Any]:
    if body is None:  # POST /start needs no body; others say what is missing
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def _check_fields(body: dict[str, Any], accepted: tuple[str, ...], where: str = "") -> None:
    unknown = [k for k in body if k not in accepted]
    if unknown:
        raise _bad(f"{where}unknown field {unknown[0]!r} "
                   f"(accepted: {', '.join(accepted) or 'none'})")


def _link(src: str, dst: str) -> dict[str, str]:
    return {"from": src, "to": dst}


def serve_control(runtime: Runtime, port: int = 0, host: str = "127.0.0.1", *,
                  allow_remote: bool = False) -> ControlServer:
    """A started ``ControlServer`` for ``runtime``; see the class."""
    return ControlServer(runtime, host, port, allow_remote=allow_remote).start()


__all__ = ["ControlServer", "serve_control", "parse_control_address", "check_bind_host",
           "MAX_BODY"]
