"""The ``tiecheck`` command line: a thin layer over the library API.

Each command lives in its own module and registers itself on :data:`app` when imported. Nothing
heavy is imported here: ``tiecheck --version`` answers before typer, rich or any checkpoint code
is loaded, and :data:`app` (with every command) is built on first use.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typer import Typer

    app: Typer

_VERSION_FLAGS = (["--version"], ["-V"])

#: The on/off options of ``scan`` that the fast path understands, and the parameter each sets (a test checks
#: them against the typer command). Any other option goes through typer.
SCAN_FLAGS = {
    "--from-files": "from_files",
    "--quiet": "quiet",
    "-q": "quiet",
    "--deep": "deep",
    "--recursive": "recursive",
    "-r": "recursive",
    "--exit-zero": "exit_zero",
    "--isolated": "isolated",
    "--offline": "offline",
    "--statistics": "statistics",
}


#: The on/off options of ``fix`` that the fast path understands (``fix PATH --drop-duplicates --yes``).
FIX_FLAGS = {
    "--drop-duplicates": "drop_duplicates",
    "--tie-head": "tie_head",
    "--to-safetensors": "to_safetensors",
    "--dry-run": "dry_run",
    "--yes": "yes",
    "-y": "yes",
}


def main() -> None:
    """Console entry point: no traceback reaches a user unless TIECHECK_DEBUG is set.

    Fast paths answer the commonest calls without typer (which imports click's machinery and pydantic, and
    prepares every parameter: a tenth of a second): ``--version``; ``scan PATH...`` with at most the on/off
    options of :data:`SCAN_FLAGS` (as a pre-commit hook runs it: ``scan --from-files FILE...``); and
    ``fix PATH`` with at most those of :data:`FIX_FLAGS`. Each runs its command exactly as typer would.
    """
    args = sys.argv[1:]
    for stream in (sys.stdout, sys.stderr):
        # A name from a checkpoint that the terminal's encoding cannot show is shown escaped, not a crash.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    if args in _VERSION_FLAGS:  # what typer would print, without importing it
        from tiecheck import __version__

        sys.stdout.write(f"tiecheck {__version__}\n")
        return
    scan = _plain("scan", args, SCAN_FLAGS)
    fix = _plain("fix", args, FIX_FLAGS)
    if scan is not None:
        import os
        from pathlib import Path

        from tiecheck.cli._base import run
        from tiecheck.cli._scan_run import run_scan

        paths, on = scan
        run(
            lambda: run_scan(
                [Path(a) for a in paths],
                from_files="from_files" in on,
                quiet="quiet" in on,
                deep="deep" in on,
                recursive="recursive" in on,
                exit_zero="exit_zero" in on,
                isolated="isolated" in on,
                offline="offline" in on,
                statistics="statistics" in on,
                revision=os.environ.get(REVISION_ENV) or None,  # typer reads --revision's variable too
            )
        )
        return
    if fix is not None and len(fix[0]) == 1:
        from pathlib import Path

        from tiecheck.cli._base import run
        from tiecheck.cli._fix_run import run_fix

        (path,), on = fix
        run(
            lambda: run_fix(
                Path(path),
                drop_duplicates="drop_duplicates" in on,
                tie_head="tie_head" in on,
                to_safetensors="to_safetensors" in on,
                dry_run="dry_run" in on,
                yes="yes" in on,
            )
        )
        return
    from tiecheck.cli._commands import main as run_app

    run_app()


#: The environment variable behind ``scan --revision`` (the pre-commit Hub hook pins the pushed commit with it).
REVISION_ENV = "TIECHECK_REVISION"


def _plain(command: str, args: list[str], flags: dict[str, str]) -> tuple[list[str], set[str]] | None:
    """Arguments of ``command`` the fast path can take: paths and known flags (in any order, as typer takes
    them); the parameter names the flags set."""
    if not args or args[0] != command:
        return None
    paths = [a for a in args[1:] if not a.startswith("-")]
    options = [a for a in args[1:] if a.startswith("-")]
    if not paths or any(o not in flags for o in options):
        return None
    return paths, {flags[o] for o in options}


def __getattr__(name: str) -> object:
    if name != "app":
        raise AttributeError(f"module 'tiecheck.cli' has no attribute {name!r}")
    from tiecheck.cli._commands import app as value

    globals()["app"] = value
    return value


class _Package(types.ModuleType):
    """``tiecheck.cli.app`` is the Typer application, not the submodule of the same name that defines it
    (Python binds each imported submodule on its package; this keeps the name for the application)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "app" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["app", "main"]
