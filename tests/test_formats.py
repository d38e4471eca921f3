"""The report formats besides SARIF: JSON (backward compatible), GitHub annotations, Markdown, --output-file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tiecheck import scan
from tiecheck.cli import app
from tiecheck.output.github import escape_data, escape_property
from tiecheck.output.json import report_dict
from tiecheck.output.markdown import render_markdown
from tiecheck.targets import Target, scan_many

MERGE = "gemma2-merge-duplicated-head"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["scan", *args])
    return result.exit_code, result.stdout, result.stderr


def test_single_target_json_is_the_documented_report(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fixtures_dir)
    code, out, _ = invoke(MERGE, "--format", "json")
    assert code == 1
    assert json.loads(out)["reports"] == [report_dict(scan(MERGE))]


def test_several_targets_json_is_a_list_of_reports(fixtures_dir: Path, tmp_path: Path) -> None:
    paths = [str(fixtures_dir / MERGE), str(fixtures_dir / "clean-llama-sharded"), str(tmp_path / "missing")]
    code, out, err = invoke(*paths, "--format", "json")
    assert code == 2
    doc = json.loads(out)
    assert [r["target"] for r in doc["reports"]] == paths[:2]
    assert doc["reports"][0] == report_dict(scan(paths[0]))
    assert doc["errors"] == [{"target": paths[2], "message": f"{paths[2]}: no such file or directory"}]
    assert err.strip() == f"tiecheck: error: {paths[2]}: no such file or directory"


def test_recursive_json_is_a_list_even_for_one_checkpoint(fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures_dir / MERGE, tmp_path / "only")
    code, out, _ = invoke(str(tmp_path), "--recursive", "--format", "json")
    assert code == 1
    assert [r["target"] for r in json.loads(out)["reports"]] == [str(tmp_path / "only")]


def test_github_annotations(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fixtures_dir.parent)
    code, out, _ = invoke("fixtures/index-drift", "fixtures/llama-base-model", "--format", "github")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(
        "::error file=fixtures/index-drift/model-00004-of-00004.safetensors,title=TC002::missing-shard: "
    )
    assert sum(line.startswith("::warning file=fixtures/index-drift/") for line in lines) == 3
    # TC005 points at the copy loaders do not read (the one to delete), not at the one they read
    (dup,) = [line for line in lines if "title=TC005" in line]
    assert dup.startswith("::warning file=fixtures/index-drift/model-00001-of-00003.safetensors,")
    assert lines[-1].startswith("::notice title=TC105::base-model-checkpoint: architectures names")  # no file
    for line in lines:
        assert re.fullmatch(r"::(error|warning|notice) (file=[^,:]+,)?title=TC\d{3}::[^\n]+", line), line


def test_github_escaping() -> None:
    assert escape_data("50% done\nnext\r") == "50%25 done%0Anext%0D"
    assert escape_property("a,b:c%") == "a%2Cb%3Ac%25"


def test_markdown_summary(fixtures_dir: Path) -> None:
    code, out, _ = invoke(str(fixtures_dir / MERGE), str(fixtures_dir / "clean-llama-sharded"), "--format", "markdown")
    assert code == 1
    assert out.startswith("## ❌ tiecheck: 2 checkpoints, 0 errors, 1 warning, 0 info\n")
    assert f"| `{fixtures_dir / MERGE}` | ❌ fails (--fail-on warning) | 0 | 1 | 0 | 512 B |" in out
    assert f"| `{fixtures_dir / 'clean-llama-sharded'}` | ✅ passes | 0 | 0 | 0 | 0 B |" in out
    assert "| 🟡 warning | **TC101** redundant-tied-tensor |" in out
    # every table row has the same number of cells as its header: no message broke the table
    for block in out.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            widths = {len(re.split(r"(?<!\\)\|", row)) for row in rows}
            assert len(widths) == 1, block


def test_markdown_of_a_clean_run_passes(fixtures_dir: Path) -> None:
    code, out, _ = invoke(str(fixtures_dir / MERGE), "--ignore", "TC1", "--format", "markdown", "--isolated")
    assert code == 0
    assert out.startswith("## ✅ tiecheck: 1 checkpoint, 0 errors, 0 warnings, 0 info\n")
    assert "###" not in out


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "markdown", "gitlab", "table"])
def test_output_file_gets_the_report_and_stdout_the_table(fixtures_dir: Path, tmp_path: Path, fmt: str) -> None:
    target = tmp_path / "report.out"
    code, out, _ = invoke(str(fixtures_dir / MERGE), "--format", fmt, "--output-file", str(target))
    assert code == 1
    assert "redundant bytes" in out  # the table's summary
    written = target.read_text(encoding="utf-8")
    assert "TC101" in written
    if fmt in ("json", "sarif", "gitlab"):
        json.loads(written)
    if fmt == "table":
        assert "\x1b[" not in written  # no colour codes in a file


def test_output_file_is_written_even_when_the_scan_cannot_run(tmp_path: Path) -> None:
    """A CI step that uploads the SARIF must find the file; it records why nothing was scanned."""
    target = tmp_path / "report.sarif"
    code, _, err = invoke(str(tmp_path / "missing"), "--format", "sarif", "--output-file", str(target))
    assert code == 2
    assert "no such file or directory" in err
    run = json.loads(target.read_text())["runs"][0]
    assert run["results"] == [] and run["invocations"][0]["executionSuccessful"] is False


def test_unwritable_output_file_is_exit_2(fixtures_dir: Path, tmp_path: Path) -> None:
    code, _, err = invoke(str(fixtures_dir / MERGE), "--output-file", str(tmp_path / "no" / "such" / "dir.json"))
    assert code == 2
    assert "cannot write the report" in err


def test_markdown_stays_short_enough_for_a_pull_request_comment(fixtures_dir: Path) -> None:
    names = (MERGE, "index-drift", "gemma-tie-mismatch")
    multi = scan_many([Target(fixtures_dir / name, fixtures_dir / name) for name in names])
    full = render_markdown(multi)
    assert "not shown" not in full and full.count("\n### ") == 3
    short = render_markdown(multi, max_chars=len(full) - 300)
    assert len(short) < len(full)
    assert short.count("\n### ") == 2
    assert "_1 more finding not shown" in short  # gemma-tie-mismatch's one TC102


def test_gitlab_code_quality(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fixtures_dir.parent)
    code, out, _ = invoke("fixtures/index-stale-totals", "fixtures/llama-base-model", "--format", "gitlab")
    assert code == 1
    issues = json.loads(out)
    assert [(i["check_name"], i["severity"]) for i in issues] == [
        ("TC006", "minor"),
        ("TC006", "minor"),
        ("TC105", "info"),
    ]
    assert issues[0]["location"] == {
        "path": "fixtures/index-stale-totals/model.safetensors.index.json",
        "lines": {"begin": 1},
    }
    assert issues[2]["location"]["path"] == "fixtures/llama-base-model/config.json"
    assert len({i["fingerprint"] for i in issues}) == 3  # GitLab needs them unique
    for issue in issues:
        assert set(issue) == {"description", "check_name", "fingerprint", "severity", "location"}
        assert issue["description"].startswith(issue["check_name"] + " ")
