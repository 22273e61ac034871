"""Which EGL device is which CUDA GPU.

On a machine with several NVIDIA GPUs, EGL's default device is GPU 0 whatever
CUDA device the actor uses, and CUDA-GL interop then fails (the GL context is on
another GPU) and falls back to host copies. NVIDIA's EGL exposes each device's
CUDA ordinal (``EGL_NV_device_cuda``: ``eglQueryDeviceAttribEXT(dev,
EGL_CUDA_DEVICE_NV)``), so the offscreen context can be opened on the EGL device
of the CUDA ordinal (``moderngl``/``glcontext``'s ``device_index`` indexes the
same ``eglQueryDevicesEXT`` list). Mesa's devices carry no CUDA ordinal.

ctypes, not a binding package: it is two extension calls, and PyOpenGL's EGL
module would add a dependency for them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Sequence

EGL_CUDA_DEVICE_NV = 0x323A

_QueryDevices = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                 ctypes.POINTER(ctypes.c_int))
_QueryDeviceAttrib = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.c_int,
                                      ctypes.POINTER(ctypes.c_ssize_t))  # EGLAttrib is intptr_t


def egl_cuda_ordinals() -> list[int | None]:
    """The CUDA ordinal of each EGL device, in ``eglQueryDevicesEXT`` order (None: not a CUDA
    device). Empty when libEGL or its device extensions are missing. Never raises."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("EGL") or "libEGL.so.1")
    except OSError:
        return []
    get_proc = lib.eglGetProcAddress
    get_proc.restype, get_proc.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    query_ptr, attrib_ptr = get_proc(b"eglQueryDevicesEXT"), get_proc(b"eglQueryDeviceAttribEXT")
    if not query_ptr or not attrib_ptr:
        return []
    query, attrib = _QueryDevices(query_ptr), _QueryDeviceAttrib(attrib_ptr)
    count = ctypes.c_int(0)
    if not query(0, None, ctypes.byref(count)) or count.value <= 0:
        return []
    devices = (ctypes.c_void_p * count.value)()
    if not query(count.value, devices, ctypes.byref(count)):
        return []
    ordinals: list[int | None] = []
    for dev in devices[:count.value]:
        value = ctypes.c_ssize_t(-1)
        ok = attrib(dev, EGL_CUDA_DEVICE_NV, ctypes.byref(value))  # EGL_FALSE on non-NVIDIA devices
        ordinals.append(int(value.value) if ok else None)
    return ordinals


def egl_index_for_cuda(ordinal: int,
                       query: Callable[[], Sequence[int | None]] | None = None) -> int | None:
    """The EGL device index whose CUDA ordinal is ``ordinal``, or None (no such device).
    ``query`` lists the ordinals (default: :func:`egl_cuda_ordinals`)."""
    for index, cuda in enumerate((query or egl_cuda_ordinals)()):
        if cuda == ordinal:
            return index
    return None
