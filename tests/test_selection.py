"""Rule selection: ruff-style select/ignore/severity/fail-on, config discovery, exit codes per the README."""

from __future__ import annotations

import json
import re
import shutil
from itertools import product
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tiecheck import Severity, scan
from tiecheck.cli import app
from tiecheck.rules.catalog import RULES
from tiecheck.selection import Selection, SelectionError, apply_selection, find_config, load_config, resolve

README = Path(__file__).resolve().parents[1] / "README.md"
DRIFT = "index-drift"  # errors TC002 TC003, warnings TC004 TC005 TC007
PRECISION = "llama-float32-declared-bfloat16"  # warning TC301, info TC302


def run(*args: str) -> int:
    """The exit code (the github format renders fastest; the format does not change the exit code)."""
    return CliRunner().invoke(app, ["scan", *args, "--format", "github"]).exit_code


def codes(*args: str) -> list[str]:
    result = CliRunner().invoke(app, ["scan", *args, "--format", "json"])
    doc = json.loads(result.stdout)
    reports = doc.get("reports", [doc])
    return sorted(f["code"] for r in reports for f in r["findings"])


def readme_exit_codes() -> dict[int, str]:
    """The exit-code table of the README: | `0` | meaning |."""
    rows = re.findall(r"^\|\s*`?([0-9])`?\s*\|(.+)\|\s*$", README.read_text(), flags=re.MULTILINE)
    return {int(code): meaning.strip() for code, meaning in rows}


def test_readme_documents_the_exit_codes() -> None:
    table = readme_exit_codes()
    assert set(table) == {0, 1, 2}
    assert "--fail-on" in table[1] and "could not run" in table[2]


# --- the matrix: every combination of --select/--ignore/--fail-on, against an independent oracle ----------


SELECTS = [None, "TC0", "TC302", "TC00,TC3", "TC003"]
IGNORES = [None, "TC0", "TC003,TC002", "TC30"]
FAIL_ONS = [None, "error", "warning", "info"]


@pytest.fixture(scope="module")
def stored() -> list[tuple[str, Severity]]:
    here = Path(__file__).resolve().parents[1] / "fixtures"
    return [(f.code, f.severity) for name in (DRIFT, PRECISION) for f in scan(here / name).findings]


def oracle(stored: list[tuple[str, Severity]], select: str | None, ignore: str | None, fail_on: str | None) -> int:
    """README: exit 1 when a selected finding is at or above --fail-on (default warning), else 0."""

    def best(code: str, selectors: list[str]) -> int:
        return max((0 if s == "ALL" else len(s) for s in selectors if s == "ALL" or code.startswith(s)), default=-1)

    sel = select.split(",") if select else ["ALL"]
    ign = ignore.split(",") if ignore else []
    kept = [sev for code, sev in stored if best(code, sel) > best(code, ign)]
    level = Severity.parse(fail_on or "warning")
    return 1 if any(sev >= level for sev in kept) else 0


def test_exit_codes_follow_the_readme_table_in_every_combination(
    fixtures_dir: Path, stored: list[tuple[str, Severity]]
) -> None:
    paths = [str(fixtures_dir / DRIFT), str(fixtures_dir / PRECISION)]
    outcomes = set()
    for select, ignore, fail_on in product(SELECTS, IGNORES, FAIL_ONS):
        args = [*paths, "--isolated"]
        args += ["--select", select] if select else []
        args += ["--ignore", ignore] if ignore else []
        args += ["--fail-on", fail_on] if fail_on else []
        expected = oracle(stored, select, ignore, fail_on)
        assert run(*args) == expected, args
        outcomes.add(expected)
    assert outcomes == {0, 1}


