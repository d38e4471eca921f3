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


def main() -> None:
    """Console entry point: no traceback reaches a user unless TIECHECK_DEBUG is set.

    Two fast paths answer the commonest calls without building the Typer application (which imports and
    prepares every command and its parameters, and imports typer): ``--version``, and ``scan PATH...`` with
    no option, which runs the scan command with its defaults, exactly as typer would.
    """
    args = sys.argv[1:]
    if args in _VERSION_FLAGS:  # what typer would print, without importing it
        from tiecheck import __version__

        sys.stdout.write(f"tiecheck {__version__}\n")
        return
    if len(args) > 1 and args[0] == "scan" and not any(a.startswith("-") for a in args[1:]):
        from pathlib import Path

        from tiecheck.cli._base import run
        from tiecheck.cli._scan_run import run_scan

        run(lambda: run_scan([Path(a) for a in args[1:]]))
        return
    from tiecheck.cli._commands import main as run_app

    run_app()


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
