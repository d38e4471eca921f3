"""Where a checkpoint's files really are: a path named by the folder must not lead out of it.

An index entry ``sub/x.safetensors`` where ``sub`` links elsewhere, or a shard that is a
symlink to a file outside, would make tiecheck read (and a fix delete) files that are not the
checkpoint's. Every such path is resolved and must stay inside the folder. One layout is
allowed to point outside: a Hugging Face cache snapshot (``<repo>/snapshots/<rev>/``), whose
files are symlinks into the same repo's ``blobs/`` folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_blobs(root: Path) -> Path | None:
    """The ``blobs/`` folder of the Hugging Face cache repo ``root`` is a snapshot of, if it is one.

    It must be a real folder beside ``snapshots/``: a ``blobs`` that is a symlink (to ``/etc``, say) would
    turn every snapshot link into a way out of the folder. huggingface_hub never makes it one.
    """
    snapshots = root.resolve().parent
    blobs = snapshots.parent / "blobs"
    if snapshots.name == "snapshots" and not blobs.is_symlink() and blobs.is_dir():
        return blobs
    return None


def within(root: Path, path: Path) -> bool:
    """Whether ``path`` (possibly through symlinks) resolves inside ``root``, or into its cache blobs."""
    try:
        real = Path(os.path.realpath(path))
        base = Path(os.path.realpath(root))
    except (OSError, ValueError):
        return False
    if real == base or base in real.parents:
        return True
    blobs = cache_blobs(root)
    return blobs is not None and real.parent == blobs.resolve()


def in_cache_snapshot(root: Path) -> bool:
    """A Hugging Face cache snapshot whose files are symlinks into ``blobs/``: a fix in place would break it."""
    if cache_blobs(root) is None:
        return False
    return any(entry.is_symlink() for entry in os.scandir(root))


def is_plain_file(entry: os.DirEntry[str]) -> bool:
    """``entry`` is (or links to) a regular file. A symlink loop or an entry that vanished is not: the folder may
    hold anything, and one such name must not stop the scan of the rest."""
    try:
        return entry.is_file()
    except OSError:
        return False
