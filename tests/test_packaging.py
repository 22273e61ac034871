"""environment.yml mirrors the pip dependencies declared in pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name where they differ
CONDA_NAMES = {"torch": "pytorch", "glfw": "pyglfw", "skia-python": "skia-python"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_lists_every_runtime_and_dev_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed |= {_name(d) for d in dep["pip"]}
        else:
            listed.add(_name(dep))
    missing = [w for w in wanted if CONDA_NAMES.get(w, w) not in listed]
    assert not missing, f"environment.yml lacks {missing}"
