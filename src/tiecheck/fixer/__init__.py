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

from tiecheck.content import ContentReader, ProgressSink
from tiecheck.errors import TargetNotFound, TiecheckError, UnreadableCheckpoint
from tiecheck.fixer.apply import Applied, CommittedError, apply_in_place, apply_to_output, ensure_writable
from tiecheck.fixer.hooks import CHUNK, NO_HOOKS, FixHooks, Run
from tiecheck.fixer.journal import Pending, Recovery, read_pending, recover
from tiecheck.fixer.plan import Action, ActionKind, KeptNote, Options, Plan, RefusedError, build_plan
from tiecheck.fixer.verify import Verification, VerificationError, identities
from tiecheck.io.paths import in_cache_snapshot
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
    pending: Pending | None = None
    """Dry run and --output: what an interrupted fix left, which the next in-place run completes."""
    declined: bool = False
    """The user said no (to the recovery or to the plan): nothing was changed."""

    @property
    def pending_recovery(self) -> bool:
        return self.pending is not None and self.pending.any


def checkpoint_root(path: str | Path) -> Path:
    target = Path(path)
    if not target.exists():
        raise TargetNotFound(f"{target}: no such file or directory")
    if not target.is_dir() and not target.is_file():  # a FIFO, a socket, a device: nothing to read or rewrite
        raise UnreadableCheckpoint(f"{target}: not a checkpoint (not a regular file or a folder)")
    if target.is_file():
        if not (target.suffix in (".safetensors", ".bin", ".pt", ".pth") or target.name.endswith(".index.json")):
            raise UnreadableCheckpoint(f"{target}: not a checkpoint (expected a folder, a weight file or an index)")
        return target.parent
    return target


def run_fix(
    path: str | Path,
    options: Options,
    *,
    output: Path | None = None,
    dry_run: bool = False,
    confirm: Callable[[Plan], bool] | None = None,
    confirm_recovery: Callable[[Pending], bool] | None = None,
    hooks: FixHooks = NO_HOOKS,
    progress: ProgressSink | None = None,
    chunk: int = CHUNK,
) -> FixOutcome:
    """Fix the checkpoint at ``path``. ``hooks`` observe its named steps; ``chunk``: bytes per copy step."""
    root = checkpoint_root(path)
    run = Run(hooks=hooks, progress=progress, chunk=chunk)
    if output is None and not dry_run:
        if in_cache_snapshot(root):
            raise RefusedError(
                f"{root}: a Hugging Face cache snapshot (its files are symlinks into blobs/); fixing it in place "
                "would replace the links and leave the blobs, saving nothing. Use --output DIR"
            )
        with folder_lock(root):
            ensure_writable(root)
            waiting = read_pending(root)
            recovery = None
            if waiting.any:
                if confirm_recovery is not None and not confirm_recovery(waiting):
                    before = scan_store(LocalStore(root), target=str(path))
                    empty = build_plan_or_empty(before)
                    return FixOutcome(root, None, before, empty, None, waiting, declined=True)
                recovery = recover(root, waiting, run.step)
            try:
                return _fix(path, root, options, recovery, None, False, confirm, run)
            except TiecheckError as exc:
                if recovery is not None and recovery.happened:
                    exc.changed_before = recovery.describe()  # the folder did change: never "nothing was changed"
                raise
    return _fix(path, root, options, None, output, dry_run, confirm, run)


def build_plan_or_empty(before: Report) -> Plan:
    """An empty plan for ``before`` (an outcome needs one when nothing was planned)."""
    return Plan(before.checkpoint.location, Options(), (), None, None, None, None, (), (), (), ())


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
    run: Run,
) -> FixOutcome:
    waiting = read_pending(root) if recovery is None else None
    store = LocalStore(root)
    seen = identities(root)  # before the scan reads a byte (files in subfolders: right after it)
    # One reader for the scan, the planner and the verification: a pair the scan compared byte
    # for byte (the tie a drop relies on) is not read again to verify the drop, as long as no file
    # the fix reads has changed since it was first seen (checked after the copy).
    with ContentReader(store, progress=run.progress) as content:
        before = scan_store(store, target=str(path), progress=run.progress, content_reader=content)
        seen = {**identities(root, (f.name for f in before.checkpoint.files if f.name not in seen)), **seen}
        plan = build_plan(before, store, options, content)
        if dry_run or plan.empty:
            return FixOutcome(root, recovery, before, plan, None, waiting)
        if output is None and confirm is not None and not confirm(plan):
            return FixOutcome(root, recovery, before, plan, None, declined=True)
        if output is None:
            applied = apply_in_place(root, plan, before, run, content, seen)
        else:
            applied = apply_to_output(root, plan, before, output, run, content, seen)
    return FixOutcome(root, recovery, before, plan, applied, waiting)


__all__ = [
    "Action",
    "ActionKind",
    "Applied",
    "CommittedError",
    "FixHooks",
    "FixOutcome",
    "KeptNote",
    "Options",
    "Pending",
    "Plan",
    "Recovery",
    "RefusedError",
    "Verification",
    "VerificationError",
    "build_plan",
    "run_fix",
]
