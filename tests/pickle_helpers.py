"""Building blocks for pickle tests: hand-written opcode streams and torch-style zip archives.

The opcode builders write exactly what ``torch.save`` writes for a state dict (protocol 2), so a
test can change one instruction at a time; ``test_hand_written_state_dict_loads_in_torch``
checks that torch agrees.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path


def text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def short_text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


def integer(value: int) -> bytes:
    return pickle.BININT + struct.pack("<i", value)


def glob(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def put(index: int) -> bytes:
    return pickle.BINPUT + bytes([index])


def get(index: int) -> bytes:
    return pickle.BINGET + bytes([index])


def int_tuple(values: tuple[int, ...]) -> bytes:
    return pickle.MARK + b"".join(integer(v) for v in values) + pickle.TUPLE


def tensor(
    key: str,
    numel: int,
    shape: tuple[int, ...],
    stride: tuple[int, ...] | None = None,
    offset: int = 0,
    storage: str = "FloatStorage",
) -> bytes:
    """``torch._utils._rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), ...)``."""
    if stride is None:
        stride, step = [], 1
        for d in reversed(shape):
            stride.insert(0, step)
            step *= d
        stride = tuple(stride)
    persistent = (
        pickle.MARK + text("storage") + glob("torch", storage) + text(key) + text("cpu") + integer(numel) + pickle.TUPLE
    )
    return (
        glob("torch._utils", "_rebuild_tensor_v2")
        + pickle.MARK
        + persistent
        + pickle.BINPERSID
        + integer(offset)
        + int_tuple(shape)
        + int_tuple(stride)
        + pickle.NEWFALSE
        + glob("collections", "OrderedDict")
        + pickle.EMPTY_TUPLE
        + pickle.REDUCE
        + pickle.TUPLE
        + pickle.REDUCE
    )


def state_dict(items: dict[str, bytes], protocol: int = 2) -> bytes:
    """A dict pickle whose values are already-encoded opcode streams."""
    body = b"".join(text(name) + value for name, value in items.items())
    return pickle.PROTO + bytes([protocol]) + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS + pickle.STOP


def write_torch_zip(
    path: Path,
    data_pkl: bytes,
    records: dict[str, bytes] | None = None,
    root: str = "archive",
    compress: int = zipfile.ZIP_STORED,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A zip laid out like ``torch.save``'s: ``<root>/data.pkl``, ``<root>/data/<key>``, ``byteorder``, ``version``."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{root}/data.pkl", data_pkl)
        archive.writestr(f"{root}/byteorder", "little")
        for key, data in (records or {}).items():
            archive.writestr(f"{root}/data/{key}", data, compress_type=compress)
        for name, data in (extra or {}).items():
            archive.writestr(f"{root}/{name}", data)
        archive.writestr(f"{root}/version", "3\n")
    return path


def floats(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)
