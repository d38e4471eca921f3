"""The fix journal and temp files: what an interrupted fix leaves behind, read as hostile input.

A folder may come from anywhere, and so may a ``.tiecheck-fix.json`` in it. The journal is
therefore validated as a whole before any step runs: a step may only

* ``["replace", ".tiecheck-tmp-<name>.part", "<name>"]``: move a staged temp file onto its
  final name, or
* ``["delete", "<name>"]``: delete a file,

where ``<name>`` is a plain file name inside the folder (no separator, not ``.``/``..``, not a
fix artefact) of a kind the fix itself writes or removes: a step may put only safetensors shards,
a safetensors index or ``config.json`` in place (never a pickle, which runs code when loaded), and
delete only weight files and indexes. Every path a step touches that exists is a regular file, not
a symlink or a folder. Anything else refuses the whole journal: nothing is touched. The same holds for the
temp files a recovery deletes. Recovery is shown (``--dry-run``) and asked for like any change.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tiecheck._api import FixRecovery
from tiecheck.fixer.plan import RefusedError
from tiecheck.fixer.writer import fsync_dir

JOURNAL = ".tiecheck-fix.json"
TMP_PREFIX = ".tiecheck-tmp-"
TMP_SUFFIX = ".part"
#: A journal lists a few steps per file; anything this large is not one of ours.
_MAX_JOURNAL_BYTES = 1 << 20

Step = tuple[str, ...]


def tmp_name(final: str) -> str:
    return f"{TMP_PREFIX}{final}{TMP_SUFFIX}"


def is_fix_artifact(name: str) -> bool:
    return name == JOURNAL or name.startswith(TMP_PREFIX)


def _plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in ("/", "\\", "\0"))
        and not is_fix_artifact(name)
    )


#: What a fix writes (``replace``) and what it removes (``delete``): nothing else is a journal's to touch.
_WRITTEN = (".safetensors", ".safetensors.index.json")
_REMOVED = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json")
_CONFIG = "config.json"


def _kind(path: Path) -> str | None:
    """None if ``path`` is absent or a regular file; else what it is."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    return "a symlink" if stat.S_ISLNK(mode) else "not a regular file"


@dataclass(frozen=True)
class Pending:
    """What an interrupted fix left in a folder, validated: a journal to finish and temp files to delete."""

    steps: tuple[Step, ...] | None
    """The journal's steps, or None when there is no journal."""
    temps: tuple[str, ...]
    """Temp files (``.tiecheck-*``) other than the journal."""

    @property
    def any(self) -> bool:
        return self.steps is not None or bool(self.temps)

    def describe(self) -> list[str]:
        """One line per change the recovery makes."""
        lines: list[str] = []
        if self.steps is not None:
            lines.append(f"complete an interrupted fix ({len(self.steps)} journal step(s)):")
            for s in self.steps:
                lines.append(f"  move {s[1]} -> {s[2]}" if s[0] == "replace" else f"  delete {s[1]}")
        removable = [t for t in self.temps if not (self.steps and any(t == s[1] for s in self.steps))]
        if removable:
            lines.append(
                f"remove {len(removable)} temporary file(s) left by an interrupted fix: {', '.join(removable)}"
            )
        return lines


