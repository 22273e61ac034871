"""The catalogue of actor types: names, parameters and docs, for graph files and agents.

Built-in actors are found by class name (``TestPatternActor``); any other actor
class is named ``package.module:ClassName`` (imported only as ``streamlib.core.trust``
allows). Parameters come from the
constructor signature, so the catalogue can never disagree with the code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from streamlib.core.actor import Actor
from streamlib.core.trust import resolve_object
from streamlib.errors import ConfigError

# Constructor parameters every actor shares; graph files set them in their own way.
_COMMON = {"self", "actor_id", "clock", "dispatcher", "runtime", "host", "kwargs", "args"}


@dataclass(frozen=True)
class ParamInfo:
    name: str
    annotation: str
    default: Any
    required: bool

    def as_dict(self) -> dict[str, Any]:
        default = self.default if _jsonable(self.default) else repr(self.default)
        return {"name": self.name, "type": self.annotation, "required": self.required,
                **({} if self.required else {"default": default})}


@dataclass(frozen=True)
class ActorType:
    name: str
    cls: type[Actor]
    summary: str
    doc: str
    params: tuple[ParamInfo, ...]

    def param(self, name: str) -> ParamInfo | None:
        return next((p for p in self.params if p.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.name, "summary": self.summary,
                "params": [p.as_dict() for p in self.params], "doc": self.doc}


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict, tuple))


def describe_actor_class(cls: type[Actor], name: str | None = None) -> ActorType:
    """Catalogue entry for ``cls`` built from its ``__init__`` signature and docstring."""
    params: list[ParamInfo] = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in _COMMON or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(
            p.annotation, "__name__", str(p.annotation))
        if annotation is inspect.Parameter.empty:
            annotation = "Any"
        required = p.default is inspect.Parameter.empty
        params.append(ParamInfo(p.name, str(annotation), None if required else p.default, required))
    doc = inspect.getdoc(cls) or ""
    return ActorType(name or cls.__name__, cls, doc.split("\n", 1)[0], doc, tuple(params))


def builtin_actor_types() -> dict[str, ActorType]:
    """Every actor class exported by ``streamlib.actors``, by class name."""
    from streamlib import actors

    found: dict[str, ActorType] = {}
    for name in getattr(actors, "__all__", dir(actors)):
        obj = getattr(actors, name)
        if inspect.isclass(obj) and issubclass(obj, Actor) and not inspect.isabstract(obj):
            found[name] = describe_actor_class(obj)
    return dict(sorted(found.items()))


def resolve_actor_type(name: str) -> ActorType:
    """``TestPatternActor`` or ``package.module:Class``; ConfigError listing known types.

    A module is imported only when the current ``streamlib.core.trust`` policy allows
    it (AccessDeniedError otherwise, before any import), and the object must be
    an Actor subclass."""
    builtins = builtin_actor_types()
    if name in builtins:
        return builtins[name]
    if ":" in name:
        obj = resolve_object(name, f"actor type {name!r}", kind="actor")
        return describe_actor_class(obj, name)
    raise ConfigError(
        f"unknown actor type {name!r}; known types: {', '.join(builtins)} "
        "(or 'package.module:ClassName' for your own)"
    )
