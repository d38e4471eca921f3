"""Every report format for one or several scanned checkpoints, behind one dispatcher."""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

from tiecheck import __version__
from tiecheck.output._text import totals_line
from tiecheck.output.json import SCHEMA_VERSION, report_dict
from tiecheck.targets import MultiReport

if TYPE_CHECKING:
    from rich.console import Console

FORMATS = ("table", "json", "sarif", "github", "markdown", "gitlab")


def multi_dict(multi: MultiReport) -> dict[str, Any]:
    """The JSON document, one shape for one target, several, ``--recursive`` and targets that failed."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tiecheck_version": __version__,
        "reports": [report_dict(r.report) for r in multi.results],
        "errors": [{"target": f.target.display, "message": f.message} for f in multi.failures],
    }


def print_tables(multi: MultiReport, console: Console, *, quiet: bool = False, statistics: bool = False) -> None:
    """The human report. One target: its stats block and findings. Several: a header line and the findings of
    each, then the totals. ``quiet``: findings only. ``statistics``: counts per rule instead of the findings."""
    from rich.text import Text

    from tiecheck.output.table import render_table, statistics_table

    if statistics:
        console.print(statistics_table([f for r in multi.results for f in r.report.findings]))
        return
    shown = False
    for result in multi.results:
        if quiet and not result.report.findings:
            continue
        if shown:
            console.print()
        render_table(result.report, console, compact=multi.several, quiet=quiet)
        shown = True
    if multi.several and not quiet:
        console.print()
        console.print(Text(totals_line(multi), style="bold"))


def render(multi: MultiReport, fmt: str) -> str:
    """The report as text in ``fmt`` (``table`` is rendered without colour, for a file)."""
    if fmt == "json":
        return json.dumps(multi_dict(multi), indent=2) + "\n"
    # Each renderer is imported when its format is asked for: a table scan loads none of them (SARIF's
    # fingerprints alone import hashlib and OpenSSL).
    if fmt == "sarif":
        from tiecheck.output.sarif import render_sarif

        return render_sarif(multi) + "\n"
    if fmt == "github":
        from tiecheck.output.github import render_github

        return render_github(multi)
    if fmt == "markdown":
        from tiecheck.output.markdown import render_markdown

        return render_markdown(multi)
    if fmt == "gitlab":
        from tiecheck.output.gitlab import render_gitlab

        return render_gitlab(multi)
    if fmt == "table":
        from rich.console import Console

        buffer = io.StringIO()
        print_tables(multi, Console(file=buffer, width=120, no_color=True, force_terminal=False))
        # without the trailing padding rich gives table cells
        return "\n".join(line.rstrip(" ") for line in buffer.getvalue().split("\n"))
    raise ValueError(f"unknown format {fmt!r}")
