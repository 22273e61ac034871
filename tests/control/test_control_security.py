"""The control plane cannot be driven by a web page, a foreign Host, or a request without
the token; code, files and sizes come only from where the user allowed them; slow or
bursty clients neither hold the server nor its close()."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from streamlib import Runtime
from streamlib.control.server import ControlServer
from streamlib.errors import ConfigError
from streamlib.observe.prometheus import serve_metrics

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "security-test-token-0123456789"


def raw(server_port: int, method: str, path: str, *, body: bytes = b"",
        headers: dict[str, str] | None = None, host: str | None = None,
        token: str | None = TOKEN) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 request over a socket, every header under the test's control."""
    lines = [f"{method} {path} HTTP/1.0",
             f"Host: {host if host is not None else f'127.0.0.1:{server_port}'}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", server_port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    return int(status_line.split()[1]), found, payload


def post(port: int, path: str, obj: Any, **kw: Any) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    status, _, payload = raw(port, "POST", path, body=json.dumps(obj).encode(),
                             headers=headers, **kw)
    return status, json.loads(payload)


@pytest.fixture
def server() -> Iterator[ControlServer]:
    with Runtime(name="sec") as rt, ControlServer(rt, token=TOKEN) as srv:
        yield srv


# -- who may talk to it --------------------------------------------------------------

def test_requests_without_or_with_a_wrong_token_get_401(server: ControlServer) -> None:
    for token in (None, "wrong-token-0123456789", ""):
        status, headers, payload = raw(server.port, "GET", "/graph", token=token)
        assert status == 401
        assert headers["www-authenticate"] == 'Bearer realm="streamlib"'
        assert json.loads(payload)["error"].endswith(
            "bearer token: send 'Authorization: Bearer TOKEN' (the token was printed or "
            "written to the token file when the server started)")
    status, _, payload = raw(server.port, "GET", "/graph")
    assert status == 200 and json.loads(payload)["runtime"] == "sec"


def test_a_foreign_host_header_gets_421(server: ControlServer) -> None:
    port = server.port
    status, _, payload = raw(port, "GET", "/graph", host=f"evil.example:{port}")
    assert status == 421
    assert json.loads(payload)["error"].startswith(
        f"Host 'evil.example:{port}' is not this server (accepted: ")
    for good in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"LOCALHOST:{port}"):
        assert raw(port, "GET", "/graph", host=good)[0] == 200, good
    assert raw(port, "GET", "/graph", host="127.0.0.1:1")[0] == 421  # another port


def test_the_cross_origin_text_plain_attack_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    draw = f"import os\nos.system('touch {marker}')\ndef draw(canvas, ctx):\n    pass\n"
    body = json.dumps({"id": "d", "type": "DrawingActor", "params": {"draw": draw}}).encode()
    with Runtime(name="sec") as rt, ControlServer(rt, token=TOKEN,
                                                  allowed_origins=["http://ok.example"]) as srv:
        port = srv.port
        # What a browser sends without a preflight: no token, text/plain, its Origin.
        evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        status, _, payload = raw(port, "POST", "/actors", body=body, headers=evil, token=None)
        assert status == 403 and json.loads(payload) == {
            "error": "Origin 'http://evil.example' is not allowed (allowed_origins: "
                     "http://ok.example)"}
        status, _, payload = raw(port, "POST", "/actors", body=body,
                                 headers={"Content-Type": "text/plain"})
        assert status == 415 and json.loads(payload) == {
            "error": "request body must be sent as Content-Type: application/json, "
                     "got 'text/plain'"}
        # Even with the token and JSON, draw code is off unless allow_code.
        status, reply = post(port, "/actors", json.loads(body),
                             headers={"Origin": "http://ok.example"})
        assert status == 403 and reply == {
            "error": "actor 'd' (DrawingActor): DrawingActor 'd': field 'draw': draw code "
                     "(Python source) from the control plane is off; start it with "
                     "allow_code=True (--allow-code) to accept code"}
        assert rt.actors() == []
    assert not marker.exists()


