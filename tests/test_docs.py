"""Docs show commands that work: every `streamlib ...` line in the README parses,
and every file a documented command names exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from streamlib.control.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def documented_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("streamlib "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_readme_streamlib_commands_parse_and_name_real_files() -> None:
    commands = documented_commands()
    assert len(commands) >= 4
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # SystemExit (a failure) on a bad flag
        if args.command == "run":
            assert (ROOT / args.pipeline).is_file(), args.pipeline


def test_readme_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", (ROOT / "README.md").read_text(), flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
