"""`tiecheck fix`: every repair on tiny real safetensors checkpoints, and every refusal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fixhelpers import (
    codes,
    copy_fixture,
    loadable,
    snapshot,
    use_merged,  # noqa: F401 - the "merged" fixture
)
from tiecheck import scan
from tiecheck.cli import app
from tiecheck.fixer import Options, run_fix
from tiecheck.fixer.journal import JOURNAL, tmp_name
from tiecheck.formats.safetensors import write_file

runner = CliRunner()


def fix(*args: str) -> Any:
    """``tiecheck fix --yes ARGS``: consent given (there is no terminal to ask on under the test runner)."""
    return runner.invoke(app, ["fix", "--yes", *args])


def test_drop_duplicates_in_place(merged: Path) -> None:
    before = loadable(merged)
    assert codes(merged) == {"TC101"}
    result = fix(str(merged), "--drop-duplicates", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["applied"] and report["mode"] == "in-place"
    kinds = [a["kind"] for a in report["plan"]["actions"]]
    assert kinds == ["drop-tensor", "rewrite-shard", "rewrite-index"]
    assert report["plan"]["bytes_saved"] == 32 * 8 * 2
    assert report["findings_after"] == []
    after = loadable(merged)
    assert set(before) - set(after) == {"lm_head.weight"}
    assert all(after[n] == before[n] for n in after)
    index = json.loads((merged / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(len(b) for b in after.values())
    assert sorted(p.name for p in merged.iterdir()) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    diff = runner.invoke(app, ["diff", str(merged), str(merged)])
    assert diff.exit_code == 0


def test_untouched_shard_keeps_its_inode(merged: Path) -> None:
    first = merged / "model-00001-of-00002.safetensors"
    inode = first.stat().st_ino
    assert fix(str(merged), "--drop-duplicates").exit_code == 0
    assert first.stat().st_ino == inode


def test_without_drop_duplicates_the_tied_copy_is_kept_and_said_so(merged: Path) -> None:
    before = snapshot(merged)
    result = fix(str(merged))
    assert result.exit_code == 0
    assert "Nothing to fix" in result.stdout
    assert "--drop-duplicates removes it" in result.stdout
    assert snapshot(merged) == before


def test_dry_run_changes_nothing(merged: Path) -> None:
    before = snapshot(merged)
    result = fix(str(merged), "--drop-duplicates", "--dry-run")
    assert result.exit_code == 0
    assert "drop-tensor" in result.stdout and "Dry run" in result.stdout
    assert snapshot(merged) == before


def test_differing_tied_head_is_kept(fixtures_dir: Path, tmp_path: Path) -> None:
    folder = copy_fixture(fixtures_dir, "gemma-tie-mismatch", tmp_path)
    before = snapshot(folder)
    result = fix(str(folder), "--drop-duplicates", "--format", "json")
    assert result.exit_code == 1, "an error fix cannot repair remains (TC102): non-zero, like ruff --fix"
    kept = json.loads(result.stdout)["plan"]["kept"]
    assert kept == [
        {
            "subject": "lm_head.weight",
            "code": "TC102",
            "reason": "kept: differs from model.embed_tokens.weight, so a loader cannot restore it",
        }
    ]
    assert snapshot(folder) == before


def test_stale_totals_rewrite_only_the_index(fixtures_dir: Path, tmp_path: Path) -> None:
    folder = copy_fixture(fixtures_dir, "index-stale-totals", tmp_path)
    shards = {n: h for n, h in snapshot(folder).items() if n.endswith(".safetensors")}
    assert fix(str(folder)).exit_code == 0
    assert codes(folder) == set()
    assert {n: h for n, h in snapshot(folder).items() if n.endswith(".safetensors")} == shards


def test_tie_head_edits_only_the_flag(fixtures_dir: Path, tmp_path: Path) -> None:
    folder = copy_fixture(fixtures_dir, "qwen2-tieable-head", tmp_path)
    old_config = (folder / "config.json").read_text()
    assert codes(folder) == {"TC104"}
    assert fix(str(folder), "--drop-duplicates").exit_code == 0
    assert codes(folder) == {"TC104"}, "--drop-duplicates alone never edits the config"
    assert (folder / "config.json").read_text() == old_config
    result = fix(str(folder), "--tie-head")
    assert result.exit_code == 0, result.output
    assert codes(folder) == set()
    new_config = (folder / "config.json").read_text()
    changed = [(a, b) for a, b in zip(old_config.splitlines(), new_config.splitlines(), strict=True) if a != b]
    assert changed == [('  "tie_word_embeddings": false', '  "tie_word_embeddings": true')]
    assert "lm_head.weight" not in loadable(folder)


def test_tie_head_in_text_config(gen: Any, tmp_path: Path) -> None:
    tensors = gen.llama_like(prefix="model.language_model.")
    tensors["lm_head.weight"] = tensors["model.language_model.embed_tokens.weight"]
    write_file(tmp_path / "model.safetensors", tensors, {"format": "pt"})
    config = {
        # LlavaConfig reads a true text_config flag (transformers 5 ties by the outer one, which it copies)
        "architectures": ["LlavaForConditionalGeneration"],
        "model_type": "llava",
        "dtype": "bfloat16",
        "text_config": {"model_type": "llama", "tie_word_embeddings": False, "vocab_size": 32},
        "vision_config": {"hidden_size": 8},
    }
    gen.write_json(tmp_path / "config.json", config)
    assert codes(tmp_path) == {"TC104"}
    assert fix(str(tmp_path), "--tie-head").exit_code == 0
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["text_config"]["tie_word_embeddings"] is True
    assert "tie_word_embeddings" not in document
    assert list(document) == list(config) and list(document["text_config"]) == list(config["text_config"])
    assert codes(tmp_path) == set()


def shards_with_duplicate(gen: Any, folder: Path, same: bool) -> None:
    tensors = gen.llama_like(head=True)
    shards = gen.split(tensors, 2)
    gen.write_sharded(folder, shards)
    copy = dict(shards[0])
    norm = tensors["model.norm.weight"] if same else gen.values("other", (8,))
    copy["model.norm.weight"] = norm
    write_file(folder / "model-00001-of-00002.safetensors", copy, {"format": "pt"})
    gen.write_json(folder / "config.json", gen.config("llama", "LlamaForCausalLM", tie_word_embeddings=False))


def test_identical_duplicate_key_is_dropped(gen: Any, tmp_path: Path) -> None:
    shards_with_duplicate(gen, tmp_path, same=True)
    assert codes(tmp_path) == {"TC005", "TC006"}
    assert all(f.fixable for f in scan(tmp_path).findings if f.code == "TC005")
    before = loadable(tmp_path)
    assert fix(str(tmp_path)).exit_code == 0
    assert codes(tmp_path) == set()
    assert loadable(tmp_path) == before


def test_differing_duplicate_key_is_refused(gen: Any, tmp_path: Path) -> None:
    shards_with_duplicate(gen, tmp_path, same=False)
    # The scan already sees the copies differ (their samples do): it does not promise a fix it cannot make.
    (duplicate,) = [f for f in scan(tmp_path).findings if f.code == "TC005"]
    assert not duplicate.fixable and "holds other values" in duplicate.message
    before = snapshot(tmp_path)
    result = fix(str(tmp_path), "--drop-duplicates", "--yes")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "differs" in result.stderr and "model-00001-of-00002.safetensors" in result.stderr
    assert snapshot(tmp_path) == before


def test_unindexed_tensor_is_added_to_the_index(gen: Any, tmp_path: Path) -> None:
    gen.write_sharded(tmp_path, gen.split(gen.llama_like(head=True), 2))
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    del index["weight_map"]["model.norm.weight"]
    gen.write_json(tmp_path / "model.safetensors.index.json", index)
    gen.write_json(tmp_path / "config.json", gen.config("llama", "LlamaForCausalLM", tie_word_embeddings=False))
    assert codes(tmp_path) == {"TC004"}
    result = fix(str(tmp_path), "--format", "json")
    assert [a["kind"] for a in json.loads(result.stdout)["plan"]["actions"]] == ["add-to-index", "rewrite-index"]
    assert codes(tmp_path) == set()
    assert "model.norm.weight" in loadable(tmp_path)


def test_unindexed_tied_copy_is_dropped(gen: Any, tmp_path: Path) -> None:
    tensors = gen.llama_like()
    shards = gen.split(tensors, 2)
    gen.write_sharded(tmp_path, shards)
    last = dict(shards[1])
    last["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    write_file(tmp_path / "model-00002-of-00002.safetensors", last, {"format": "pt"})
    gen.write_json(tmp_path / "config.json", gen.config("gemma2", "Gemma2ForCausalLM"))
    assert "TC004" in codes(tmp_path)
    result = fix(str(tmp_path), "--format", "json")
    assert result.exit_code == 0
    plan = json.loads(result.stdout)["plan"]
    first = plan["actions"][0]
    assert (first["kind"], first["tensor"], first["codes"]) == ("drop-tensor", "lm_head.weight", ["TC004"])
    assert plan["kept"] == [], "an unindexed copy is dropped by the index repair, not kept as a TC101"
    assert codes(tmp_path) == set()
    assert "lm_head.weight" not in loadable(tmp_path)


def test_emptied_shard_is_removed_and_the_rest_renumbered(gen: Any, tmp_path: Path) -> None:
    tensors = gen.llama_like()
    shards = [*gen.split(tensors, 2), {"lm_head.weight": tensors["model.embed_tokens.weight"]}]
    gen.write_sharded(tmp_path, shards)
    gen.write_json(tmp_path / "config.json", gen.config("gemma2", "Gemma2ForCausalLM"))
    before = loadable(tmp_path)
    result = fix(str(tmp_path), "--drop-duplicates", "--format", "json")
    assert result.exit_code == 0, result.output
    kinds = [a["kind"] for a in json.loads(result.stdout)["plan"]["actions"]]
    assert kinds == ["drop-tensor", "rename-shard", "rename-shard", "remove-shard", "rewrite-index"]
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    after = loadable(tmp_path)
    assert after == {n: b for n, b in before.items() if n != "lm_head.weight"}
    assert codes(tmp_path) == set()


def test_orphans_are_deleted_or_indexed(gen: Any, tmp_path: Path) -> None:
    tensors = gen.llama_like(head=True)
    shards = gen.split(tensors, 2)
    gen.write_sharded(tmp_path, shards)
    gen.write_json(tmp_path / "config.json", gen.config("llama", "LlamaForCausalLM", tie_word_embeddings=False))
    # A leftover of an earlier upload: every tensor in it is also in the indexed shards.
    write_file(tmp_path / "model-00001-of-00003.safetensors", {"model.norm.weight": tensors["model.norm.weight"]})
    # A shard the index forgot: its tensor is nowhere else.
    write_file(tmp_path / "model-00003-of-00003.safetensors", {"extra.bias": gen.values("extra", (4,))})
    assert codes(tmp_path) == {"TC007"}
    result = fix(str(tmp_path), "--format", "json")
    assert result.exit_code == 0, result.output
    actions = json.loads(result.stdout)["plan"]["actions"]
    assert {a["kind"] for a in actions} == {"rename-shard", "delete-orphan", "rewrite-index"}
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ]
    assert "extra.bias" in loadable(tmp_path)
    assert codes(tmp_path) == set()


def test_output_folder_leaves_the_source_alone(merged: Path, tmp_path: Path) -> None:
    (merged / "tokenizer.json").write_text("{}")
    before = snapshot(merged)
    out = tmp_path / "fixed"
    result = fix(str(merged), "--drop-duplicates", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert snapshot(merged) == before
    assert (out / "tokenizer.json").read_text() == "{}"
    assert codes(out) == set()
    diff = runner.invoke(app, ["diff", str(merged), str(out), "--format", "json"])
    assert diff.exit_code == 0
    assert json.loads(diff.stdout)["tensors"] == [
        {"name": "lm_head.weight", "status": "restorable", "detail": "tied to the identical model.embed_tokens.weight"}
    ]
    assert fix(str(merged), "--drop-duplicates", "--output", str(out)).exit_code == 2, "output must be new"


def test_output_rescan_sees_the_files_it_carries_over(merged: Path, tmp_path: Path) -> None:
    """The re-scan of the output must see what is copied with it: a side pickle's finding is not "resolved"."""
    import pickle

    (merged / "side.pkl").write_bytes(pickle.dumps(os.system, protocol=2))  # imports os.system; never loaded
    assert "TC401" in codes(merged)
    out = tmp_path / "fixed"
    result = fix(str(merged), "--drop-duplicates", "--output", str(out), "--format", "json")
    assert result.exit_code == 1, result.output  # TC401 remains
    document = json.loads(result.stdout)
    assert [f["code"] for f in document["verification"]["resolved"]] == ["TC101"]
    assert "TC401" in codes(out)


