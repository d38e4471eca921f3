"""In-memory tensors seen through the same byte-range interface as files.

A state dict is laid out as one virtual file: each distinct storage gets its own span of the file's
address space, and every tensor becomes a :class:`TensorRecord` on that span with its storage key,
offset and strides, the way a pickle checkpoint's tensors are. The rules and the content engine then
run unchanged; reads return views of the storages' memory, never copies.

torch and numpy are imported by the callers' objects, not here: this module only duck-types them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tiecheck.checkpoint import FileFormat, TensorRecord, WeightFile, view_reach
from tiecheck.errors import TiecheckError
from tiecheck.formats.dtypes import DTYPES, from_torch_name
from tiecheck.io.source import Closing
from tiecheck.live._sharing import Area

#: The one virtual file a state dict is laid out in.
VIRTUAL_FILE = "state_dict"


@dataclass(frozen=True)
class _Storage:
    key: str
    base: int
    """Offset of the storage's first byte in the virtual file."""
    address: int
    """Its real address (data pointer), to place views inside it."""
    data: memoryview | None
    """Its bytes as unsigned bytes; None when they cannot be read (meta, another device)."""


@dataclass(frozen=True)
class Layout:
    """A state dict's tensors as records of one virtual file, with the memory behind them."""

    file: WeightFile
    areas: tuple[Area, ...]
    storages: tuple[_Storage, ...]
    notes: tuple[str, ...]

    @property
    def readable(self) -> bool:
        return all(s.data is not None for s in self.storages)


class MemorySource(Closing):
    """Reads of the virtual file, served from the storages' memory."""

    def __init__(self, layout: Layout) -> None:
        self._storages = sorted(layout.storages, key=lambda s: s.base)
        self._bases = [s.base for s in self._storages]
        self._size = layout.file.size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes | memoryview:
        i = bisect.bisect_right(self._bases, offset) - 1
        if i < 0 or length <= 0:
            return b""
        storage = self._storages[i]
        if storage.data is None:
            raise TiecheckError(f"tensor bytes on {storage.key} are not in CPU memory (meta or another device)")
        start = offset - storage.base
        return storage.data[start : start + length]

    def close(self) -> None:
        return None


