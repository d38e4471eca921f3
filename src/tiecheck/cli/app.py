"""The Typer application, shared options and the error boundary of the ``tiecheck`` command.

Exit codes: 0 no finding at or above the fail level, 1 at least one, 2 tiecheck could not run.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from tiecheck import __version__

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2

app = typer.Typer(
    name="tiecheck",
    help="Find and fix tied-weight, index and precision problems in model checkpoints.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
stderr = Console(stderr=True)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    sarif = "sarif"
    github = "github"
    markdown = "markdown"
    gitlab = "gitlab"


class FailLevel(str, Enum):
    error = "error"
    warning = "warning"
    info = "info"


def _version(value: bool) -> None:
    if value:
        print(f"tiecheck {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Find and fix tied-weight, index and precision problems in model checkpoints."""


def fail(message: str) -> NoReturn:
    stderr.print(f"tiecheck: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_ERROR)


def main() -> None:
    """Console entry point: no traceback reaches a user unless TIECHECK_DEBUG is set."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("TIECHECK_DEBUG"):
            raise
        stderr.print(
            f"tiecheck: internal error: {type(exc).__name__}: {exc} (set TIECHECK_DEBUG=1 for the traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_ERROR)
