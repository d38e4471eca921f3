"""Applying a plan: staged, verified, then committed so that a kill at any instant loses nothing.

In place, the folder holds a loadable checkpoint at every instant, the old one or the new one:

1. **Stage.** Every new or rewritten file is written under a temporary name
   (``.tiecheck-tmp-<final name>.part``, which no loader reads) and fsynced. A shard that only
   changes its name is hard-linked, not copied. The new index and config are staged the same way.
2. **Verify** the staged checkpoint (:mod:`tiecheck.fix.verify`). On failure the temp files are
   removed and nothing has changed.
3. **Journal.** ``.tiecheck-fix.json`` lists the remaining steps; it is written to a temp name,
   fsynced and renamed into place. From this instant the fix rolls forward: every staged file
   is complete, and the steps are idempotent.
4. **Switch**, each step one ``os.replace`` or unlink, in an order that keeps every intermediate
   state loadable:

   a. staged files whose final name the current index does not reference (renumbered shards;
      an orphan's name) are moved into place: loaders do not see them yet;
   b. the config edit (only ever *declaring* a tie whose tensors are byte-identical, which
      the old weights satisfy too);
   c. the index is replaced: **the commit point** for a sharded checkpoint;
   d. rewritten shards that keep their name are replaced. The new index maps to such a shard
      only tensors its old version holds too, so old and new versions both satisfy it (the
      planner refuses layouts where that would not hold). For a single ``model.safetensors``
      this replace is the commit point;
   e. old files nothing references any more are deleted; the journal is deleted last.

   The directory is fsynced after the switch.

The next ``tiecheck fix`` first calls :func:`recover`: a journal means a committed-to fix that
was interrupted, so its steps are run again (roll forward); temp files without a journal come
from an interrupted staging and are deleted (roll back). Both are reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiecheck import __version__
from tiecheck.errors import TiecheckError
from tiecheck.fix.plan import Plan, RefusedError
from tiecheck.fix.verify import MappedStore, Verification, verify
from tiecheck.fix.writer import WrittenFile, fsync_dir, fsync_file, step, write_shard, write_text
from tiecheck.io.source import LocalStore
from tiecheck.scan import Report, scan_store

JOURNAL = ".tiecheck-fix.json"
TMP_PREFIX = ".tiecheck-tmp-"
TMP_SUFFIX = ".part"


def _names(root: Path) -> list[str]:
    return [p.name for p in root.iterdir()]


def tmp_name(final: str) -> str:
    return f"{TMP_PREFIX}{final}{TMP_SUFFIX}"


def is_fix_artifact(name: str) -> bool:
    return name == JOURNAL or name.startswith(TMP_PREFIX)


@dataclass(frozen=True)
class Recovery:
    rolled_forward: bool
    """A journal was found: the interrupted fix was completed."""
    steps_redone: int
    removed_temps: tuple[str, ...]

    @property
    def happened(self) -> bool:
        return self.rolled_forward or bool(self.removed_temps)

    def describe(self) -> str:
        parts = []
        if self.rolled_forward:
            parts.append(f"completed an interrupted fix ({self.steps_redone} step(s) redone)")
        if self.removed_temps:
            parts.append(f"removed {len(self.removed_temps)} temporary file(s) left by an interrupted fix")
        return "; ".join(parts)


def pending(root: Path) -> bool:
    """Whether an interrupted fix left a journal or temp files in ``root``."""
    return any(is_fix_artifact(n) for n in _names(root))


def recover(root: Path) -> Recovery:
    journal = root / JOURNAL
    rolled, redone = False, 0
    if journal.exists():
        try:
            steps = json.loads(journal.read_text(encoding="utf-8"))["steps"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TiecheckError(f"{journal}: unreadable fix journal ({exc}); inspect the folder by hand") from None
        redone = _run_steps(root, steps)
        journal.unlink()
        fsync_dir(root)
        rolled = True
    temps = sorted(n for n in _names(root) if is_fix_artifact(n))
    for name in temps:
        (root / name).unlink()
    if temps:
        fsync_dir(root)
    return Recovery(rolled, redone, tuple(temps))


def _run_steps(root: Path, steps: list[list[str]]) -> int:
    """Run journal steps; each is idempotent, so a second run after a kill finishes the job."""
    done = 0
    for entry in steps:
        if entry[0] == "replace":
            source, final = root / entry[1], root / entry[2]
            if source.exists():
                source.replace(final)
                fsync_dir(root)
                done += 1
            step(f"replace {entry[2]}")
        elif entry[0] == "delete":
            target = root / entry[1]
            if target.exists():
                target.unlink()
                done += 1
            step(f"delete {entry[1]}")
        else:
            raise TiecheckError(f"{root / JOURNAL}: unknown journal step {entry[0]!r}")
    fsync_dir(root)
    return done


def ensure_writable(root: Path) -> None:
    """Refuse early, before planning work is wasted, if the folder cannot take new files."""
    probe = root / tmp_name(f"probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else str(exc)
        raise RefusedError(f"{root}: the folder is not writable ({reason}); use --output DIR") from None
    os.close(fd)
    probe.unlink()


@dataclass(frozen=True)
class Applied:
    destination: Path
    verification: Verification
    final: Report
    """Scan of the committed checkpoint."""


class _Sources:
    """Read-only descriptors on source files, opened once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fds: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        if name not in self.fds:
            self.fds[name] = os.open(self.root / name, os.O_RDONLY)
        return self.fds[name]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


@contextlib.contextmanager
def _sources(root: Path) -> Iterator[_Sources]:
    sources = _Sources(root)
    try:
        yield sources
    finally:
        sources.close()