@pytest.fixture
def immutable(merged: Path) -> Iterator[Path]:
    if shutil.which("chattr") is None:
        pytest.skip("needs chattr")
    if subprocess.run(["chattr", "+i", str(merged)], capture_output=True).returncode != 0:
        pytest.skip("cannot make the folder immutable here")
    try:
        yield merged
    finally:
        subprocess.run(["chattr", "-i", str(merged)], check=True)


def test_read_only_folder_is_refused(immutable: Path) -> None:
    before = snapshot(immutable)
    result = fix(str(immutable), "--drop-duplicates", "--yes")
    assert result.exit_code == 2
    assert "not writable" in result.stderr and result.stderr.count("\n") == 1
    assert snapshot(immutable) == before


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    for target in (tmp_path, tmp_path / "notes.txt", tmp_path / "absent"):
        result = fix(str(target))
        assert result.exit_code == 2, target
        assert result.stderr.startswith("tiecheck: error:") and result.stderr.count("\n") == 1
    assert snapshot(tmp_path) == {"notes.txt": snapshot(tmp_path)["notes.txt"]}


@pytest.mark.parametrize("command", ["fix", "scan"])
def test_a_fifo_named_like_weights_is_refused_without_blocking(tmp_path: Path, command: str) -> None:
    """Opening a FIFO for reading waits for a writer: a fix once hung there, taking it for a folder to lock.
    Run in a process of its own with a time limit, so that a hang fails the test instead of the suite."""
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", command, str(fifo), *(["--yes"] if command == "fix" else [])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tiecheck: error:") and "not a checkpoint" in done.stderr


