"""``tiecheck fix``: rewrite shards, index and config without the redundant tensors, losing nothing.

:func:`run_fix` is the library entry point: recover an interrupted fix, scan, plan, and (unless
asked for a dry run) apply the plan in place or to a new folder, verified before it is committed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tiecheck.errors import TiecheckError
from tiecheck.fix.apply import Applied, Recovery, apply_in_place, apply_to_output, ensure_writable, pending, recover
from tiecheck.fix.plan import Action, ActionKind, KeptNote, Options, Plan, RefusedError, build_plan
from tiecheck.fix.verify import Verification, VerificationError
from tiecheck.io.source import LocalStore
from tiecheck.scan import Report, scan_store


@dataclass(frozen=True)
class FixOutcome:
    root: Path
    recovery: Recovery | None
    before: Report
    plan: Plan
    applied: Applied | None
    """None for a dry run, an empty plan or a declined confirmation."""
    pending_recovery: bool = False
    """Dry run only: an interrupted fix is waiting to be completed by the next real run."""


def checkpoint_root(path: str | Path) -> Path:
    target = Path(path)
    if not target.exists():
        raise TiecheckError(f"{target}: no such file or directory")
    if target.is_file():
        if not (target.suffix in (".safetensors", ".bin", ".pt", ".pth") or target.name.endswith(".index.json")):
            raise TiecheckError(f"{target}: not a checkpoint (expected a folder, a weight file or an index)")
        return target.parent
    return target


def run_fix(
    path: str | Path,
    options: Options,
    *,
    output: Path | None = None,
    dry_run: bool = False,
    confirm: Callable[[Plan], bool] | None = None,
) -> FixOutcome:
    root = checkpoint_root(path)
    if output is None and not dry_run:
        with folder_lock(root):
            ensure_writable(root)
            recovery = recover(root)
            return _fix(path, root, options, recovery, None, False, confirm)
    return _fix(path, root, options, None, output, dry_run, confirm)


@contextlib.contextmanager
def folder_lock(root: Path) -> Iterator[None]:
    """One in-place fix per folder at a time: a second one would take the first's temp files for leftovers."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks
        yield
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RefusedError(f"{root}: another tiecheck fix is running on this folder") from None
        yield
    finally:
        os.close(fd)


def _fix(
    path: str | Path,
    root: Path,
    options: Options,
    recovery: Recovery | None,
    output: Path | None,
    dry_run: bool,
    confirm: Callable[[Plan], bool] | None,
) -> FixOutcome:
    waiting = recovery is None and pending(root)
    store = LocalStore(root)
    before = scan_store(store, target=str(path))
    plan = build_plan(before, store, options)
    if dry_run or plan.empty:
        return FixOutcome(root, recovery, before, plan, None, waiting)
    if output is None and confirm is not None and not confirm(plan):
        return FixOutcome(root, recovery, before, plan, None)
    applied = apply_in_place(root, plan, before) if output is None else apply_to_output(root, plan, before, output)
    return FixOutcome(root, recovery, before, plan, applied)


__all__ = [
    "Action",
    "ActionKind",
    "Applied",
    "FixOutcome",
    "KeptNote",
    "Options",
    "Plan",
    "Recovery",
    "RefusedError",
    "Verification",
    "VerificationError",
    "build_plan",
    "run_fix",
]
