"""Start-up stays light: what ``import tiecheck``, ``tiecheck --version`` and a fixture scan import.

Not timed (timings belong in benchmarks/bench_startup.py): the modules a code path loads are what
decide its start-up, and those can be checked exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("numpy", "torch", "rich", "typer", "click", "pydantic", "huggingface_hub", "xxhash", "hashlib", "jsonschema")

#: Runs the console entry point with the given arguments, then prints which heavy modules it imported.
_PROBE = """
import json, sys
heavy = {heavy!r}
sys.argv = ["tiecheck", *sys.argv[1:]]
try:
    from tiecheck.cli import main
    main()
except SystemExit:
    pass
finally:
    loaded = sorted(m for m in heavy if m in sys.modules)
    checkpoint_code = sorted(m for m in sys.modules if m in ("tiecheck.scan", "tiecheck.loader", "tiecheck.fixer"))
    sys.stderr.write("\\nPROBE " + json.dumps([loaded, checkpoint_code]) + "\\n")
"""


def _probe(*args: str, columns: str = "100") -> tuple[list[str], list[str], str]:
    env = {**os.environ, "COLUMNS": columns}  # pytest sets 80: narrower than the fixture's summary table
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(heavy=HEAVY), *args], capture_output=True, text=True, timeout=120, env=env
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("PROBE "))
    loaded, checkpoint_code = json.loads(line[len("PROBE ") :])
    return loaded, checkpoint_code, done.stdout


def test_import_tiecheck_imports_nothing_heavy() -> None:
    code = f"import sys, tiecheck; print([m for m in {HEAVY!r} + ('tiecheck.scan',) if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_public_names_load_on_use_and_scan_stays_a_function() -> None:
    code = (
        "import sys, tiecheck, tiecheck.scan; from tiecheck import diff, fix;"
        "print(callable(tiecheck.scan), tiecheck.scan.__module__, 'torch' in sys.modules, 'rich' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "tiecheck.scan", "False", "False"]


def test_version_imports_no_cli_framework_and_no_checkpoint_code() -> None:
    for flag in ("--version", "-V"):
        loaded, checkpoint_code, out = _probe(flag)
        assert out == "tiecheck 0.1.0\n"
        assert loaded == [] and checkpoint_code == []


def test_a_fixture_scan_imports_neither_numpy_nor_torch(fixtures_dir: Path) -> None:
    loaded, _, out = _probe("scan", str(fixtures_dir / "gemma2-merge-duplicated-head"))
    assert "TC101" in out
    assert "numpy" not in loaded and "torch" not in loaded
    assert "huggingface_hub" not in loaded  # a local scan does not load the Hub client


def test_version_through_typer_still_works() -> None:
    """``--version`` with other arguments is typer's eager option, as before the fast path."""
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", "--version", "scan"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout == "tiecheck 0.1.0\n"


def test_the_plain_scan_fast_path_loads_no_option_parser_machinery(fixtures_dir: Path) -> None:
    loaded, _, _ = _probe("scan", str(fixtures_dir / "gemma2-merge-duplicated-head"))
    assert "typer" not in loaded and "click" not in loaded  # `scan PATH` runs without the option parser...
    assert "pydantic" not in loaded  # ...which builds every parameter with pydantic
    assert loaded == ["xxhash"]  # the content hashes: all a plain scan needs when stdout is no terminal
    narrow, _, out = _probe("scan", str(fixtures_dir / "gemma2-merge-duplicated-head"), columns="60")
    assert narrow == ["rich", "xxhash"] and "TC101" in out  # a summary wider than the page: rich lays it out