def test_broken_checkpoint_is_refused(fixtures_dir: Path, tmp_path: Path) -> None:
    folder = copy_fixture(fixtures_dir, "index-drift", tmp_path)
    before = snapshot(folder)
    result = fix(str(folder), "--drop-duplicates")
    assert result.exit_code == 2 and "TC002" in result.stderr
    assert snapshot(folder) == before


def test_leftover_temp_files_are_cleaned_and_reported(merged: Path) -> None:
    (merged / tmp_name("model-00002-of-00002.safetensors")).write_bytes(b"partial")
    assert codes(merged) == {"TC101", "TC020"}, "temp files are invisible to loaders, reported by TC020"
    result = fix(str(merged), "--drop-duplicates")
    assert result.exit_code == 0
    assert "removed 1 temporary file(s)" in result.stdout
    assert not [p for p in merged.iterdir() if p.name.startswith(".tiecheck")]


def test_journal_is_rolled_forward(merged: Path) -> None:
    """A fix killed after its journal was written is completed by the next run."""
    staged = merged / tmp_name("model.safetensors.index.json")
    index = json.loads((merged / "model.safetensors.index.json").read_text())
    index["metadata"]["total_size"] -= 1
    staged.write_text(json.dumps(index))
    journal = {"steps": [["replace", staged.name, "model.safetensors.index.json"]]}
    (merged / JOURNAL).write_text(json.dumps(journal))
    outcome = run_fix(merged, Options(), dry_run=True)
    assert outcome.pending_recovery and staged.exists()
    outcome = run_fix(merged, Options())
    assert outcome.recovery is not None and outcome.recovery.rolled_forward
    assert not staged.exists() and not (merged / JOURNAL).exists()
    assert outcome.applied is not None, "the rolled-forward index had stale totals: fixed in the same run"
    assert codes(merged) == {"TC101"}


