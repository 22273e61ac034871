"""docs/tutorial.md works as written: every Python block runs as a script and prints
what the text after it says it prints; every ``streamlib`` command line parses."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from streamlib.control.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docs" / "tutorial.md").read_text()
# a block, then (before the next block) the sentence "prints `...`"
BLOCKS = re.findall(r"```python\n(.*?)```(.*?)(?=```|\Z)", TEXT, flags=re.S)


def test_every_block_says_what_it_prints() -> None:
    assert len(BLOCKS) >= 8
    for code, after in BLOCKS:
        assert re.search(r"prints `[^`]+`", after), f"no 'prints `...`' after:\n{code}"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_block_runs_and_prints_what_the_text_says(index: int, tmp_path: Path) -> None:
    code, after = BLOCKS[index]
    expected = re.search(r"prints `([^`]+)`", after)
    assert expected is not None
    script = tmp_path / f"block{index}.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr  # nothing fails, at exit included
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1] == expected.group(1).replace("cuda 30", "cpu 30"), proc.stdout


def test_readme_first_example_exits_cleanly(tmp_path: Path) -> None:
    """The default runtime closes at exit before the thread pools refuse teardown work."""
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(import streamlib as sl\n\nsl\.TestPattern.*?)```", readme,
                     flags=re.S)
    assert code is not None
    script = tmp_path / "readme.py"
    script.write_text(code.group(1).replace("seconds=3", "seconds=2"))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert " fps  frames=" in proc.stdout


def test_tutorial_command_lines_parse() -> None:
    parser = build_parser()
    commands = [shlex.split(line.split("#", 1)[0])[1:]
                for block in re.findall(r"```sh\n(.*?)```", TEXT, flags=re.S)
                for line in block.splitlines() if line.startswith("streamlib ")]
    assert len(commands) >= 2
    for argv in commands:
        args = parser.parse_args(argv)
        if args.command == "run":
            assert (ROOT / args.pipeline).is_file()
    for line in re.findall(r"^python (examples/\S+)", TEXT, flags=re.M):
        assert (ROOT / line).is_file(), line
