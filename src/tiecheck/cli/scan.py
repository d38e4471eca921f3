"""``tiecheck scan``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tiecheck.cli.app import EXIT_FINDINGS, EXIT_OK, FailLevel, OutputFormat, app, fail
from tiecheck.cli.progress import progress_for
from tiecheck.errors import TiecheckError
from tiecheck.findings import Severity
from tiecheck.output.json import render_json
from tiecheck.output.table import render_table
from tiecheck.scan import scan


@app.command("scan")
def scan_command(
    path: Annotated[Path, typer.Argument(help="Checkpoint folder or .safetensors file.")],
    output_format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Report format.")] = OutputFormat.table,
    fail_on: Annotated[
        FailLevel, typer.Option("--fail-on", help="Exit 1 when a finding is at least this severe.")
    ] = FailLevel.warning,
    deep: Annotated[
        bool, typer.Option("--deep", help="Read every tensor once: content hashes, NaN/Inf, constant tensors.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Scan a checkpoint and report every problem with a stable rule code."""
    try:
        report = scan(path, deep=deep, progress=progress_for(quiet))
    except TiecheckError as exc:
        fail(str(exc))
    if output_format is OutputFormat.json:
        sys.stdout.write(render_json(report) + "\n")
    else:
        render_table(report, Console())
    raise typer.Exit(EXIT_FINDINGS if report.failed(Severity.parse(fail_on.value)) else EXIT_OK)
