"""What ``tiecheck fix`` does once its options are parsed: plan, ask, apply, report, exit.

Needs no CLI framework: ``tiecheck fix PATH`` with on/off options only calls :func:`run_fix` directly, and the
typer command (:mod:`tiecheck.cli.fix`) calls it with the parsed options. Exit codes: see there.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from tiecheck.cli._base import EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK, fail, stderr
from tiecheck.cli._console import StdoutConsole
from tiecheck.errors import FixRefused, TiecheckError, VerificationFailed

if TYPE_CHECKING:
    from rich.console import Console

    from tiecheck._api import FixPlan, FixResult, PendingRecovery


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
    from rich.text import Text

    from tiecheck import fix
    from tiecheck.cli.progress import progress_for
    from tiecheck.findings import Severity

    console = StdoutConsole()
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
        console.print(Text(f"{question} [y/N]: "), end="")
        console.file.flush()
        answer = read_answer()
        return answer is not None and answer.strip().lower() in ("y", "yes")

    def confirm(plan: FixPlan) -> bool:
        if not as_json:
            render_plan(plan, console)
            shown.append(plan)
        return yes or ask("Apply these changes in place?")

    def confirm_recovery(pending: PendingRecovery) -> bool:
        if not as_json:
            console.print("An interrupted fix left this folder mid-way; recovering will:", highlight=False)
            for line in pending.lines:
                console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
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
        fail(f"verification failed, the staged files were discarded and nothing was changed: {exc}")
    except TiecheckError as exc:
        fail(str(exc))
    except OSError as exc:
        where = exc.filename or path
        fail(f"{where}: {exc.strerror.lower() if exc.strerror else exc}; nothing was changed")
    if as_json:
        sys.stdout.write(result.to_json())
    else:
        render_outcome(result, console, plan_shown=bool(shown))
    if result.declined:
        stderr.print("tiecheck: aborted: nothing was changed", highlight=False)
        raise SystemExit(EXIT_FINDINGS)
    if any(f.severity >= Severity.ERROR for f in result.remaining):
        raise SystemExit(EXIT_FINDINGS)
    raise SystemExit(EXIT_OK)


def render_plan(plan: FixPlan, console: Console) -> None:
    from rich.table import Table

    from tiecheck.rules.base import human_bytes

    if plan.empty:
        console.print("Nothing to fix.", highlight=False)
    else:
        table = Table(title=f"Plan: {len(plan.actions)} action(s), saves {human_bytes(plan.bytes_saved)}")
        for column in ("action", "tensor / file", "saves", "why"):
            table.add_column(column, overflow="fold")
        for a in plan.actions:
            subject = f"{a.tensor}\nin {a.file}" if a.tensor else a.file
            if a.new_name:
                subject += f"\n-> {a.new_name}"
            table.add_row(a.kind.value, subject, human_bytes(a.bytes_saved) if a.bytes_saved else "", a.reason)
        console.print(table)
    for note in plan.kept:
        console.print(f"[dim]{note.code}[/dim] {note.subject}: {note.reason}", highlight=False)


def render_outcome(result: FixResult, console: Console, plan_shown: bool) -> None:
    from tiecheck.rules.base import human_bytes

    if result.recovery is not None and result.recovery.happened:
        console.print(f"Recovered: {result.recovery.describe()}.", highlight=False)
    if result.pending is not None and result.pending.any:
        console.print("An interrupted fix is pending; the next in-place run would:", highlight=False)
        for line in result.pending.lines:
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
    if not plan_shown:
        render_plan(result.plan, console)
    if result.mode == "dry-run" and not result.plan.empty:
        console.print("Dry run: nothing was changed.", highlight=False)
    v = result.verification
    if result.after is None or v is None:
        return
    console.print(
        f"Fixed {result.destination}: saved {human_bytes(result.plan.bytes_saved)}. Verified: {v.tensors_hashed} "
        f"tensor(s) re-read and hashed ({human_bytes(v.bytes_hashed)}), {v.files_linked} shard(s) renamed by link, "
        f"{v.dropped_checked} dropped tensor(s) restorable from an identical partner.",
        highlight=False,
    )
    resolved = ", ".join(sorted({f.code for f in v.resolved})) or "none"
    remaining = ", ".join(sorted({f.code for f in result.after.findings})) or "none"
    console.print(f"Re-scan: resolved {resolved}; remaining {remaining}; no new finding.", highlight=False)
