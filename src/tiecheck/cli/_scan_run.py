"""What ``tiecheck scan`` does once its options are parsed: resolve targets and settings, scan, report, exit.

Needs no CLI framework: ``tiecheck scan PATH...`` (no option) calls :func:`run_scan` directly, and the
typer command (:mod:`tiecheck.cli.scan`) calls it with the parsed options.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

from tiecheck.cli._base import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    FailLevel,
    OutputFormat,
    closed_pipe_ok,
    error_line,
    fail,
    plain_width,
    stderr,
)
from tiecheck.cli.progress import progress_for
from tiecheck.errors import TiecheckError
from tiecheck.output._plain import plain_report
from tiecheck.output.combined import FORMATS, print_tables, render
from tiecheck.selection import COMMAND_LINE, Selection, SelectionError, Settings, find_config, load_config, resolve
from tiecheck.targets import Failure, MultiReport, Target, expand_targets, folders_of_files, scan_many


def _print_report(multi: MultiReport, *, quiet: bool, statistics: bool) -> None:
    """The human report on stdout: laid out without rich where stdout shows no colour and the layout is plain
    (:mod:`tiecheck.output._plain`, the same bytes), else drawn by rich."""
    width = None if statistics else plain_width()
    text = None if width is None else plain_report(multi, width, quiet=quiet)
    if text is not None:
        sys.stdout.write(text)
        return
    from tiecheck.cli._console import StdoutConsole

    print_tables(multi, StdoutConsole(), quiet=quiet, statistics=statistics)


def _output_file(value: str, default: OutputFormat) -> tuple[str, Path]:
    """``FILE`` (in ``--format``) or ``FORMAT:FILE``."""
    prefix, sep, rest = value.partition(":")
    if sep and prefix in FORMATS:
        if not rest:
            fail(f"--output-file {value}: no file name after {prefix}:")
        return prefix, Path(rest)
    return default.value, Path(value)


def run_scan(
    paths: list[Path],
    *,
    output_format: OutputFormat = OutputFormat.table,
    output_files: list[str] | None = None,
    relative_to: Path | None = None,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    severity: list[str] | None = None,
    fail_on: FailLevel | None = None,
    exit_zero: bool = False,
    config: Path | None = None,
    isolated: bool = False,
    recursive: bool = False,
    from_files: bool = False,
    deep: bool = False,
    revision: str | None = None,
    offline: bool = False,
    content: str | None = None,
    quiet: bool = False,
    statistics: bool = False,
) -> NoReturn:
    """The ``scan`` command with its options' defaults (see :func:`tiecheck.cli.scan.scan_command`); exits."""
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
    if deep and content == "none":
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
            raise SystemExit(EXIT_OK)
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
        error_line(failure.message)

    several = recursive or len(targets) > 1 or (len(paths) > 1 and not from_files)
    multi = scan_many(
        targets,
        settings_for,
        on_failure=report_failure,
        several=several,
        deep=deep,
        progress=progress_for(quiet),
        offline=True if offline else None,
        content=content,
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
            _print_report(multi, quiet=quiet, statistics=statistics)

    if multi.failures:
        raise SystemExit(EXIT_ERROR)
    failed = any(r.failed for r in multi.results)
    raise SystemExit(EXIT_FINDINGS if failed and not exit_zero else EXIT_OK)
