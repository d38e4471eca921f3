"""Git LFS pointer files: the 130-odd bytes that stand in a clone for a weight file never pulled.

A repo cloned without ``git lfs`` (or with ``GIT_LFS_SKIP_SMUDGE=1``) has, in place of each weight
file, a small text file naming the real file's hash and size. Read as safetensors it looks like a
header of absurd length; read as a pickle, like garbage. Recognised first, it can be named for what
it is, with the size of what is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: The first line of every pointer (the spec's version URL; older clients wrote the hawser one).
_VERSIONS = (b"version https://git-lfs.github.com/spec/v1\n", b"version https://hawser.github.com/spec/v1\n")
#: Pointers are small: the spec caps them at 1024 bytes.
MAX_POINTER_SIZE = 1024

_OID = re.compile(rb"^oid sha256:([0-9a-f]{64})$", re.M)
_SIZE = re.compile(rb"^size (\d{1,19})$", re.M)


@dataclass(frozen=True)
class LfsPointer:
    oid: str
    """The real file's sha256, hex."""
    size: int
    """The real file's size in bytes."""


def parse_lfs_pointer(data: bytes) -> LfsPointer | None:
    """The pointer in ``data`` (a whole small file), or None when it is not one."""
    if len(data) > MAX_POINTER_SIZE or not data.startswith(_VERSIONS):
        return None
    oid, size = _OID.search(data), _SIZE.search(data)
    if oid is None or size is None:
        return None
    return LfsPointer(oid[1].decode("ascii"), int(size[1]))