@pytest.mark.parametrize(
    ("args", "expected_codes", "exit_code"),
    [
        (["--select", "TC1"], [], 0),
        (["--select", "TC0", "--fail-on", "error"], ["TC002", "TC003", "TC004", "TC005", "TC007"], 1),
        (["--select", "TC0", "--ignore", "TC002,TC003", "--fail-on", "error"], ["TC004", "TC005", "TC007"], 0),
        # the more specific selector wins: TC003 survives --ignore TC0
        (["--select", "TC003", "--ignore", "TC0"], ["TC003"], 1),
        (["--select", "TC0", "--ignore", "TC0"], [], 0),  # equal specificity: ignore wins
        (["--ignore", "TC0", "--fail-on", "warning"], [], 0),
        (["--ignore", "tc00", "--select", "tc007"], ["TC007"], 1),  # case does not matter
        (["--select", "ALL", "--ignore", "TC00"], [], 0),  # ALL is the least specific selector
        (["--select", "TC0", "--exit-zero"], ["TC002", "TC003", "TC004", "TC005", "TC007"], 0),
    ],
)
def test_selection_cases(fixtures_dir: Path, args: list[str], expected_codes: list[str], exit_code: int) -> None:
    target = str(fixtures_dir / DRIFT)
    assert codes(target, "--isolated", *args) == expected_codes
    assert run(target, "--isolated", *args) == exit_code


def test_severity_overrides_change_level_and_exit(fixtures_dir: Path) -> None:
    target = str(fixtures_dir / PRECISION)
    assert run(target, "--isolated", "--fail-on", "error") == 0
    assert run(target, "--isolated", "--fail-on", "error", "--severity", "TC302=error") == 1
    assert run(target, "--isolated", "--severity", "TC3=info") == 0
    # the longest prefix wins: TC301 stays a warning although TC3 is lowered
    assert run(target, "--isolated", "--severity", "TC3=info", "--severity", "TC301=warning") == 1
    result = CliRunner().invoke(app, ["scan", target, "--isolated", "--severity", "TC302=error", "-f", "json"])
    findings = json.loads(result.stdout)["reports"][0]["findings"]
    assert [(f["code"], f["severity"]) for f in findings] == [("TC302", "error"), ("TC301", "warning")]


