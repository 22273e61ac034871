"""Where code and files may come from: registered names, module allow lists, folders.

Python code that builds actors is trusted: it could run anything anyway. Text
that names code (a pipeline file, a control-plane request) is not. While such
text is turned into actors, a ``TrustPolicy`` is applied (``with applied(policy):``,
a context variable, so it follows the request's thread only) and every place
that turns a string into code asks it first:

* ``register_function(name, fn)``: a callable code registered by name; the
  built-in transforms (``invert``, ``mirror``, ``identity``) and models
  (``bright_box``) are registered. ``fn``/``model``/``draw`` values may name them.
* ``"package.module:attr"`` is resolved only when ``package.module`` (or a
  package above it) is on ``allow_modules``. The name is checked *before*
  ``importlib.import_module`` (an import runs the module's top-level code),
  and the object is checked for the expected kind (an ``Actor`` subclass, a
  ``torch.nn.Module``) *before* it is called. streamlib's own modules are
  importable without listing, but only for actor classes and ``nn.Module``
  classes, never as arbitrary factories or hooks.
* ``allow_code``: draw code (Python source) and shader source; off for the
  control plane unless enabled.
* Files (``restrict_files``, the control plane): paths an actor reads must lie
  under ``input_dir`` and paths it writes under ``output_dir`` (both default to
  none: refused). A relative path resolves under the folder; ``..``, absolute
  paths and symlinks leading outside are refused (``AccessDeniedError``, 403).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping, TypeVar

from streamlib.core.actor import Actor
from streamlib.errors import AccessDeniedError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["object", "actor", "model", "function"]
_SPEC_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_NAME_RE = re.compile(r"^[A-Za-z_][\w.-]*$")

_functions: dict[str, Callable[..., Any]] = {}
_functions_lock = threading.Lock()


def register_function(name: str, fn: F, *, replace: bool = False) -> F:
    """Make ``fn`` available by ``name`` to pipeline files and the control plane
    (``fn: name`` on a TransformActor, ``model: name``, ``draw: name``...); returns ``fn``.

    Raises ConfigError for a bad name, a non-callable or a name already taken
    (unless ``replace``)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"register_function: name {name!r} must be letters, digits, '_', "
                          "'.' or '-'")
    if not callable(fn):
        raise ConfigError(f"register_function({name!r}): {type(fn).__name__} is not callable")
    with _functions_lock:
        if not replace and name in _functions and _functions[name] is not fn:
            raise ConfigError(f"register_function: {name!r} is already registered "
                              "(replace=True to change it)")
        _functions[name] = fn
    return fn


def registered_function(name: str) -> Callable[..., Any] | None:
    """The callable registered as ``name``, or None (the built-in actor modules
    register theirs when imported: ``streamlib.actors.transform``, ``.inference``)."""
    with _functions_lock:
        return _functions.get(name)


def registered_names() -> list[str]:
    """Every registered name, sorted."""
    with _functions_lock:
        return sorted(_functions)


# -- the policy ------------------------------------------------------------------------

@dataclass(frozen=True)
class TrustPolicy:
    """What text naming code or files may ask for (see the module doc)."""

    source: str = "Python code"  # who is asking, for messages
    allow_modules: tuple[str, ...] = ()
    any_module: bool = False
    allow_code: bool = True
    restrict_files: bool = False
    input_dir: Path | None = None
    output_dir: Path | None = None
    hint: str = field(default="allow_modules=[...]")  # how this source allows a module

    def module_allowed(self, module: str) -> bool:
        return self.any_module or any(module == m or module.startswith(m + ".")
                                      for m in self.allow_modules)


TRUSTED = TrustPolicy(any_module=True)
_policy: contextvars.ContextVar[TrustPolicy] = contextvars.ContextVar("streamlib_trust",
                                                                      default=TRUSTED)


def current_policy() -> TrustPolicy:
    return _policy.get()


@contextlib.contextmanager
def applied(policy: TrustPolicy) -> Iterator[TrustPolicy]:
    """Apply ``policy`` to the strings resolved in this thread inside the block."""
    token = _policy.set(policy)
    try:
        yield policy
    finally:
        _policy.reset(token)


def check_modules(names: Any, where: str) -> tuple[str, ...]:
    """``names`` (an iterable of module names) as a tuple; ConfigError naming a bad one."""
    if names is None:
        return ()
    if isinstance(names, str):
        names = [names]
    found = []
    for name in names:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
            raise ConfigError(f"{where}: {name!r} is not a module name (package.module)")
        found.append(name)
    return tuple(found)


