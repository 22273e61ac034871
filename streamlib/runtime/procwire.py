"""The process pool's wire format: shared-memory arenas and a tensor-aware pickle.

Every message is ``pickle((kind, arena_name, body_bytes))``. Tensors in a body
are replaced (pickle persistent ids) by ``(offset, shape, dtype, device)``
references into a shared-memory arena, so only metadata goes through the pipe.
The parent (:mod:`streamlib.runtime.procpool`) creates and unlinks every segment; the
worker (:mod:`streamlib.runtime.procworker`) only attaches, so a killed worker can
leak nothing. Internal to those two modules.
"""

from __future__ import annotations

import contextlib
import copyreg
import io
import math
import pickle
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from types import MappingProxyType
from typing import Any

import torch

__all__ = ["Arena", "Unpickler", "dumps", "fill", "grown", "send"]

_ALIGN = 64  # tensor offsets in an arena; keeps any dtype view aligned
_GROW = 1 << 20  # arenas are sized in whole MiB so slowly varying sizes rarely regrow


def _reduce_mappingproxy(m: MappingProxyType[Any, Any]) -> tuple[Any, ...]:
    return (MappingProxyType, (dict(m),))  # frames keep metadata in a mappingproxy


class Arena:
    """One shared-memory segment, viewed as a flat uint8 tensor."""

    def __init__(self, shm: SharedMemory, owner: bool) -> None:
        self.shm, self.owner = shm, owner
        self.view = torch.frombuffer(shm.buf, dtype=torch.uint8)

    @classmethod
    def create(cls, need: int) -> Arena:
        return cls(SharedMemory(create=True, size=-(-need // _GROW) * _GROW), owner=True)

    @classmethod
    def attach(cls, name: str) -> Arena:
        return cls(SharedMemory(name=name), owner=False)

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        self.view = torch.empty(0, dtype=torch.uint8)  # drop the buffer export first
        with contextlib.suppress(BufferError):
            self.shm.close()
        if self.owner:
            with contextlib.suppress(FileNotFoundError):
                self.shm.unlink()


def grown(arena: Arena | None, need: int) -> Arena:
    """``arena`` if it holds ``need`` bytes, else a new (owned) one replacing it."""
    if arena is not None and arena.shm.size >= need:
        return arena
    if arena is not None:
        arena.close()  # the worker keeps its mapping until it sees the new name
    return Arena.create(need)


class _Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, MappingProxyType: _reduce_mappingproxy}

    def __init__(self, file: io.BytesIO, tensors: list[tuple[int, torch.Tensor]] | None) -> None:
        super().__init__(file, protocol=5)
        self.tensors = tensors
        self.size = 0

    def persistent_id(self, obj: Any) -> Any:
        if (self.tensors is None or not isinstance(obj, torch.Tensor)
                or obj.layout != torch.strided or obj.is_quantized):
            return None
        self.tensors.append((self.size, obj))
        ref = (self.size, tuple(obj.shape), obj.dtype, str(obj.device))
        self.size += -(-(obj.numel() * obj.element_size()) // _ALIGN) * _ALIGN
        return ref


def dumps(obj: Any, tensors: list[tuple[int, torch.Tensor]] | None = None) -> tuple[bytes, int]:
    """Pickle ``obj``; with ``tensors`` given, collect them out of band (returns arena bytes)."""
    buf = io.BytesIO()
    pickler = _Pickler(buf, tensors)
    pickler.dump(obj)
    return buf.getvalue(), pickler.size


def fill(arena: Arena, tensors: list[tuple[int, torch.Tensor]]) -> None:
    for offset, t in tensors:
        n = t.numel() * t.element_size()
        if n:
            arena.view[offset:offset + n].view(t.dtype).view(t.shape).copy_(t.detach())


class Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, arena: Arena | None) -> None:
        super().__init__(io.BytesIO(data))
        self.arena = arena
        self.size = 0  # tensor bytes copied out of the arena

    def persistent_load(self, pid: Any) -> torch.Tensor:
        offset, shape, dtype, device = pid
        n = math.prod(shape) * dtype.itemsize
        self.size += n
        if n == 0 or self.arena is None:
            t = torch.empty(shape, dtype=dtype)
        else:  # the one copy: a frame handed to user code must never alias the arena
            t = self.arena.view[offset:offset + n].view(dtype).view(shape).clone()
        return t if device == "cpu" else t.to(device)


def send(conn: Connection, kind: str, arena: str | None, body: bytes) -> int:
    """Send one message ``(kind, arena name, body)``; returns its size in bytes."""
    data = pickle.dumps((kind, arena, body), protocol=5)
    conn.send_bytes(data)
    return len(data)
