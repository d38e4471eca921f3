"""What ``tiecheck fix`` does once its options are parsed: plan, ask, apply, report, exit.

Needs no CLI framework: ``tiecheck fix PATH`` with on/off options only calls :func:`run_fix` directly, and the
typer command (:mod:`tiecheck.cli.fix`) calls it with the parsed options. Exit codes: see there.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from tiecheck.cli._base import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, fail, plain_width, stderr, to_devnull
from tiecheck.errors import FixRefused, TiecheckError, VerificationFailed
from tiecheck.output._fix_report import Line, outcome_lines, pending_lines, plan_lines, text_of

if TYPE_CHECKING:
    from rich.console import Console

    from tiecheck._api import FixPlan, PendingRecovery


class FixFormat(str, Enum):
    """A fix reports a plan and its outcome: for people, or for scripts."""

    table = "table"
    json = "json"


def read_answer() -> str | None:
    """One line from the terminal, or None at end of input; Ctrl-C raises KeyboardInterrupt at once.

    Not ``input()``: a SIGINT that lands after the prompt is written but before ``input()`` blocks in
    read() only sets Python's flag, and read() then waits for a line that never comes (the pseudo-terminal
    test hung that way under load). Waiting in short select() calls returns to Python between them, where
    the pending signal is raised.
    """
    if sys.platform != "win32":
        import select

        while not select.select([sys.stdin], [], [], 0.1)[0]:
            pass
    line = sys.stdin.readline()
    return line or None


class _Page:
    """Stdout for the fix's report (:mod:`tiecheck.output._fix_report`): the lines as they are where stdout shows
    no colour (rich is not imported), through rich for colour on a terminal. A reader that closes the pipe
    early ends the output, never the fix."""

    def __init__(self) -> None:
        self._width = plain_width()
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from tiecheck.cli._console import StdoutConsole

            self._console = StdoutConsole()
        return self._console

    @property
    def width(self) -> int:
        return self._width if self._width is not None else self.console.width

    def show(self, lines: list[Line]) -> None:
        if self._width is None:
            from rich.text import Text

            for line in lines:
                self.console.print(Text.assemble(*line), no_wrap=True, overflow="ignore", crop=False)
            return
        try:
            sys.stdout.write(text_of(lines))
            sys.stdout.flush()
        except BrokenPipeError:
            to_devnull()


def run_fix(
    path: Path,
    *,
    drop_duplicates: bool = False,
    tie_head: bool = False,
    to_safetensors: bool = False,
    output: Path | None = None,
    dry_run: bool = False,
    yes: bool = False,
    output_format: FixFormat = FixFormat.table,
) -> NoReturn:
    """The ``fix`` command with its options' defaults (see :func:`tiecheck.cli.fix.fix_command`); exits."""
    from tiecheck import fix
    from tiecheck.cli.progress import progress_for
    from tiecheck.findings import Severity

    page = _Page()
    as_json = output_format is FixFormat.json
    shown: list[FixPlan] = []
    # Consent needs a prompt someone can see and answer: stdin and stdout on a terminal, not JSON.
    can_ask = not as_json and sys.stdin.isatty() and sys.stdout.isatty()

    def ask(question: str) -> bool:
        if not can_ask:
            raise FixRefused(
                "no terminal to ask for consent before changing files in place; pass --yes to apply, "
                "--dry-run to see the plan, or --output DIR to write a fixed copy"
            )
        page.console.print(f"{question} [y/N]: ", end="", markup=False, highlight=False)
        page.console.file.flush()
        answer = read_answer()
        return answer is not None and answer.strip().lower() in ("y", "yes")

    def confirm(plan: FixPlan) -> bool:
        if not as_json:
            page.show(plan_lines(plan, page.width))
            shown.append(plan)
        return yes or ask("Apply these changes in place?")

    def confirm_recovery(pending: PendingRecovery) -> bool:
        if not as_json:
            intro = "An interrupted fix left this folder mid-way; recovering will:"
            page.show(pending_lines(intro, pending.lines, page.width))
        return yes or ask("Recover?")

    try:
        result = fix(
            path,
            drop_duplicates=drop_duplicates,
            tie_head=tie_head,
            to_safetensors=to_safetensors,
            output=output,
            dry_run=dry_run,
            confirm=confirm,
            confirm_recovery=confirm_recovery,
            progress=progress_for(quiet=as_json),
        )
    except KeyboardInterrupt:
        stderr.print("tiecheck: interrupted", highlight=False)
        raise SystemExit(EXIT_INTERRUPTED) from None
    except VerificationFailed as exc:
        if exc.changed_before:
            fail(
                f"verification failed and the staged files were discarded: {exc} (before that, tiecheck "
                f"{exc.changed_before})"
            )
        fail(f"verification failed, the staged files were discarded and nothing was changed: {exc}")
    except TiecheckError as exc:
        fail(f"{exc} (before that, tiecheck {exc.changed_before})" if exc.changed_before else str(exc))
    except OSError as exc:
        where = exc.filename or path
        fail(f"{where}: {exc.strerror.lower() if exc.strerror else exc}; nothing was changed")
    if as_json:
        sys.stdout.write(result.to_json())
    else:
        page.show(outcome_lines(result, page.width, plan_shown=bool(shown)))
    if result.declined:
        stderr.print("tiecheck: aborted: nothing was changed", highlight=False)
        raise SystemExit(EXIT_FINDINGS)
    if any(f.severity >= Severity.ERROR for f in result.remaining):
        raise SystemExit(EXIT_FINDINGS)
    raise SystemExit(EXIT_OK)
