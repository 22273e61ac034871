"""glfw for ``DisplayActor``: process-global init/terminate (refcounted, and one lock
for every glfw call, since glfw state is shared by the whole process) and the window
callbacks that turn input into ``EventMessage``s."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from streamlib.core.frames import EventMessage

__all__ = ["glfw_acquire", "glfw_error_text", "glfw_lock", "glfw_release", "install_callbacks"]

glfw_lock = threading.RLock()
_glfw_users = 0


def glfw_error_text(glfw: Any) -> str:
    code, desc = glfw.get_error()
    if not code:
        return "unknown glfw error"
    return f"glfw error {code}: {desc.decode(errors='replace') if desc else ''}"


def glfw_acquire() -> str | None:
    """Initialise glfw (refcounted); returns None, or why it failed."""
    global _glfw_users
    try:
        import glfw
    except Exception as exc:  # noqa: BLE001 - a missing libglfw means "no window"
        return f"glfw unavailable ({exc})"
    with glfw_lock:
        if _glfw_users == 0 and not glfw.init():
            return f"glfw.init() failed ({glfw_error_text(glfw)})"
        _glfw_users += 1
    return None


def glfw_release() -> None:
    global _glfw_users
    import glfw

    with glfw_lock:
        _glfw_users -= 1
        if _glfw_users == 0:
            glfw.terminate()


def _key_names() -> dict[int, str]:
    import glfw

    names = {int(getattr(glfw, n)): n[4:].lower() for n in dir(glfw)
             if n.startswith("KEY_") and n != "KEY_LAST"}
    return names


_MODS = (("MOD_SHIFT", "shift"), ("MOD_CONTROL", "ctrl"), ("MOD_ALT", "alt"),
         ("MOD_SUPER", "super"), ("MOD_CAPS_LOCK", "caps_lock"), ("MOD_NUM_LOCK", "num_lock"))


def install_callbacks(glfw: Any, window: Any, source: str, queue: Callable[[EventMessage], None],
                      on_fb_size: Callable[[int, int], None],
                      on_win_size: Callable[[int, int], None]) -> None:
    """Route ``window``'s key, mouse, scroll, resize and focus callbacks (run inside
    ``glfw.poll_events``) to ``queue`` as ``EventMessage``s from ``source``; size
    changes also go to ``on_fb_size`` (pixels) and ``on_win_size`` (screen units)."""
    keys = _key_names()
    mods = [(int(getattr(glfw, attr)), name) for attr, name in _MODS if hasattr(glfw, attr)]
    actions = {glfw.PRESS: "press", glfw.RELEASE: "release", glfw.REPEAT: "repeat"}

    def modifiers(bits: int) -> frozenset[str]:
        return frozenset(name for bit, name in mods if bits & bit)

    def on_key(_w: Any, key: int, _scancode: int, action: int, bits: int) -> None:
        if action in actions:
            queue(EventMessage(
                "key", actions[action], time.monotonic_ns(), key=keys.get(key, f"key{key}"),
                modifiers=modifiers(bits), source=source))

    def on_button(w: Any, button: int, action: int, bits: int) -> None:
        if action in (glfw.PRESS, glfw.RELEASE):
            x, y = glfw.get_cursor_pos(w)
            queue(EventMessage(
                "mouse", actions[action], time.monotonic_ns(), x=x, y=y, button=button,
                modifiers=modifiers(bits), source=source))

    def on_cursor(_w: Any, x: float, y: float) -> None:
        queue(EventMessage("mouse", "move", time.monotonic_ns(), x=x, y=y, source=source))

    def on_scroll(_w: Any, dx: float, dy: float) -> None:
        queue(EventMessage("mouse", "scroll", time.monotonic_ns(), x=dx, y=dy, source=source))

    def on_framebuffer(_w: Any, width: int, height: int) -> None:
        on_fb_size(width, height)
        queue(EventMessage("window", "resize", time.monotonic_ns(), width=width, height=height,
                           source=source))

    def on_window(_w: Any, width: int, height: int) -> None:
        on_win_size(width, height)

    def on_focus(_w: Any, focused: int) -> None:
        queue(EventMessage("window", "focus" if focused else "unfocus", time.monotonic_ns(),
                           source=source))

    glfw.set_key_callback(window, on_key)
    glfw.set_mouse_button_callback(window, on_button)
    glfw.set_cursor_pos_callback(window, on_cursor)
    glfw.set_scroll_callback(window, on_scroll)
    glfw.set_framebuffer_size_callback(window, on_framebuffer)
    glfw.set_window_size_callback(window, on_window)
    glfw.set_window_focus_callback(window, on_focus)
