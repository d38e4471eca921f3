"""``tiecheck scan``."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from tiecheck.cli.app import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    FailLevel,
    OutputFormat,
    StdoutConsole,
    app,
    closed_pipe_ok,
    fail,
    stderr,
)
from tiecheck.cli.progress import progress_for
from tiecheck.errors import TiecheckError
from tiecheck.output._escape import terminal
from tiecheck.output.combined import FORMATS, print_tables, render
from tiecheck.selection import COMMAND_LINE, Selection, SelectionError, Settings, find_config, load_config, resolve
from tiecheck.targets import Failure, Target, expand_targets, folders_of_files, scan_many

_RULES = "Rule selection"
_OUTPUT = "Output"


def _console() -> StdoutConsole:
    return StdoutConsole()


def _output_file(value: str, default: OutputFormat) -> tuple[str, Path]:
    """``FILE`` (in ``--format``) or ``FORMAT:FILE``."""
    prefix, sep, rest = value.partition(":")
    if sep and prefix in FORMATS:
        if not rest:
            fail(f"--output-file {value}: no file name after {prefix}:")
        return prefix, Path(rest)
    return default.value, Path(value)


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
            envvar="TIECHECK_REVISION",
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
    try:
        cli_layer = Selection.from_options(
            select=select,
            ignore=ignore or (),
            severity=severity or (),
            fail_on=None if fail_on is None else fail_on.value,
            source=COMMAND_LINE,
        )
        fixed_config = None if isolated or config is None else load_config(config)
    except TiecheckError as exc:
        fail(str(exc))
    if recursive and from_files:
        fail("--recursive and --from-files cannot be combined")
    if deep and content is ContentMode.none:
        fail("--deep reads every tensor and --content none reads none: choose one")
    outputs = [_output_file(value, output_format) for value in output_files or ()]
    if statistics and output_format is not OutputFormat.table and not outputs:
        fail("--statistics prints a table: use it without --format, or with --output-file")
    if relative_to is not None and not relative_to.is_dir():
        fail(f"--relative-to {relative_to}: not a folder")

    if from_files:
        folders = folders_of_files(paths)
        if not folders:
            stderr.print("tiecheck: no checkpoint folder among the given files", markup=False, highlight=False)
            raise typer.Exit(EXIT_OK)
        targets = [Target(folder, relative_to or folder) for folder in folders]
    else:
        try:
            targets = expand_targets(paths, recursive=recursive, base=relative_to, revision=revision)
        except TiecheckError as exc:
            fail(str(exc))

    configs: dict[Path | None, Selection | None] = {}

    def settings_for(target: Target) -> Settings:
        if isolated:
            return resolve(cli_layer)
        if config is not None:
            return resolve(fixed_config, cli_layer)
        try:
            found = find_config(Path.cwd())  # never from inside the scanned target: its author is untrusted
            if found not in configs:
                configs[found] = None if found is None else load_config(found)
        except SelectionError as exc:
            fail(str(exc))  # a broken config is a usage error: stop, rather than repeat it for every target
        return resolve(configs[found], cli_layer)

    def report_failure(failure: Failure) -> None:
        # The message may quote a hostile folder or file name: never let it start a line of its own.
        stderr.print(f"tiecheck: error: {terminal(failure.message)}", markup=False, highlight=False, soft_wrap=True)

    several = recursive or len(targets) > 1 or (len(paths) > 1 and not from_files)
    multi = scan_many(
        targets,
        settings_for,
        on_failure=report_failure,
        several=several,
        deep=deep,
        progress=progress_for(quiet),
        offline=True if offline else None,
        content=None if content is None else content.value,
    )

    for fmt, file in outputs:
        try:
            file.write_text(render(multi, fmt), encoding="utf-8")
        except OSError as exc:
            fail(f"{file}: cannot write the report ({exc.strerror or exc})")
    with closed_pipe_ok():
        if output_format is not OutputFormat.table and not outputs:
            sys.stdout.write(render(multi, output_format.value))  # a target that failed is an entry, never no output
        elif multi.results or several:
            print_tables(multi, _console(), quiet=quiet, statistics=statistics)

    if multi.failures:
        raise typer.Exit(EXIT_ERROR)
    failed = any(r.failed for r in multi.results)
    raise typer.Exit(EXIT_FINDINGS if failed and not exit_zero else EXIT_OK)
