"""Command-line conventions: help, version, placeholders, dependencies that earn their place."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
#: Distribution name -> the module it provides, for runtime dependencies.
MODULES = {"typer": "typer", "rich": "rich", "xxhash": "xxhash", "numpy": "numpy", "tomli": "tomli"}


def _runtime_dependencies() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [re.split(r"[<>=!;\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]


def test_every_runtime_dependency_is_imported_by_src() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    for dist in _runtime_dependencies():
        module = MODULES.get(dist, dist.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {module}\b", source, re.MULTILINE), f"{dist} is never imported"


def test_cli_libraries_are_pinned_to_a_major_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name in ("typer", "rich"):
        spec = next(d for d in project["dependencies"] if d.startswith(name))
        assert "<" in spec, f"{name} has no upper bound: {spec}"


# --- help -----------------------------------------------------------------------------------------------------


def _tiecheck(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    options: dict[str, Any] = {"capture_output": True, "text": True, "env": env, **kwargs}
    return subprocess.run([sys.executable, "-m", "tiecheck", *map(str, args)], check=False, **options)


def test_short_help_and_version() -> None:
    assert _tiecheck("-h").stdout == _tiecheck("--help").stdout
    version = _tiecheck("-V")
    assert version.returncode == 0 and re.fullmatch(r"tiecheck \d+\.\d+\.\d+\S*\n", version.stdout)
    for command in ("scan", "fix", "diff", "rules", "explain"):
        assert _tiecheck(command, "-h").returncode == 0, command


def test_scan_heads_the_command_list_and_completion_is_offered() -> None:
    help_text = _tiecheck("-h").stdout
    commands = re.findall(r"^  ([a-z]+) ", help_text.split("Commands:")[1], re.MULTILINE)
    assert commands[0] == "scan" and set(commands) >= {"scan", "fix", "diff", "rules", "explain"}
    assert "--install-completion" in help_text and "--show-completion" in help_text


def test_placeholders_are_plain() -> None:
    for command, usage in (("scan", "PATH..."), ("diff", "A B"), ("fix", "PATH"), ("explain", "RULE")):
        text = _tiecheck(command, "-h").stdout
        assert f"Usage: tiecheck {command} [OPTIONS] {usage}\n" in text, text
        assert not re.search(r"\{\w+\}|<list\[|<path>", text), text


def test_diff_offers_only_the_formats_it_implements(fixtures_dir: Path) -> None:
    text = _tiecheck("diff", "-h").stdout
    assert "table|json>" in text and "sarif" not in text
    clean = fixtures_dir / "clean-llama-sharded"
    assert _tiecheck("diff", clean, clean, "-f", "sarif").returncode == 2
    assert json.loads(_tiecheck("diff", clean, clean, "-f", "json").stdout)["lossless"] is True


# --- a reader that closes the pipe early ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("scan", "clean-llama-sharded"), 0),
        (("scan", "clean-llama-sharded", "-f", "json"), 0),
        (("scan", "gemma2-merge-duplicated-head"), 1),
        (("diff", "clean-llama-sharded", "clean-llama-sharded"), 0),
        (("rules",), 0),
        (("explain", "TC101"), 0),
    ],
)
def test_a_closed_pipe_keeps_the_exit_code(fixtures_dir: Path, args: tuple[str, ...], code: int) -> None:
    """`| head -1`: the reader is gone before tiecheck writes. Not an error, and the exit code still tells."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = _tiecheck(*args, cwd=fixtures_dir, stdout=write_end, capture_output=False, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert result.returncode == code, result.stderr
    assert result.stderr == "", result.stderr


def test_head_on_a_real_pipe(fixtures_dir: Path) -> None:
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m tiecheck scan clean-llama-sharded | head -1"],
        cwd=fixtures_dir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tiecheck scan:")
