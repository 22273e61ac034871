"""The agent control plane: create, connect and inspect actors of a running graph over HTTP.

``ControlServer(runtime)`` serves JSON on loopback (``allow_remote=True`` and an
explicit token to bind elsewhere); every request carries its bearer token::

    with Runtime() as rt, ControlServer(rt, port=8765) as server:
        rt.start()
        ...  # curl -s -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \\
             #      -X POST server.url/actors -d '{"id": "bars", "type": "TestPatternActor"}'

Routes (request and response bodies are JSON):

* ``GET /``: the runtime's name and these routes.
* ``GET /types``: the actor catalogue (what ``streamlib actors --json`` prints).
* ``GET /graph``: ``runtime.graph()``. ``GET /metrics``: ``runtime.metrics().as_dict()``.
* ``GET /actors``: every actor's entry of ``graph()``; ``GET /actors/<id>``: one.
* ``POST /actors`` ``{"type": ..., "id": ..., "params": {...}, "clock": ..., "dispatcher": ...,
  "restart": ..., "stall_timeout": ...}`` (``restart``: a mode name or a mapping, see
  ``streamlib.runtime.supervisor``)
  creates an actor, validated like an actor of a pipeline file (201, its entry;
  see ``streamlib.control.actors``).
  ``clock`` is ``{"fps": 30}`` (a ``SoftwareClock``), ``{"fps": 30, "type":
  "virtual", "max_ticks": 90}`` (a ``VirtualClock``) or the id of an actor whose
  clock to share; left out, the actor makes its own (sources) or has none.
* ``POST /connections`` ``{"from": "bars.video", "to": "stats.in"}`` links two
  ports (ports optional, as in pipeline files; 201, or 200 when already linked);
  ``DELETE /connections`` with the same body unlinks them.
* ``DELETE /actors/<id>``: closes that actor (its final entry); the rest runs on.
* ``POST /start``: starts a runtime that was not started (wire first, then start).

Errors are ``{"error": "..."}``: 400 for a bad request (the message names the
field, actor or port), 401 without the right token, 403 for what the server
does not allow (an ``Origin``, a module, code, a file outside its folders), 404
for an unknown actor or route, 405 for a method a route does not have, 408 for
a request not received within the read deadline, 411 for a chunked body, 409 for a conflict
(duplicate actor id, input already linked, runtime closed), 413 for a body
over ``max_body``, 415 for a body that is not ``application/json``, 421 for a
``Host`` that is not this server, 500 for a bug (logged). The server and the
graph keep running after any of them.

Security (``docs/architecture.md``, "Securing the control plane"): a bearer
token on every request (``token=``, ``token_file=``, else generated with
``secrets``; ``server.token``), the ``Host``/``Origin``/content-type/size/depth
checks and per-connection read deadline of ``streamlib.net.httpguard``, and the
trust policy of ``streamlib.core.trust``: built-in types and registered names only,
modules from ``allow_modules``, draw/shader code with ``allow_code``, files
under ``input_dir``/``output_dir`` only, frame sizes within limits.

Threads: ``streamlib.net.httpguard.ServingThread`` runs the server on one owned,
non-daemon thread, one tracked daemon thread per connection; ``close()``
stops accepting, cuts open connections (a slow client never delays it), waits
for requests in progress within its timeout and releases the port, and the
server stops by itself once the main thread has finished. Request threads
never touch the runtime's loop directly: they use the runtime's cross-thread
entry points (actors are created with ``runtime=`` and attach under its lock,
start through ``call_soon_threadsafe``; ``Actor.close`` waits on the loop with
``run_coroutine_threadsafe``; port links are copy-on-write under the port's
lock), and one lock serialises this server's mutations so that checks such as
"is this id free" and the change they guard are atomic among requests.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection

from streamlib.net import httpguard
from streamlib.control.actors import CreationRules, bad, check_fields, parse_clock, refusal
from streamlib.control.flags import check_bind_host
from streamlib.control.links import connect, disconnect
from streamlib.errors import ConfigError
from streamlib.net.httpguard import Refusal
from streamlib.core.limits import MAX_FRAME_PIXELS, MAX_FRAME_SIDE
from streamlib.core.trust import TrustPolicy, check_modules

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime

logger = logging.getLogger("streamlib.control.server")

MAX_BODY = 1 << 20  # bytes; a request body is a small JSON object
MIN_TOKEN = 16  # characters of a token given explicitly
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


class _Reply(Refusal):
    """An error response: HTTP ``status`` and the ``error`` message."""

    def __init__(self, status: int, message: str, allow: str | None = None) -> None:
        super().__init__(status, message, None if allow is None else {"Allow": allow})


_bad = bad
_check_fields = check_fields


def _is_loopback(host: str) -> bool:
    try:
        check_bind_host(host)
    except ValueError:
        return False
    return True


class _Handler(httpguard.GuardedHandler):
    server_version = "streamlib-control"
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
        headers: dict[str, str] = {}
        try:
            body = self._admit()
            status, payload = self.control._dispatch(method, self.path, body)
        except Refusal as reply:
            status, payload, headers = reply.status, {"error": reply.message}, reply.headers
        except TimeoutError:
            status, payload = 408, {"error": f"request not received within "
                                             f"{self.read_deadline_s:g} s"}
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bad request must not kill the server
            logger.exception("control: %s %s failed", method, self.path)
            status, payload = 500, {"error": f"internal error: {type(exc).__name__}: {exc}"}
        data = (json.dumps(payload, default=repr) + "\n").encode()
        self.send_reply(status, data, "application/json", headers)

    def _admit(self) -> bytes | None:
        """The request's body once its headers passed every check (see
        ``streamlib.net.httpguard``); the body is read (or drained) before any reply:
        closing with unread bytes makes the kernel reset the connection."""
        control = self.control
        text = self.headers.get("Content-Length")
        try:
            length = int(text) if text else 0
        except ValueError:
            raise _bad(f"bad Content-Length {text!r}") from None
        if length < 0:
            raise _bad(f"bad Content-Length {text!r}")
        if self.headers.get("Transfer-Encoding"):  # http.server reads no chunked bodies
            self.close_connection = True
            raise Refusal(411, "send the body with a Content-Length, not Transfer-Encoding")
        try:
            httpguard.check_host(self.headers.get("Host"), control._hosts,
                                 wildcard=control._wildcard)
            httpguard.check_origin(self.headers.get("Origin"), control.allowed_origins)
            httpguard.check_bearer(self.headers.get("Authorization"), control.token)
            if length > control.max_body:
                raise Refusal(413, f"request body too large ({length} bytes; at most "
                                   f"{control.max_body})")
            if length:
                httpguard.check_json_content_type(self.headers.get("Content-Type"))
        except Refusal:
            if length <= control.max_body:  # an oversized body is not waited for
                self.drain(length)
            raise
        if not length:
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            raise _bad(f"request body ended after {len(body)} of {length} bytes")
        httpguard.check_json_depth(body)
        return body

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("control: " + format, *args)


class ControlServer:
    """Serves the control plane of ``runtime`` as JSON over HTTP (see the module doc).

    Args:
        runtime: the runtime to drive (started or not).
        host: the address to listen on; loopback unless ``allow_remote``.
        port: TCP port; 0 picks a free one (see ``port``/``url``).
        allow_remote: accept a non-loopback ``host`` (needs ``token``/``token_file``).
        token: the bearer token every request must send (16 characters or more);
            by default one is generated (``secrets``) and kept in ``token``.
        token_file: read the token from this file when it exists (it must not be
            readable by others), else write the generated token there (mode 0600).
        allowed_origins: ``Origin`` values accepted (browser pages you trust,
            e.g. ``"http://localhost:3000"``); requests with any other get 403.
        allowed_hosts: more ``Host`` names to accept (e.g. the machine's name
            on a remote bind); the bound address and ``localhost`` always are.
        allow_modules: modules (a package allows its submodules) whose actor
            classes and functions requests may name; none by default.
        allow_code: accept draw code and shader code (off by default).
        input_dir: the folder files read over the control plane must lie in
            (``draw_file``, ``FileReaderActor.path``...); none by default.
        output_dir: the folder files written must lie in (``FileWriterActor.path``...);
            none by default: writers are refused.
        max_body: request body limit in bytes (413 beyond).
        max_frame_side, max_frame_pixels: limits on ``width``/``height`` (400 beyond).
        read_deadline_s: per connection, for the whole request (408 or cut off).
        allow_remote_media: let requests create network actors with
            ``allow_remote: true`` (destinations or multicast beyond loopback);
            refused with 403 by default.

    The socket is bound at construction; ``start()`` (or entering the ``with``
    block) starts serving; ``close()`` is idempotent.

    Raises:
        ConfigError: ``host`` is not loopback without ``allow_remote``, a remote
            bind without an explicit token, a bad option (ConfigError naming it).
        OSError: the address cannot be bound, or ``token_file`` cannot be used.
    """

    def __init__(self, runtime: Runtime, host: str = "127.0.0.1", port: int = 0, *,
                 allow_remote: bool = False, token: str | None = None,
                 token_file: str | os.PathLike[str] | None = None,
                 allowed_origins: Collection[str] = (), allowed_hosts: Collection[str] = (),
                 allow_modules: Collection[str] = (), allow_code: bool = False,
                 input_dir: str | os.PathLike[str] | None = None,
                 output_dir: str | os.PathLike[str] | None = None,
                 max_body: int = MAX_BODY, max_frame_side: int = MAX_FRAME_SIDE,
                 max_frame_pixels: int = MAX_FRAME_PIXELS,
                 read_deadline_s: float = httpguard.READ_DEADLINE_S,
                 allow_remote_media: bool = False) -> None:
        check_bind_host(host, allow_remote=allow_remote)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"ControlServer: field 'port' must be an int in 0..65535, got {port!r}")
        for name, value in (("max_body", max_body), ("max_frame_side", max_frame_side),
                            ("max_frame_pixels", max_frame_pixels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ControlServer: field {name!r} must be an int >= 1, "
                                  f"got {value!r}")
        if not read_deadline_s > 0:
            raise ConfigError(f"ControlServer: field 'read_deadline_s' must be > 0, "
                              f"got {read_deadline_s!r}")
        self.token, explicit = self._token(token, token_file)
        if not explicit and not _is_loopback(host):
            raise ConfigError(
                f"ControlServer: binding {host!r} beyond loopback needs a token given "
                "explicitly (token=... or an existing token_file=...; --token/--token-file): "
                "a generated one would only be known to this machine")
        self.token_file = None if token_file is None else Path(token_file)
        self.allowed_origins = frozenset(str(o).strip() for o in allowed_origins)
        self.max_body = max_body
        policy = TrustPolicy(
            source="the control plane",
            allow_modules=check_modules(allow_modules, "ControlServer: field 'allow_modules'"),
            allow_code=bool(allow_code), restrict_files=True,
            input_dir=None if input_dir is None else _folder(input_dir, "input_dir"),
            output_dir=None if output_dir is None else _folder(output_dir, "output_dir"),
            hint="allow_modules=[...] (--allow-module ...)")
        self.rules = CreationRules(policy, max_frame_side, max_frame_pixels,
                                   allow_remote_media=bool(allow_remote_media))
        self.runtime = runtime
        self._mutations = threading.Lock()
        handler = type("ControlHandler", (_Handler,), {"control": self,
                                                       "read_deadline_s": read_deadline_s})
        self._server = httpguard.GuardedHTTPServer((host, port), handler)
        self.host = host
        self.port: int = int(self._server.server_address[1])
        self._hosts = httpguard.allowed_hosts(host, self.port, [
            str(self._server.server_address[0]), *allowed_hosts])
        self._wildcard = host in ("0.0.0.0", "::", "")
        self._serving = httpguard.ServingThread(self._server, f"streamlib-control-{self.port}")

    @staticmethod
    def _token(token: str | None, token_file: str | os.PathLike[str] | None) -> tuple[str, bool]:
        """The token and whether it was given (not generated here)."""
        if token is not None and token_file is not None:
            raise ConfigError("ControlServer: give one of 'token' and 'token_file', not both")
        if token is not None:
            if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN:
                raise ConfigError(f"ControlServer: field 'token' must be a str of at least "
                                  f"{MIN_TOKEN} characters")
            return token.strip(), True
        if token_file is not None and Path(token_file).exists():
            return httpguard.read_token_file(token_file, "ControlServer: field 'token_file'"), True
        generated = httpguard.new_token()
        if token_file is not None:
            httpguard.write_token_file(token_file, generated)
        return generated, False

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); routes are appended to it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """What a client sends with every request (the token, JSON bodies)."""
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    @property
    def closed(self) -> bool:
        return self._serving.closed

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> ControlServer:
        """Start serving on the server's own thread (once); returns self.

        Raises ClosedError after ``close()``."""
        self._serving.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Stop serving, cut open connections, wait for requests in progress
        (``timeout`` in all), release the port. Idempotent."""
        self._serving.close(timeout)

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
        from streamlib.control.catalog import builtin_actor_types

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
        request = self.rules.check(body)  # nothing imported, read or allocated before
        actor_id, rt = request.actor_id, self.runtime
        with self._mutations:
            self._check_open()
            if any(a.actor_id == actor_id for a in rt.actors()):
                raise _Reply(409, f"runtime {rt.name!r} already has an actor {actor_id!r}")
            clock, owned = parse_clock(actor_id, request.clock, self._actor)
            try:
                actor = self.rules.create(request, rt, clock)
            except Exception as exc:  # noqa: BLE001 - constructor errors are bad requests
                if owned and clock is not None:
                    clock.close()
                self._check_open()
                if isinstance(exc, ValueError) and any(a.actor_id == actor_id
                                                       for a in rt.actors()):
                    # Created meanwhile by code in the runtime's own process.
                    raise _Reply(409, str(exc)) from None
                raise refusal(f"actor {actor_id!r} ({request.atype.name}): ", exc) from None
        return 201, actor.describe()

    def _delete_actor(self, actor_id: str) -> tuple[int, Any]:
        with self._mutations:
            actor = self._actor(actor_id)
            actor.close()
        return 200, actor.describe()

    def _connect(self, body: dict[str, Any]) -> tuple[int, Any]:
        with self._mutations:
            self._check_open()
            return connect(self._actor, body)

    def _disconnect(self, body: dict[str, Any]) -> tuple[int, Any]:
        with self._mutations:
            return disconnect(self._actor, body)

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


def _folder(path: str | os.PathLike[str], name: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise ConfigError(f"ControlServer: field {name!r}: {str(p)!r} is not a folder")
    return p.resolve()


def _json_object(body: bytes | None) -> dict[str, Any]:
    if body is None:  # POST /start needs no body; others say what is missing
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _bad(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def serve_control(runtime: Runtime, port: int = 0, host: str = "127.0.0.1", *,
                  allow_remote: bool = False, **options: Any) -> ControlServer:
    """A started ``ControlServer`` for ``runtime``; ``options`` as for the class."""
    return ControlServer(runtime, host, port, allow_remote=allow_remote, **options).start()


__all__ = ["ControlServer", "serve_control", "MAX_BODY"]