class MemoryStore:
    """A :class:`~tiecheck.io.source.CheckpointStore` holding the one virtual weight file."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout

    @property
    def location(self) -> str:
        return "<state dict>"

    def list_files(self) -> list[str]:
        return [VIRTUAL_FILE]

    def exists(self, name: str) -> bool:
        return name == VIRTUAL_FILE

    def open(self, name: str) -> MemorySource:
        if name != VIRTUAL_FILE:
            raise FileNotFoundError(name)
        return MemorySource(self._layout)

    def read_text(self, name: str) -> str:
        raise FileNotFoundError(name)


def _is_torch(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "untyped_storage")


def _is_numpy(value: object) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "__array_interface__")


def _end(start: int, shape: tuple[int, ...], stride: tuple[int, ...], itemsize: int) -> int:
    """Just past the last element in C order: what ``tensor.view(-1)[-1]`` addresses, plus one element."""
    return start + view_reach(shape, stride) * itemsize


class _Builder:
    def __init__(self) -> None:
        self.storages: dict[object, _Storage] = {}
        self.tensors: list[TensorRecord] = []
        self.areas: list[Area] = []
        self.notes: list[str] = []
        self._next_base = 0

    def _storage(self, identity: object, address: int, nbytes: int, data: memoryview | None) -> _Storage:
        found = self.storages.get(identity)
        if found is None:
            found = _Storage(f"s{len(self.storages)}", self._next_base, address, data)
            self.storages[identity] = found
            self._next_base += max(nbytes, 1)
        return found

    def add(self, name: str, value: object) -> None:
        if _is_torch(value):
            self._add_torch(name, value)
        elif _is_numpy(value):
            self._add_numpy(name, value)
        else:
            raise TiecheckError(f"state dict entry {name!r} is a {type(value).__name__}, not a tensor or array")

    def _record(
        self, name: str, dtype: str, shape: tuple[int, ...], stride: tuple[int, ...], storage: _Storage, start: int
    ) -> TensorRecord:
        itemsize = DTYPES[dtype].bits // 8
        first = storage.base + (start - storage.address)
        record = TensorRecord(
            name=name,
            dtype=dtype,
            shape=shape,
            file=VIRTUAL_FILE,
            start=first,
            end=first + math.prod(shape) * itemsize,
            storage=storage.key,
            storage_offset=(start - storage.address) // itemsize if itemsize else 0,
            stride=stride,
        )
        return replace(record, stride=None) if record.contiguous else record  # None: C-contiguous, as files say

    def _add_torch(self, name: str, tensor: Any) -> None:
        identity = id(tensor)  # the caller's object, alive in the state dict (a detached copy is not)
        if type(tensor).__name__ == "DTensor" and hasattr(tensor, "to_local"):
            self.notes.append(f"{name}: a DTensor; only this rank's local shard was checked")
            tensor = tensor.to_local()
        tensor = tensor.detach()
        layout = str(tensor.layout)
        if layout != "torch.strided":  # sparse, nested: no strided storage to read (nor can safetensors store them)
            raise TiecheckError(f"state dict entry {name!r} is a {layout} tensor, which tiecheck cannot check")
        dtype = from_torch_name(str(tensor.dtype))
        if dtype is None or DTYPES[dtype].bits % 8:
            raise TiecheckError(f"state dict entry {name!r} has dtype {tensor.dtype}, which tiecheck cannot check")
        shape, stride = tuple(tensor.shape), tuple(tensor.stride())
        itemsize = DTYPES[dtype].bits // 8
        device = str(tensor.device)
        if tensor.device.type == "meta":
            # No memory: only the tensor object's identity says what is shared (as transformers does).
            storage = self._storage(("meta", identity), 0, math.prod(shape) * itemsize, None)
            start = tensor.storage_offset() * itemsize
            self.areas.append(Area(name, device, identity, 0, start, _end(start, shape, stride, itemsize), True))
            self.tensors.append(self._record(name, dtype, shape, stride, storage, start))
            return
        untyped = tensor.untyped_storage()
        address, nbytes = untyped.data_ptr(), untyped.nbytes()
        data = None
        if tensor.device.type == "cpu":
            import torch  # the caller's own objects are torch tensors: torch is there

            data = torch.empty(0, dtype=torch.uint8).set_(untyped).numpy().data
        storage = self._storage((device, address, nbytes), address, nbytes, data)
        start = tensor.data_ptr()
        self.areas.append(Area(name, device, address, nbytes, start, _end(start, shape, stride, itemsize)))
        self.tensors.append(self._record(name, dtype, shape, stride, storage, start))

    def _add_numpy(self, name: str, array: Any) -> None:
        import numpy as np

        utils = getattr(np.lib, "array_utils", None)  # numpy 2 moved it; numpy 1 has it at the top
        byte_bounds = (utils if utils is not None else np).byte_bounds

        dtype = from_torch_name(array.dtype.name)
        if dtype is None:
            raise TiecheckError(f"state dict entry {name!r} has dtype {array.dtype}, which tiecheck cannot check")
        itemsize = array.dtype.itemsize
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        misplaced = (array.__array_interface__["data"][0] - byte_bounds(root)[0]) % itemsize
        if misplaced or any(s < 0 or s % itemsize for s in array.strides):
            array = np.array(array, order="C")  # negative or unaligned strides: checked as a copy of its own
            self.notes.append(f"{name}: an array with negative or unaligned strides, checked as a copy")
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        low, high = byte_bounds(root)
        data = root.reshape(-1).view(np.uint8).data if root.flags.c_contiguous else None
        if data is None:
            self.notes.append(f"{name}: a view of a non-contiguous array; its bytes were not compared")
        storage = self._storage(("numpy", low, high), low, high - low, data)
        start = array.__array_interface__["data"][0]
        shape = tuple(array.shape)
        stride = tuple(s // itemsize for s in array.strides)
        end = _end(start, shape, stride, itemsize)
        self.areas.append(Area(name, "cpu", low, high - low, start, end, numpy=True))
        self.tensors.append(self._record(name, dtype, shape, stride, storage, start))


def lay_out(state_dict: Mapping[str, object]) -> Layout:
    """The virtual file of a state dict: records, byte areas and memory for every tensor."""
    builder = _Builder()
    for name, value in state_dict.items():
        builder.add(str(name), value)
    storages = tuple(builder.storages.values())
    size = builder._next_base
    file = WeightFile(VIRTUAL_FILE, FileFormat.MEMORY, size, tuple(builder.tensors))
    return Layout(file, tuple(builder.areas), storages, tuple(builder.notes))