def test_binding_beyond_loopback_needs_an_explicit_token() -> None:
    with Runtime() as rt:
        with pytest.raises(ConfigError, match=r"^ControlServer: binding '0\.0\.0\.0' beyond "
                                              r"loopback needs a token given explicitly"):
            ControlServer(rt, host="0.0.0.0", allow_remote=True)
        with pytest.raises(ConfigError, match="at least 16 characters"):
            ControlServer(rt, token="short")


def test_token_file_is_written_0600_or_read(tmp_path: Path) -> None:
    path = tmp_path / "token"
    with Runtime() as rt:
        with ControlServer(rt, token_file=path) as srv:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert path.read_text().strip() == srv.token and len(srv.token) >= 32
            assert raw(srv.port, "GET", "/", token=srv.token)[0] == 200
        with ControlServer(rt, token_file=path) as again:  # an existing file is read
            assert again.token == path.read_text().strip()
        os.chmod(path, 0o644)
        with pytest.raises(ConfigError, match=r"is accessible by other users \(mode 0644\); "
                                              r"chmod 600 it"):
            ControlServer(rt, token_file=path)
        assert ControlServer(rt).token != ControlServer(rt).token  # generated per server


# -- code comes only from where the user put it ------------------------------------------

def test_a_model_naming_subprocess_popen_runs_nothing(server: ControlServer,
                                                      tmp_path: Path) -> None:
    marker = tmp_path / "popen-ran"
    status, reply = post(server.port, "/actors", {
        "id": "m", "type": "InferenceActor",
        "params": {"model": "subprocess:Popen", "model_kwargs": {"args": ["touch", str(marker)]}}})
    assert status == 403
    assert reply["error"].startswith(
        "actor 'm' (InferenceActor): InferenceActor 'm': model: 'subprocess:Popen': module "
        "'subprocess' is not on the allow list of the control plane (it was not imported)")
    assert not marker.exists()


