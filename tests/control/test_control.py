"""The agent control plane: a running graph built, linked, inspected and edited over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from streamlib import Actor, Runtime, StreamInput, TestPatternActor, TimedTick
from streamlib.control.cli import main
from streamlib.control.flags import parse_control_address
from streamlib.control.server import ControlServer
from streamlib.errors import ClosedError

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = "tests.control.test_control:Collector"  # this module, importable as tests/ is on sys.path


class Collector(Actor):
    """Keeps the frame number and first pixel of every frame; ``got`` is set at ``frames``."""

    def __init__(self, frames: int = 3, actor_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(actor_id=actor_id, **kwargs)
        self.inputs["video"] = StreamInput("video")
        self.inputs["audio"] = StreamInput("audio")  # never fed: a port of another kind
        self.want = frames
        self.numbers: list[int] = []
        self.pixels: list[tuple[int, ...]] = []
        self.got = threading.Event()

    def process(self, tick: TimedTick) -> None:
        for frame in self.inputs["video"].read_all_new():
            self.numbers.append(frame.frame_number)
            self.pixels.append(tuple(int(v) for v in frame.data[0, 0]))
        if len(self.numbers) >= self.want:
            self.got.set()


TOKEN = "test-token-0123456789abcdef"


def serve(rt: Runtime, **options: Any) -> ControlServer:
    """The control server of these tests: a known token, this module allowed."""
    options.setdefault("token", TOKEN)
    return ControlServer(rt, allow_modules=["tests.control.test_control"], **options)


def call(method: str, url: str, body: Any = None, raw: bytes | None = None, *,
         token: str = TOKEN) -> tuple[int, Any]:
    """(status, decoded JSON body) of one request; HTTP errors are returned, not raised."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            assert error.headers["Content-Type"] == "application/json"
            return error.code, json.load(error)


@pytest.fixture
def live() -> Iterator[tuple[Runtime, str]]:
    """A started, empty runtime and its control server's URL."""
    with Runtime(name="ctl") as rt, serve(rt) as server:
        rt.start()
        yield rt, server.url


def collector(rt: Runtime, actor_id: str) -> Collector:
    actor = rt.get(actor_id)
    assert isinstance(actor, Collector)
    return actor


