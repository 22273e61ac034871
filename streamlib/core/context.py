"""The current-runtime context: which runtime a new actor attaches to.

The runtime layer sets it (``with Runtime():`` enters it, the supervisor
enters it while it rebuilds) and installs the process-wide default runtime;
``Actor`` only reads it, so the core never imports the runtime.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from typing import TYPE_CHECKING, Callable, Iterator

from streamlib.errors import ActorStateError

if TYPE_CHECKING:
    from streamlib.runtime.runtime import Runtime

_current: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "streamlib_runtime", default=None)
_default_factory: Callable[[], Runtime] | None = None
_factory_lock = threading.Lock()

# Set by the supervisor while it rebuilds an actor: the id the rebuilt one takes,
# whatever its subclass passes (auto ids would otherwise move on).
rebuilding_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "streamlib_rebuilding_id", default=None)


def install_default(factory: Callable[[], Runtime]) -> None:
    """Install what ``current_runtime`` falls back to outside any ``with Runtime()``
    block (``streamlib.runtime.runtime`` installs its ``default_runtime``)."""
    global _default_factory
    with _factory_lock:
        _default_factory = factory


def current_runtime() -> Runtime:
    """The runtime of the enclosing ``with Runtime()`` block, else the default one.

    Raises:
        ActorStateError: no runtime is entered and none is installed as the
            default (``streamlib.runtime`` was never imported).
    """
    runtime = _current.get()
    if runtime is not None and not runtime.closed:
        return runtime
    factory = _default_factory
    if factory is None:
        raise ActorStateError(
            "no runtime to attach actors to: create them inside `with Runtime():`, pass "
            "runtime=, or import streamlib.runtime.runtime for the default runtime")
    return factory()


@contextlib.contextmanager
def entered(runtime: Runtime) -> Iterator[None]:
    """``runtime`` is the current runtime inside the block (restored after)."""
    token = _current.set(runtime)
    try:
        yield
    finally:
        _current.reset(token)


def enter(runtime: Runtime) -> contextvars.Token[Runtime | None]:
    """Make ``runtime`` current until ``leave(token)`` (``Runtime.__enter__``/``__exit__``)."""
    return _current.set(runtime)


def leave(token: contextvars.Token[Runtime | None]) -> None:
    _current.reset(token)
