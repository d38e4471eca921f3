"""The Typer application and the root options of the ``tiecheck`` command.

The parts every command shares and that need no CLI framework live in :mod:`tiecheck.cli._base` (and are
importable from here as before). Exit codes: see there.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
import typer.core

from tiecheck import __version__
from tiecheck.cli._base import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    LOG_WIDTH,
    FailLevel,
    OutputFormat,
    closed_pipe_ok,
    fail,
    output_width,
    run,
    stderr,
)
from tiecheck.cli._console import StdoutConsole


class PlainCommand(typer.core.TyperCommand):
    """Help with plain placeholders, as most tools print them: ``PATH...``, not ``{PATH}...`` or ``<list[Path]>``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_placeholder(p) for p in self.get_params(ctx) if p.param_type_name == "argument"]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((_placeholder(param), record[1]))
            else:  # an option without a metavar: `--output PATH`, not `--output <path>` (choices stay `<a|b>`)
                options.append((re.sub(r"<(\w+)>", lambda m: m[1].upper(), record[0]), record[1]))
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _placeholder(argument: Any) -> str:
    name = (argument.metavar or argument.name or "").upper()
    return name + ("..." if argument.nargs != 1 else "")


app = typer.Typer(
    name="tiecheck",
    help="Find and fix tied-weight, index and precision problems in model checkpoints.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"tiecheck {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Find and fix tied-weight, index and precision problems in model checkpoints."""


def main() -> None:
    """Console entry point: no traceback reaches a user unless TIECHECK_DEBUG is set."""
    run(lambda: app(prog_name="tiecheck"))


__all__ = [
    "EXIT_ERROR",
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "LOG_WIDTH",
    "FailLevel",
    "OutputFormat",
    "PlainCommand",
    "StdoutConsole",
    "app",
    "closed_pipe_ok",
    "fail",
    "main",
    "output_width",
    "run",
    "stderr",
]