@pytest.fixture
def trap_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module whose import (and whose class's call) would leave a mark."""
    name = "trap_module_for_control_tests"
    (tmp_path / f"{name}.py").write_text(
        "import os\n"
        "os.environ['STREAMLIB_TRAP_IMPORTED'] = '1'\n"
        "class X:\n"
        "    def __init__(self, *a, **k):\n"
        "        os.environ['STREAMLIB_TRAP_CALLED'] = '1'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("STREAMLIB_TRAP_IMPORTED", raising=False)
    monkeypatch.delenv("STREAMLIB_TRAP_CALLED", raising=False)
    yield name
    sys.modules.pop(name, None)


def test_a_module_type_is_not_imported_unless_allowed(trap_module: str) -> None:
    with Runtime(name="sec") as rt:
        with ControlServer(rt, token=TOKEN) as srv:
            status, reply = post(srv.port, "/actors", {"id": "x", "type": f"{trap_module}:X"})
            assert status == 403 and reply["error"].startswith(
                f"actor 'x': field 'type': actor type '{trap_module}:X': '{trap_module}:X': "
                f"module '{trap_module}' is not on the allow list of the control plane (it "
                f"was not imported); allow it with allow_modules=['{trap_module}']")
            assert trap_module not in sys.modules and "STREAMLIB_TRAP_IMPORTED" not in os.environ
        with ControlServer(rt, token=TOKEN, allow_modules=[trap_module]) as srv:
            status, reply = post(srv.port, "/actors", {"id": "x", "type": f"{trap_module}:X"})
            assert status == 400 and reply == {
                "error": f"actor 'x': field 'type': actor type '{trap_module}:X': "
                         f"'{trap_module}:X' is not an Actor subclass"}
            assert os.environ.get("STREAMLIB_TRAP_IMPORTED") == "1"  # allowed: imported
            assert "STREAMLIB_TRAP_CALLED" not in os.environ  # ...but never called
        assert rt.actors() == []


def test_shader_code_is_off_and_registered_functions_are_on(server: ControlServer) -> None:
    status, reply = post(server.port, "/actors", {
        "id": "s", "type": "ShaderActor", "params": {"fragment_source": "void main() {}"}})
    assert status == 403 and reply["error"].endswith(
        "field 'fragment_source': shader code from the control plane is off; start it with "
        "allow_code=True (--allow-code) to accept code")
    assert post(server.port, "/actors", {"id": "t", "type": "TransformActor",
                                         "params": {"fn": "mirror"}})[0] == 201
    status, reply = post(server.port, "/actors", {"id": "u", "type": "TransformActor",
                                                  "params": {"fn": "os:system"}})
    assert status == 403 and "module 'os' is not on the allow list" in reply["error"]
    status, reply = post(server.port, "/actors", {"id": "b", "type": "InferenceActor",
                                                  "params": {"model": "bright_box",
                                                             "model_kwargs": {"threshold": 0.3}}})
    assert status == 201 and reply["class"] == "InferenceActor"
    from streamlib.core.trust import register_function

    register_function("dot_for_security_test", lambda canvas, ctx: canvas.drawCircle(4, 4, 2))
    status, reply = post(server.port, "/actors", {"id": "d", "type": "DrawingActor", "params": {
        "draw": "dot_for_security_test", "width": 8, "height": 8}})
    assert status == 201 and reply["class"] == "DrawingActor"  # a registered draw is not code


# -- files -------------------------------------------------------------------------------

def test_file_errors_never_quote_the_file(tmp_path: Path) -> None:
    secret = "root:$6$SECRET-HASH-42:19000:0:99999:7:::"
    (tmp_path / "shadow").write_text(secret + "\n")
    with Runtime(name="sec") as rt, ControlServer(rt, token=TOKEN, allow_code=True,
                                                  input_dir=tmp_path) as srv:
        status, reply = post(srv.port, "/actors", {"id": "d", "type": "DrawingActor",
                                                   "params": {"draw_file": "shadow"}})
        assert status == 400 and reply == {
            "error": f"actor 'd' (DrawingActor): DrawingActor 'd': syntax error in draw_file "
                     f"'{tmp_path / 'shadow'}' at line 1"}
        status, reply = post(srv.port, "/actors", {"id": "d", "type": "DrawingActor",
                                                   "params": {"draw_file": "/etc/shadow"}})
        assert status == 403 and reply == {
            "error": "actor 'd' (DrawingActor): field 'draw_file': '/etc/shadow' is outside "
                     "the read folder input_dir (--input-dir)"}
    (tmp_path / "names.py").write_text("SECRET_NAME_42\n")
    from streamlib import DrawingActor

    with Runtime(), pytest.raises(ValueError) as info:
        DrawingActor(draw_file=str(tmp_path / "names.py"), actor_id="n")
    assert "SECRET_NAME_42" not in str(info.value) and "raised NameError" in str(info.value)


def test_reading_files_is_off_by_default(server: ControlServer) -> None:
    status, reply = post(server.port, "/actors", {"id": "r", "type": "FileReaderActor",
                                                  "params": {"path": "/etc/passwd"}})
    assert status == 403 and reply == {
        "error": "actor 'r' (FileReaderActor): field 'path': reading files over the control "
                 "plane is off; start it with input_dir (--input-dir)"}


def test_writers_are_confined_to_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "escape").symlink_to(tmp_path)
    with Runtime(name="sec") as rt:
        with ControlServer(rt, token=TOKEN) as srv:
            status, reply = post(srv.port, "/actors", {"id": "w", "type": "FileWriterActor",
                                                       "params": {"path": "x.mp4"}})
            assert status == 403 and reply == {
                "error": "actor 'w' (FileWriterActor): field 'path': writing files over the "
                         "control plane is off; start it with output_dir (--output-dir)"}
        with ControlServer(rt, token=TOKEN, output_dir=out) as srv:
            for path in ("../x.mp4", str(tmp_path / "x.mp4"), "escape/x.mp4"):
                status, reply = post(srv.port, "/actors", {"id": "w", "type": "FileWriterActor",
                                                           "params": {"path": path}})
                assert status == 403 and reply == {
                    "error": f"actor 'w' (FileWriterActor): field 'path': {path!r} is outside "
                             "the write folder output_dir (--output-dir)"}, path
            status, reply = post(srv.port, "/actors", {"id": "w", "type": "FileWriterActor",
                                                       "params": {"path": "sub/x.mp4"}})
            assert status == 201, reply
            assert rt.get("w").path == str(out / "sub" / "x.mp4")  # type: ignore[attr-defined]
    assert list(tmp_path.glob("*.mp4")) == []


# -- resource limits ---------------------------------------------------------------------

def test_frame_size_is_checked_before_allocating(server: ControlServer) -> None:
    status, reply = post(server.port, "/actors", {"id": "c", "type": "CompositorActor",
                                                  "params": {"width": 20000, "height": 20000}})
    assert status == 400 and reply == {
        "error": "actor 'c' (CompositorActor): field 'width' must be an int in 1..16384, "
                 "got 20000"}
    status, reply = post(server.port, "/actors", {"id": "c", "type": "TestPatternActor",
                                                  "params": {"width": 8000, "height": 8000}})
    assert status == 400 and reply == {
        "error": "actor 'c' (TestPatternActor): fields 'width' x 'height' = 8000x8000 is "
                 "64000000 pixels, more than the limit 33177600"}
    from streamlib import CompositorActor

    with Runtime(), pytest.raises(ValueError, match="field 'width' must be an int in 1..16384"):
        CompositorActor(20000, 20000)  # in code too, before the canvas exists


def test_body_size_and_json_depth_limits(server: ControlServer) -> None:
    port = server.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /actors HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAuthorization: "
                     f"Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {10 ** 9}\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 413 ")
    assert b'{"error": "request body too large (1000000000 bytes; at most 1048576)"}' in reply
    deep = b"[" * 100_000 + b"]" * 100_000
    status, _, payload = raw(port, "POST", "/actors", body=b'{"id": ' + deep + b"}",
                             headers={"Content-Type": "application/json"})
    assert status == 400 and json.loads(payload) == {
        "error": "request body is nested more than 64 levels deep"}
    status, _, payload = raw(port, "POST", "/actors", body=b"", headers={
        "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    assert status == 411 and json.loads(payload) == {
        "error": "send the body with a Content-Length, not Transfer-Encoding"}
    brackets_in_strings = json.dumps({"id": "[" * 1000, "type": "StatsSink"}).encode()
    status, _, payload = raw(port, "POST", "/actors", body=brackets_in_strings,
                             headers={"Content-Type": "application/json"})
    assert status == 400 and "actor name '[[[" in json.loads(payload)["error"]


def test_a_burst_of_300_connections_is_all_answered(server: ControlServer) -> None:
    n = 300
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    slowest = [0.0]
    lock = threading.Lock()

    def one() -> None:
        barrier.wait(30)
        started = time.monotonic()
        try:
            status = raw(server.port, "GET", "/")[0]
        except OSError:
            status = -1
        with lock:
            statuses.append(status)
            slowest[0] = max(slowest[0], time.monotonic() - started)

    threads = [threading.Thread(target=one) for _ in range(n)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(statuses) == [200] * n
    # A connection dropped from a full backlog is retried after 1 s, then 3 s...
    # (a backlog of 5 answered the last of these after 8 s).
    assert slowest[0] < 3.0, f"a request waited {slowest[0]:.1f} s"
    assert time.monotonic() - started < 30


def _slow_client(port: int, stop: threading.Event, closed_at: list[float]) -> None:
    """Sends a request one byte every 0.1 s until the server cuts it off."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            for byte in b"GET /graph HTTP/1.0\r\n" + b"X-Pad: " + b"a" * 10_000:
                if stop.wait(0.1):
                    return
                sock.send(bytes([byte]))
        except OSError:
            pass  # reset by the server: cut off
        else:
            return
        finally:
            closed_at.append(time.monotonic())


def test_a_slow_client_is_cut_off_at_the_deadline_not_per_byte() -> None:
    with Runtime() as rt, ControlServer(rt, token=TOKEN, read_deadline_s=1.0) as srv:
        stop, closed_at = threading.Event(), []  # type: ignore[var-annotated]
        started = time.monotonic()
        client = threading.Thread(target=_slow_client, args=(srv.port, stop, closed_at))
        client.start()
        client.join(10)
        stop.set()
        assert closed_at and closed_at[0] - started < 4.0, "the slow client was never cut off"
        assert raw(srv.port, "GET", "/")[0] == 200  # the server answers others meanwhile


def _wait_open(server: Any, n: int) -> None:
    """Until ``server`` holds ``n`` open connections (fails after 10 s)."""
    deadline = time.monotonic() + 10
    while len(server._open) < n:
        assert time.monotonic() < deadline, f"{len(server._open)} of {n} clients connected"
        threading.Event().wait(0.02)


def test_close_returns_promptly_with_20_slow_clients() -> None:
    with Runtime() as rt:
        before = set(threading.enumerate())
        srv = ControlServer(rt, token=TOKEN, read_deadline_s=60.0).start()
        stop, closed_at = threading.Event(), []  # type: ignore[var-annotated]
        clients = [threading.Thread(target=_slow_client, args=(srv.port, stop, closed_at))
                   for _ in range(20)]
        for c in clients:
            c.start()
        _wait_open(srv._server, 20)  # all 20 connected and held
        started = time.monotonic()
        srv.close()
        assert time.monotonic() - started < 2.0
        stop.set()
        for c in clients:
            c.join(10)
        assert set(threading.enumerate()) - before == set()


def test_streamlib_run_exits_promptly_with_a_slow_client_connected() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlib", "run", "examples/console.yaml", "--seconds", "1",
         "--quiet", "--control", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop, closed_at = threading.Event(), []  # type: ignore[var-annotated]
    try:
        assert proc.stdout is not None
        url = next((line.split()[1] for line in proc.stdout if line.startswith("control: ")),
                   None)
        assert url is not None, proc.communicate(timeout=20)[1]
        port = int(url.rsplit(":", 1)[1])
        client = threading.Thread(target=_slow_client, args=(port, stop, closed_at))
        client.start()
        started = time.monotonic()
        proc.communicate(timeout=20)  # TimeoutExpired (a failure) if it hangs
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


# -- Prometheus --------------------------------------------------------------------------

def test_metrics_server_checks_host_and_cuts_slow_clients() -> None:
    with Runtime(name="m") as rt, serve_metrics(rt) as metrics:
        port = metrics.port
        status, _, payload = raw(port, "GET", "/metrics", host="evil.example", token=None)
        assert status == 421 and payload.startswith(b"Host 'evil.example' is not this server")
        with urllib.request.urlopen(metrics.url, timeout=10) as resp:
            assert resp.status == 200
        stop, closed_at = threading.Event(), []  # type: ignore[var-annotated]
        client = threading.Thread(target=_slow_client, args=(port, stop, closed_at))
        client.start()
        _wait_open(metrics._server, 1)  # the slow client holds a connection now
        with urllib.request.urlopen(metrics.url, timeout=5) as resp:  # others are served
            assert resp.status == 200
        started = time.monotonic()
    assert time.monotonic() - started < 2.0  # close() did not wait for the slow client
    stop.set()
    client.join(10)


def test_media_beyond_loopback_is_refused_unless_the_server_allows_it(
        server: ControlServer) -> None:
    # Refused before the actor exists: nothing is sent anywhere.
    status, reply = post(server.port, "/actors", {
        "id": "tx", "type": "NetworkSendActor",
        "params": {"dest": "192.0.2.1:5004", "allow_remote": True}})
    assert status == 403 and reply == {
        "error": "actor 'tx' (NetworkSendActor): field 'allow_remote': the control plane does "
                 "not allow network destinations beyond loopback (start it with "
                 "allow_remote_media=True / --allow-remote-media)"}
    assert [a.actor_id for a in server.runtime.actors()] == []
    assert server.rules.allow_remote_media is False
    with Runtime(name="sec2") as rt, ControlServer(rt, token=TOKEN,
                                                   allow_remote_media=True) as srv:
        assert srv.rules.allow_remote_media is True
