"""A Markdown summary for a pull-request comment or ``$GITHUB_STEP_SUMMARY``."""

from __future__ import annotations

from tiecheck.findings import Finding, Severity
from tiecheck.output._escape import markdown, visible
from tiecheck.rules.base import human_bytes
from tiecheck.targets import MultiReport

MAX_NAMES = 3
#: GitHub refuses pull-request comments over 65,536 characters; leave room for the rest.
MAX_CHARS = 60_000
ICONS = {Severity.ERROR: "🔴 error", Severity.WARNING: "🟡 warning", Severity.INFO: "🔵 info"}


def _cell(text: str) -> str:
    """Prose from a checkpoint (messages quote its names) for a table cell: inert, one line."""
    return markdown(text)


def _code(text: str) -> str:
    """A name as inline code (nothing inside is Markdown); backticks dropped, pipes escaped for the table."""
    inner = visible(text).replace("`", "").replace("|", "\\|")
    return f"`{inner}`"


def _names(items: tuple[str, ...]) -> str:
    shown = ", ".join(_code(i) for i in items[:MAX_NAMES])
    return shown + (f" (+{len(items) - MAX_NAMES} more)" if len(items) > MAX_NAMES else "")


def _counts(findings: tuple[Finding, ...]) -> dict[Severity, int]:
    return {s: sum(1 for f in findings if f.severity is s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render_markdown(multi: MultiReport, max_chars: int = MAX_CHARS) -> str:
    """The summary table, then the findings of each checkpoint while they fit in ``max_chars``."""
    all_findings = tuple(f for r in multi.results for f in r.report.findings)
    totals = _counts(all_findings)
    failed = any(r.failed for r in multi.results) or bool(multi.failures)
    scanned = _plural(len(multi.results), "checkpoint")
    lines = [
        f"## {'❌' if failed else '✅'} tiecheck: {scanned}, {_plural(totals[Severity.ERROR], 'error')}, "
        f"{_plural(totals[Severity.WARNING], 'warning')}, {totals[Severity.INFO]} info",
        "",
        "| Checkpoint | Result | Errors | Warnings | Info | Redundant bytes |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in multi.results:
        c = _counts(r.report.findings)
        verdict = f"❌ fails (--fail-on {r.settings.fail_on.label})" if r.failed else "✅ passes"
        lines.append(
            f"| {_code(r.report.target)} | {verdict} | {c[Severity.ERROR]} | {c[Severity.WARNING]} | "
            f"{c[Severity.INFO]} | {human_bytes(r.report.summary.redundant_bytes)} |"
        )
    for failure in multi.failures:
        lines.append(f"| {_code(failure.target.display)} | ⛔ could not scan: {_cell(failure.message)} | | | | |")

    size = sum(len(line) + 1 for line in lines)
    hidden = 0
    for r in multi.results:
        if not r.report.findings:
            continue
        section = [
            "",
            f"### {_code(r.report.target)}",
            "",
            "| Severity | Rule | Message | Where |",
            "|---|---|---|---|",
        ]
        for f in r.report.findings:
            where = "<br>".join(filter(None, (_names(f.files), _names(f.tensors))))
            section.append(f"| {ICONS[f.severity]} | **{f.code}** {f.name} | {_cell(f.message)} | {where} |")
        section_size = sum(len(line) + 1 for line in section)
        if hidden or size + section_size > max_chars:
            hidden += len(r.report.findings)
            continue
        lines += section
        size += section_size
    if hidden:
        lines += [
            "",
            f"_{_plural(hidden, 'more finding')} not shown to keep this summary short; "
            "the JSON or SARIF report has them all._",
        ]
    lines += [
        "",
        "_`tiecheck explain CODE` tells what a rule detects, why it matters and how `tiecheck fix` handles it._",
    ]
    return "\n".join(lines) + "\n"