def test_graph_built_linked_unlinked_and_edited_over_http_while_running(
        live: tuple[Runtime, str]) -> None:
    rt, url = live
    status, body = call("POST", f"{url}/actors", {"id": "sink", "type": COLLECTOR,
                                                  "params": {"frames": 5}})
    assert status == 201 and body["id"] == "sink" and body["class"] == "Collector"
    assert body["uri"] == "actor://localhost/Collector/sink"
    assert [p["name"] for p in body["inputs"]] == ["video", "audio"]
    assert call("POST", f"{url}/actors", {"id": "sink2", "type": COLLECTOR})[0] == 201
    assert call("POST", f"{url}/actors", {"id": "invert", "type": "TransformActor",
                                          "params": {"fn": "invert"}})[0] == 201
    status, body = call("POST", f"{url}/actors", {
        "id": "src", "type": "TestPatternActor", "clock": {"fps": 100},
        "params": {"width": 16, "height": 8, "pattern": "solid", "color": [10, 20, 30]}})
    assert status == 201
    assert body["uri"] == "actor://localhost/TestPatternActor/src"
    assert body["clock"]["type"] == "SoftwareClock" and body["clock"]["fps"] == 100.0
    assert [p["name"] for p in body["outputs"]] == ["video"]

    assert call("POST", f"{url}/connections", {"from": "src", "to": "invert"}) == (
        201, {"from": "src.video", "to": "invert.video"})
    assert call("POST", f"{url}/connections", {"from": "invert.video", "to": "sink.video"}) == (
        201, {"from": "invert.video", "to": "sink.video"})
    # Linking the same ports again changes nothing.
    assert call("POST", f"{url}/connections", {"from": "invert", "to": "sink.video"}) == (
        200, {"from": "invert.video", "to": "sink.video"})

    sink = collector(rt, "sink")
    assert sink.got.wait(10), "no frames reached the sink built over HTTP"
    assert set(sink.pixels) == {(245, 235, 225)}  # 255 - (10, 20, 30): through the inverter
    _, graph = call("GET", f"{url}/graph")
    links = {(link["from"], link["to"]): link for link in graph["links"]}
    assert set(links) == {("src.video", "invert.video"), ("invert.video", "sink.video")}
    assert links[("invert.video", "sink.video")]["written"] >= 5
    written_before = links[("invert.video", "sink.video")]["written"]

    assert call("DELETE", f"{url}/connections", {"from": "invert.video", "to": "sink.video"}) == (
        200, {"from": "invert.video", "to": "sink.video"})
    assert call("POST", f"{url}/connections", {"from": "invert", "to": "sink2"}) == (
        201, {"from": "invert.video", "to": "sink2.video"})
    sink2 = collector(rt, "sink2")
    assert sink2.got.wait(10), "no frames reached the second sink"
    # Every frame sink2 saw was written after sink was unlinked: sink saw none of them.
    assert max(sink.numbers) < min(sink2.numbers)
    status, entry = call("GET", f"{url}/actors/sink")
    assert status == 200 and entry["inputs"][0]["upstream"] is None
    _, graph = call("GET", f"{url}/graph")
    invert = next(a for a in graph["actors"] if a["id"] == "invert")
    assert invert["outputs"][0]["links"] == ["sink2.video"]
    assert invert["outputs"][0]["written"] > written_before  # still running, counters grow

    status, entry = call("DELETE", f"{url}/actors/src")
    assert status == 200 and entry["id"] == "src" and entry["status"] == "stopped"
    assert call("GET", f"{url}/actors/src") == (404, {"error": "runtime 'ctl' has no actor 'src'"})
    _, actors = call("GET", f"{url}/actors")
    assert [a["id"] for a in actors] == ["sink", "sink2", "invert"]
    assert {a["status"] for a in actors} == {"running"}


def test_wired_over_http_then_started_runs_lock_step_with_a_shared_virtual_clock() -> None:
    with Runtime(name="wired") as rt, serve(rt) as server:
        url = server.url
        for actor_id in ("a", "b"):
            assert call("POST", f"{url}/actors", {"id": actor_id, "type": COLLECTOR,
                                                  "params": {"frames": 10}})[0] == 201
        status, body = call("POST", f"{url}/actors", {
            "id": "src", "type": "TestPatternActor", "params": {"width": 8, "height": 4,
                                                                "pattern": "solid", "color": [1, 2, 3]},
            "clock": {"type": "virtual", "fps": 30, "max_ticks": 10}})
        assert status == 201 and body["clock"]["type"] == "VirtualClock"
        status, body = call("POST", f"{url}/actors", {
            "id": "src2", "type": "TestPatternActor", "clock": "src",  # share src's clock
            "params": {"width": 8, "height": 4, "pattern": "solid", "color": [4, 5, 6]}})
        assert status == 201
        assert rt.get("src2").clock is rt.get("src").clock
        assert call("POST", f"{url}/connections", {"from": "src", "to": "a"})[0] == 201
        assert call("POST", f"{url}/connections", {"from": "src2.video", "to": "b.video"})[0] == 201
        assert not rt.started
        assert call("POST", f"{url}/start") == (200, {"runtime": "wired", "started": True})
        assert rt.wait(30)
        a, b = collector(rt, "a"), collector(rt, "b")
        assert a.numbers == b.numbers == list(range(10))  # lock-step: nothing lost
        assert set(a.pixels) == {(1, 2, 3)} and set(b.pixels) == {(4, 5, 6)}