class JournalRefused(RefusedError):
    """What an interrupted fix seems to have left is not tiecheck's: nothing of it is run or deleted."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why
        """The reason alone (the scan reports it without the fix's wording)."""


def _refuse(root: Path, why: str) -> JournalRefused:
    return JournalRefused(
        f"{root / JOURNAL}: {why}; the journal was not run and nothing was changed. Inspect it by hand", why
    )


def _validate_step(root: Path, entry: object) -> Step:
    if not isinstance(entry, list) or not entry or not all(isinstance(e, str) for e in entry):
        raise _refuse(root, f"a step is not a list of names: {entry!r}")
    if entry[0] == "replace" and len(entry) == 3:
        source, final = entry[1], entry[2]
        if not _plain_name(final) or source != tmp_name(final):
            raise _refuse(root, f"step {entry!r} may only move .tiecheck-tmp-<name>.part onto <name> in the folder")
        if not (final.endswith(_WRITTEN) or final == _CONFIG):
            raise _refuse(root, f"step {entry!r} puts a file in place that tiecheck fix never writes")
        names = [source, final]
    elif entry[0] == "delete" and len(entry) == 2:
        if not _plain_name(entry[1]):
            raise _refuse(root, f"step {entry!r} may only delete a plain file name in the folder")
        if not entry[1].endswith(_REMOVED):
            raise _refuse(root, f"step {entry!r} deletes a file that tiecheck fix never removes")
        names = [entry[1]]
    else:
        raise _refuse(root, f"unknown journal step {entry!r}")
    for name in names:
        kind = _kind(root / name)
        if kind is not None:
            raise _refuse(root, f"step {entry!r}: {name} is {kind}")
    return tuple(entry)


def _read_steps(root: Path) -> tuple[Step, ...] | None:
    path = root / JOURNAL
    kind = _kind(path)
    if kind is not None:
        raise _refuse(root, f"the journal is {kind}")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, _MAX_JOURNAL_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > _MAX_JOURNAL_BYTES:
        raise _refuse(root, "the journal is too large to be one of tiecheck's")
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refuse(root, f"unreadable journal ({exc})") from None
    except RecursionError:
        raise _refuse(root, "unreadable journal (nested too deeply)") from None
    steps = document.get("steps") if isinstance(document, dict) else None
    if not isinstance(steps, list):
        raise _refuse(root, "the journal has no list of steps")
    return tuple(_validate_step(root, entry) for entry in steps)


def read_pending(root: Path) -> Pending:
    """The validated leftovers of an interrupted fix; :class:`RefusedError` if any of it is not ours."""
    steps = _read_steps(root)
    temps = sorted(e.name for e in os.scandir(root) if e.name.startswith(TMP_PREFIX))
    for name in temps:
        kind = _kind(root / name)
        if kind is not None:
            why = f"{name} is {kind}, not a temp file of tiecheck"
            raise JournalRefused(f"{root / name}: {kind}, not a temp file of tiecheck; remove it by hand", why)
    if temps:
        named = _indexed(root) & set(temps)
        if named:
            name = min(named)
            why = f"{name} is a shard the index names, not a temp file of tiecheck"
            raise JournalRefused(f"{root / name}: {why}; rename it (and its index entry) by hand", why)
    return Pending(steps, tuple(temps))


def _indexed(root: Path) -> set[str]:
    """Every file name the folder's indexes map tensors to: a file a loader reads is never a leftover."""
    from tiecheck.errors import FormatError
    from tiecheck.formats.jsonfiles import parse_index
    from tiecheck.io.source import LocalStore

    store = LocalStore(root)  # read as the scan reads it: past 64 MB it is refused (and the scan reports it)
    names: set[str] = set()
    for entry in os.scandir(root):
        if not entry.name.endswith(".index.json") or _kind(Path(entry.path)) is not None:
            continue
        try:
            index = parse_index(store.read_text(entry.name), entry.name)
        except (OSError, UnicodeDecodeError, FormatError, RecursionError):
            continue
        names.update(index.weight_map.values())
    return names


# What recovering did is reported to API users as is: one type, defined with the public API.
Recovery = FixRecovery


def recover(root: Path, pending: Pending, step: Callable[[str], None]) -> Recovery:
    """Finish the validated journal (roll forward), then delete the remaining temp files (roll back)."""
    redone = 0
    if pending.steps is not None:
        redone = run_steps(root, pending.steps, step)
        (root / JOURNAL).unlink()
        fsync_dir(root)
    temps = [n for n in pending.temps if (root / n).exists()]
    for name in temps:
        (root / name).unlink()
    if temps:
        fsync_dir(root)
    return Recovery(pending.steps is not None, redone, tuple(temps))


def run_steps(root: Path, steps: tuple[Step, ...], step: Callable[[str], None]) -> int:
    """Run validated journal steps; each is idempotent, so a second run after a kill finishes the job."""
    done = 0
    for entry in steps:
        if entry[0] == "replace":
            source, final = root / entry[1], root / entry[2]
            if source.exists():
                source.replace(final)
                fsync_dir(root)
                done += 1
            step(f"replace {entry[2]}")
        else:
            target = root / entry[1]
            if target.exists():
                target.unlink()
                done += 1
            step(f"delete {entry[1]}")
    fsync_dir(root)
    return done
