"""One JSON shape for every scan, validated against the JSON Schema published in the repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from tiecheck.cli import app

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "tiecheck-report.schema.json"
MERGE, CLEAN = "gemma2-merge-duplicated-head", "clean-llama-sharded"


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def scan_json(*args: str | Path) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["scan", *map(str, args), "--format", "json"])
    assert result.stdout.endswith("}\n"), result.stdout
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_one_target(validator: Any, fixtures_dir: Path) -> None:
    code, document, _ = scan_json(fixtures_dir / MERGE)
    validator.validate(document)
    assert code == 1 and document["schema_version"] == 1 and document["errors"] == []
    (report,) = document["reports"]
    assert report["target"] == str(fixtures_dir / MERGE) and report["findings"][0]["code"] == "TC101"


def test_several_targets_and_recursive_have_the_same_shape(validator: Any, fixtures_dir: Path) -> None:
    _, several, _ = scan_json(fixtures_dir / MERGE, fixtures_dir / CLEAN)
    _, recursive, _ = scan_json("--recursive", fixtures_dir)
    for document in (several, recursive):
        validator.validate(document)
    assert set(several) == set(recursive)
    assert len(several["reports"]) == 2 and len(recursive["reports"]) > 2


def test_an_unreadable_target_is_an_entry(validator: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "missing", tmp_path / "empty"):
        code, document, err = scan_json(target)
        validator.validate(document)
        assert code == 2 and document["reports"] == []
        (error,) = document["errors"]
        assert error["target"] == str(target) and error["message"] in err


def test_deep_scan_validates(validator: Any, fixtures_dir: Path) -> None:
    _, document, _ = scan_json(fixtures_dir / MERGE, "--deep")
    validator.validate(document)
    assert document["reports"][0]["tensors"]


def test_every_shipped_fixture_validates(validator: Any, fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures_dir, tmp_path / "f", ignore=shutil.ignore_patterns("*.py"))
    _, document, _ = scan_json("--recursive", tmp_path / "f")
    validator.validate(document)
    assert len(document["reports"]) >= 10


def test_the_schema_can_fail(validator: Any, fixtures_dir: Path) -> None:
    _, document, _ = scan_json(fixtures_dir / MERGE)
    document["reports"][0]["findings"][0]["severity"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(document)
    del document["schema_version"]
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(document)
