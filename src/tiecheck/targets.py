"""Several checkpoints in one call: which folders to scan, and the combined result.

:func:`~tiecheck.scan.scan` stays single-target; :func:`scan_many` runs it per target, applies the
selection settings of each target's config, and keeps going when one target cannot be scanned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tiecheck.content import ProgressSink
from tiecheck.errors import TargetNotFound, TiecheckError
from tiecheck.findings import Severity
from tiecheck.io.paths import is_plain_file
from tiecheck.loader import is_pickle_name
from tiecheck.scan import Report, scan
from tiecheck.selection import Settings, apply_selection, resolve

#: A folder holding a file named like this is a checkpoint. config.json alone is not (sentence-transformers
#: repos have ``1_Pooling/config.json`` with no weights), nor is any ``.bin`` (``training_args.bin``).
WEIGHT_NAME = re.compile(r"(\.safetensors(\.index\.json)?|^(pytorch_)?model.*\.bin(\.index\.json)?)$")


def is_weight_name(name: str) -> bool:
    return WEIGHT_NAME.search(name) is not None


def looks_like_checkpoint(folder: Path) -> bool:
    try:
        return any(is_weight_name(entry.name) and is_plain_file(entry) for entry in os.scandir(folder))
    except OSError:
        return False


def find_checkpoints(root: Path) -> list[Path]:
    """Every checkpoint folder at or below ``root`` (hidden folders and symlinked folders skipped), sorted.

    A folder holding only a pickle-format file (``2_Dense/`` of a sentence-transformers repo, a stray
    ``optimizer.pt``) is scanned too: whoever loads that file runs its imports.
    """
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(is_weight_name(name) or is_pickle_name(name) for name in files):
            found.append(Path(folder))
    return found


def folders_of_files(files: Iterable[Path]) -> list[Path]:
    """What to scan for the given files (as pre-commit passes staged files), in first-seen order.

    The checkpoint folder holding each file; a pickle-format file outside any checkpoint folder is
    scanned alone (its imports are checked: a hostile pickle is never let through).
    """
    seen: dict[Path, None] = {}
    for file in files:
        folder = file if file.is_dir() else file.parent
        if looks_like_checkpoint(folder):
            seen.setdefault(folder, None)
        elif is_pickle_name(file.name) and file.is_file():
            seen.setdefault(file, None)
    return list(seen)


@dataclass(frozen=True)
class Target:
    path: Path
    """What to scan: a checkpoint folder or file, as the user named it (or found below it)."""
    base: Path
    """The folder named on the command line: artifact paths in reports are relative to it."""
    remote: str | None = None
    """A Hub repo, ``hf://ORG/NAME[@REVISION]``: scanned by range requests instead of ``path``."""

    @property
    def display(self) -> str:
        """The target as the user named it: a path, or ``hf://ORG/NAME[@REV]``."""
        return self.remote or str(self.path)

    @property
    def folder(self) -> Path:
        """The checkpoint folder (the parent, for a single-file target)."""
        return self.path if self.path.is_dir() else self.path.parent

    @property
    def base_folder(self) -> Path:
        return self.base if self.base.is_dir() else self.base.parent

    @property
    def relative_folder(self) -> str:
        """The checkpoint folder relative to the base, posix, ``""`` for the base itself."""
        if self.remote is not None:
            return ""
        rel = os.path.relpath(self.folder, self.base_folder)
        return "" if rel == "." else Path(rel).as_posix()


@dataclass(frozen=True)
class Result:
    target: Target
    report: Report
    settings: Settings

    @property
    def failed(self) -> bool:
        return self.report.failed(self.settings.fail_on)


@dataclass(frozen=True)
class Failure:
    target: Target
    message: str


@dataclass(frozen=True)
class MultiReport:
    results: tuple[Result, ...]
    failures: tuple[Failure, ...] = ()
    several: bool = True
    """Several targets were asked for (several paths or ``--recursive``): the JSON report is a list."""

    def worst(self) -> Severity | None:
        return max((f.severity for r in self.results for f in r.report.findings), default=None)


def expand_targets(
    paths: Sequence[Path], *, recursive: bool = False, base: Path | None = None, revision: str | None = None
) -> list[Target]:
    """The targets for the given paths; with ``recursive``, every checkpoint folder below each folder.

    ``base`` replaces the folder each path names as the root of report paths (SARIF for GitHub
    code scanning wants paths relative to the repository root). ``revision`` applies to Hub repos named
    without one.
    """
    targets: list[Target] = []
    for path in paths:
        remote = hub_repo(path)
        if remote is not None and revision and "@" not in remote:
            remote = f"{remote}@{revision}"
        if remote is not None:
            targets.append(Target(path, base or Path.cwd(), remote=remote))
        elif recursive and path.is_dir():
            found = find_checkpoints(path)
            if not found:
                raise TiecheckError(f"{path}: no checkpoint folders found (looked for weight files below it)")
            targets += [Target(folder, base or path) for folder in found]
        else:
            targets.append(Target(path, base or path))
    return targets


def hub_repo(path: Path | str) -> str | None:
    """``hf://ORG/NAME[@REV]`` when ``path`` names a Hub repo: written so, or ``ORG/NAME`` with no such local path.

    A shell or ``pathlib`` folds ``hf://`` to ``hf:/``; both spellings are accepted.
    """
    text = str(path)
    if text.startswith("hf:/") and not text.startswith("hf://"):
        text = "hf://" + text[len("hf:/") :]
    explicit = text.startswith("hf://")
    if not explicit and Path(text).exists():
        return None
    from tiecheck.io.hub import parse_hub_target  # not for a local path: the Hub client is not needed

    target = parse_hub_target(text, bare=not explicit)
    if target is None:
        if explicit:
            raise TargetNotFound(f"{text}: not a Hub repo id (expected hf://ORG/NAME or hf://ORG/NAME@REVISION)")
        return None
    return f"hf://{target.repo_id}" + (f"@{target.revision}" if target.revision else "")


def scan_many(
    targets: Sequence[Target],
    settings_for: Callable[[Target], Settings] | None = None,
    *,
    on_failure: Callable[[Failure], None] | None = None,
    several: bool | None = None,
    deep: bool = False,
    progress: ProgressSink | None = None,
    offline: bool | None = None,
    content: str | None = None,
) -> MultiReport:
    """Scan each target; one that cannot be scanned becomes a :class:`Failure`, the others go on."""
    results: list[Result] = []
    failures: list[Failure] = []
    for target in targets:
        try:
            settings = settings_for(target) if settings_for else resolve()
            what = target.remote or target.path
            scanned = scan(what, deep=deep, progress=progress, rules=settings.enabled, offline=offline, content=content)
            report = apply_selection(scanned, settings)
        except TiecheckError as exc:
            failure = Failure(target, str(exc))
            failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
            continue
        results.append(Result(target, report, settings))
    return MultiReport(tuple(results), tuple(failures), several=len(targets) != 1 if several is None else several)