def test_fix_is_idempotent(merged: Path) -> None:
    assert fix(str(merged), "--drop-duplicates").exit_code == 0
    before = snapshot(merged)
    result = fix(str(merged), "--drop-duplicates")
    assert result.exit_code == 0 and "Nothing to fix" in result.stdout
    assert snapshot(merged) == before


def test_module_entry_point(merged: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", "fix", str(merged), "--drop-duplicates", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "drop-tensor" in done.stdout


def test_declined_confirmation_changes_nothing(merged: Path) -> None:
    before = snapshot(merged)
    asked = []
    outcome = run_fix(merged, Options(drop_duplicates=True), confirm=lambda plan: asked.append(plan) is not None)
    assert outcome.applied is None and len(asked) == 1 and not asked[0].empty
    assert snapshot(merged) == before


def test_clean_checkpoint_with_other_index_formatting_is_left_alone(fixtures_dir: Path, tmp_path: Path) -> None:
    folder = copy_fixture(fixtures_dir, "clean-llama-sharded", tmp_path)
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps(json.loads(index.read_text()), separators=(",", ":")))
    before = snapshot(folder)
    result = fix(str(folder), "--drop-duplicates", "--tie-head")
    assert result.exit_code == 0 and "Nothing to fix" in result.stdout
    assert snapshot(folder) == before


