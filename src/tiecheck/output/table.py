"""The human report: a rich summary, then findings grouped by severity."""

from __future__ import annotations

from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tiecheck.findings import Finding, Severity
from tiecheck.output._text import (
    CLEAN,
    finding_blocks,
    heading,
    one_line_summary_parts,
    summary_rows,
    summary_title,
)
from tiecheck.scan import Report

STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def summary_table(report: Report) -> Table:
    table = Table(title=Text(summary_title(report)), show_header=False, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in summary_rows(report):
        table.add_row(label, Text(value))
    return table


def findings_group(findings: tuple[Finding, ...]) -> Group | Text:
    """Findings as blocks (code, rule, bytes, then the message and where): readable in a terminal and a CI log."""
    if not findings:
        return Text(CLEAN, style="bold green")
    parts: list[Text | Padding] = []
    for severity, blocks in finding_blocks(findings):
        parts.append(Text(heading(severity, len(blocks)), style=f"{STYLES[severity]} underline"))
        for b in blocks:
            line = Text.assemble((f"{b.code} ", STYLES[severity]), (b.name, "bold"), b.size)
            if b.fixable:
                line.append("  [fixable]", style="green")
            details = [Text(b.message), *(Text(names, style="dim") for names in b.names)]
            parts += [line, Padding(Text("\n").join(details), (0, 0, 0, 2))]
        parts.append(Text(""))
    return Group(*parts[:-1])


def one_line_summary(report: Report) -> Text:
    """The target and its size on one line: the header of each target in a scan of several."""
    target, size = one_line_summary_parts(report)
    return Text.assemble(("tiecheck scan: ", "bold"), (target, "bold"), size)


def render_table(report: Report, console: Console, *, compact: bool = False, quiet: bool = False) -> None:
    """One target's report: the stats block, then the findings.

    ``compact`` (one of several targets): a one-line header instead of the stats block. ``quiet``: the
    findings only, and nothing at all for a clean target.
    """
    if quiet:
        if report.findings:
            if compact:
                console.print(Text(one_line_summary_parts(report)[0], style="bold"))
            console.print(findings_group(report.findings))
        return
    console.print(one_line_summary(report) if compact else summary_table(report))
    console.print()
    console.print(findings_group(report.findings))


def statistics_table(findings: list[Finding]) -> Table | Text:
    """``--statistics``: how many findings of each rule, most frequent first (like ``ruff --statistics``)."""
    if not findings:
        return Text(CLEAN, style="bold green")
    counts: dict[str, int] = {}
    first: dict[str, Finding] = {}
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
        first.setdefault(f.code, f)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(justify="right")
    for _ in range(3):
        table.add_column()
    for code in sorted(counts, key=lambda c: (-counts[c], c)):
        f = first[code]
        table.add_row(str(counts[code]), Text(code, STYLES[f.severity]), f.name, Text("[fixable]" if f.fixable else ""))
    return table
