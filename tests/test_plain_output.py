"""The table report laid out without rich (tiecheck.output._plain) is byte for byte what rich prints.

The fast path of ``tiecheck scan`` writes the report itself when stdout shows no colour; rich stays the
reference. Generated reports (messages with runs of spaces, words longer than a line, several lines, names,
long targets) at widths from 3 to 200 columns are rendered both ways and compared.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len

from tiecheck.cli._console import StdoutConsole
from tiecheck.findings import Finding, Severity
from tiecheck.output._plain import ONE_CELL, _NotPlain, plain_report, wrap
from tiecheck.output._text import summary_rows
from tiecheck.output.combined import print_tables
from tiecheck.targets import MultiReport, Target, scan_many

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

_PIECES = [*"ab c-_./:[]()", "  ", "\n", "\u00b7", "xxxxxxxxxxxxxxxxxxxxxxx "]
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)
_NAME = st.lists(st.sampled_from([*"abcdef.0123_", "model.layers."]), min_size=1, max_size=12).map("".join)


def _rich(multi: MultiReport, width: int, quiet: bool) -> str:
    buffer = io.StringIO()
    print_tables(multi, StdoutConsole(file=buffer, width=width), quiet=quiet)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def reports() -> list[MultiReport]:
    found = []
    for name in ("gemma2-merge-duplicated-head", "clean-llama-sharded", "index-drift", "llama-missing-head"):
        path = FIXTURES / name
        found.append(scan_many([Target(path, path)]))
    return found


_FINDINGS = st.lists(
    st.builds(
        Finding,
        code=st.sampled_from(["TC101", "TC007", "TC302"]),
        name=st.sampled_from(["redundant-tied-tensor", "index-drift", "x"]),
        severity=st.sampled_from(list(Severity)),
        message=_TEXT,
        tensors=st.lists(_NAME, max_size=6).map(tuple),
        files=st.lists(_NAME, max_size=2).map(tuple),
        bytes=st.integers(0, 10**10),
        fixable=st.booleans(),
    ),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    width=st.integers(3, 200),
    quiet=st.booleans(),
    several=st.booleans(),
    findings=_FINDINGS,
    target=_TEXT,
)
def test_plain_layout_is_rich_s(
    reports: list[MultiReport],
    data: st.DataObject,
    width: int,
    quiet: bool,
    several: bool,
    findings: list[Finding],
    target: str,
) -> None:
    base = data.draw(st.sampled_from(reports))
    report = dataclasses.replace(base.results[0].report, findings=tuple(findings), target=target or "t")
    result = dataclasses.replace(base.results[0], report=report)
    multi = MultiReport(results=(result, result) if several else (result,), several=several)
    plain = plain_report(multi, width, quiet=quiet)
    rows = summary_rows(report)
    fits = several or quiet or max(map(len, (r[0] for r in rows))) + max(map(len, (r[1] for r in rows))) + 4 <= width
    assert (plain is not None) == fits  # the text is all one-cell characters: only a summary too wide needs rich
    if plain is not None:
        assert plain == _rich(multi, width, quiet)


def test_the_shipped_fixtures_are_laid_out_without_rich_and_as_rich_does(reports: list[MultiReport]) -> None:
    for multi in reports:
        for width in (40, 80, 100, 120):
            plain = plain_report(multi, width)
            if width >= 100:
                assert plain is not None
            if plain is not None:
                assert plain == _rich(multi, width, False)


def test_other_characters_are_left_to_rich(reports: list[MultiReport]) -> None:
    report = reports[0].results[0].report
    for odd in ("模型", "e\u0301", "\u00a0", "🙂"):
        finding = Finding("TC101", "x", Severity.ERROR, f"head {odd} stored")
        multi = dataclasses.replace(
            reports[0],
            results=(
                dataclasses.replace(reports[0].results[0], report=dataclasses.replace(report, findings=(finding,))),
            ),
        )
        assert plain_report(multi, 100) is None


def test_controls_are_escaped_before_layout_and_refused_by_it(reports: list[MultiReport]) -> None:
    """Messages reach the layout escaped (a tab is shown as \\x09, like rich shows it); a control character
    that was not escaped is never laid out here."""
    report = reports[0].results[0].report
    for control in ("\t", "\x1b[31m", "\r", "\x1c", "\x7f"):
        finding = Finding("TC101", "x", Severity.ERROR, f"head {control} stored")
        result = dataclasses.replace(reports[0].results[0], report=dataclasses.replace(report, findings=(finding,)))
        multi = dataclasses.replace(reports[0], results=(result,))
        plain = plain_report(multi, 100)
        assert plain is not None and plain == _rich(multi, 100, False) and control not in plain
        with pytest.raises(_NotPlain):
            wrap(f"a {control} b", 100)


def test_each_extra_one_cell_character_is_one_cell_for_rich() -> None:
    assert all(cell_len(c) == 1 for c in ONE_CELL)


def _scan(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    return subprocess.run(
        [sys.executable, "-m", "tiecheck", "scan", *args],
        capture_output=True,
        text=True,
        env={**environ, **env},
        timeout=120,
    )


def test_the_command_prints_the_same_either_way() -> None:
    """A variable that makes rich draw a terminal's layout sends the command down rich's path: same bytes."""
    for args in (["-r", str(FIXTURES)], [str(FIXTURES / "gemma2-merge-duplicated-head")], ["-q", "-r", str(FIXTURES)]):
        for columns in ("40", "100"):
            plain = _scan(*args, COLUMNS=columns)
            drawn = _scan(*args, COLUMNS=columns, TTY_COMPATIBLE="0")
            assert (plain.returncode, plain.stdout) == (drawn.returncode, drawn.stdout), (args, columns)


def test_a_plain_scan_imports_no_rich() -> None:
    code = (
        "import sys; sys.argv = ['tiecheck', 'scan', sys.argv[1]]\n"
        "from tiecheck.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write(str('rich' in sys.modules))"
    )
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # pytest sets 80: too narrow for the summary
    done = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURES / "gemma2-merge-duplicated-head")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, "COLUMNS": "100"},
    )
    assert "TC101" in done.stdout and done.stderr.endswith("False")
