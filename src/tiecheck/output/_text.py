"""What the human report says, as plain strings: the summary's title and rows, each finding's block, the
one-line header of a target among several. :mod:`tiecheck.output.table` draws them with rich (colours, a
terminal's width); :mod:`tiecheck.output._plain` lays them out without it. Every string that comes from a
checkpoint is escaped here, once, for both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tiecheck.findings import Finding, Severity
from tiecheck.output._escape import terminal
from tiecheck.rules.base import human_bytes
from tiecheck.scan import Report
from tiecheck.targets import MultiReport

MAX_NAMES = 4
#: Findings in this order, each severity under its own heading.
SEVERITIES = (Severity.ERROR, Severity.WARNING, Severity.INFO)
CLEAN = "No problems found."


def _names(items: tuple[str, ...]) -> str:
    shown = ", ".join(terminal(i) for i in items[:MAX_NAMES])
    return shown + (f" (+{len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


def _params(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit} ({n:,})"
    return f"{n:,}"


def summary_title(report: Report) -> str:
    return f"tiecheck scan: {terminal(report.target)}"


def summary_rows(report: Report) -> list[tuple[str, str]]:
    """The stats block, label and value."""
    s = report.summary
    rows = [
        ("files", str(s.files)),
        ("tensors", f"{s.tensors:,}"),
        ("stored parameters", _params(s.parameters)),
        ("unique parameters", _params(s.unique_parameters)),
        ("stored bytes", human_bytes(s.bytes)),
        ("redundant bytes", human_bytes(s.redundant_bytes)),
        ("parameters by dtype", ", ".join(f"{d} {_params(n)}" for d, n in s.dtypes.items()) or "-"),
        ("memory to load", ", ".join(f"{k} {human_bytes(v)}" for k, v in s.load_memory.items())),
    ]
    if report.transferred is not None:
        sent = report.transferred
        rows.append(("transferred", f"{human_bytes(sent.bytes)} in {sent.requests:,} requests"))
    config = report.checkpoint.config
    if config is not None:
        arch = ", ".join(config.architectures) or "-"
        rows.append(("model", terminal(f"{config.model_type or '?'} / {arch}")))
        # as JSON and config.json spell it: true, false, null
        rows.append(("tie_word_embeddings", f"{json.dumps(config.tie_word_embeddings)} ({config.tie_basis})"))
    return rows


def heading(severity: Severity, count: int) -> str:
    return f"{severity.label}s ({count})"


@dataclass(frozen=True)
class FindingBlock:
    """One finding as the report shows it: ``CODE name  size  [fixable]``, then indented details."""

    severity: Severity
    code: str
    name: str
    size: str
    """``  512 B`` (two spaces first), or empty."""
    fixable: bool
    message: str
    names: tuple[str, ...]
    """``files: ...`` and ``tensors: ...`` lines, as there are."""


def finding_blocks(findings: tuple[Finding, ...]) -> list[tuple[Severity, list[FindingBlock]]]:
    """The findings grouped under their severity, most severe first; empty severities left out."""
    groups = []
    for severity in SEVERITIES:
        selected = [f for f in findings if f.severity is severity]
        if selected:
            groups.append((severity, [_block(f) for f in selected]))
    return groups


def _block(f: Finding) -> FindingBlock:
    names = []
    if f.files:
        names.append(f"files: {_names(f.files)}")
    if f.tensors:
        names.append(f"tensors: {_names(f.tensors)}")
    size = f"  {human_bytes(f.bytes)}" if f.bytes else ""
    return FindingBlock(f.severity, f.code, f.name, size, f.fixable, terminal(f.message), tuple(names))


def one_line_summary_parts(report: Report) -> tuple[str, str]:
    """The target (escaped) and its size, for the header line of each target in a scan of several."""
    s = report.summary
    redundant = f", {human_bytes(s.redundant_bytes)} redundant" if s.redundant_bytes else ""
    size = f"  ({s.files} file{'s' if s.files != 1 else ''}, {s.tensors:,} tensors, {human_bytes(s.bytes)}{redundant})"
    return terminal(report.target), size


def totals_line(multi: MultiReport) -> str:
    """The last line of a scan of several targets."""
    findings = [f for r in multi.results for f in r.report.findings]
    counts = ", ".join(f"{sum(1 for f in findings if f.severity is s)} {s.label}" for s in SEVERITIES)
    failing = sum(1 for r in multi.results if r.failed)
    return (
        f"{len(multi.results)} checkpoint(s) scanned, {failing} failing, {len(multi.failures)} could not be "
        f"scanned; findings: {counts}."
    )
