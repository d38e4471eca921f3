"""JSON files a checkpoint ships are read by a recursive decoder: nesting them thousands deep must give the
file's one-line finding or refusal, never an internal error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tiecheck.cli import app

DEEP = "[" * 100_000 + "]" * 100_000
"""Valid JSON, deeper than Python's recursion limit."""


@pytest.fixture
def folder(tmp_path: Path, fixtures_dir: Path) -> Path:
    target = tmp_path / "ck"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", target)
    return target


def findings(folder: Path) -> tuple[int, dict[str, str], str]:
    result = CliRunner().invoke(app, ["scan", str(folder), "-f", "json"])
    data = json.loads(result.stdout)
    return result.exit_code, {f["code"]: f["message"] for f in data["reports"][0]["findings"]}, result.stderr


@pytest.mark.parametrize(
    ("name", "code"), [("config.json", "TC009"), ("model.safetensors.index.json", "TC008")], ids=["config", "index"]
)
def test_a_deeply_nested_companion_file_is_a_finding(folder: Path, name: str, code: str) -> None:
    (folder / name).write_text('{"a": ' + DEEP + "}")
    exit_code, found, stderr = findings(folder)
    assert exit_code == 1 and "internal error" not in stderr
    assert "nested too deeply" in found[code] and name in found[code]


def test_a_deeply_nested_tokenizer_config_is_ignored_like_any_unreadable_one(folder: Path) -> None:
    """A base model's folder is searched for signs that it generates text; tokenizer_config.json's chat template
    is one. Unreadable, it says nothing."""
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "architectures": ["Gemma2Model"]}))
    (folder / "tokenizer_config.json").write_text(DEEP)
    exit_code, _, stderr = findings(folder)
    assert exit_code in (0, 1) and "internal error" not in stderr


@pytest.mark.parametrize("journal", [DEEP, '{"steps": ' + DEEP + "}", "[" * 100_000], ids=["list", "steps", "open"])
def test_a_deeply_nested_journal_is_refused_and_nothing_changes(folder: Path, journal: str) -> None:
    (folder / ".tiecheck-fix.json").write_text(journal)
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    result = CliRunner().invoke(app, ["fix", str(folder), "--drop-duplicates", "--yes"])
    assert result.exit_code == 2, result.output
    assert "unreadable journal" in result.stderr and "internal error" not in result.stderr
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before


INDEX = "model.safetensors.index.json"
NAME_TOO_LONG = "a/" * 3000 + "x.safetensors"
"""A shard path longer than PATH_MAX: stat() fails with ENAMETOOLONG, not "no such file"."""


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda text: text.replace('"total_size": ', '"total_size": NaN, "was": ', 1), "TC008"),
        (lambda text: text.replace('"total_size": ', '"total_size": Infinity, "was": ', 1), "TC008"),
        (lambda text: text.replace('.safetensors"', f'{NAME_TOO_LONG}"', 1), "TC002"),
    ],
    ids=["total-size-nan", "total-size-infinity", "shard-name-too-long"],
)
def test_index_values_python_reads_but_nothing_else_does_are_findings_in_a_multi_target_run(
    tmp_path: Path, fixtures_dir: Path, edit: object, code: str
) -> None:
    clean, hostile = tmp_path / "clean", tmp_path / "hostile"
    shutil.copytree(fixtures_dir / "clean-llama-sharded", clean)
    shutil.copytree(fixtures_dir / "clean-llama-sharded", hostile)
    assert callable(edit)
    (hostile / INDEX).write_text(edit((hostile / INDEX).read_text()))
    result = CliRunner().invoke(app, ["scan", str(hostile), str(clean), "-f", "json"])
    assert result.exit_code == 1 and "internal error" not in result.stderr, result.stderr
    reports = json.loads(result.stdout)["reports"]
    assert len(reports) == 2 and code in {f["code"] for f in reports[0]["findings"]}
    assert reports[1]["findings"] == []


def test_index_names_with_dot_segments_are_the_files_loaders_open(tmp_path: Path, fixtures_dir: Path) -> None:
    """``./model-00001-of-00002.safetensors`` is the shard transformers joins to the folder and loads:
    no drift finding, and a fix rewrites the index with plain names."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(0)
    folder = tmp_path / "llama"
    transformers.LlamaForCausalLM(config).save_pretrained(folder, max_shard_size="20KB")
    index = json.loads((folder / INDEX).read_text())
    index["weight_map"] = {k: f"./{v}" for k, v in index["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(index))
    _, info = transformers.LlamaForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    result = CliRunner().invoke(app, ["scan", str(folder), "-f", "json"])
    assert result.exit_code == 0, result.stdout

    merged = tmp_path / "merged"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", merged)
    index = json.loads((merged / INDEX).read_text())
    index["weight_map"] = {k: f".//{v}" for k, v in index["weight_map"].items()}
    (merged / INDEX).write_text(json.dumps(index))
    assert CliRunner().invoke(app, ["fix", "--yes", "--drop-duplicates", str(merged)]).exit_code == 0
    fixed = json.loads((merged / INDEX).read_text())["weight_map"]
    assert all(not v.startswith(".") for v in fixed.values())
    assert CliRunner().invoke(app, ["scan", str(merged)]).exit_code == 0


@pytest.mark.parametrize("suffix", ["/", "/.", "//."])
def test_a_shard_name_no_file_opens_through_is_missing(tmp_path: Path, fixtures_dir: Path, suffix: str) -> None:
    """``model-00001-of-00002.safetensors/.`` fails to open (not a folder): it is not that shard."""
    folder = tmp_path / "ck"
    shutil.copytree(fixtures_dir / "clean-llama-sharded", folder)
    index = json.loads((folder / INDEX).read_text())
    index["weight_map"] = {k: v + suffix for k, v in index["weight_map"].items()}
    (folder / INDEX).write_text(json.dumps(index))
    _, found, _ = findings(folder)
    assert "TC002" in found
