"""A checkpoint cannot switch off its own checks: config comes from where tiecheck runs, never from the target."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pickle_helpers import glob, state_dict, tensor, write_torch_zip
from tiecheck.cli import app
from tiecheck.findings import Severity
from tiecheck.selection import COMMAND_LINE, PROTECTED, Selection, load_config, resolve

HOSTILE_CONFIGS = {
    "tiecheck.toml": 'ignore = ["TC4", "TC0"]\nfail-on = "error"\n[severity]\nTC4 = "info"\n',
    "pyproject.toml": '[tool.tiecheck]\nselect = ["TC1"]\n[tool.tiecheck.severity]\nTC401 = "info"\n',
}


def hostile_checkpoint(folder: Path) -> Path:
    """A torch zip whose data.pkl calls os.system: TC401."""
    folder.mkdir(parents=True)
    payload = pickle.PROTO + b"\x02" + glob("os", "system") + pickle.MARK + b"X\x04\x00\x00\x00true" + b"tR."
    write_torch_zip(folder / "pytorch_model.bin", payload)
    return folder


def scan_json(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["scan", *args, "--format", "json"])
    data = json.loads(result.stdout)
    reports = data.get("reports", [data])
    return result.exit_code, sorted(f["code"] for r in reports for f in r.get("findings", []))


@pytest.mark.parametrize("name", sorted(HOSTILE_CONFIGS))
def test_a_config_inside_the_scanned_checkpoint_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    clean = hostile_checkpoint(tmp_path / "clean")
    shipped = hostile_checkpoint(tmp_path / "shipped")
    (shipped / name).write_text(HOSTILE_CONFIGS[name])
    monkeypatch.chdir(tmp_path)
    baseline = scan_json(str(clean))
    assert baseline[0] == 1 and "TC401" in baseline[1]
    assert scan_json(str(shipped)) == baseline
    assert scan_json(str(shipped / "pytorch_model.bin")) == baseline  # a single-file target too


def test_a_broken_config_inside_one_target_does_not_stop_a_recursive_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile_checkpoint(tmp_path / "repo" / "a")
    hostile_checkpoint(tmp_path / "repo" / "b")
    (tmp_path / "repo" / "a" / "tiecheck.toml").write_text("select = [\n")
    (tmp_path / "repo" / "pyproject.toml").write_text('[tool.tiecheck]\nselct = "x"\n')
    monkeypatch.chdir(tmp_path)
    code, found = scan_json(str(tmp_path / "repo"), "--recursive")
    assert code == 1
    assert found.count("TC401") == 2


def test_the_working_directory_config_cannot_lower_or_deselect_unsafe_pickles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile_checkpoint(tmp_path / "model")
    (tmp_path / "tiecheck.toml").write_text(HOSTILE_CONFIGS["tiecheck.toml"])
    monkeypatch.chdir(tmp_path)
    code, found = scan_json("model")
    assert code == 1 and "TC401" in found and "TC402" not in found  # TC402 (info) may be deselected
    code, found = scan_json("model", "--ignore", "TC401", "--exit-zero")
    assert "TC401" not in found  # the command line can
    assert scan_json("model", "--severity", "TC401=info", "--fail-on", "error")[0] == 0


def test_protected_rules_survive_any_config_layer(tmp_path: Path) -> None:
    (tmp_path / "tiecheck.toml").write_text('select = ["TC1"]\nignore = ["TC401"]\n[severity]\nTC40 = "info"\n')
    settings = resolve(load_config(tmp_path / "tiecheck.toml"))
    assert settings.enabled >= PROTECTED
    for code in PROTECTED:
        assert settings.severity_for(code, Severity.ERROR) is Severity.ERROR
    cli = Selection.from_options(ignore=["TC403"], severity=["TC401=warning"], source=COMMAND_LINE)
    settings = resolve(load_config(tmp_path / "tiecheck.toml"), cli)
    assert "TC403" not in settings.enabled
    assert settings.severity_for("TC401", Severity.ERROR) is Severity.WARNING


def test_state_dict_helper_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same layout with a real tensor and no import scans without TC401 (the test above can fail)."""
    folder = tmp_path / "ok"
    folder.mkdir()
    write_torch_zip(folder / "pytorch_model.bin", state_dict({"w": tensor("0", 1, (1,))}), {"0": b"\0" * 4})
    monkeypatch.chdir(tmp_path)
    assert "TC401" not in scan_json("ok")[1]


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev-zero", "broken-link"])
def test_a_config_json_that_is_no_regular_file_is_an_error_not_absent(
    tmp_path: Path, fixtures_dir: Path, kind: str
) -> None:
    """Loaders open config.json whatever it is: a folder fails, a FIFO blocks, /dev/zero never ends."""
    from tiecheck import scan

    folder = tmp_path / "ck"
    shutil.copytree(fixtures_dir / "clean-llama-sharded", folder)
    config = folder / "config.json"
    config.unlink()
    if kind == "folder":
        config.mkdir()
    elif kind == "fifo":
        os.mkfifo(config)
    elif kind == "dev-zero":
        config.symlink_to("/dev/zero")
    else:
        config.symlink_to(folder / "gone.json")
    (found,) = [f for f in scan(folder).findings if f.code in ("TC009", "TC010")]
    assert found.code == "TC009" and found.severity is Severity.ERROR, found


def test_a_config_json_larger_than_any_config_is_refused_unread(tmp_path: Path, fixtures_dir: Path) -> None:
    from tiecheck import scan

    folder = tmp_path / "ck"
    shutil.copytree(fixtures_dir / "clean-llama-sharded", folder)
    with (folder / "config.json").open("r+b") as file:
        file.truncate(1 << 30)  # sparse: 1 GB of nothing, never read
    (found,) = [f for f in scan(folder).findings if f.code == "TC009"]
    assert "bytes" in found.message
