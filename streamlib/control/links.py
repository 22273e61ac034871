"""``POST``/``DELETE /connections`` of the control plane: link and unlink two ports.

The caller holds the server's mutation lock; ``find(actor_id, where)`` returns
an actor or raises the 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from streamlib.control.actors import bad, check_fields
from streamlib.errors import PortError, PortKindError
from streamlib.net.httpguard import Refusal

if TYPE_CHECKING:
    from streamlib.core.actor import Actor

LINK_FIELDS = ("from", "to")
Find = Callable[[str, str], "Actor"]


def _endpoints(find: Find, body: dict[str, Any]) -> tuple[tuple[Actor, str | None],
                                                          tuple[Actor, str | None]]:
    from streamlib.control.pipeline import parse_endpoint

    check_fields(body, LINK_FIELDS)
    found = []
    for name in LINK_FIELDS:
        if name not in body:
            raise bad(f"field {name!r} is required")
        parsed = parse_endpoint(body[name])
        if parsed is None:
            raise bad(f"field {name!r}: expected 'actor' or 'actor.port', got {body[name]!r}")
        found.append((find(parsed[0], f"field {name!r}: "), parsed[1]))
    return found[0], found[1]


def connect(find: Find, body: dict[str, Any]) -> tuple[int, Any]:
    """201 with the link, 200 when it existed; 409 when the input has another upstream."""
    from streamlib.control.pipeline import resolve_link

    (src, src_port), (dst, dst_port) = _endpoints(find, body)
    try:
        out, inp = resolve_link(src, src_port, dst, dst_port)
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(str(exc)) from None
    upstream = inp.upstream
    if upstream is not None and upstream is not out:
        raise Refusal(409, f"input {inp.qualified_name!r} is already connected to "
                           f"{upstream.qualified_name!r}; DELETE /connections first")
    try:
        out.connect(inp)
    except PortKindError as exc:
        raise bad(str(exc)) from None
    except PortError as exc:  # linked meanwhile by the runtime's own process
        raise Refusal(409, str(exc)) from None
    return (200 if upstream is out else 201), _link(out.qualified_name, inp.qualified_name)


def disconnect(find: Find, body: dict[str, Any]) -> tuple[int, Any]:
    """200 with the link removed; 404 when there is no such link."""
    (src, src_port), (dst, dst_port) = _endpoints(find, body)
    try:
        out = src.outputs[src_port] if src_port else src.default_output()
        inp = dst.inputs[dst_port] if dst_port else None
    except PortError as exc:
        raise bad(str(exc)) from None
    if inp is None:
        inp = next((i for i in out.links if i.actor is dst), None)
    elif inp.upstream is not out:
        inp = None
    if inp is None:
        to = f"{dst.actor_id}.{dst_port}" if dst_port else dst.actor_id
        raise Refusal(404, f"no connection {out.qualified_name} -> {to}")
    out.disconnect(inp)
    return 200, _link(out.qualified_name, inp.qualified_name)


def _link(src: str, dst: str) -> dict[str, str]:
    return {"from": src, "to": dst}


__all__ = ["connect", "disconnect", "LINK_FIELDS"]
