"""The command line's shared parts that need no CLI framework: exit codes, the one width rule of stdout
reports, the error boundary. ``tiecheck scan PATH...`` runs on these alone, without typer (and, for a
report that needs no colour, without rich: :mod:`tiecheck.output._plain`).

Exit codes: 0 no finding at or above the fail level, 1 at least one, 2 tiecheck could not run,
130 interrupted (Ctrl-C). A reader that closes the pipe early (``| head``) changes none of them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from typing import TYPE_CHECKING, Any, NoReturn

from tiecheck.output._escape import terminal

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Stderr:
    """rich's console on stderr, made when a message is first printed: a clean scan prints none, and rich's
    import is a quarter of its start-up."""

    _console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True)
        return getattr(self._console, name)


stderr: Any = _Stderr()


def to_devnull() -> None:
    """The rest of stdout goes nowhere: its reader closed the pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


#: Layout width when no terminal is anywhere (CI logs, files): lines are never padded to it.
LOG_WIDTH = 120


def output_width() -> int | None:
    """The one width rule of every command's stdout report.

    ``COLUMNS`` when it is a number (as rich reads it); else the terminal stdout is (rich finds it); when
    stdout is a pipe (``| less``, ``| tee``, ``| head``), the terminal the user reads it in (stderr's or the
    controlling one); with no terminal anywhere, :data:`LOG_WIDTH`. None: let rich measure.
    """
    given = os.environ.get("COLUMNS", "")
    if given.isdigit():
        return int(given)
    if sys.stdout.isatty() or given:
        return None
    for columns in (_stderr_columns, _controlling_terminal_columns):
        try:
            return columns()
        except (OSError, ValueError):  # not a terminal, or no file descriptor at all (a test runner's stream)
            continue
    return LOG_WIDTH


def plain_width() -> int | None:
    """The page width when stdout shows no colour and the width rule gives a number; else None (rich draws)."""
    if sys.stdout.isatty() or any(name in os.environ for name in _COLOUR_VARIABLES):
        return None
    return output_width()


#: Environment variables that make rich draw colours or a terminal's layout on a pipe.
_COLOUR_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES")


def _stderr_columns() -> int:
    return os.get_terminal_size(sys.stderr.fileno()).columns


def _controlling_terminal_columns() -> int:
    tty = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    try:
        return os.get_terminal_size(tty).columns
    finally:
        os.close(tty)


@contextlib.contextmanager
def closed_pipe_ok() -> Iterator[None]:
    """Writing to stdout: a reader that stops early (``| head -1``) is not an error of tiecheck.

    The rest of the output goes to /dev/null, so the exit code still says what the scan found.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        to_devnull()


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


def error_line(message: str) -> None:
    """``tiecheck: error: message`` on stderr. The message may quote names from the checkpoint: it is shown
    inert (:func:`~tiecheck.output._escape.terminal`), never starting a line of its own."""
    stderr.print(f"tiecheck: error: {terminal(message)}", markup=False, highlight=False, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """:func:`error_line`, then exit 2."""
    error_line(message)
    raise SystemExit(EXIT_ERROR)


def run(command: Callable[[], object]) -> None:
    """Run ``command`` (the Typer application, or a command run directly) inside the error boundary of the
    command line: exit codes as the module documentation says, one line for an internal error."""
    try:
        command()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if os.environ.get("TIECHECK_DEBUG"):
            raise
        stderr.print(
            f"tiecheck: internal error: {type(exc).__name__}: {terminal(str(exc))} "
            "(set TIECHECK_DEBUG=1 for the traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_ERROR)
