"""``tiecheck rules`` and ``tiecheck explain``: the rule catalogue, from the command line."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from tiecheck.cli.app import StdoutConsole, app, closed_pipe_ok, fail
from tiecheck.rules.catalog import RULES, Rule
from tiecheck.rules.docs import explain_text


class RulesFormat(str, Enum):
    table = "table"
    json = "json"


def find_rule(key: str) -> Rule | None:
    """A rule by code (any case) or by name."""
    key = key.strip()
    return RULES.get(key.upper()) or next((r for r in RULES.values() if r.name == key.lower()), None)


@app.command("rules")
def rules_command(
    output_format: Annotated[RulesFormat, typer.Option("--format", "-f", help="Output format.")] = RulesFormat.table,
) -> None:
    """List every rule: code, name, default severity, whether `tiecheck fix` repairs it."""
    if output_format is RulesFormat.json:
        rows = [
            {
                "code": r.code,
                "name": r.name,
                "severity": r.severity.label,
                "fixable": r.fixable,
                "summary": r.summary,
                "explanation": explain_text(r),
            }
            for r in RULES.values()
        ]
        with closed_pipe_ok():
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="tiecheck rules", title_justify="left")
    for column in ("code", "name", "severity", "fix", "summary"):
        table.add_column(column, no_wrap=column != "summary")
    for r in RULES.values():
        table.add_row(r.code, r.name, r.severity.label, "yes" if r.fixable else "", r.summary)
    with closed_pipe_ok():
        StdoutConsole().print(table)


@app.command("explain")
def explain_command(
    rule: Annotated[str, typer.Argument(help="A rule code (TC101) or name (redundant-tied-tensor).")],
) -> None:
    """What a rule detects, why it matters, an example, and how `tiecheck fix` handles it."""
    found = find_rule(rule)
    if found is None:
        fail(f"unknown rule {rule!r} (see `tiecheck rules`)")
    with closed_pipe_ok():
        sys.stdout.write(explain_text(found))
