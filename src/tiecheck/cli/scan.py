"""``tiecheck scan``: its options, parsed by typer; the work is :func:`tiecheck.cli._scan_run.run_scan`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from tiecheck.cli import REVISION_ENV
from tiecheck.cli._scan_run import run_scan
from tiecheck.cli.app import FailLevel, OutputFormat, app

_RULES = "Rule selection"
_OUTPUT = "Output"


class ContentMode(str, Enum):
    """How much tensor data a scan reads to compare tied pairs."""

    full = "full"
    sample = "sample"
    none = "none"


@app.command("scan")
def scan_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoint folders, weight files, or Hub repos as hf://ORG/NAME[@REVISION] (several: one combined "
            "report).",
            metavar="PATH",
        ),
    ],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Report format.", rich_help_panel=_OUTPUT)
    ] = OutputFormat.table,
    output_files: Annotated[
        list[str] | None,
        typer.Option(
            "--output-file",
            "-o",
            help="Write the report to FILE (in --format), or FORMAT:FILE (e.g. sarif:out.sarif); repeat it to write "
            "several formats from one scan. stdout then shows the table.",
            metavar="[FORMAT:]FILE",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    relative_to: Annotated[
        Path | None,
        typer.Option(
            help="SARIF paths relative to this folder instead of each scanned folder (GitHub code scanning: the "
            "repository root, `--relative-to .`).",
            metavar="DIR",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these rule codes or prefixes (TC1, TC301); comma-separated or repeated.",
            metavar="CODES",
            rich_help_panel=_RULES,
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            help="Skip these rule codes or prefixes; the more specific of select/ignore wins.",
            metavar="CODES",
            rich_help_panel=_RULES,
        ),
    ] = None,
    severity: Annotated[
        list[str] | None,
        typer.Option(
            help="Override a rule's severity: CODE=error|warning|info (code or prefix).",
            metavar="CODE=LEVEL",
            rich_help_panel=_RULES,
        ),
    ] = None,
    fail_on: Annotated[
        FailLevel | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding is at least this severe [default: warning].",
            rich_help_panel=_RULES,
        ),
    ] = None,
    exit_zero: Annotated[
        bool,
        typer.Option(
            "--exit-zero", help="Exit 0 even with findings (2 still means it could not run).", rich_help_panel=_RULES
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Read settings from this tiecheck.toml or pyproject.toml instead of searching upward.",
            metavar="FILE",
            rich_help_panel=_RULES,
        ),
    ] = None,
    isolated: Annotated[
        bool, typer.Option("--isolated", help="Ignore every config file.", rich_help_panel=_RULES)
    ] = False,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Scan every checkpoint folder below each folder given.")
    ] = False,
    from_files: Annotated[
        bool,
        typer.Option(
            "--from-files",
            help="PATHS are files (as pre-commit passes them): scan each checkpoint folder holding one, skip others.",
        ),
    ] = False,
    deep: Annotated[
        bool, typer.Option("--deep", help="Read every tensor once: content hashes, NaN/Inf, constant tensors.")
    ] = False,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision",
            help="For Hub repos named without @REVISION: a branch, tag or commit sha (in CI: what `hf upload` made).",
            metavar="REV",
            envvar=REVISION_ENV,
        ),
    ] = None,
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Scan Hub repos from the local Hugging Face cache, with no request."),
    ] = False,
    content: Annotated[
        ContentMode | None,
        typer.Option(
            "--content",
            help="How tied pairs are compared: full (byte for byte; the default for local folders), sample "
            "(sampled blocks; the default for Hub repos, where bytes cost requests) or none (no tensor byte is read: "
            "a tied pair stored twice is reported as not compared; duplicate and constant checks are skipped).",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Findings only: no stats block, no totals, no progress bar.")
    ] = False,
    statistics: Annotated[
        bool,
        typer.Option("--statistics", help="Print how many findings each rule has, instead of the findings."),
    ] = False,
) -> None:
    """Scan checkpoints and report every problem with a stable rule code."""
    run_scan(
        paths,
        output_format=output_format,
        output_files=output_files,
        relative_to=relative_to,
        select=select,
        ignore=ignore,
        severity=severity,
        fail_on=fail_on,
        exit_zero=exit_zero,
        config=config,
        isolated=isolated,
        recursive=recursive,
        from_files=from_files,
        deep=deep,
        revision=revision,
        offline=offline,
        content=None if content is None else content.value,
        quiet=quiet,
        statistics=statistics,
    )
