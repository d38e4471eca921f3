"""The command as a user runs it: exit codes, clean stdout, one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def tiecheck(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TIECHECK_DEBUG"}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "tiecheck", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("fixture", "fail_on", "code"),
    [
        ("clean-llama-sharded", "warning", 0),
        ("gemma2-merge-duplicated-head", "warning", 1),
        ("gemma2-merge-duplicated-head", "error", 0),
        ("qwen2-tieable-head", "warning", 0),
        ("qwen2-tieable-head", "info", 1),
        ("llama-missing-head", "error", 1),
        ("invalid-safetensors", "error", 1),
    ],
)
def test_exit_codes(fixtures_dir: Path, fixture: str, fail_on: str, code: int) -> None:
    result = tiecheck("scan", fixtures_dir / fixture, "--fail-on", fail_on)
    assert result.returncode == code, result.stdout + result.stderr


def test_json_is_the_only_thing_on_stdout(fixtures_dir: Path) -> None:
    result = tiecheck("scan", fixtures_dir / "gemma2-merge-duplicated-head", "--format", "json")
    assert result.returncode == 1
    (document,) = json.loads(result.stdout)["reports"]
    assert set(document) >= {"target", "summary", "findings"}
    assert set(document["summary"]) >= {
        "files",
        "tensors",
        "parameters",
        "unique_parameters",
        "bytes",
        "redundant_bytes",
        "dtypes",
    }
    (finding,) = document["findings"]
    assert finding == {
        "code": "TC101",
        "name": "redundant-tied-tensor",
        "severity": "warning",
        "message": finding["message"],
        "tensors": ["lm_head.weight", "model.embed_tokens.weight"],
        "files": ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"],
        "bytes": 512,
        "fixable": True,
    }


def test_table_shows_summary_and_findings(fixtures_dir: Path) -> None:
    result = tiecheck("scan", fixtures_dir / "gemma2-merge-duplicated-head")
    assert result.returncode == 1
    for text in (
        "stored parameters",
        "unique parameters",
        "redundant bytes",
        "memory to load",
        "TC101",
        "warnings (1)",
    ):
        assert text in result.stdout
    assert result.stderr == ""


def test_clean_checkpoint_says_so(fixtures_dir: Path) -> None:
    result = tiecheck("scan", fixtures_dir / "clean-llama-sharded")
    assert result.returncode == 0
    assert "No problems found." in result.stdout


def test_missing_path_is_one_line(tmp_path: Path) -> None:
    line = one_line_error(tiecheck("scan", tmp_path / "nope"))
    assert line == f"tiecheck: error: {tmp_path / 'nope'}: no such file or directory"


def test_not_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hi")
    assert "not a checkpoint" in one_line_error(tiecheck("scan", tmp_path))
    assert "not a checkpoint" in one_line_error(tiecheck("scan", tmp_path / "notes.txt"))


def test_bad_option_is_a_usage_error(fixtures_dir: Path) -> None:
    result = tiecheck("scan", fixtures_dir / "clean-llama-sharded", "--fail-on", "sometimes")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_hostile_files_never_produce_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "model-00001-of-00001.safetensors").write_bytes(b"\xff" * 64)
    (tmp_path / "config.json").write_bytes(b"\x00\xff{")
    (tmp_path / "model.safetensors.index.json").write_bytes(b'{"weight_map": {"x": "/dev/zero"}}')
    result = tiecheck("scan", tmp_path, "--format", "json")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    found = {f["code"] for f in json.loads(result.stdout)["reports"][0]["findings"]}
    assert found == {"TC001", "TC008", "TC009"}


def test_version() -> None:
    result = tiecheck("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("tiecheck ")


def test_an_unexpected_error_is_one_line_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fixtures_dir: Path
) -> None:
    import tiecheck.cli._scan_run as scan_command
    from tiecheck.cli import main

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(scan_command, "scan_many", broken)
    monkeypatch.setattr(sys, "argv", ["tiecheck", "scan", str(fixtures_dir / "clean-llama-sharded")])
    monkeypatch.delenv("TIECHECK_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tiecheck: internal error: RuntimeError: disk on fire (set TIECHECK_DEBUG=1 for the traceback)"]
