"""``streamlib run`` flags for the control plane and trust (``--control``, ``--token``,
``--allow-module``...)."""

from __future__ import annotations

import argparse
from typing import Any

from streamlib.errors import ConfigError
from streamlib.net.udp import check_destination


def parse_control_address(text: str) -> tuple[str, int]:
    """``"8765"``, ``"127.0.0.1:0"`` or ``"[::1]:8765"`` as ``(host, port)``; the host
    defaults to 127.0.0.1 and must be loopback. Raises ConfigError quoting ``text``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port_s = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"control address {text!r}: expected '[::1]:PORT'")
    elif ":" in text:
        host, _, port_s = text.rpartition(":")
        if ":" in host:
            raise ConfigError(f"control address {text!r}: bracket IPv6, e.g. '[::1]:8765'")
    else:
        host, port_s = "127.0.0.1", text
    try:
        port = int(port_s)
    except ValueError:
        port = -1
    if not host or not 0 <= port <= 65535:
        raise ConfigError(f"control address {text!r}: expected [HOST:]PORT with PORT in "
                          "0..65535 (0 picks a free one)")
    check_bind_host(host)
    return host, port


def check_bind_host(host: str, *, allow_remote: bool = False) -> None:
    """Raise ConfigError naming ``host`` unless it is loopback (127.0.0.0/8, ::1,
    ``localhost``); any host is accepted with ``allow_remote=True``."""
    try:
        check_destination(host, allow_remote=allow_remote)
    except ValueError:
        raise ConfigError(
            f"ControlServer: field 'host': {host!r} is not a loopback address (127.0.0.0/8, "
            "::1, localhost); pass allow_remote=True and an explicit token (token= or "
            "token_file=) to accept other machines") from None


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The control-plane and trust flags of ``streamlib run``."""
    group = run.add_argument_group("control plane and trust (see docs/architecture.md)")
    group.add_argument("--token", default=None, metavar="TOKEN",
                       help="bearer token the control plane requires (16+ characters; "
                            "visible in the process list: prefer --token-file)")
    group.add_argument("--token-file", default=None, metavar="PATH",
                       help="read the control token from PATH (mode 0600), or write a "
                            "generated one there when PATH does not exist")
    group.add_argument("--allow-module", action="append", default=[], metavar="MODULE",
                       help="let the pipeline file and the control plane name classes and "
                            "functions of MODULE (and its submodules); repeatable. A file "
                            "that names modules is as powerful as a Python script")
    group.add_argument("--allow-code", action="store_true",
                       help="let the control plane create actors from draw or shader code")
    group.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                       help="a browser Origin the control plane accepts (repeatable)")
    group.add_argument("--allow-remote-media", action="store_true",
                       help="let the control plane create network actors that send to or "
                            "join addresses beyond loopback (allow_remote: true)")
    group.add_argument("--input-dir", default=None, metavar="DIR",
                       help="folder the control plane may read files from (default: none)")
    group.add_argument("--output-dir", default=None, metavar="DIR",
                       help="folder the control plane may write files into (default: none, "
                            "so writer actors are refused over the control plane)")


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """``ControlServer`` keyword arguments from the parsed flags."""
    return {"token": args.token, "token_file": args.token_file,
            "allow_modules": args.allow_module, "allow_code": args.allow_code,
            "allowed_origins": args.allow_origin, "input_dir": args.input_dir,
            "output_dir": args.output_dir, "allow_remote_media": args.allow_remote_media}


def token_line(args: argparse.Namespace, token: str) -> str:
    """Where a client finds the token (the token itself only when generated)."""
    if args.token_file is not None:
        return f"control token: in {args.token_file}"
    if args.token is not None:
        return "control token: the one given with --token"
    return f"control token: {token}"


__all__ = ["check_bind_host", "parse_control_address", "add_arguments", "server_options", "token_line"]