def test_types_are_the_cli_catalogue(live: tuple[Runtime, str],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    _, url = live
    assert main(["actors", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    status, types = call("GET", f"{url}/types")
    assert status == 200 and types == expected
    assert "TestPatternActor" in {t["type"] for t in types}


def test_metrics_and_index(live: tuple[Runtime, str]) -> None:
    rt, url = live
    TestPatternActor(8, 4, fps=30, actor_id="bars", runtime=rt)
    status, metrics = call("GET", f"{url}/metrics")
    assert status == 200 and metrics["runtime"] == "ctl"
    assert [a["id"] for a in metrics["actors"]] == ["bars"] and metrics["totals"]["actors"] == 1
    status, index = call("GET", url)
    assert status == 200 and index["runtime"] == "ctl"
    assert "POST /actors" in index["routes"] and "DELETE /connections" in index["routes"]


# -- errors: exact status and message; the server and graph survive each one ----

@pytest.fixture(scope="module")
def wired() -> Iterator[str]:
    """A runtime (not started) with src -> sink linked and an unlinked ``lonely``."""
    rt = Runtime(name="err")  # no ``with``: it would stay the current runtime of later tests
    try:
        with serve(rt) as server:
            src = TestPatternActor(16, 8, fps=30, actor_id="src", runtime=rt)
            src >> Collector(actor_id="sink", runtime=rt)
            Collector(actor_id="lonely", runtime=rt)
            yield server.url
    finally:
        rt.close()


ACCEPTED = "accepted: type, id, params, clock, dispatcher, restart, stall_timeout"
ERRORS: list[tuple[str, str, Any, int, str]] = [
    ("GET", "/nope", None, 404, "no route GET /nope (routes: GET /, GET /types, GET /graph, "
     "GET /metrics, GET /actors, POST /actors, GET /actors/<id>, DELETE /actors/<id>, "
     "POST /connections, DELETE /connections, POST /start)"),
    ("GET", "/actors/src/extra", None, 404, "no route GET /actors/src/extra (routes: ..."),
    ("POST", "/graph", {}, 405, "/graph accepts GET, not POST"),
    ("PUT", "/actors", {}, 405, "/actors accepts GET, POST, not PUT"),
    ("GET", "/actors/ghost", None, 404, "runtime 'err' has no actor 'ghost'"),
    ("DELETE", "/actors/ghost", None, 404, "runtime 'err' has no actor 'ghost'"),
    ("POST", "/actors", b"{not json", 400, "request body is not valid JSON: Expecting property "
     "name enclosed in double quotes: line 1 column 2 (char 1)"),
    ("POST", "/actors", [1, 2], 400, "request body must be a JSON object, got list"),
    ("POST", "/actors", None, 400, "field 'id' is required"),
    ("POST", "/actors", {"id": "x"}, 400, "field 'type' is required"),
    ("POST", "/actors", {"id": "x", "type": "StatsSink", "colour": 1}, 400,
     f"unknown field 'colour' ({ACCEPTED})"),
    ("POST", "/actors", {"id": "a b", "type": "StatsSink"}, 400,
     "actor name 'a b' must be letters, digits, '_' or '-'"),
    ("POST", "/actors", {"id": "x", "type": "NoSuchActor"}, 400,
     "actor 'x': field 'type': unknown actor type 'NoSuchActor'; known types: ..."),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor", "params": {"colour": 1}}, 400,
     "actor 'x' (TestPatternActor): unknown field 'colour' (accepted: width, height, fps, "
     "pattern, color, box_size, color_range, timecode, device; id, type, clock and dispatcher "
     "go beside 'params')"),
    ("POST", "/actors", {"id": "x", "type": "StatsSink", "params": [1]}, 400,
     "actor 'x': field 'params' must be a JSON object, got list"),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor", "params": {"pattern": "nope"}},
     400, "actor 'x' (TestPatternActor): TestPatternActor 'x': pattern must be one of gradient, "
     "checkerboard, solid, moving_box, smpte_bars; got 'nope'"),
    ("POST", "/actors", {"id": "x", "type": "StatsSink", "dispatcher": "warp"}, 400,
     "actor 'x': field 'dispatcher': 'warp' is not one of asyncio, thread, dedicated, process, "
     "gpu, gpu-inline"),
    ("POST", "/actors", {"id": "src", "type": "StatsSink"}, 409,
     "runtime 'err' already has an actor 'src'"),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor", "clock": {"fps": 0}}, 400,
     "actor 'x': field 'clock': field 'fps': ..."),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor", "clock": {"rate": 30}}, 400,
     "actor 'x': field 'clock': unknown field 'rate' (accepted: fps, type, max_ticks)"),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor",
                         "clock": {"fps": 30, "type": "ptp"}}, 400,
     "actor 'x': field 'clock': field 'type': 'ptp' is not one of software, virtual"),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor",
                         "clock": {"fps": 30, "max_ticks": 5}}, 400,
     "actor 'x': field 'clock': field 'max_ticks' must be an int >= 1 on a virtual clock, "
     "got 5 (type software)"),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor", "clock": "ghost"}, 404,
     "actor 'x': field 'clock': runtime 'err' has no actor 'ghost'"),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor", "clock": "sink"}, 400,
     "actor 'x': field 'clock': actor 'sink' has no clock to share"),
    ("POST", "/actors", {"id": "x", "type": "TestPatternActor", "clock": 30}, 400,
     "actor 'x': field 'clock': expected {\"fps\": N} (optional \"type\": \"software\" or "
     "\"virtual\", \"max_ticks\": N) or the id of an actor whose clock to share, got 30"),
    ("POST", "/connections", {"from": "src"}, 400, "field 'to' is required"),
    ("POST", "/connections", {"from": "src", "to": "lonely", "via": 1}, 400,
     "unknown field 'via' (accepted: from, to)"),
    ("POST", "/connections", {"from": "src..video", "to": "lonely"}, 400,
     "field 'from': expected 'actor' or 'actor.port', got 'src..video'"),
    ("POST", "/connections", {"from": "ghost", "to": "lonely"}, 404,
     "field 'from': runtime 'err' has no actor 'ghost'"),
    ("POST", "/connections", {"from": "src", "to": "ghost.video"}, 404,
     "field 'to': runtime 'err' has no actor 'ghost'"),
    ("POST", "/connections", {"from": "src.audio", "to": "lonely"}, 400,
     "actor 'src' has no output 'audio' (its outputs: video)"),
    ("POST", "/connections", {"from": "src", "to": "lonely.vid"}, 400,
     "actor 'lonely' has no input 'vid' (its inputs: audio, video)"),
    ("POST", "/connections", {"from": "src", "to": "lonely.audio"}, 400,
     "cannot connect output 'src.video' (video) to input 'lonely.audio' (audio): kinds differ"),
    ("POST", "/connections", {"from": "lonely", "to": "sink"}, 400,
     "actor 'lonely' has no outputs to connect from"),
    ("POST", "/connections", {"from": "src", "to": "src"}, 400,
     "actor 'src' has no inputs to connect to"),
    ("POST", "/connections", {"from": "src", "to": "sink.video"}, 200,
     ""),  # already linked: idempotent
    ("DELETE", "/connections", {"from": "src", "to": "lonely"}, 404,
     "no connection src.video -> lonely"),
    ("DELETE", "/connections", {"from": "src", "to": "lonely.video"}, 404,
     "no connection src.video -> lonely.video"),
    ("DELETE", "/connections", {"from": "src.x", "to": "lonely"}, 400,
     "actor 'src' has no output 'x' (its outputs: video)"),
    ("POST", "/start", {"now": True}, 400, "unknown field 'now' (accepted: none)"),
]