def test_a_second_fix_on_the_same_folder_is_refused(merged: Path) -> None:
    import fcntl
    import os

    fd = os.open(merged, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = snapshot(merged)
        result = fix(str(merged), "--drop-duplicates")
        assert result.exit_code == 2 and "another tiecheck fix is running" in result.stderr
        assert snapshot(merged) == before
    finally:
        os.close(fd)
    assert fix(str(merged), "--drop-duplicates").exit_code == 0


def test_renumbering_never_overwrites_a_kept_file(gen: Any, tmp_path: Path) -> None:
    tensors = gen.llama_like()
    shards = [*gen.split(tensors, 2), {"lm_head.weight": tensors["model.embed_tokens.weight"]}]
    gen.write_sharded(tmp_path, shards)
    gen.write_json(tmp_path / "config.json", gen.config("gemma2", "Gemma2ForCausalLM"))
    # An orphan under the name the renumbered first shard would take, holding a different norm: kept.
    write_file(tmp_path / "model-00001-of-00002.safetensors", {"model.norm.weight": gen.values("x", (8,))})
    before = snapshot(tmp_path)
    result = fix(str(tmp_path), "--drop-duplicates")
    assert result.exit_code == 2 and "would overwrite" in result.stderr
    assert snapshot(tmp_path) == before


def test_a_corrupted_copy_is_caught_and_discarded(merged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte flipped on its way to disk fails verification: the staged files go, the folder is untouched."""
    from tiecheck.fixer import writer

    real_write = writer._write_all
    calls = []

    def corrupting_write(fd: int, data: Any) -> None:
        calls.append(len(data))
        if len(calls) == 3:  # a tensor chunk (the first write is the header)
            data = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
        real_write(fd, data)

    monkeypatch.setattr(writer, "_copy_file_range", None)
    monkeypatch.setattr(writer, "_write_all", corrupting_write)
    before = snapshot(merged)
    result = fix(str(merged), "--drop-duplicates")
    assert result.exit_code == 2 and "verification failed" in result.stderr, result.output
    assert snapshot(merged) == before


def test_single_file_beside_a_stale_index_and_its_shards(gen: Any, tmp_path: Path) -> None:
    """TC007 naming several files: the shadowed index and shards go when model.safetensors holds all of it."""
    tensors = gen.llama_like()
    gen.write_sharded(tmp_path, gen.split(tensors, 2))
    write_file(tmp_path / "model.safetensors", tensors, {"format": "pt"})
    gen.write_json(tmp_path / "config.json", gen.config("gemma2", "Gemma2ForCausalLM"))
    assert codes(tmp_path) == {"TC007"}
    result = fix(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert codes(tmp_path) == set()


def test_a_shadowed_shard_that_differs_is_kept_and_other_repairs_go_on(gen: Any, tmp_path: Path) -> None:
    tensors = gen.llama_like()
    shards = gen.split(tensors, 2)
    shards[1]["model.norm.weight"] = gen.values("other", (gen.HIDDEN,))
    gen.write_sharded(tmp_path, shards)
    write_file(tmp_path / "model.safetensors", {**tensors, "lm_head.weight": tensors["model.embed_tokens.weight"]})
    gen.write_json(tmp_path / "config.json", gen.config("qwen2", "Qwen2ForCausalLM", tie_word_embeddings=False))
    assert codes(tmp_path) == {"TC007", "TC104"}
    result = fix(str(tmp_path), "--tie-head", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [k["code"] for k in report["plan"]["kept"]] == ["TC007"]
    assert "decide by hand" in report["plan"]["kept"][0]["reason"]
    assert codes(tmp_path) == {"TC007"}
    assert (tmp_path / "model.safetensors.index.json").exists()


def test_one_shard_scanned_alone_is_scanned_with_its_folder(fixtures_dir: Path) -> None:
    """A shard its index references is read as the checkpoint it belongs to, not as a headless model."""
    from tiecheck import scan

    folder = fixtures_dir / "clean-llama-sharded"
    shard = sorted(folder.glob("model-*.safetensors"))[0]
    alone = scan(shard)
    assert {f.code for f in alone.findings} == {f.code for f in scan(folder).findings}
    assert not [f for f in alone.findings if f.severity.label == "error"]
    assert len(alone.checkpoint.files) > 1
