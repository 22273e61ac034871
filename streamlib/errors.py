"""One error hierarchy; each class also inherits the matching builtin.

Callers can catch ``StreamlibError`` for anything raised by the library, or the
builtin (``ValueError``, ``TypeError``...) they would expect from plain Python.
"""

from __future__ import annotations


class StreamlibError(Exception):
    """Base class of every error raised by streamlib."""


class FrameValidationError(StreamlibError, ValueError):
    """A frame or message failed validation (shape, dtype, format, rate)."""


class PortKindError(StreamlibError, TypeError):
    """A connection or a write joined incompatible kinds (video into audio...)."""


class PortError(StreamlibError, KeyError):
    """A named port does not exist, or a port is misused (double connect...)."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want prose
        return str(self.args[0]) if self.args else ""


class ActorStateError(StreamlibError, RuntimeError):
    """An operation is not valid in the actor's or runtime's current state."""


class WorkerError(StreamlibError, RuntimeError):
    """``process`` raised inside a worker process; carries the worker traceback."""

    def __init__(self, message: str, worker_traceback: str = "") -> None:
        super().__init__(message)
        self.worker_traceback = worker_traceback

    def __str__(self) -> str:
        base = super().__str__()
        if self.worker_traceback:
            return f"{base}\n--- worker traceback ---\n{self.worker_traceback.rstrip()}"
        return base


class DispatcherShutdownError(ActorStateError):
    """Work was submitted to a dispatcher that is shut down."""


class ClosedError(ActorStateError):
    """A resource (runtime, buffer, socket sender, telemetry...) was used after ``close()``.

    The one class for every "is closed" error; the message names the resource. Being
    closed is a state, so it is an ``ActorStateError`` (and a ``RuntimeError``).
    """


class ClockClosedError(ClosedError):
    """``next_tick`` was called on (or interrupted by) a closed clock."""


class EndOfStream(StreamlibError):
    """A finite source or clock has no more items; an expected signal, not a failure."""


class ShutdownTimeoutError(StreamlibError, TimeoutError):
    """Work did not finish within the shutdown timeout."""


class RegistryError(StreamlibError, KeyError):
    """An actor URI is not registered, or is registered twice."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PortRangeExhaustedError(StreamlibError, RuntimeError):
    """The port allocator has no free port left in its configured range."""


class RunFailedError(ActorStateError):
    """``Runtime.run(raise_on_failure=True)`` ended with failed or stalled actors."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result


class ConfigError(StreamlibError, ValueError):
    """A parameter, field or request is invalid; the message names the actor, port or field."""


class ConfigTypeError(ConfigError, TypeError):
    """A parameter has the wrong type (a str where a callable is needed...).

    A ``ConfigError`` (``except ConfigError`` catches every bad parameter) that is also
    the ``TypeError`` plain Python raises for a wrong type.
    """


class UnavailableError(StreamlibError, RuntimeError):
    """What a call asked for (a window, the CUDA backend...) is not available on this
    machine; the message says what is missing and what to use instead."""


class RTPError(StreamlibError, ValueError):
    """A datagram is not a valid RTP packet (too short, bad version, bad lengths), or a
    capture of datagrams or a packet's payload is malformed."""


class SDPError(StreamlibError, ValueError):
    """SDP text is malformed or lacks what is needed; the message names the line or field."""


class PTPError(StreamlibError, ValueError):
    """A PTP (IEEE 1588) message cannot be decoded (too short, bad version or length)."""


class AccessDeniedError(StreamlibError, PermissionError):
    """Untrusted input asked for something it is not allowed (a module, a file, code)."""
