"""The human report does not flood: -q prints findings only, --statistics counts per rule, one header per target."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tiecheck.cli import app

MERGE, CLEAN, DRIFT = "gemma2-merge-duplicated-head", "clean-llama-sharded", "index-drift"


def scan(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["scan", *map(str, args)])
    return result.exit_code, result.stdout


def test_one_target_has_its_stats_block(fixtures_dir: Path) -> None:
    code, out = scan(fixtures_dir / MERGE)
    assert code == 1
    assert out.count("stored parameters") == 1 and "TC101 redundant-tied-tensor" in out


def test_several_targets_get_one_header_line_each_and_totals(fixtures_dir: Path) -> None:
    code, out = scan(fixtures_dir / MERGE, fixtures_dir / CLEAN)
    assert code == 1
    assert "stored parameters" not in out  # the stats block of a single target, not repeated per target
    headers = re.findall(r"^tiecheck scan: (\S+)  \((.*)\)$", out, re.MULTILINE)
    assert [Path(t).name for t, _ in headers] == [MERGE, CLEAN]
    assert "512 B redundant" in headers[0][1]
    assert out.rstrip().endswith("findings: 0 error, 1 warning, 0 info.")


def test_quiet_prints_findings_only(fixtures_dir: Path) -> None:
    code, out = scan(fixtures_dir / MERGE, "-q")
    assert code == 1
    assert out.startswith("warnings (1)\nTC101 redundant-tied-tensor")
    assert "stored parameters" not in out and "tiecheck scan" not in out
    code, out = scan(fixtures_dir / CLEAN, "-q")
    assert (code, out) == (0, "")
    code, out = scan(fixtures_dir / MERGE, fixtures_dir / CLEAN, "-q")
    assert out.startswith(f"{fixtures_dir / MERGE}\nwarnings (1)") and CLEAN not in out and "scanned" not in out


def test_statistics_counts_per_rule(fixtures_dir: Path) -> None:
    code, out = scan("--recursive", fixtures_dir, "--statistics")
    assert code == 1
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["2", "TC006", "index-size-mismatch", "[fixable]"]
    assert ["1", "TC102", "tie-mismatch"] in rows
    assert sum(int(r[0]) for r in rows) == 18 and "lm_head" not in out
    code, out = scan(fixtures_dir / CLEAN, "--statistics")
    assert (code, out.strip()) == (0, "No problems found.")


def test_statistics_needs_the_table(fixtures_dir: Path) -> None:
    result = CliRunner().invoke(app, ["scan", str(fixtures_dir / CLEAN), "--statistics", "-f", "json"])
    assert result.exit_code == 2 and "--statistics" in result.stderr


def test_one_scan_writes_several_formats(fixtures_dir: Path, tmp_path: Path) -> None:
    import json

    a, b, c = tmp_path / "r.json", tmp_path / "r.sarif", tmp_path / "plain.md"
    code, out = scan(fixtures_dir / MERGE, "-o", f"json:{a}", "-o", f"sarif:{b}", "-f", "markdown", "-o", str(c))
    assert code == 1 and "stored parameters" in out  # stdout shows the table
    assert json.loads(a.read_text())["reports"][0]["findings"][0]["code"] == "TC101"
    assert json.loads(b.read_text())["version"] == "2.1.0"
    assert "TC101" in c.read_text() and not c.read_text().startswith("{")


def test_fixable_only_where_fix_would_act(fixtures_dir: Path, tmp_path: Path) -> None:
    """index-drift has fixable-looking findings (TC004, TC005, TC007) but also load errors: fix refuses it."""
    import shutil

    from tiecheck import scan as scan_api

    drift = scan_api(fixtures_dir / DRIFT)
    assert {"TC004", "TC005", "TC007"} <= {f.code for f in drift.findings}
    assert not any(f.fixable for f in drift.findings)
    _, out = scan(fixtures_dir / DRIFT)
    assert "[fixable]" not in out
    shutil.copytree(fixtures_dir / DRIFT, tmp_path / "d")
    refused = CliRunner().invoke(app, ["fix", str(tmp_path / "d"), "--dry-run"])
    assert refused.exit_code == 2, refused.output
    assert any(f.fixable for f in scan_api(fixtures_dir / MERGE).findings)


def test_missing_and_unreadable_config_are_different_codes(fixtures_dir: Path, tmp_path: Path) -> None:
    import shutil

    from tiecheck import scan as scan_api

    folder = tmp_path / "m"
    shutil.copytree(fixtures_dir / CLEAN, folder)
    (folder / "config.json").unlink()
    missing = [(f.code, f.severity.label) for f in scan_api(folder).findings]
    (folder / "config.json").write_bytes(b"\xff\xfe not text")
    unreadable = [(f.code, f.severity.label) for f in scan_api(folder).findings]
    assert missing == [("TC010", "info")] and unreadable == [("TC009", "error")]
    explained = CliRunner().invoke(app, ["explain", "missing-config"])
    assert explained.exit_code == 0 and "TC010" in explained.stdout


def test_a_terminal_that_cannot_show_a_character_gets_it_escaped(fixtures_dir: Path) -> None:
    """An ASCII-only stdout (``PYTHONIOENCODING=ascii``, an old terminal): the report is still written, with
    what it cannot encode escaped, and the exit code says what the scan found, not that printing failed."""
    target = str(fixtures_dir / "gemma2-merge-duplicated-head")
    for extra in ({}, {"TTY_COMPATIBLE": "0"}):  # laid out without rich, and by rich
        env = {**os.environ, "PYTHONIOENCODING": "ascii", "COLUMNS": "100", **extra}
        done = subprocess.run(
            [sys.executable, "-m", "tiecheck", "scan", target], capture_output=True, env=env, timeout=120
        )
        assert done.returncode == 1, done.stderr
        assert b"TC101" in done.stdout and b"\\xb7" in done.stdout