def resolve_object(spec: str, where: str = "", *, kind: Kind = "object") -> Any:
    """The object named by ``"package.module:attr"`` (``attr`` may be dotted),
    as the current policy allows.

    Raises:
        AccessDeniedError: the module is not allowed (checked before importing).
        ConfigError: bad form, import failure, no such attribute, or an object
            that is not of ``kind`` (``actor``: an Actor subclass; ``model``: a
            ``torch.nn.Module`` class or instance unless its module is allowed).
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(spec, str) or not _SPEC_RE.match(spec.strip()):
        raise ConfigError(f"{prefix}{spec!r} is not of the form 'package.module:name'")
    module_name, _, attr = spec.strip().partition(":")
    policy = current_policy()
    allowed = policy.module_allowed(module_name)
    library = module_name == "streamlib" or module_name.startswith("streamlib.")
    if not allowed and not (library and kind in ("actor", "model")):
        raise AccessDeniedError(
            f"{prefix}{spec!r}: module {module_name!r} is not on the allow list of {policy.source} "
            f"(it was not imported); allow it with {policy.hint.replace('...', repr(module_name))}"
            " or name a registered function")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is a configuration error
        raise ConfigError(f"{prefix}cannot import module {module_name!r} for {spec!r} "
                         f"({type(exc).__name__}: {exc})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{prefix}{spec!r}: {module_name!r} has no attribute {attr!r}") \
                from None
    if kind == "actor":
        if not (inspect.isclass(obj) and issubclass(obj, Actor)):
            raise ConfigError(f"{prefix}{spec!r} is not an Actor subclass")
    elif kind == "model" and not allowed:
        import torch

        if not (isinstance(obj, torch.nn.Module)
                or (inspect.isclass(obj) and issubclass(obj, torch.nn.Module))):
            raise AccessDeniedError(f"{prefix}{spec!r} is not a torch.nn.Module class or "
                                    f"instance; allow its module with "
                                    f"{policy.hint.replace('...', repr(module_name))}")
    return obj


def check_code(where: str, what: str) -> None:
    """AccessDeniedError unless the current policy allows source code (``what``)."""
    policy = current_policy()
    if not policy.allow_code:
        raise AccessDeniedError(f"{where}: {what} from {policy.source} is off; start it with "
                                "allow_code=True (--allow-code) to accept code")


# -- files -----------------------------------------------------------------------------

Access = Literal["read", "write"]
# Built-in actor parameters that name files, and what the actor does with them.
FILE_FIELDS: dict[str, dict[str, Access]] = {
    "FileReaderActor": {"path": "read"},
    "FileWriterActor": {"path": "write"},
    "DrawingActor": {"draw_file": "read"},
    "ShaderActor": {"fragment_file": "read"},
    "NetworkReceiveActor": {"sdp": "read"},
    "AudioNetworkReceiveActor": {"sdp": "read"},
    "NetworkSendActor": {"sdp_path": "write"},
    "AudioNetworkSendActor": {"sdp_path": "write"},
    "AudioOutputActor": {"path": "write"},
}


def confine_path(value: Any, folder: Path | None, where: str, access: Access) -> str:
    """``value`` resolved under ``folder``; AccessDeniedError when no folder is
    configured or the path (symlinks resolved) leaves it."""
    option = "input_dir (--input-dir)" if access == "read" else "output_dir (--output-dir)"
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ConfigError(f"{where} must be a non-empty file path, got {value!r}")
    if folder is None:
        raise AccessDeniedError(f"{where}: {'reading' if access == 'read' else 'writing'} "
                                f"files over the control plane is off; start it with {option}")
    root = Path(os.path.realpath(folder))
    target = Path(os.path.realpath(root / os.fspath(value)))
    if target != root and root not in target.parents:
        raise AccessDeniedError(f"{where}: {os.fspath(value)!r} is outside the {access} folder "
                                f"{option}")
    return str(target)


def confine_params(type_name: str, params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``params`` with every file field of ``type_name`` confined (see ``confine_path``)
    when the current policy restricts files; other types' params are returned as is."""
    policy = current_policy()
    out = dict(params)
    if not policy.restrict_files:
        return out
    for name, access in FILE_FIELDS.get(type_name, {}).items():
        value = out.get(name)
        if value is None:
            continue
        if name == "sdp" and isinstance(value, str) and ("\n" in value
                                                        or value.lstrip().startswith("v=")):
            continue  # SDP text, not a path
        folder = policy.input_dir if access == "read" else policy.output_dir
        out[name] = confine_path(value, folder, f"{where}: field {name!r}", access)
    return out


__all__ = ["register_function", "registered_function", "registered_names", "TrustPolicy",
           "TRUSTED", "current_policy", "applied", "resolve_object", "check_code",
           "check_modules", "confine_path", "confine_params", "FILE_FIELDS"]
