"""Tests for streamlib.core.registry: actor URIs, ActorRegistry, PortAllocator."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import pytest

from streamlib.errors import ConfigError, ConfigTypeError, PortRangeExhaustedError, RegistryError, StreamlibError
from streamlib.core.registry import (
    ActorRegistry,
    ActorURI,
    PortAllocator,
    default_port_allocator,
    default_registry,
    format_actor_uri,
    parse_actor_uri,
)

# --------------------------------------------------------------------------- URIs

GOOD_URIS = [
    ("actor://localhost/Camera/cam0", "localhost", "Camera", "cam0"),
    ("actor://node-1.example.com/VideoMixer/main", "node-1.example.com", "VideoMixer", "main"),
    ("actor://10.0.0.7/_Private/x", "10.0.0.7", "_Private", "x"),
    ("actor://10.0.0.7:9000/Encoder/e1", "10.0.0.7:9000", "Encoder", "e1"),
    ("actor://[::1]/Sink/a-b.c_d~e", "[::1]", "Sink", "a-b.c_d~e"),
    ("actor://[fe80::1]:65535/Sink/0", "[fe80::1]:65535", "Sink", "0"),
    ("actor://compose_svc:1/A1/ID", "compose_svc:1", "A1", "ID"),
    ("actor://local/Clock/master", "local", "Clock", "master"),
]


@pytest.mark.parametrize(("text", "host", "cls", "aid"), GOOD_URIS)
def test_parse_good_uris_and_round_trip(text: str, host: str, cls: str, aid: str) -> None:
    uri = parse_actor_uri(text)
    assert (uri.host, uri.actor_class, uri.actor_id) == (host, cls, aid)
    assert str(uri) == text
    assert str(parse_actor_uri(str(uri))) == text
    assert format_actor_uri(host, cls, aid) == text
    assert ActorURI(host, cls, aid) == uri
    assert hash(ActorURI(host, cls, aid)) == hash(uri)


BAD_URIS = [
    ("http://localhost/Camera/cam0", r"scheme 'http' is not supported; expected 'actor://'"),
    ("ACTOR://localhost/Camera/cam0", r"scheme 'ACTOR'"),
    ("localhost/Camera/cam0", r"missing 'actor://'"),
    ("actor:/localhost/Camera/cam0", r"missing 'actor://'"),
    ("actor:///Camera/cam0", r"missing host"),
    ("actor://", r"missing host"),
    ("actor://localhost", r"exactly 2 path segments .* got 0"),
    ("actor://localhost/Camera", r"exactly 2 path segments .* got 1"),
    ("actor://localhost/Camera/cam0/extra", r"exactly 2 path segments .* got 3"),
    ("actor://localhost/Camera/cam0/", r"exactly 2 path segments .* got 3"),
    ("actor://localhost//cam0", r"actor class must be a non-empty"),
    ("actor://localhost/Camera/", r"actor id must be a non-empty"),
    ("actor://localhost/1Camera/cam0", r"actor class '1Camera' is not a valid Python identifier"),
    ("actor://localhost/Cam-era/cam0", r"not a valid Python identifier"),
    ("actor://localhost/class/cam0", r"not a valid Python identifier"),
    ("actor://localhost/Caméra/cam0", r"not a valid Python identifier"),
    ("actor://localhost/Camera/cam 0", r"actor id 'cam 0' may only contain"),
    ("actor://localhost/Camera/cam%200", r"actor id 'cam%200' may only contain"),
    ("actor://localhost/Camera/cam0?x=1", r"query strings and fragments are not allowed"),
    ("actor://localhost/Camera/cam0#frag", r"query strings and fragments are not allowed"),
    ("actor://localhost:0/Camera/cam0", r"port must be a number in 1-65535, got '0'"),
    ("actor://localhost:65536/Camera/cam0", r"port must be a number in 1-65535"),
    ("actor://localhost:http/Camera/cam0", r"port must be a number"),
    ("actor://localhost:/Camera/cam0", r"port must be a number"),
    ("actor://::1/Camera/cam0", r"IPv6 must be bracketed"),
    ("actor://[::1/Camera/cam0", r"invalid host"),
    ("actor://[not-ipv6]/Camera/cam0", r"invalid host 'not-ipv6'"),
    ("actor://999.0.0.1/Camera/cam0", r"invalid host '999.0.0.1'"),
    ("actor://-bad-/Camera/cam0", r"invalid host '-bad-'"),
    ("actor://user@host/Camera/cam0", r"invalid host"),
    (" actor://localhost/Camera/cam0", r"scheme ' actor' is not supported"),
]


@pytest.mark.parametrize(("text", "message"), BAD_URIS)
def test_parse_bad_uris(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_actor_uri(text)
    assert repr(text) in str(info.value), "every message quotes the offending URI"


@pytest.mark.parametrize("value", [None, 42, b"actor://h/C/i", ["actor://h/C/i"]])
def test_parse_rejects_non_str(value: object) -> None:
    with pytest.raises(ConfigTypeError, match="actor URI must be a str"):
        parse_actor_uri(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(("host", "cls", "aid", "message"), [
    ("", "C", "i", "missing host"),
    ("h", "C", "a/b", "actor id 'a/b' may only contain"),
    ("h", "not valid", "i", "not a valid Python identifier"),
    ("h:99999", "C", "i", "port must be a number in 1-65535"),
    (7, "C", "i", "host must be a str"),
])
def test_format_and_constructor_validate(host: object, cls: str, aid: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        format_actor_uri(host, cls, aid)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        ActorURI(host, cls, aid)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "local"), [
    ("actor://localhost/C/i", True),
    ("actor://LOCALHOST:4000/C/i", True),
    ("actor://127.0.0.1/C/i", True),
    ("actor://127.0.0.2/C/i", True),
    ("actor://[::1]:80/C/i", True),
    ("actor://local/C/i", True),
    ("actor://10.1.2.3/C/i", False),
    ("actor://far-away.example/C/i", False),
])
def test_is_local(text: str, local: bool) -> None:
    assert parse_actor_uri(text).is_local is local


def test_is_local_for_machine_hostname() -> None:
    host = socket.gethostname()
    try:
        uri = ActorURI(host, "C", "i")
    except ConfigError:
        pytest.skip(f"machine hostname {host!r} is not a valid URI host")
    assert uri.is_local


def test_hostname_port_and_with_host() -> None:
    uri = parse_actor_uri("actor://[::1]:9000/Camera/cam0")
    assert (uri.hostname, uri.port) == ("::1", 9000)
    moved = uri.with_host("node2:7000")
    assert str(moved) == "actor://node2:7000/Camera/cam0"
    assert (moved.hostname, moved.port, moved.is_local) == ("node2", 7000, False)
    assert uri.host == "[::1]:9000", "frozen: with_host returns a copy"
    with pytest.raises(ConfigError, match="invalid host"):
        uri.with_host("bad host")


# ----------------------------------------------------------------------- registry


class FakeActor:
    """Minimal actor: built from an id, runs close callbacks when closed."""

    instances = 0

    def __init__(self, actor_id: str) -> None:
        self.actor_id = actor_id
        self.callbacks: list[Callable[[], None]] = []
        FakeActor.instances += 1

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        self.callbacks.append(callback)

    def close(self) -> None:
        for callback in self.callbacks:
            callback()


def test_register_and_get() -> None:
    reg = ActorRegistry()
    actor = object()
    uri = reg.register("actor://localhost/Thing/t1", actor)
    assert uri == ActorURI("localhost", "Thing", "t1")
    assert reg.get("actor://localhost/Thing/t1") is actor
    assert reg.get(uri) is actor
    assert "actor://localhost/Thing/t1" in reg and uri in reg
    assert "actor://localhost/Thing/t2" not in reg
    assert "garbage" not in reg and 17 not in reg
    assert len(reg) == 1 and reg.uris() == [uri] and reg.items() == [(uri, actor)]


def test_register_same_object_is_noop_and_duplicate_is_error() -> None:
    reg = ActorRegistry()
    actor = FakeActor("a")
    reg.register("actor://h/FakeActor/a", actor)
    reg.register("actor://h/FakeActor/a", actor)
    assert len(reg) == 1 and len(actor.callbacks) == 1
    with pytest.raises(RegistryError, match=r"'actor://h/FakeActor/a' is already registered"):
        reg.register("actor://h/FakeActor/a", FakeActor("a"))
    assert reg.get("actor://h/FakeActor/a") is actor
    with pytest.raises(ConfigTypeError, match="None"):
        reg.register("actor://h/FakeActor/b", None)


def test_register_bad_uri_raises_value_error() -> None:
    with pytest.raises(ConfigError, match="scheme 'http'"):
        ActorRegistry().register("http://h/C/i", object())


def test_get_missing_names_uri_and_lists_up_to_five_known() -> None:
    reg = ActorRegistry()
    with pytest.raises(RegistryError, match=r"'actor://h/C/missing'.*registry is empty"):
        reg.get("actor://h/C/missing")
    for i in range(7):
        reg.register(f"actor://h/C/a{i}", object())
    with pytest.raises(RegistryError) as info:
        reg.get("actor://h/C/missing")
    message = str(info.value)
    assert "'actor://h/C/missing'" in message
    assert "actor://h/C/a0" in message and "actor://h/C/a4" in message
    assert "actor://h/C/a5" not in message and "(and 2 more)" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, StreamlibError)


def test_unregister_is_idempotent() -> None:
    reg = ActorRegistry()
    reg.register("actor://h/C/i", object())
    assert reg.unregister("actor://h/C/i") is True
    assert reg.unregister(ActorURI("h", "C", "i")) is False
    assert len(reg) == 0


def test_clear() -> None:
    reg = ActorRegistry()
    reg.register_class(FakeActor)
    reg.register("actor://h/C/i", object())
    reg.clear()
    assert len(reg) == 0
    assert isinstance(reg.get_or_create("actor://h/FakeActor/x"), FakeActor), "classes kept"


def test_get_or_create_with_factory() -> None:
    reg = ActorRegistry()
    seen: list[ActorURI] = []

    def factory(uri: ActorURI) -> FakeActor:
        seen.append(uri)
        return FakeActor(uri.actor_id)

    first = reg.get_or_create("actor://h/Whatever/w1", factory)
    again = reg.get_or_create("actor://h/Whatever/w1", factory)
    assert first is again and seen == [ActorURI("h", "Whatever", "w1")]
    assert reg.get("actor://h/Whatever/w1") is first


def test_get_or_create_factory_error_registers_nothing() -> None:
    reg = ActorRegistry()

    def boom(uri: ActorURI) -> object:
        raise RuntimeError("nope")

    with pytest.raises(RuntimeError, match="nope"):
        reg.get_or_create("actor://h/C/i", boom)
    assert "actor://h/C/i" not in reg


def test_get_or_create_with_registered_class_and_auto_unregister_on_close() -> None:
    reg = ActorRegistry()
    assert reg.register_class(FakeActor) is FakeActor
    actor = reg.get_or_create("actor://localhost/FakeActor/cam7")
    assert isinstance(actor, FakeActor) and actor.actor_id == "cam7"
    assert reg.get_or_create("actor://localhost/FakeActor/cam7") is actor
    assert len(actor.callbacks) == 1
    actor.close()
    assert "actor://localhost/FakeActor/cam7" not in reg
    actor.close()  # closing twice is harmless
    assert len(reg) == 0


def test_register_class_under_other_name_and_conflicts() -> None:
    reg = ActorRegistry()
    reg.register_class(FakeActor, name="Camera")
    reg.register_class(FakeActor, name="Camera")  # same class again: no-op
    assert isinstance(reg.get_or_create("actor://h/Camera/c"), FakeActor)
    with pytest.raises(RegistryError, match="'Camera' is already registered"):
        reg.register_class(dict, name="Camera")
    with pytest.raises(ConfigError, match="not a valid Python identifier"):
        reg.register_class(FakeActor, name="not valid")


def test_get_or_create_unknown_class_names_known_ones() -> None:
    reg = ActorRegistry()
    reg.register_class(FakeActor)
    reg.register_class(FakeActor, name="Alias")
    with pytest.raises(RegistryError,
                       match=r"actor class 'Nope' is not registered \(known classes: Alias, FakeActor\)"):
        reg.get_or_create("actor://h/Nope/x")
    with pytest.raises(RegistryError, match=r"known classes: none"):
        ActorRegistry().get_or_create("actor://h/Nope/x")


def test_close_of_replaced_actor_does_not_evict_new_one() -> None:
    reg = ActorRegistry()
    old = FakeActor("a")
    reg.register("actor://h/C/a", old)
    reg.unregister("actor://h/C/a")
    new = FakeActor("a")
    reg.register("actor://h/C/a", new)
    old.close()
    assert reg.get("actor://h/C/a") is new


def test_close_callback_hook_failure_rolls_back() -> None:
    class Broken:
        def add_close_callback(self, callback: Callable[[], None]) -> None:
            raise RuntimeError("closed already")

    reg = ActorRegistry()
    with pytest.raises(RuntimeError, match="closed already"):
        reg.register("actor://h/C/i", Broken())
    assert "actor://h/C/i" not in reg


def test_concurrent_get_or_create_returns_one_object() -> None:
    reg = ActorRegistry()
    n = 8
    barrier = threading.Barrier(n)
    calls: list[ActorURI] = []
    results: list[object] = [None] * n

    def factory(uri: ActorURI) -> FakeActor:
        calls.append(uri)
        return FakeActor(uri.actor_id)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = reg.get_or_create("actor://h/FakeActor/shared", factory)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results) and results[0] is not None


def test_concurrent_get_or_create_with_registered_class() -> None:
    reg = ActorRegistry()
    reg.register_class(FakeActor)
    n = 8
    barrier = threading.Barrier(n)
    before = FakeActor.instances
    results: list[object] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = reg.get_or_create("actor://h/FakeActor/one")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert FakeActor.instances - before == 1
    assert all(r is results[0] for r in results)


def test_default_registry_is_process_wide() -> None:
    assert default_registry() is default_registry()
    assert isinstance(default_registry(), ActorRegistry)


# ------------------------------------------------------------------ PortAllocator


def test_default_range_allocates_even_ports_from_5000() -> None:
    ports = PortAllocator()
    assert ports.capacity == 500 and ports.free_count == 500
    assert [ports.allocate(f"s{i}") for i in range(4)] == [5000, 5002, 5004, 5006]
    assert ports.free_count == 496


def test_default_port_allocator_is_one_shared_even_range() -> None:
    ports = default_port_allocator()
    assert ports is default_port_allocator()
    assert (ports.start, ports.end, ports.step, ports.capacity) == (5004, 6998, 2, 998)


def test_allocation_is_stable_per_key() -> None:
    ports = PortAllocator()
    a = ports.allocate(("video", 1))
    ports.allocate("other")
    assert ports.allocate(("video", 1)) == a
    assert ports.port_for(("video", 1)) == a
    assert ports.port_for("never") is None
    assert ports.allocated() == {("video", 1): 5000, "other": 5002}


def test_full_range_has_no_collisions_then_exhausts() -> None:
    ports = PortAllocator(6000, 6100)
    got = [ports.allocate(i) for i in range(ports.capacity)]
    assert ports.capacity == 51
    assert len(set(got)) == len(got)
    assert all(p % 2 == 0 and 6000 <= p <= 6100 for p in got)
    assert ports.free_count == 0
    with pytest.raises(PortRangeExhaustedError, match=r"range 6000-6100 .*all 51 ports"):
        ports.allocate("one too many")
    assert ports.allocate(0) == 6000, "existing keys still resolve when full"


def test_release_and_reuse_lowest() -> None:
    ports = PortAllocator()
    for key in "abcd":
        ports.allocate(key)  # 5000 5002 5004 5006
    assert ports.release("c") is True
    assert ports.release("c") is False
    assert ports.release_port(5002) is True
    assert ports.release_port(5002) is False
    assert ports.release_port(1) is False
    assert ports.allocate("e") == 5002
    assert ports.allocate("f") == 5004
    assert ports.allocate("g") == 5008
    assert ports.port_for("b") is None and ports.port_for("c") is None


def test_reserve() -> None:
    ports = PortAllocator()
    assert ports.reserve(5004, "pinned") == 5004
    assert ports.reserve(5004, "pinned") == 5004  # same key: no-op
    assert ports.allocate("pinned") == 5004
    assert [ports.allocate(k) for k in "abc"] == [5000, 5002, 5006]
    with pytest.raises(ConfigError, match="already allocated to 'a'"):
        ports.reserve(5000, "thief")
    with pytest.raises(ConfigError, match="already holds port 5004"):
        ports.reserve(5010, "pinned")
    with pytest.raises(ConfigError, match="not allocatable"):
        ports.reserve(5011, "odd")
    with pytest.raises(ConfigError, match="not allocatable"):
        ports.reserve(6000, "out of range")
    with pytest.raises(ConfigError, match="not allocatable"):
        ports.reserve(4998, "below range")
    ports.release("pinned")
    assert ports.allocate("next") == 5004


def test_reserve_none_key() -> None:
    ports = PortAllocator()
    assert ports.reserve(5002, None) == 5002
    assert ports.port_for(None) == 5002
    assert ports.release(None) is True


def test_step() -> None:
    ports = PortAllocator(5000, 5020, step=4)
    assert ports.capacity == 6
    assert [ports.allocate(i) for i in range(3)] == [5000, 5004, 5008]
    with pytest.raises(ConfigError, match="multiple of 4"):
        ports.reserve(5002, "x")


@pytest.mark.parametrize(("kwargs", "exc", "message"), [
    ({"start": 5001}, ConfigError, "start must be even"),
    ({"start": 1000, "end": 2000}, ConfigError, "start must be in 1024-65534"),
    ({"start": 66000, "end": 66002}, ConfigError, "start must be in 1024-65534"),
    ({"start": 6000, "end": 5998}, ConfigError, "end must be in 6000-65534"),
    ({"start": 5000, "end": 65535}, ConfigError, "end must be in"),
    ({"step": 3}, ConfigError, "step must be a positive even number"),
    ({"step": 0}, ConfigError, "step must be"),
    ({"step": -2}, ConfigError, "step must be"),
    ({"start": 5000.0}, ConfigTypeError, "must be ints"),
    ({"end": True}, ConfigTypeError, "must be ints"),
])
def test_bad_constructor_args(kwargs: dict[str, object], exc: type[Exception], message: str) -> None:
    with pytest.raises(exc, match=message):
        PortAllocator(**kwargs)  # type: ignore[arg-type]


def test_single_port_range() -> None:
    ports = PortAllocator(65534, 65534)
    assert ports.capacity == 1 and ports.allocate("x") == 65534
    with pytest.raises(PortRangeExhaustedError, match="65534-65534"):
        ports.allocate("y")


def test_thread_safe_allocation() -> None:
    ports = PortAllocator()
    n_threads, per_thread = 10, 50
    barrier = threading.Barrier(n_threads)
    results: dict[tuple[int, int], int] = {}
    lock = threading.Lock()

    def worker(t: int) -> None:
        barrier.wait()
        mine = {(t, i): ports.allocate((t, i)) for i in range(per_thread)}
        with lock:
            results.update(mine)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == ports.capacity == n_threads * per_thread
    assert sorted(results.values()) == list(range(5000, 5999, 2))
    assert ports.allocated() == results and ports.free_count == 0


def test_thread_safe_allocate_and_release_churn() -> None:
    ports = PortAllocator(5000, 5038)  # 20 ports, 8 threads x 2 live keys each
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        barrier.wait()
        try:
            for i in range(300):
                a, b = ports.allocate((t, "a")), ports.allocate((t, "b", i))
                assert a != b and ports.port_for((t, "a")) == a
                assert ports.release((t, "b", i))
        except BaseException as exc:  # surfaced below; threads swallow exceptions
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    held = ports.allocated()
    assert len(held) == 8 and len(set(held.values())) == 8
    assert ports.free_count == 12


def test_allocate_bound_skips_ports_the_os_reports_in_use() -> None:
    import errno

    alloc = PortAllocator(7000, 7010)
    tried: list[int] = []

    def bind(port: int) -> str:
        tried.append(port)
        if port in (7000, 7002):
            raise OSError(errno.EADDRINUSE, "Address already in use")
        return f"socket on {port}"

    assert alloc.allocate_bound("rx", bind) == (7004, "socket on 7004")
    assert tried == [7000, 7002, 7004] and alloc.allocate("rx") == 7004
    assert alloc.allocate("next") == 7000  # busy ports went back to the pool

    def refused(port: int) -> str:
        raise OSError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        alloc.allocate_bound("other", refused)
    assert alloc.release("other") is False  # holds nothing after a failure
    with pytest.raises(OSError, match="in use"):
        alloc.allocate_bound("x", lambda p: bind(7000), tries=2)
    assert alloc.free_count == alloc.capacity - 2
