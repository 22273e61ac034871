"""Pipeline files: validation errors name file/actor/field; building and running them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamlib import Runtime, StatsSink
from streamlib.control.cli import main
from streamlib.control.pipeline import PipelineError, load_pipeline, parse_pipeline

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
name: t
clocks:
  video: {fps: 30}
actors:
  bars:   {type: TestPatternActor, clock: video, width: 64, height: 36, pattern: gradient}
  invert: {type: TransformActor, fn: invert}
  stats:  {type: StatsSink, report_interval_s: null, printer: null}
connections:
  - bars -> invert
  - invert.video -> stats.in
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_offline_build_renders_exact_frame_count(tmp_path: Path) -> None:
    spec = load_pipeline(write(tmp_path, GOOD))
    assert spec.name == "t" and list(spec.actors) == ["bars", "invert", "stats"]
    with Runtime() as rt:
        pipe = spec.build(rt, mode="offline", seconds=2.0)
        assert rt.run(60)
        stats = pipe["stats"]
        assert isinstance(stats, StatsSink)
        assert stats.frames == 60 and stats.dropped == 0
        assert pipe["bars"].clock is not None and pipe["bars"].clock.clock_id == "virtual"


def test_json_pipeline_is_accepted(tmp_path: Path) -> None:
    import yaml

    path = write(tmp_path, json.dumps(yaml.safe_load(GOOD)), "p.json")
    assert list(load_pipeline(path).actors) == ["bars", "invert", "stats"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["actors"]["bars"].update(type="NoSuchActor"),
     r"actor 'bars': field 'type': unknown actor type 'NoSuchActor'; known types: .*TestPatternActor"),
    (lambda d: d["actors"]["bars"].update(colour=1),
     r"actor 'bars' \(TestPatternActor\): unknown field 'colour' \(accepted: width, height"),
    (lambda d: d["actors"]["bars"].update(clock="audio"),
     r"actor 'bars': field 'clock': unknown clock 'audio' \(declared: \['video'\]\)"),
    (lambda d: d["actors"]["bars"].update(dispatcher="cloud"),
     r"actor 'bars': field 'dispatcher': 'cloud' is not one of"),
    (lambda d: d["clocks"]["video"].update(fps=-5), r"clock 'video': field 'fps'"),
    (lambda d: d.update(connections=["bars => invert"]),
     r"connection #1 'bars => invert': expected 'actor\[.port\] -> actor\[.port\]'"),
    (lambda d: d.update(connections=["bars -> ghost"]), r"connection #1 'bars -> ghost': unknown actor 'ghost' \(actors: bars, invert, stats\)"),
    (lambda d: d.update(extra=1), r"unknown top-level keys \['extra'\]"),
    (lambda d: d.update(actors={}), r"'actors' must be a non-empty mapping"),
])
def test_validation_errors_name_file_actor_and_field(mutate: object, message: str) -> None:
    import yaml

    data = yaml.safe_load(GOOD)
    mutate(data)  # type: ignore[operator]
    with pytest.raises(PipelineError, match=r"^demo\.yaml: " + message) as info:
        parse_pipeline(data, source="demo.yaml")
    assert isinstance(info.value, ValueError)


def test_constructor_and_port_errors_surface_at_build(tmp_path: Path) -> None:
    bad_param = GOOD.replace("pattern: gradient", "pattern: plaid")
    with Runtime() as rt, pytest.raises(PipelineError, match=r"p\.yaml: actor 'bars' \(TestPatternActor\): .*plaid"):
        load_pipeline(write(tmp_path, bad_param)).build(rt)
    bad_port = GOOD.replace("invert.video -> stats.in", "invert.audio -> stats.in")
    with Runtime() as rt:
        with pytest.raises(PipelineError,
                           match=r"connection 'invert.audio -> stats.in': .*no output 'audio'"):
            load_pipeline(write(tmp_path, bad_port)).build(rt)
        assert rt.actors() == []  # partially built actors were closed


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"p\.yaml: not valid YAML"):
        load_pipeline(write(tmp_path, "actors: [unclosed"))
    with pytest.raises(FileNotFoundError, match="pipeline file not found: .*nope.yaml"):
        load_pipeline(tmp_path / "nope.yaml")


def test_failing_actor_in_a_file_does_not_stop_the_rest(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    text = GOOD + "  - bars.video -> boom.video\n" + ""
    text = text.replace("  stats:", "  boom:   {type: 'tests.helpers.pipeline_actors:Exploder', at: 5}\n  stats:")
    path = write(tmp_path, text)
    assert main(["run", str(path), "--offline", "--frames", "30", "-q",
                 "--allow-module", "tests.helpers.pipeline_actors"]) == 1
    out, err = capsys.readouterr()
    assert "boom             failed" in out
    stats_line = next(l for l in out.splitlines() if l.strip().startswith("stats"))
    assert "out     30" in stats_line
    assert "RuntimeError: exploded at frame 5" in err


def test_cli_run_reports_bad_file_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("fn: invert", "fn: blur"))
    assert main(["run", str(path), "--offline", "--frames", "3"]) == 2
    assert "actor 'invert' (TransformActor): TransformActor: field 'fn': unknown transform 'blur'" \
        in capsys.readouterr().err


def test_cli_run_example_file_realtime(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(ROOT / "examples" / "console.yaml"), "--seconds", "1.2"]) == 0
    out = capsys.readouterr().out
    assert "running console (3 actors, realtime" in out
    assert "summary: console ran" in out
    assert "bars " in out and " fps" in out


def test_cli_actors_lists_types_and_params(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["actors", "--json"]) == 0
    types = {t["type"]: t for t in json.loads(capsys.readouterr().out)}
    pattern = {p["name"]: p for p in types["TestPatternActor"]["params"]}
    assert pattern["width"] == {"name": "width", "type": "int", "required": False, "default": 640}
    assert main(["actors", "tests.helpers.pipeline_actors:Exploder"]) == 0
    assert "at: int = 3" in capsys.readouterr().out
    assert main(["actors", "Nope"]) == 2