@pytest.mark.parametrize(
    "args",
    [
        ["--select", "TC999"],
        ["--ignore", "TC9"],
        ["--select", "XY1"],
        ["--severity", "TC101"],
        ["--severity", "TC101=fatal"],
        ["--severity", "TC999=error"],
        ["--fail-on", "fatal"],
    ],
)
def test_unknown_codes_and_levels_are_usage_errors(fixtures_dir: Path, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["scan", str(fixtures_dir / DRIFT), *args])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_exit_2_beats_findings_when_one_target_cannot_be_scanned(fixtures_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["scan", str(fixtures_dir / DRIFT), str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "TC002" in result.stdout  # the other target is still reported
    assert "no such file or directory" in result.stderr


def test_selection_is_a_pure_function_on_reports(fixtures_dir: Path) -> None:
    report = scan(fixtures_dir / DRIFT)
    settings = resolve(Selection.from_options(select=["TC007"], ignore=["TC00"], severity={"TC007": "info"}))
    selected = apply_selection(report, settings)
    assert [f.code for f in selected.findings] == ["TC007"]
    assert selected.findings[0].severity is Severity.INFO
    assert len(report.findings) == 5  # the input is untouched
    assert selected.summary == report.summary
    assert not selected.failed(settings.fail_on)
    with pytest.raises(SelectionError):
        Selection.from_options(select=["TC9"])
    with pytest.raises(SelectionError):
        Selection(ignore=("TC9",))
    direct = Selection(select=("tc00",), ignore=("tc007",), severity=(("tc004", Severity.ERROR),))
    assert direct == Selection.from_options(select=["TC00"], ignore=["TC007"], severity=["TC004=error"])
    assert [(f.code, f.severity) for f in apply_selection(report, resolve(direct)).findings] == [
        ("TC002", Severity.ERROR),
        ("TC003", Severity.ERROR),
        ("TC004", Severity.ERROR),
        ("TC005", Severity.WARNING),
    ]


# --- config files ------------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder, the working directory, with the drift checkpoint two levels down."""
    shutil.copytree(fixtures_dir / DRIFT, tmp_path / "models" / "drift")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_pyproject_settings_apply_and_flags_win(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.tiecheck]\nselect = ["TC00"]\nignore = ["TC002", "TC003"]\nfail-on = "error"\n'
    )
    target = str(project / "models" / "drift")
    assert codes(target) == ["TC004", "TC005", "TC007"]
    assert run(target) == 0  # fail-on error from the config; only warnings remain
    assert run(target, "--fail-on", "warning") == 1
    assert codes(target, "--select", "TC002") == ["TC002"]  # a command-line select starts afresh
    assert codes(target, "--ignore", "TC007") == ["TC004", "TC005"]  # a command-line ignore adds to the config's
    assert codes(target, "--isolated") == ["TC002", "TC003", "TC004", "TC005", "TC007"]


def test_tiecheck_toml_wins_and_the_nearest_config_wins(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pyproject.toml").write_text('[tool.tiecheck]\nselect = ["TC002"]\n')
    target = project / "models" / "drift"
    assert codes(str(target)) == ["TC002"]
    (project / "tiecheck.toml").write_text('select = ["TC003"]\n')
    assert codes(str(target)) == ["TC003"]
    (project / "models" / "pyproject.toml").write_text('[project]\nname = "no-tiecheck-table"\n')
    assert find_config(target) == project / "tiecheck.toml"  # a pyproject without [tool.tiecheck] is passed over
    (project / "models" / "tiecheck.toml").write_text('ignore = ["TC0"]\n[severity]\nTC007 = "error"\n')
    assert codes(str(target)) == ["TC003"]  # a config below the working directory is not the project's
    monkeypatch.chdir(project / "models")
    assert codes(str(target)) == []  # run from there, it is
    explicit = project / "explicit.toml"
    explicit.write_text('select = ["TC007"]\n[severity]\nTC007 = "info"\n')
    assert codes(str(target), "--config", str(explicit)) == ["TC007"]
    assert run(str(target), "--config", str(explicit)) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('selct = ["TC1"]\n', "unknown setting 'selct'"),
        ('select = ["TC9"]\n', "unknown rule code or prefix 'TC9'"),
        ('select = "TC1"\n', "expected a list"),
        ('fail-on = "fatal"\n', "unknown severity"),
        ("[severity]\nTC101 = 3\n", "severity must be a table"),
        ("select = [\n", "invalid TOML"),
    ],
)
def test_bad_config_is_a_usage_error_naming_the_file(project: Path, text: str, message: str) -> None:
    config = project / "tiecheck.toml"
    config.write_text(text)
    shutil.copytree(project / "models" / "drift", project / "models" / "drift2")
    result = CliRunner().invoke(app, ["scan", str(project / "models"), "--recursive"])
    assert result.exit_code == 2
    assert message in result.stderr
    assert str(config) in result.stderr
    assert result.stderr.count("tiecheck: error:") == 1  # said once, not once per checkpoint
    assert result.stdout == ""
    with pytest.raises(SelectionError):
        load_config(config)


# --- property: resolve() agrees with the README's rule for any selectors ----------------------------------

PREFIXES = sorted({code[:n] for code in RULES for n in range(2, 6)} | {"ALL"})
selectors = st.lists(st.sampled_from(PREFIXES), max_size=4)


@given(select=st.none() | selectors, ignore=selectors, overrides=st.lists(st.sampled_from(PREFIXES), max_size=3))
def test_resolve_matches_the_documented_rule(select: list[str] | None, ignore: list[str], overrides: list[str]) -> None:
    settings = resolve(
        Selection(
            select=None if select is None else tuple(select),
            ignore=tuple(ignore),
            severity=tuple((o, Severity.ERROR) for o in overrides),
        )
    )

    def best(code: str, sels: list[str]) -> int:
        return max((0 if s == "ALL" else len(s) for s in sels if s == "ALL" or code.startswith(s)), default=-1)

    for code, rule in RULES.items():
        chosen = ["ALL"] if select is None else select  # an empty select selects nothing
        assert (code in settings.enabled) == (best(code, chosen) > best(code, ignore)), code
        expected = Severity.ERROR if best(code, overrides) >= 0 else rule.severity
        assert settings.severity_for(code, rule.severity) is expected


@given(first=selectors, second=selectors)
def test_a_later_ignore_only_removes(first: list[str], second: list[str]) -> None:
    before = resolve(Selection(select=tuple(first) or None))
    after = resolve(Selection(select=tuple(first) or None), Selection(ignore=tuple(second)))
    assert after.enabled <= before.enabled
    assert after.enabled == {c for c in before.enabled if all(c[: len(s)] != s and s != "ALL" for s in second)}
