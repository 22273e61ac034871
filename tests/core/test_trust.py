"""Trust: pipeline files name built-ins, registered functions and allowed modules only;
modules are checked before import, objects before they are called."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from streamlib import Runtime, StatsSink
from streamlib.core.trust import register_function
from streamlib.control.cli import main
from streamlib.errors import AccessDeniedError, ConfigError
from streamlib.net.httpguard import json_depth
from streamlib.control.pipeline import PipelineError, load_pipeline
from streamlib.core.trust import TrustPolicy, applied, confine_path, registered_names, resolve_object

TRAP = "trap_module_for_trust_tests"


@pytest.fixture
def trap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module whose import and whose call each leave a mark in the environment."""
    (tmp_path / f"{TRAP}.py").write_text(
        "import os\n"
        "import streamlib as sl\n"
        "os.environ['STREAMLIB_TRUST_IMPORTED'] = '1'\n"
        "def factory(**kw):\n"
        "    os.environ['STREAMLIB_TRUST_CALLED'] = '1'\n"
        "    return lambda x: x\n"
        "class Sink(sl.StatsSink):\n"
        "    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("STREAMLIB_TRUST_IMPORTED", raising=False)
    monkeypatch.delenv("STREAMLIB_TRUST_CALLED", raising=False)
    yield tmp_path
    sys.modules.pop(TRAP, None)


def pipeline(tmp_path: Path, actor: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text("clocks: {video: {fps: 30}}\nactors:\n"
                    "  bars: {type: TestPatternActor, clock: video, width: 32, height: 18}\n"
                    f"  x: {actor}\nconnections: [bars -> x]\n")
    return path


def test_a_pipeline_file_cannot_import_a_module_not_allowed(trap: Path) -> None:
    path = pipeline(trap, f"{{type: '{TRAP}:Sink', report_interval_s: null, printer: null}}")
    with pytest.raises(PipelineError) as info:
        load_pipeline(path)
    assert str(info.value) == (
        f"{path}: actor 'x': field 'type': actor type '{TRAP}:Sink': '{TRAP}:Sink': module "
        f"'{TRAP}' is not on the allow list of pipeline file {path} (it was not imported); "
        f"allow it with allow_modules=['{TRAP}'] (streamlib run --allow-module '{TRAP}') or "
        "name a registered function")
    assert TRAP not in sys.modules and "STREAMLIB_TRUST_IMPORTED" not in os.environ
    spec = load_pipeline(path, allow_modules=[TRAP])
    assert spec.actors["x"].type.cls.__name__ == "Sink"
    assert os.environ["STREAMLIB_TRUST_IMPORTED"] == "1"


def test_a_model_string_in_a_file_runs_nothing_unless_allowed(trap: Path) -> None:
    marker = trap / "popen-ran"
    path = pipeline(trap, "{type: InferenceActor, model: 'subprocess:Popen', "
                          f"model_kwargs: {{args: [touch, '{marker}']}}}}")
    with Runtime() as rt, pytest.raises(PipelineError, match=r"actor 'x' \(InferenceActor\): "
                                        r".*module 'subprocess' is not on the allow list"):
        load_pipeline(path).build(rt)
    assert not marker.exists()
    path = pipeline(trap, f"{{type: InferenceActor, model: '{TRAP}:factory'}}")
    with Runtime() as rt, pytest.raises(PipelineError, match=f"module '{TRAP}' is not on"):
        load_pipeline(path).build(rt)
    assert "STREAMLIB_TRUST_CALLED" not in os.environ
    with Runtime() as rt:
        load_pipeline(path, allow_modules=[TRAP]).build(rt)
    assert os.environ["STREAMLIB_TRUST_CALLED"] == "1"


def test_streamlib_modules_give_actor_and_model_classes_but_no_factories() -> None:
    policy = TrustPolicy(source="a test")
    with applied(policy):
        assert resolve_object("streamlib.actors.inference:BrightBoxDetector", kind="model")
        assert resolve_object("streamlib.actors:StatsSink", kind="actor") is StatsSink
        with pytest.raises(AccessDeniedError, match="is not a torch.nn.Module class or instance"):
            resolve_object("streamlib.actors.inference:resolve_object", kind="model")
        with pytest.raises(AccessDeniedError, match="module 'streamlib.core.trust' is not on the "
                                                    "allow list of a test"):
            resolve_object("streamlib.core.trust:register_function", kind="function")
        with pytest.raises(ValueError, match="is not an Actor subclass"):
            resolve_object("streamlib.actors.inference:BrightBoxDetector", kind="actor")
    # Python code is trusted: anything resolves outside a policy.
    assert resolve_object("os.path:join") is os.path.join


def test_cli_run_needs_allow_module(trap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pipeline(trap, f"{{type: '{TRAP}:Sink', report_interval_s: null, printer: null}}")
    assert main(["run", str(path), "--offline", "--frames", "3", "-q"]) == 2
    assert f"module '{TRAP}' is not on the allow list" in capsys.readouterr().err
    assert TRAP not in sys.modules
    assert main(["run", str(path), "--offline", "--frames", "3", "-q",
                 "--allow-module", TRAP]) == 0


def test_registered_functions_are_named_by_files(tmp_path: Path) -> None:
    def halve(data: torch.Tensor) -> torch.Tensor:
        return data // 2

    assert register_function("halve_for_trust_test", halve) is halve
    assert register_function("halve_for_trust_test", halve) is halve  # same: no error
    assert {"invert", "mirror", "identity", "bright_box", "halve_for_trust_test"} <= set(
        registered_names())
    with pytest.raises(ConfigError, match="'halve_for_trust_test' is already registered"):
        register_function("halve_for_trust_test", lambda d: d)
    with pytest.raises(ConfigError, match="name 'a b' must be"):
        register_function("a b", halve)
    path = pipeline(tmp_path, "{type: TransformActor, fn: halve_for_trust_test}")
    with Runtime() as rt:
        pipe = load_pipeline(path).build(rt)
        assert pipe["x"].fn is halve  # type: ignore[attr-defined]


def test_confine_path_resolves_under_the_folder(tmp_path: Path) -> None:
    assert confine_path("a/b.mp4", tmp_path, "f", "write") == str(tmp_path.resolve() / "a/b.mp4")
    for outside in ("../b.mp4", "/etc/passwd", "a/../../b"):
        with pytest.raises(AccessDeniedError, match=f"f: {outside!r} is outside the write"):
            confine_path(outside, tmp_path, "f", "write")
    with pytest.raises(AccessDeniedError, match="reading files over the control plane is off"):
        confine_path("x", None, "f", "read")
    with pytest.raises(ConfigError, match="must be a non-empty file path"):
        confine_path("", tmp_path, "f", "read")


def test_json_depth_without_recursion() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[["}]}') == 3
    assert json_depth(b'"\\"[["') == 0
    assert json_depth(b"[" * 1_000_000, limit=64) == 65