@pytest.mark.parametrize("method, path, body, status, message", ERRORS,
                         ids=[f"{m} {p} {s} {i}" for i, (m, p, _, s, _) in enumerate(ERRORS)])
def test_errors_have_exact_status_and_message(wired: str, method: str, path: str, body: Any,
                                              status: int, message: str) -> None:
    raw = body if isinstance(body, bytes) else None
    got_status, got = call(method, wired + path, None if raw else body, raw)
    assert got_status == status, got
    if status == 200:
        assert got == {"from": "src.video", "to": "sink.video"}
    elif message.endswith("..."):
        assert got["error"].startswith(message[:-3]), got
    else:
        assert got == {"error": message}
    # Nothing changed, and the server answers the next request.
    status, graph = call("GET", f"{wired}/graph")
    assert status == 200 and [a["id"] for a in graph["actors"]] == ["src", "sink", "lonely"]
    assert [(link["from"], link["to"]) for link in graph["links"]] == [("src.video", "sink.video")]


def test_an_input_already_linked_is_a_conflict(wired: str) -> None:
    status, body = call("POST", f"{wired}/connections", {"from": "src", "to": "sink.video"})
    assert status == 200
    with Runtime(name="conflict") as rt, serve(rt) as server:
        TestPatternActor(8, 4, actor_id="one") >> Collector(actor_id="sink")
        TestPatternActor(8, 4, actor_id="two")
        assert call("POST", f"{server.url}/connections", {"from": "two", "to": "sink.video"}) == (
            409, {"error": "input 'sink.video' is already connected to 'one.video'; "
                           "DELETE /connections first"})


