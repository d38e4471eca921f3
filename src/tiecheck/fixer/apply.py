"""Applying a plan: staged, verified, then committed so that a kill at any instant loses nothing.

In place, the folder holds a loadable checkpoint at every instant, the old one or the new one:

1. **Stage.** Every new or rewritten file is written under a temporary name
   (``.tiecheck-tmp-<final name>.part``, which no loader reads) and fsynced. A shard that only
   changes its name is hard-linked, not copied. The new index and config are staged the same way.
2. **Verify** the staged checkpoint (:mod:`tiecheck.fixer.verify`). On failure the temp files are
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

The next ``tiecheck fix`` first reads what is pending (:mod:`tiecheck.fixer.journal`, which
validates the journal as hostile input): a journal means a committed-to fix that was
interrupted, so its steps are run again (roll forward); temp files without a journal come from
an interrupted staging and are deleted (roll back). Both are shown and asked for, then reported.

The fix never writes through, replaces or deletes a symlink, nor a read-only file; a rewritten
file keeps the mode, owner and extended attributes of the file it replaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiecheck import __version__
from tiecheck.content import ContentReader
from tiecheck.errors import TiecheckError
from tiecheck.fixer.hooks import Run
from tiecheck.fixer.journal import JOURNAL, is_fix_artifact, run_steps, tmp_name
from tiecheck.fixer.plan import Plan, RefusedError
from tiecheck.fixer.verify import Identity, MappedStore, Verification, check_unchanged, verify
from tiecheck.fixer.writer import WrittenFile, fsync_dir, fsync_file, write_shard, write_text
from tiecheck.io.paths import is_plain_file, within
from tiecheck.io.source import LocalStore
from tiecheck.scan import Report


class CommittedError(TiecheckError):
    """The fix failed after its commit point: the journal is in place and the next run completes it."""


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
    """Scan of the committed checkpoint (the verification's scan of the staged one: same files)."""


class _Sources:
    """Read-only descriptors on source files, opened once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fds: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        if name not in self.fds:
            fd = self.fds[name] = os.open(self.root / name, os.O_RDONLY)
            fadvise = getattr(os, "posix_fadvise", None)
            if fadvise is not None:  # the copy reads ranges front to back: a larger readahead window (cold cache)
                with contextlib.suppress(OSError):
                    fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
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


def _refuse_unsafe_target(root: Path, name: str, verb: str) -> None:
    """A file the fix replaces or deletes must be a plain, writable file: never a symlink, never read-only."""
    try:
        st = os.lstat(root / name)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise RefusedError(f"{name}: is a symlink; fix never {verb}s through one. Use --output DIR")
    if not stat.S_ISREG(st.st_mode):
        raise RefusedError(f"{name}: is not a regular file; fix will not {verb} it")
    if not st.st_mode & stat.S_IWUSR:
        raise RefusedError(f"{name}: is read-only; fix will not {verb} it (make it writable, or use --output DIR)")


def _check_in_place(plan: Plan, root: Path) -> None:
    """Refuse layouts the switch cannot make atomic, or that would overwrite a file the fix keeps."""
    sources = {f.source for f in plan.files}
    for out in plan.files:
        if out.source == out.name:
            continue
        _refuse_unsafe_target(root, out.name, "replace")
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
    for name in (plan.index_name, plan.config_name):
        if name is not None:
            _refuse_unsafe_target(root, name, "replace")
    for name in plan.removed:
        _refuse_unsafe_target(root, name, "delete")


def _like(root: Path, out_name: str, source: str | None) -> Path | None:
    """The file whose mode, owner and extended attributes a new file takes: the one it replaces, else its source."""
    for name in (out_name, source):
        if name is not None and (root / name).is_file() and not (root / name).is_symlink():
            return root / name
    return None


def apply_in_place(
    root: Path,
    plan: Plan,
    before: Report,
    run: Run,
    content: ContentReader | None = None,
    seen: Mapping[str, Identity] | None = None,
) -> Applied:
    """``seen``: the files as the fix first saw them (:func:`identities`); a change since refuses the fix."""
    _check_in_place(plan, root)
    ensure_writable(root)
    staged: dict[str, Path] = {}
    written: dict[str, WrittenFile] = {}
    linked: dict[str, Path] = {}
    journal_tmp = root / tmp_name(JOURNAL)
    try:
        with _sources(root) as sources:
            run.begin("copy", sum(t.nbytes for out in plan.changed_files() for t in out.tensors))
            for out in plan.files:
                if out.source == out.name:
                    continue
                tmp = root / tmp_name(out.name)
                staged[out.name] = tmp
                if out.source is not None and _link(root / out.source, tmp):
                    linked[out.name] = tmp
                    run.advance(sum(t.nbytes for t in out.tensors))
                else:
                    like = _like(root, out.name, out.tensors[0].file)
                    written[out.name] = write_shard(tmp, out.tensors, out.metadata, sources, run, False, like)
                run.step(f"staged {out.name}")
            _stage_texts(root, root, plan, staged, run)
            run.step("staged all")
            # The written shards reach the disk while verification reads them back (both mostly
            # wait on I/O); the journal below is written only once both are done.
            flushed = _Background(_fsync_all, [written[n].path for n in written])
            try:
                files = {
                    p.name: p
                    for p in root.iterdir()
                    if p.is_file() and not is_fix_artifact(p.name) and p.name not in plan.removed
                }
                files.update(staged)
                mapped = MappedStore(str(root), files)
                if seen is not None:
                    check_unchanged(root, plan, seen)
                verification = verify(plan, before, LocalStore(root), mapped, written, linked, run, content)
            finally:
                flushed.join()  # on any failure too: no thread left syncing files about to be removed
            flushed.result()
            fsync_dir(root)
            run.step("verified")
            steps = _switch_steps(plan, staged)
            document: dict[str, Any] = {"tiecheck": __version__, "location": plan.location, "steps": steps}
            write_text(journal_tmp, json.dumps(document, indent=2) + "\n")
        journal_tmp.replace(root / JOURNAL)  # the commit point: until here, the staged files are ours to drop
    except BaseException:
        for path in (*staged.values(), journal_tmp):
            with contextlib.suppress(OSError):
                path.unlink()
        run.end()
        raise
    try:
        fsync_dir(root)
        run.step("journal written")
        run_steps(root, tuple(tuple(s) for s in steps), run.step)
        (root / JOURNAL).unlink()
        fsync_dir(root)
        run.step("journal removed")
    except OSError as exc:
        raise CommittedError(
            f"{root}: the fix was committed but could not finish switching files "
            f"({exc.strerror.lower() if exc.strerror else exc}); the folder loads, and the next "
            "`tiecheck fix` completes the switch from its journal"
        ) from exc
    finally:
        run.end()
    final = dataclasses.replace(verification.after, target=before.target)
    return Applied(root, verification, final)


class _Background(threading.Thread):
    """``work(*args)`` on a thread of its own; :meth:`result` waits for it and raises what it raised (a failed
    fsync is a failed fix). A plain thread: the executor machinery would cost the fix its import."""

    def __init__(self, work: Callable[..., None], *args: Any) -> None:
        super().__init__(daemon=True)
        self._work, self._args = work, args
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._work(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to the thread that waits for it
            self._error = exc

    def result(self) -> None:
        self.join()
        if self._error is not None:
            raise self._error


def _fsync_all(paths: list[Path]) -> None:
    for path in paths:
        fsync_file(path)


def _stage_texts(root: Path, dest: Path, plan: Plan, staged: dict[str, Path], run: Run) -> None:
    for name, text in ((plan.index_name, plan.index_text), (plan.config_name, plan.config_text)):
        if name is None or text is None:
            continue
        tmp = dest / tmp_name(name)
        write_text(tmp, text, like=_like(root, name, None))
        staged[name] = tmp
        run.step(f"staged {name}")


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
    if source.is_symlink():
        return False
    try:
        os.link(source, dest)
    except OSError:
        return False
    return True


def _carried(root: Path, skip: set[str]) -> dict[str, Path]:
    """The other files of the folder, which ``--output`` copies as they are (never through a symlink out of it)."""
    carried = {}
    for entry in os.scandir(root):
        if entry.name in skip or is_fix_artifact(entry.name) or not is_plain_file(entry):
            continue
        if entry.is_symlink() and not within(root, Path(entry.path)):
            continue  # never copy what a symlink out of the folder points to
        carried[entry.name] = Path(entry.path)
    return carried


def apply_to_output(
    root: Path,
    plan: Plan,
    before: Report,
    output: Path,
    run: Run,
    content: ContentReader | None = None,
    seen: Mapping[str, Identity] | None = None,
) -> Applied:
    """Write the fixed checkpoint to a new folder; the source folder is only read."""
    if output.is_symlink():
        # a link the checkpoint may have shipped (SRC/fixed -> ~/.ssh): the copy goes where it is named
        raise RefusedError(f"{output}: is a symlink; give the folder it should write to itself")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise RefusedError(f"{output}: already exists and is not an empty folder")
    if output.resolve() == root.resolve():
        raise RefusedError(f"{output}: is the checkpoint folder itself; omit --output to fix in place")
    if root.resolve() in output.resolve().parents:
        raise RefusedError(f"{output}: is inside the checkpoint folder; write the fixed copy outside it")
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        staged: dict[str, Path] = {}
        written: dict[str, WrittenFile] = {}
        with _sources(root) as sources:
            run.begin("copy", sum(t.nbytes for out in plan.files for t in out.tensors))
            for out in plan.files:
                tmp = output / tmp_name(out.name)
                like = _like(root, out.source or out.name, out.tensors[0].file)
                written[out.name] = write_shard(tmp, out.tensors, out.metadata, sources, run, True, like)
                staged[out.name] = tmp
            _stage_texts(root, output, plan, staged, run)
            config = before.checkpoint.config_file
            if config is not None and config not in staged:
                tmp = output / tmp_name(config)
                shutil.copyfile(root / config, tmp)
                staged[config] = tmp
            carried = _carried(root, {f.name for f in before.checkpoint.files} | set(plan.removed) | set(staged))
            # The re-scan sees the output as it will be: the files carried over too (a tokenizer, side pickles).
            store = MappedStore(str(output), {**carried, **staged})
            if seen is not None:
                check_unchanged(root, plan, seen)
            verification = verify(plan, before, LocalStore(root), store, written, {}, run, content)
        for name, tmp in staged.items():
            tmp.replace(output / name)
        for name, path in carried.items():
            if not _link(path, output / name):
                shutil.copy2(path, output / name)
        fsync_dir(output)
    except BaseException:
        if created:
            shutil.rmtree(output, ignore_errors=True)
        else:
            for child in output.iterdir():
                with contextlib.suppress(OSError):
                    child.unlink()
        raise
    finally:
        run.end()
    final = dataclasses.replace(verification.after, target=str(output))
    return Applied(output, verification, final)
