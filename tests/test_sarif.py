"""SARIF: valid against the official 2.1.0 schema, one rule per catalogue rule, stable fingerprints."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tiecheck import scan
from tiecheck.cli import app
from tiecheck.output.sarif import fingerprint
from tiecheck.rules.catalog import RULES
from tiecheck.rules.docs import explain_text
from tiecheck.selection import resolve
from tiecheck.targets import Result, Target

#: The official SARIF 2.1.0 schema, shipped with the tests so a fresh clone validates against it.
SCHEMA = Path(__file__).resolve().parent / "data" / "sarif-schema-2.1.0.json"


def sarif(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["scan", *args, "--format", "sarif"])
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_sarif_of_a_checkpoint_with_several_findings_validates(validator: Any, fixtures_dir: Path) -> None:
    code, doc = sarif(str(fixtures_dir / "index-drift"))
    assert code == 1
    validator.validate(doc)
    results = doc["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"TC002", "TC003", "TC004", "TC005", "TC007"}
    assert {r["level"] for r in results} == {"error", "warning"}


def test_schema_validation_can_fail(validator: Any, fixtures_dir: Path) -> None:
    """The validator is not vacuous: a level SARIF does not know is rejected."""
    import jsonschema

    _, doc = sarif(str(fixtures_dir / "index-drift"))
    doc["runs"][0]["results"][0]["level"] = "warn"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(doc)


def test_multi_target_sarif_with_a_failure_validates(validator: Any, fixtures_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, doc = sarif(
        str(fixtures_dir / "gemma2-merge-duplicated-head"),
        str(fixtures_dir / "qwen2-tieable-head"),
        str(tmp_path / "empty"),
    )
    assert code == 2
    validator.validate(doc)
    run = doc["runs"][0]
    assert set(run["originalUriBaseIds"]) == {"SCANROOT1", "SCANROOT2", "SCANROOT3"}
    assert run["invocations"][0]["executionSuccessful"] is False
    (note,) = run["invocations"][0]["toolExecutionNotifications"]
    assert "not a checkpoint" in note["message"]["text"]


def test_one_rule_per_catalogue_rule_with_help(fixtures_dir: Path) -> None:
    _, doc = sarif(str(fixtures_dir / "clean-llama-sharded"))
    driver = doc["runs"][0]["tool"]["driver"]
    assert [r["id"] for r in driver["rules"]] == list(RULES)
    for descriptor in driver["rules"]:
        rule = RULES[descriptor["id"]]
        assert descriptor["help"]["text"] == explain_text(rule)
        assert (
            descriptor["defaultConfiguration"]["level"]
            == {"error": "error", "warning": "warning", "info": "note"}[rule.severity.label]
        )
    assert doc["runs"][0]["results"] == []


def test_results_point_at_files_relative_to_the_scanned_folder(fixtures_dir: Path) -> None:
    _, doc = sarif(str(fixtures_dir / "gemma2-merge-duplicated-head"))
    run = doc["runs"][0]
    (result,) = run["results"]
    rules = run["tool"]["driver"]["rules"]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == "TC101"
    uris = [loc["physicalLocation"]["artifactLocation"] for loc in result["locations"]]
    # the file holding the redundant lm_head.weight first, then the one holding the embedding it is tied to
    assert uris == [
        {"uri": "model-00002-of-00002.safetensors", "uriBaseId": "SCANROOT"},
        {"uri": "model-00001-of-00002.safetensors", "uriBaseId": "SCANROOT"},
    ]
    base = run["originalUriBaseIds"]["SCANROOT"]["uri"]
    assert base == (fixtures_dir / "gemma2-merge-duplicated-head").resolve().as_uri() + "/"


def test_recursive_uris_are_relative_to_the_folder_named(fixtures_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", tmp_path / "models" / "gemma")
    _, doc = sarif(str(tmp_path / "models"), "--recursive")
    (result,) = doc["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "gemma/model-00002-of-00002.safetensors"
    )


def test_findings_without_files_still_have_a_location(fixtures_dir: Path) -> None:
    _, doc = sarif(str(fixtures_dir / "llama-base-model"))
    (result,) = doc["runs"][0]["results"]
    assert result["ruleId"] == "TC105"
    assert result["level"] == "note"
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "config.json"


def _fingerprints(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["ruleId"], r["partialFingerprints"]["tiecheck/v1"]) for r in doc["runs"][0]["results"]]


def test_fingerprints_are_stable_across_runs_and_checkouts(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prints = []
    for checkout in ("one", "two"):
        shutil.copytree(fixtures_dir / "index-drift", tmp_path / checkout / "ckpt")
        monkeypatch.chdir(tmp_path / checkout)
        for _ in range(2):
            prints.append(_fingerprints(sarif("ckpt")[1]))
    assert all(p == prints[0] for p in prints)
    assert len({fp for _, fp in prints[0]}) == len(prints[0]) == 5


def test_fingerprints_ignore_sizes_but_not_identity(fixtures_dir: Path, tmp_path: Path) -> None:
    """A message that changes (bytes at stake) keeps the fingerprint; another checkpoint gets another one."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", a)
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", b)
    _, doc = sarif(str(a), str(b))
    (fa,), (fb,) = ([r for r in doc["runs"][0]["results"] if r["properties"]["checkpoint"] == str(p)] for p in (a, b))
    assert fa["partialFingerprints"] != fb["partialFingerprints"]
    assert fa["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "SCANROOT1"
    assert fb["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "SCANROOT2"

    report = scan(a)
    (finding,) = report.findings
    result = Result(Target(a, a), report, resolve())
    bigger = dataclasses.replace(finding, bytes=finding.bytes * 2, message=finding.message + " (changed)")
    assert fingerprint(result, bigger) == fingerprint(result, finding)
    other = dataclasses.replace(finding, tensors=("model.embed_tokens.weight",))
    assert fingerprint(result, other) != fingerprint(result, finding)


def test_relative_to_makes_uris_repository_relative(
    validator: Any, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub code scanning maps alerts to files by repository-relative URIs: `--relative-to .` gives them."""
    monkeypatch.chdir(fixtures_dir.parent)
    code, doc = sarif("fixtures/gemma2-merge-duplicated-head", "fixtures/qwen2-tieable-head", "--relative-to", ".")
    assert code == 1
    validator.validate(doc)
    run = doc["runs"][0]
    assert run["originalUriBaseIds"] == {"SCANROOT": {"uri": fixtures_dir.parent.resolve().as_uri() + "/"}}
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]]
    assert uris == [
        "fixtures/gemma2-merge-duplicated-head/model-00002-of-00002.safetensors",
        "fixtures/qwen2-tieable-head/model.safetensors",
    ]
    _, plain = sarif("fixtures/gemma2-merge-duplicated-head", "fixtures/qwen2-tieable-head")
    assert _fingerprints(plain) == _fingerprints(doc)  # the base of the paths is not part of a finding's identity


def test_fingerprints_are_distinct_for_alike_findings(fixtures_dir: Path) -> None:
    """index-stale-totals reports TC006 twice (total_size, total_parameters) with the same file and no tensor."""
    _, doc = sarif(str(fixtures_dir / "index-stale-totals"), str(fixtures_dir / "index-drift"))
    prints = _fingerprints(doc)
    assert [code for code, _ in prints].count("TC006") == 2
    assert len({fp for _, fp in prints}) == len(prints) == 7


def test_a_target_that_cannot_be_scanned_still_gives_valid_sarif(validator: Any, tmp_path: Path) -> None:
    code, document = sarif(str(tmp_path / "missing"))
    assert code == 2
    validator.validate(document)