def _check_in_place(plan: Plan, root: Path) -> None:
    """Refuse layouts the switch cannot make atomic, or that would overwrite a file the fix keeps."""
    sources = {f.source for f in plan.files}
    for out in plan.files:
        if out.source == out.name:
            continue
        if out.name in plan.old_index_files:
            if any(t.file != out.name for t in out.tensors):
                raise RefusedError(
                    f"{out.name}: the fixed layout would give this name to other tensors, which cannot be "
                    "switched atomically in place; use --output DIR"
                )
        elif (root / out.name).exists() and out.name not in plan.deleted_orphans and out.name not in sources:
            raise RefusedError(
                f"{out.name}: the renumbered shard would overwrite this file, which the fix keeps; "
                "move it away or use --output DIR"
            )


def apply_in_place(root: Path, plan: Plan, before: Report) -> Applied:
    _check_in_place(plan, root)
    ensure_writable(root)
    staged: dict[str, Path] = {}
    written: dict[str, WrittenFile] = {}
    linked: dict[str, Path] = {}
    try:
        with _sources(root) as sources:
            for out in plan.files:
                if out.source == out.name:
                    continue
                tmp = root / tmp_name(out.name)
                staged[out.name] = tmp
                if out.source is not None and _link(root / out.source, tmp):
                    linked[out.name] = tmp
                else:
                    written[out.name] = write_shard(tmp, out.tensors, out.metadata, sources, sync=False)
                step(f"staged {out.name}")
            _stage_texts(root, plan, staged)
            step("staged all")
            # The written shards reach the disk while verification reads them back (both mostly
            # wait on I/O); the journal below is written only once both are done.
            with ThreadPoolExecutor(max_workers=1) as pool:
                flushed = pool.submit(_fsync_all, [written[n].path for n in written])
                files = {
                    p.name: p
                    for p in root.iterdir()
                    if p.is_file() and not is_fix_artifact(p.name) and p.name not in plan.removed
                }
                files.update(staged)
                mapped = MappedStore(str(root), files)
                verification = verify(plan, before, LocalStore(root), mapped, written, linked)
                flushed.result()
            fsync_dir(root)
    except BaseException:
        for path in staged.values():
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    step("verified")

    steps = _switch_steps(plan, staged)
    journal_tmp = root / tmp_name(JOURNAL)
    document: dict[str, Any] = {"tiecheck": __version__, "location": plan.location, "steps": steps}
    write_text(journal_tmp, json.dumps(document, indent=2) + "\n")
    journal_tmp.replace(root / JOURNAL)
    fsync_dir(root)
    step("journal written")
    _run_steps(root, steps)
    (root / JOURNAL).unlink()
    fsync_dir(root)
    step("journal removed")
    return Applied(root, verification, scan_store(LocalStore(root), target=plan.location))


def _fsync_all(paths: list[Path]) -> None:
    for path in paths:
        fsync_file(path)


def _stage_texts(root: Path, plan: Plan, staged: dict[str, Path]) -> None:
    for name, text in ((plan.index_name, plan.index_text), (plan.config_name, plan.config_text)):
        if name is None or text is None:
            continue
        tmp = root / tmp_name(name)
        write_text(tmp, text)
        staged[name] = tmp
        step(f"staged {name}")


def _switch_steps(plan: Plan, staged: dict[str, Path]) -> list[list[str]]:
    weights = [out.name for out in plan.files if out.name in staged]
    fresh = [n for n in weights if n not in plan.old_index_files]
    same = [n for n in weights if n in plan.old_index_files]
    steps = [["replace", staged[n].name, n] for n in fresh]
    if plan.config_name in staged and plan.config_name is not None:
        steps.append(["replace", staged[plan.config_name].name, plan.config_name])
    if plan.index_name in staged and plan.index_name is not None:
        steps.append(["replace", staged[plan.index_name].name, plan.index_name])
    steps += [["replace", staged[n].name, n] for n in same]
    steps += [["delete", n] for n in plan.removed]
    return steps


def _link(source: Path, dest: Path) -> bool:
    try:
        os.link(source, dest)
    except OSError:
        return False
    return True


def apply_to_output(root: Path, plan: Plan, before: Report, output: Path) -> Applied:
    """Write the fixed checkpoint to a new folder; the source folder is only read."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise RefusedError(f"{output}: already exists and is not an empty folder")
    if output.resolve() == root.resolve():
        raise RefusedError(f"{output}: is the checkpoint folder itself; omit --output to fix in place")
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        staged: dict[str, Path] = {}
        written: dict[str, WrittenFile] = {}
        with _sources(root) as sources:
            for out in plan.files:
                tmp = output / tmp_name(out.name)
                written[out.name] = write_shard(tmp, out.tensors, out.metadata, sources)
                staged[out.name] = tmp
            _stage_texts(output, plan, staged)
            config = before.checkpoint.config_file
            if config is not None and config not in staged:
                tmp = output / tmp_name(config)
                shutil.copyfile(root / config, tmp)
                staged[config] = tmp
            verification = verify(plan, before, LocalStore(root), MappedStore(str(output), staged), written, {})
        for name, tmp in staged.items():
            tmp.replace(output / name)
        skip = {f.name for f in before.checkpoint.files} | set(plan.removed) | set(staged)
        for entry in os.scandir(root):
            copy = entry.is_file() and entry.name not in skip and not is_fix_artifact(entry.name)
            if copy and not _link(Path(entry.path), output / entry.name):
                shutil.copy2(entry.path, output / entry.name)
        fsync_dir(output)
    except BaseException:
        if created:
            shutil.rmtree(output, ignore_errors=True)
        else:
            for child in output.iterdir():
                with contextlib.suppress(OSError):
                    child.unlink()
        raise
    return Applied(output, verification, scan_store(LocalStore(output), target=str(output)))
