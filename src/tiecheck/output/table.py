"""The human report: a rich summary, then findings grouped by severity."""

from __future__ import annotations

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
    config = report.checkpoint.config
    if config is not None:
        arch = ", ".join(config.architectures) or "-"
        table.add_row("model", Text(terminal(f"{config.model_type or '?'} / {arch}")))
        table.add_row("tie_word_embeddings", f"{config.tie_word_embeddings} ({config.tie_basis})")
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


def render_table(report: Report, console: Console) -> None:
    console.print(summary_table(report))
    console.print()
    console.print(findings_group(report.findings))