def test_concurrent_creates_of_one_id_make_exactly_one_actor() -> None:
    with Runtime(name="race") as rt, serve(rt) as server:
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def create() -> None:
            barrier.wait(10)
            statuses.append(call("POST", f"{server.url}/actors",
                                 {"id": "dup", "type": "StatsSink"})[0])

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(statuses) == [201] + [409] * 7
        assert [a.actor_id for a in rt.actors()] == ["dup"]


# -- binding, lifecycle -------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_remote_bind_refused_without_allow_remote(host: str) -> None:
    with Runtime() as rt:
        with pytest.raises(ValueError, match=rf"ControlServer: field 'host': {re.escape(repr(host))} "
                                             r"is not a loopback address .*allow_remote=True"):
            ControlServer(rt, host=host)
        with pytest.raises(ValueError, match="field 'port' must be an int in 0..65535, got 70000"):
            ControlServer(rt, port=70000)


def test_control_address_parsing() -> None:
    assert parse_control_address("8765") == ("127.0.0.1", 8765)
    assert parse_control_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_control_address("[::1]:9") == ("::1", 9)
    assert parse_control_address("localhost:0") == ("localhost", 0)
    for bad in ("x", "127.0.0.1:", "1:2:3", "70000"):
        with pytest.raises(ValueError, match="control address"):
            parse_control_address(bad)
    with pytest.raises(ValueError, match="field 'host': '0.0.0.0' is not a loopback"):
        parse_control_address("0.0.0.0:80")


def test_cli_refuses_a_remote_control_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "examples/console.yaml", "--control", "0.0.0.0:8765"])
    assert info.value.code == 2
    assert "'0.0.0.0' is not a loopback address" in capsys.readouterr().err


def test_close_is_idempotent_and_leaves_no_thread_or_port_behind() -> None:
    with Runtime(name="life") as rt:
        before = set(threading.enumerate())
        server = serve(rt).start()
        assert server.start() is server  # starting twice serves once
        url, port = server.url, server.port
        assert url == f"http://127.0.0.1:{port}"
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(call("GET", f"{url}/graph")[0]))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [200] * 4
        server.close()
        server.close()
        assert server.closed
        assert set(threading.enumerate()) - before == set()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{url}/graph", timeout=5)
        with pytest.raises(ClosedError) as info:
            server.start()
        assert str(info.value) == f"streamlib-control-{port}: closed; create a new one"
        again = serve(rt, port=port)  # the port was released
        again.close()  # never started: closing only releases the socket
        again.close()


