"""What a checkpoint folder cannot make `tiecheck fix` do: follow its journal or symlinks out, change modes,
replace read-only files, or run in place without consent."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fixhelpers import (
    INDEX,
    SHARD2,
    codes,
    loadable,
    snapshot,
    use_merged,  # noqa: F401 - the "merged" fixture
)
from hub_server import write_hf_cache
from tiecheck import scan
from tiecheck.cli import app
from tiecheck.fixer import Options, RefusedError, run_fix
from tiecheck.fixer.journal import JOURNAL, tmp_name

runner = CliRunner()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("do not touch")
    (folder / ".tiecheck-tmp-precious.txt.part").write_text("attacker")
    (folder / "model.safetensors").write_text("do not touch")  # a name the fix may write or remove
    (folder / ".tiecheck-tmp-model.safetensors.part").write_text("attacker")
    return folder


def hostile_journals(outside: Path) -> dict[str, list[list[str]]]:
    precious = str(outside / "precious.txt")
    return {
        "absolute-delete": [["delete", precious]],
        "dotdot-delete": [["delete", "../outside/precious.txt"]],
        "absolute-replace": [["replace", str(outside / ".tiecheck-tmp-precious.txt.part"), precious]],
        "dotdot-replace": [["replace", "../outside/.tiecheck-tmp-precious.txt.part", "../outside/precious.txt"]],
        "source-not-a-temp": [["replace", "config.json", INDEX]],
        "temp-of-another-name": [["replace", tmp_name("config.json"), INDEX]],
        "unknown-step": [["chmod", "config.json"]],
        "extra-argument": [["delete", "config.json", "x"]],
        "symlinked-delete": [["delete", "link.txt"]],
        "symlinked-source": [["replace", tmp_name("config.json"), "config.json"]],
        "not-a-list": "delete everything",  # type: ignore[dict-item]
        # outside the folder under a name the fix does write or remove: only the plain-name check refuses these
        "absolute-delete-shard-name": [["delete", str(outside / "model.safetensors")]],
        "dotdot-replace-shard-name": [
            ["replace", "../outside/.tiecheck-tmp-model.safetensors.part", "../outside/model.safetensors"]
        ],
        # names the fix never writes or removes: a journal shipped with a repo must not put a pickle in place
        # of the weights (it runs code when loaded), nor delete what is not weights
        "replace-with-a-pickle": [["replace", tmp_name("pytorch_model.bin"), "pytorch_model.bin"]],
        "replace-the-readme": [["replace", tmp_name("README.md"), "README.md"]],
        "delete-the-config": [["delete", "config.json"]],
        "delete-the-tokenizer": [["delete", "tokenizer.json"]],
    }


@pytest.mark.parametrize(
    "case",
    sorted(hostile_journals(Path("/x"))),
)
def test_hostile_journal_is_refused_and_nothing_changes(merged: Path, outside: Path, case: str) -> None:
    steps = hostile_journals(outside)[case]
    (merged / "link.txt").symlink_to(outside / "precious.txt")
    (merged / tmp_name("config.json")).symlink_to(outside / "precious.txt")
    (merged / JOURNAL).write_text(json.dumps({"steps": steps}))
    inside, there = snapshot(merged), snapshot(outside)
    links = sorted(p.name for p in merged.iterdir() if p.is_symlink())
    for dry_run in (True, False):
        with pytest.raises(RefusedError, match="journal"):
            run_fix(merged, Options(drop_duplicates=True), dry_run=dry_run)
    result = runner.invoke(app, ["fix", "--yes", "--drop-duplicates", str(merged)])
    assert result.exit_code == 2 and "nothing was changed" in result.stderr, result.output
    assert snapshot(merged) == inside and snapshot(outside) == there
    assert sorted(p.name for p in merged.iterdir() if p.is_symlink()) == links
    # scan says the same as fix: not a leftover that `tiecheck fix` completes, and not fixable
    (leftover,) = [f for f in scan(merged).findings if f.code == "TC020"]
    assert not leftover.fixable and "refuses to run" in leftover.message and "completes" not in leftover.message


def test_a_fix_refused_after_a_recovery_says_the_folder_changed(merged: Path) -> None:
    """The recovery ran (the index was switched), then the plan refused: "nothing was changed" would be false."""
    staged = merged / tmp_name(INDEX)
    index = json.loads((merged / INDEX).read_text())
    index["weight_map"]["lm_head.weight"] = "model-00009-of-00009.safetensors"  # a shard that is not there
    staged.write_text(json.dumps(index))
    (merged / JOURNAL).write_text(json.dumps({"steps": [["replace", staged.name, INDEX]]}))
    result = runner.invoke(app, ["fix", "--yes", "--drop-duplicates", str(merged)])
    assert result.exit_code == 2, result.output
    assert json.loads((merged / INDEX).read_text()) == index, "the recovery ran"
    assert "nothing was changed" not in result.stderr
    assert "completed an interrupted fix" in result.stderr, result.stderr


def test_a_shard_with_a_temp_name_that_the_index_names_is_not_deleted(merged: Path) -> None:
    """Loaders read whatever the index names, ``.tiecheck-tmp-*.part`` too: it is a shard, not a leftover."""
    odd = tmp_name(SHARD2)
    (merged / SHARD2).rename(merged / odd)
    index = json.loads((merged / INDEX).read_text())
    index["weight_map"] = {k: odd if v == SHARD2 else v for k, v in index["weight_map"].items()}
    (merged / INDEX).write_text(json.dumps(index))
    before = snapshot(merged)
    result = runner.invoke(app, ["fix", "--yes", "--drop-duplicates", str(merged)])
    assert result.exit_code == 2 and "index names" in result.stderr, result.output
    assert snapshot(merged) == before
    (leftover,) = [f for f in scan(merged).findings if f.code == "TC020"]
    assert not leftover.fixable


def test_journal_that_is_a_symlink_is_refused(merged: Path, outside: Path) -> None:
    (outside / "journal.json").write_text(json.dumps({"steps": []}))
    (merged / JOURNAL).symlink_to(outside / "journal.json")
    with pytest.raises(RefusedError, match="symlink"):
        run_fix(merged, Options())
    assert (merged / JOURNAL).is_symlink()


def test_recovery_is_shown_in_dry_run_and_asked_for(merged: Path) -> None:
    staged = merged / tmp_name(INDEX)
    index = json.loads((merged / INDEX).read_text())
    index["metadata"]["total_size"] -= 1
    staged.write_text(json.dumps(index))
    (merged / JOURNAL).write_text(json.dumps({"steps": [["replace", staged.name, INDEX]]}))
    assert "TC020" in codes(merged), "scan reports the pending journal"
    pending = [f for f in scan(merged).findings if f.code == "TC020"]
    assert all(f.fixable and "completes" in f.message for f in pending), pending
    before = snapshot(merged)

    dry = runner.invoke(app, ["fix", "--dry-run", str(merged)])
    assert dry.exit_code == 0, dry.output
    assert f"move {staged.name} -> {INDEX}" in dry.stdout
    assert snapshot(merged) == before

    no_terminal = runner.invoke(app, ["fix", str(merged)])
    assert no_terminal.exit_code == 2 and "--yes" in no_terminal.stderr
    assert snapshot(merged) == before

    asked: list[Any] = []
    outcome = run_fix(merged, Options(), confirm_recovery=lambda p: asked.append(p) is not None)
    assert outcome.declined and len(asked) == 1 and asked[0].steps == (("replace", staged.name, INDEX),)
    assert snapshot(merged) == before

    outcome = run_fix(merged, Options(), confirm_recovery=lambda p: True)
    assert outcome.recovery is not None and outcome.recovery.rolled_forward
    assert "TC020" not in codes(merged)


def test_leftover_temp_files_are_reported_by_scan(merged: Path) -> None:
    (merged / tmp_name(SHARD2)).write_bytes(b"partial")
    assert {f.code for f in scan(merged).findings} >= {"TC020"}


def test_a_temp_name_that_is_not_a_file_is_reported_as_not_fixable(merged: Path, outside: Path) -> None:
    (merged / tmp_name(SHARD2)).symlink_to(outside / "precious.txt")
    (leftover,) = [f for f in scan(merged).findings if f.code == "TC020"]
    assert not leftover.fixable and "a symlink" in leftover.message
    with pytest.raises(RefusedError, match="symlink"):
        run_fix(merged, Options())


# --- consent -------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--format", "json"]])
def test_no_change_in_place_without_a_prompt_or_yes(merged: Path, extra: list[str]) -> None:
    """Under the test runner stdin/stdout are not terminals (like `| tee log` or `< /dev/null`)."""
    before = snapshot(merged)
    result = runner.invoke(app, ["fix", "--drop-duplicates", *extra, str(merged)], input="y\n")
    assert result.exit_code == 2 and "no terminal to ask" in result.stderr
    assert snapshot(merged) == before
    assert runner.invoke(app, ["fix", "--drop-duplicates", "--yes", *extra, str(merged)]).exit_code == 0
    assert codes(merged) == set()


def test_output_needs_no_consent(merged: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["fix", "--drop-duplicates", "-o", str(tmp_path / "out"), str(merged)])
    assert result.exit_code == 0, result.output


# --- symlinks ------------------------------------------------------------------------------


def test_shard_symlinked_out_of_the_folder_is_tc008_and_never_unlinked(merged: Path, outside: Path) -> None:
    target = outside / SHARD2
    shutil.move(merged / SHARD2, target)
    (merged / SHARD2).symlink_to(target)
    report = scan(merged)
    assert any(f.code == "TC008" and SHARD2 in f.files for f in report.findings)
    result = runner.invoke(app, ["fix", "--yes", "--drop-duplicates", str(merged)])
    assert result.exit_code == 2 and "TC008" in result.stderr
    assert (merged / SHARD2).is_symlink() and target.exists()


def test_directory_symlink_in_the_index_is_tc008(merged: Path, outside: Path) -> None:
    (merged / "sub").symlink_to(outside)
    shutil.move(merged / SHARD2, outside / SHARD2)
    index = json.loads((merged / INDEX).read_text())
    index["weight_map"] = {k: (f"sub/{SHARD2}" if v == SHARD2 else v) for k, v in index["weight_map"].items()}
    (merged / INDEX).write_text(json.dumps(index))
    before, there = snapshot(merged), snapshot(outside)
    assert any(f.code == "TC008" for f in scan(merged).findings)
    with pytest.raises(RefusedError, match="TC008"):
        run_fix(merged, Options(drop_duplicates=True))
    assert snapshot(merged) == before and snapshot(outside) == there


def test_output_never_copies_a_symlink_target_from_outside(merged: Path, outside: Path, tmp_path: Path) -> None:
    (merged / "README.md").symlink_to(outside / "precious.txt")
    out = tmp_path / "out"
    run_fix(merged, Options(drop_duplicates=True), output=out)
    assert not (out / "README.md").exists()


def test_hugging_face_cache_snapshot_is_refused_in_place(merged: Path, tmp_path: Path) -> None:
    write_hf_cache(tmp_path, "org/name", merged, sha="0123abcd")
    repo = tmp_path / "models--org--name"
    blobs, snap = repo / "blobs", repo / "snapshots" / "0123abcd"
    assert codes(snap) == {"TC101"}, "cache symlinks into blobs/ are the checkpoint's own files"
    blobs_before = snapshot(blobs)
    result = runner.invoke(app, ["fix", "--yes", "--drop-duplicates", str(snap)])
    assert result.exit_code == 2 and "--output" in result.stderr and "cache" in result.stderr
    assert all(p.is_symlink() for p in snap.iterdir()) and snapshot(blobs) == blobs_before
    out = tmp_path / "fixed"
    assert runner.invoke(app, ["fix", "--drop-duplicates", "-o", str(out), str(snap)]).exit_code == 0
    assert not any(p.is_symlink() for p in out.iterdir()) and codes(out) == set()
    assert loadable(out)


@pytest.mark.parametrize("where", ["symlink-in-the-folder", "inside-the-folder"])
def test_output_is_neither_a_symlink_nor_inside_the_checkpoint(
    merged: Path, outside: Path, tmp_path: Path, where: str
) -> None:
    """A checkpoint that ships ``fixed -> somewhere`` cannot steer ``fix --output SRC/fixed`` there."""
    empty = outside / "empty"
    empty.mkdir()
    target = merged / ("fixed" if where == "symlink-in-the-folder" else "sub/fixed")
    if where == "symlink-in-the-folder":
        target.symlink_to(empty, target_is_directory=True)
    before, there = snapshot(merged), snapshot(empty)
    with pytest.raises(RefusedError, match="symlink" if where == "symlink-in-the-folder" else "inside"):
        run_fix(merged, Options(drop_duplicates=True), output=target)
    assert snapshot(merged) == before and snapshot(empty) == there and not (merged / "sub").exists()


def test_a_cache_whose_blobs_lead_outside_is_not_a_cache(merged: Path, outside: Path, tmp_path: Path) -> None:
    """Only the snapshot's own repo's real blobs/ may hold its files. A blobs/ that is a symlink elsewhere (here
    to a folder holding the weights and a secret) makes every snapshot link a way out: TC008, not read, and
    ``fix --output`` copies nothing from there."""
    write_hf_cache(tmp_path, "org/name", merged, sha="0123abcd")
    repo = tmp_path / "models--org--name"
    snap = repo / "snapshots" / "0123abcd"
    shutil.move(repo / "blobs", outside / "blobs")
    (outside / "blobs" / "secret").write_text("host secret")
    (repo / "blobs").symlink_to(outside / "blobs", target_is_directory=True)
    (snap / "README.md").symlink_to("../../blobs/secret")
    there = snapshot(outside)
    found = scan(snap)
    assert {f.code for f in found.findings} >= {"TC008"}
    assert all(f.code != "TC101" for f in found.findings), "the weights outside were read"
    out = tmp_path / "fixed"
    runner.invoke(app, ["fix", "--drop-duplicates", "-o", str(out), str(snap)])
    assert not (out / "README.md").exists()
    assert snapshot(outside) == there


# --- modes, owner, extended attributes, read-only files ------------------------------------


def test_rewritten_files_keep_mode_owner_and_xattrs(merged: Path) -> None:
    shard, index = merged / SHARD2, merged / INDEX
    shard.chmod(0o600)
    index.chmod(0o640)
    xattrs = True
    try:
        os.setxattr(shard, "user.origin", b"hub")
    except OSError:
        xattrs = False  # the filesystem has no user xattrs
    owner = (shard.stat().st_uid, shard.stat().st_gid)
    inode = shard.stat().st_ino
    assert runner.invoke(app, ["fix", "--yes", "--drop-duplicates", str(merged)]).exit_code == 0
    assert shard.stat().st_ino != inode, "the shard was rewritten"
    assert stat.S_IMODE(shard.stat().st_mode) == 0o600
    assert stat.S_IMODE(index.stat().st_mode) == 0o640
    assert (shard.stat().st_uid, shard.stat().st_gid) == owner
    if xattrs:
        assert os.getxattr(shard, "user.origin") == b"hub"


def test_read_only_shard_is_not_replaced(merged: Path) -> None:
    (merged / SHARD2).chmod(0o444)
    before = snapshot(merged)
    result = runner.invoke(app, ["fix", "--yes", "--drop-duplicates", str(merged)])
    assert result.exit_code == 2 and "read-only" in result.stderr, result.output
    assert snapshot(merged) == before
    assert stat.S_IMODE((merged / SHARD2).stat().st_mode) == 0o444


def test_config_symlinked_out_of_the_folder_is_not_read(merged: Path, outside: Path) -> None:
    (outside / "config.json").write_bytes((merged / "config.json").read_bytes())
    (merged / "config.json").unlink()
    (merged / "config.json").symlink_to(outside / "config.json")
    report = scan(merged)
    assert any(f.code == "TC009" and "outside" in f.message for f in report.findings)
    with pytest.raises(RefusedError, match="TC009"):
        run_fix(merged, Options(drop_duplicates=True))


def test_a_shard_that_fails_to_reach_the_disk_fails_the_fix(merged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The staged shard is fsynced on a thread of its own while verification reads it back; an I/O error
    there (a full or failing disk reports it at fsync) must fail the fix, with nothing changed."""
    before = snapshot(merged)
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        if str(Path(f"/proc/self/fd/{fd}").readlink()).endswith(f"{SHARD2}.part"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        run_fix(merged, Options(drop_duplicates=True))
    assert snapshot(merged) == before
    assert not [p for p in merged.iterdir() if p.name.startswith(".tiecheck")]


@pytest.mark.parametrize("name", ["model-00003-of-00003.safetensors", "notes.txt"])
def test_a_symlink_loop_in_the_folder_stops_neither_scan_nor_fix(merged: Path, tmp_path: Path, name: str) -> None:
    """A name that loops on itself (ELOOP on stat) is not a file: it is passed over, never an internal error."""
    (merged / "loop-a").symlink_to("loop-b")
    (merged / "loop-b").symlink_to("loop-a")
    (merged / name).symlink_to("loop-a")
    assert "TC101" in codes(merged)
    result = runner.invoke(app, ["fix", str(merged), "--drop-duplicates", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["fix", str(merged), "--drop-duplicates", "--yes"])
    assert result.exit_code == 0, result.output
    assert "TC101" not in codes(merged) and (merged / name).is_symlink()
