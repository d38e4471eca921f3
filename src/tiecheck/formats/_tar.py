"""torch's legacy tar format (torch < 0.1.10), read only for what ``torch.load`` would unpickle from it.

``torch.load`` tries a non-zip file as a tar first. One with a ``storages``, ``tensors`` or ``pickle``
member is unpickled member by member with ``weights_only=False`` (and refused with ``True``), whatever
the file is called. tiecheck reads no tensor of this format; it names the first pickle of each such
member for its imports, and reports that the rest could not be checked.
"""

from __future__ import annotations

import io
import tarfile

from tiecheck.formats._pickle_walk import PickleWalk, walk_pickle
from tiecheck.io.source import ByteSource

#: The members ``torch.serialization._legacy_load`` unpickles, in its order.
TORCH_MEMBERS = ("storages", "tensors", "pickle")
#: Tar headers read at most: a file with more members than this is no torch checkpoint.
_MAX_MEMBERS = 1000


class _Reader(io.RawIOBase):
    """A seekable file over a :class:`ByteSource`, for :mod:`tarfile`."""

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._source.size}[whence]
        self._at = max(0, base + offset)
        return self._at

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._source.read(self._at, len(buffer))
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


def torch_tar_walks(source: ByteSource, limit: int) -> list[PickleWalk | None] | None:
    """The first pickle of each member torch could unpickle, walked (None: not walked, being larger than
    ``limit``, not a regular file, or a name seen before, since tarfile reads the last of several); None if
    torch would not read the file as its tar format (not a tar, or none of those members)."""
    try:
        with tarfile.open(fileobj=io.BufferedReader(_Reader(source)), mode="r:") as tar:
            found: list[PickleWalk | None] = []
            seen: set[str] = set()
            for count, member in enumerate(tar):
                if count >= _MAX_MEMBERS:
                    found.append(None)  # members past the limit were not looked at
                    break
                if member.name not in TORCH_MEMBERS:
                    continue
                file = tar.extractfile(member) if member.isfile() and member.name not in seen else None
                seen.add(member.name)
                found.append(None if file is None or member.size > limit else walk_pickle(file.read(limit)))
            return found or None
    except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeError, OverflowError):
        return None