# -- the CLI flag and the example ---------------------------------------------------

def test_cli_run_serves_control_and_an_agent_adds_an_actor() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlib", "run", "examples/console.yaml", "--seconds", "4",
         "--quiet", "--control", "127.0.0.1:0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:  # ends at EOF if the run fails before serving
            if line.startswith("control: "):
                url = line.split()[1]
                break
        assert url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        token_line = proc.stdout.readline()  # generated: printed, as no file was given
        assert token_line.startswith("control token: "), token_line
        token = token_line.split()[2]
        assert call("GET", f"{url}/graph", token="wrong-token")[0] == 401
        status, graph = call("GET", f"{url}/graph", token=token)
        assert status == 200 and graph["runtime"] == "console"
        assert [a["id"] for a in graph["actors"]] == ["bars", "invert", "stats"]
        assert len(graph["links"]) == 2
        assert call("POST", f"{url}/actors", {"id": "probe", "type": "StatsSink", "params": {
            "report_interval_s": None, "printer": None}}, token=token)[0] == 201
        assert call("POST", f"{url}/connections", {"from": "invert.video", "to": "probe"},
                    token=token) == (201, {"from": "invert.video", "to": "probe.in"})
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "control: " not in rest  # printed once
    probe = re.search(r"^\s+probe\s+(?:running|stopped)\s+out\s+\d+.*calls\s+(\d+)", rest,
                      flags=re.M)
    assert probe is not None, rest
    assert int(probe.group(1)) > 0  # frames reached the actor the agent added


def test_agent_control_example_builds_a_pipeline_over_http() -> None:
    proc = subprocess.run([sys.executable, "examples/agent_control.py", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"control: http://127\.0\.0\.1:\d+", lines[0])
    actors = {m[1]: (m[2], m[3], int(m[4])) for m in
              (re.fullmatch(r"actor (\w+) (\w+) (\w+) processed (\d+)", l) for l in lines) if m}
    assert {k: v[:2] for k, v in actors.items()} == {
        "stats": ("StatsSink", "running"), "invert": ("TransformActor", "running"),
        "bars": ("TestPatternActor", "running")}
    assert actors["stats"][2] > 0
    links = [l for l in lines if l.startswith("link ")]
    assert [l.split(" written")[0] for l in links] == [
        "link invert.video -> stats.in", "link bars.video -> invert.video"]
    assert all(int(l.split("written ")[1].split()[0]) > 0 for l in links)
    assert lines[-1] == "after DELETE /actors/bars: stats invert"


def test_readme_control_commands_work(tmp_path: Path) -> None:
    """The README's curl session, run as written (with a free port and a temp token file)."""
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Driving a running graph"):]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None
    lines = [re.sub(r"\s+#\s.*$", "", line) for line in block.group(1).splitlines()]
    token_file = tmp_path / "control.token"
    run = lines[0].split()
    assert run[:2] == ["streamlib", "run"] and "--token-file" in run
    run = [sys.executable, "-m", *[{"8765": "127.0.0.1:0", "control.token": str(token_file),
                                    "300": "60"}.get(a, a) for a in run]]
    proc = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        url = next((line.split()[1] for line in proc.stdout if line.startswith("control: ")),
                   None)
        assert url is not None, proc.communicate(timeout=20)[1]
        assert token_file.stat().st_mode & 0o077 == 0
        script = "\n".join(["set -e", *[f'{line.replace("127.0.0.1:8765", url[7:])}; echo'
                                        for line in lines[1:] if line.startswith("curl ")]])
        script = lines[1] + "\n" + script  # TOKEN=$(cat control.token)
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        replies = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert len(replies) == 6 and not any(list(r) == ["error"] for r in replies), replies
        assert replies[0]["runtime"] == "console" and replies[1]["id"] == "probe"
        assert replies[2] == {"from": "invert.video", "to": "probe.in"}
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