def _tiecheck(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    return done.returncode, done.stdout, done.stderr


def test_the_fast_path_answers_as_typer_does(fixtures_dir: Path, tmp_path: Path) -> None:
    """``scan PATH...`` (fast path) and ``scan -- PATH...`` (through typer) print the same and exit the same."""
    cases = [
        [str(fixtures_dir / "gemma2-merge-duplicated-head")],
        [str(fixtures_dir / "clean-llama-sharded")],
        [str(fixtures_dir / "invalid-safetensors"), str(fixtures_dir / "index-drift")],
        [str(tmp_path / "absent")],
        ["hf://not a repo"],
        [str(tmp_path)],
    ]
    for paths in cases:
        fast = _tiecheck("scan", *paths, cwd=tmp_path)
        parsed = _tiecheck("scan", "--", *paths, cwd=tmp_path)
        assert fast == parsed, paths
    assert {_tiecheck("scan", *paths, cwd=tmp_path)[0] for paths in cases} == {0, 1, 2}


@pytest.mark.parametrize("command", ["scan", "fix"])
def test_the_fast_path_flags_are_the_command_s(command: str) -> None:
    import typer.main

    from tiecheck.cli import FIX_FLAGS, SCAN_FLAGS, app

    typed = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    options = {opt: param for param in typed.params for opt in param.opts}
    for flag, name in {"scan": SCAN_FLAGS, "fix": FIX_FLAGS}[command].items():
        assert flag in options, flag
        assert options[flag].name == name and options[flag].is_flag, flag


def test_the_fast_path_flags_act_as_through_typer(fixtures_dir: Path, tmp_path: Path) -> None:
    from tiecheck.cli import SCAN_FLAGS

    merged = str(fixtures_dir / "gemma2-merge-duplicated-head")
    for flag in sorted(set(SCAN_FLAGS)):
        fast = _tiecheck("scan", merged, flag, cwd=tmp_path)
        parsed = _tiecheck("scan", flag, "--", merged, cwd=tmp_path)
        assert fast == parsed, flag
    both = _tiecheck("scan", "-q", "--exit-zero", merged, cwd=tmp_path)
    assert both == _tiecheck("scan", "-q", "--exit-zero", "--", merged, cwd=tmp_path) and both[0] == 0
    recursive = _tiecheck("scan", "-r", "--statistics", str(fixtures_dir), cwd=tmp_path)
    assert recursive == _tiecheck("scan", "-r", "--statistics", "--", str(fixtures_dir), cwd=tmp_path)


def test_a_plain_fix_runs_without_the_option_parser(fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", tmp_path / "ckpt")
    loaded, checkpoint_code, out = _probe("fix", str(tmp_path / "ckpt"), "--drop-duplicates", "--yes")
    assert "Fixed" in out and "tiecheck.fixer" in checkpoint_code
    assert "typer" not in loaded and "click" not in loaded and "pydantic" not in loaded
    assert "rich" not in loaded  # no colour on a pipe: the report is laid out without rich


def test_the_fix_fast_path_answers_as_typer_does(fixtures_dir: Path, tmp_path: Path) -> None:
    """``fix PATH [flags]`` (fast path) and ``fix [flags] -- PATH`` (through typer), each on its own copy of the
    same folder (same relative name): same output, same exit code, same files afterwards."""
    from tiecheck.cli import FIX_FLAGS

    cases = [
        ["--drop-duplicates", "--yes"],
        ["--drop-duplicates", "-y", "--tie-head"],
        ["--drop-duplicates"],  # no terminal and no --yes: refused
        ["--dry-run", "--drop-duplicates"],
        ["--to-safetensors", "--yes"],
        ["--yes"],  # index repairs only
        [],
    ]
    assert {flag for case in cases for flag in case} == set(FIX_FLAGS)
    fixtures = ["gemma2-merge-duplicated-head", "index-drift", "qwen2-tieable-head", "invalid-safetensors"]
    codes = set()
    for fixture in fixtures:
        for i, flags in enumerate(cases):
            results = []
            for way in ("fast", "typer"):
                cwd = tmp_path / f"{fixture}-{i}-{way}"
                shutil.copytree(fixtures_dir / fixture, cwd / "ckpt")
                args = ["fix", "ckpt", *flags] if way == "fast" else ["fix", *flags, "--", "ckpt"]
                outcome = _tiecheck(*args, cwd=cwd)
                files = {p.relative_to(cwd).as_posix(): p.read_bytes() for p in sorted(cwd.rglob("*")) if p.is_file()}
                results.append((outcome, files))
            assert results[0] == results[1], (fixture, flags)
            codes.add(results[0][0][0])
    absent = str(tmp_path / "absent")
    assert _tiecheck("fix", absent, "--yes") == _tiecheck("fix", "--yes", "--", absent)
    assert codes >= {0, 2}
