"""The human report: a rich summary, then findings grouped by severity."""

from __future__ import annotations

import json

from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from tiecheck.findings import Finding, Severity
from tiecheck.output._escape import terminal
from tiecheck.rules.base import human_bytes
from tiecheck.scan import Report

STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MAX_NAMES = 4


def _names(items: tuple[str, ...]) -> str:
    shown = ", ".join(terminal(i) for i in items[:MAX_NAMES])
    return shown + (f" (+{len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


def _params(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit} ({n:,})"
    return f"{n:,}"


def summary_table(report: Report) -> Table:
    s = report.summary
    title = Text(f"tiecheck scan: {terminal(report.target)}")
    table = Table(title=title, show_header=False, title_justify="left", box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("files", str(s.files))
    table.add_row("tensors", f"{s.tensors:,}")
    table.add_row("stored parameters", _params(s.parameters))
    table.add_row("unique parameters", _params(s.unique_parameters))
    table.add_row("stored bytes", human_bytes(s.bytes))
    table.add_row("redundant bytes", human_bytes(s.redundant_bytes))
    table.add_row("parameters by dtype", ", ".join(f"{d} {_params(n)}" for d, n in s.dtypes.items()) or "-")
    table.add_row("memory to load", ", ".join(f"{k} {human_bytes(v)}" for k, v in s.load_memory.items()))
    if report.transferred is not None:
        sent = report.transferred
        table.add_row("transferred", f"{human_bytes(sent.bytes)} in {sent.requests:,} requests")
    config = report.checkpoint.config
    if config is not None:
        arch = ", ".join(config.architectures) or "-"
        table.add_row("model", Text(terminal(f"{config.model_type or '?'} / {arch}")))
        # as JSON and config.json spell it: true, false, null
        table.add_row("tie_word_embeddings", f"{json.dumps(config.tie_word_embeddings)} ({config.tie_basis})")
    return table


def findings_group(findings: tuple[Finding, ...]) -> Group | Text:
    """Findings as blocks (code, rule, bytes, then the message and where): readable in a terminal and a CI log."""
    if not findings:
        return Text("No problems found.", style="bold green")
    parts: list[Text | Padding] = []
    for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        selected = [f for f in findings if f.severity is severity]
        if not selected:
            continue
        parts.append(Text(f"{severity.label}s ({len(selected)})", style=f"{STYLES[severity]} underline"))
        for f in selected:
            line = Text.assemble((f"{f.code} ", STYLES[severity]), (f.name, "bold"))
            if f.bytes:
                line.append(f"  {human_bytes(f.bytes)}")
            if f.fixable:
                line.append("  [fixable]", style="green")
            details = [Text(terminal(f.message))]
            if f.files:
                details.append(Text(f"files: {_names(f.files)}", style="dim"))
            if f.tensors:
                details.append(Text(f"tensors: {_names(f.tensors)}", style="dim"))
            parts += [line, Padding(Text("\n").join(details), (0, 0, 0, 2))]
        parts.append(Text(""))
    return Group(*parts[:-1])


def one_line_summary(report: Report) -> Text:
    """The target and its size on one line: the header of each target in a scan of several."""
    s = report.summary
    redundant = f", {human_bytes(s.redundant_bytes)} redundant" if s.redundant_bytes else ""
    return Text.assemble(
        ("tiecheck scan: ", "bold"),
        (report.target, "bold"),
        f"  ({s.files} file{'s' if s.files != 1 else ''}, {s.tensors:,} tensors, {human_bytes(s.bytes)}{redundant})",
    )


def render_table(report: Report, console: Console, *, compact: bool = False, quiet: bool = False) -> None:
    """One target's report: the stats block, then the findings.

    ``compact`` (one of several targets): a one-line header instead of the stats block. ``quiet``: the
    findings only, and nothing at all for a clean target.
    """
    if quiet:
        if report.findings:
            if compact:
                console.print(Text(report.target, style="bold"))
            console.print(findings_group(report.findings))
        return
    console.print(one_line_summary(report) if compact else summary_table(report))
    console.print()
    console.print(findings_group(report.findings))


def statistics_table(findings: list[Finding]) -> Table | Text:
    """``--statistics``: how many findings of each rule, most frequent first (like ``ruff --statistics``)."""
    if not findings:
        return Text("No problems found.", style="bold green")
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
