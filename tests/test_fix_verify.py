"""Verification refuses a staged fix that loses anything, whatever the plan says.

Every test here hands the *verifier* (``apply_in_place``, which verifies before it commits) a
wrong plan, or makes the *planner* produce one through a patched rule, and expects the
verification layer to refuse: ``VerificationError``, staged files removed, the folder unchanged.
The planner is bypassed on purpose: these are the checks that hold when a rule or the planner is
wrong.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from fixhelpers import (
    INDEX,
    SHARD1,
    SHARD2,
    codes,
    copy_fixture,
    snapshot,
    use_merged,  # noqa: F401 - the "merged" fixture
)
from tiecheck import scan
from tiecheck.cli import app
from tiecheck.fixer import Options, VerificationError, run_fix
from tiecheck.fixer import apply as fix_apply
from tiecheck.fixer import plan as fix_plan
from tiecheck.fixer.apply import apply_in_place
from tiecheck.fixer.hooks import Run
from tiecheck.fixer.plan import Dropped, Plan, build_plan
from tiecheck.formats.safetensors import write_file
from tiecheck.io.source import LocalStore
from tiecheck.scan import Report, scan_store

runner = CliRunner()


@pytest.fixture
def tieable(tmp_path: Path, fixtures_dir: Path) -> Path:
    return copy_fixture(fixtures_dir, "qwen2-tieable-head", tmp_path, "tieable")


def planned(folder: Path, options: Options) -> tuple[Report, Plan]:
    store = LocalStore(folder)
    before = scan_store(store, target=str(folder))
    return before, build_plan(before, store, options)


def refused(folder: Path, before: Report, plan: Plan, match: str) -> None:
    files = snapshot(folder)
    with pytest.raises(VerificationError, match=match):
        apply_in_place(folder, plan, before, Run())
    assert snapshot(folder) == files, "a refused fix leaves the folder as it was (temp files removed)"


def record(before: Report, name: str) -> Any:
    return before.checkpoint.tensor_map()[name]


def test_wrong_partner(merged: Path) -> None:
    before, plan = planned(merged, Options(drop_duplicates=True))
    (d,) = plan.dropped
    wrong = dataclasses.replace(d, partner=record(before, "model.norm.weight"))
    refused(merged, before, dataclasses.replace(plan, dropped=(wrong,)), "differs from model.norm.weight")


def test_missing_tie(tieable: Path) -> None:
    """--tie-head without its config edit: the head is dropped and nothing restores it."""
    before, plan = planned(tieable, Options(tie_head=True))
    assert plan.config_text is not None
    untied = dataclasses.replace(plan, config_name=None, config_text=None)
    refused(tieable, before, untied, "lm_head.weight would be lost")


def test_dropped_tensor_without_partner(tieable: Path) -> None:
    """A tensor left out of the rewritten file, and listed nowhere as dropped."""
    before, plan = planned(tieable, Options(tie_head=True))
    (out,) = plan.files
    short = dataclasses.replace(out, tensors=tuple(t for t in out.tensors if t.name != "model.norm.weight"))
    refused(tieable, before, dataclasses.replace(plan, files=(short,)), "model.norm.weight would be lost")


def test_a_listed_drop_that_nothing_restores(tieable: Path) -> None:
    before, plan = planned(tieable, Options(tie_head=True))
    (out,) = plan.files
    norm, embed = record(before, "model.norm.weight"), record(before, "model.embed_tokens.weight")
    short = dataclasses.replace(out, tensors=tuple(t for t in out.tensors if t.name != norm.name))
    dropped = (*plan.dropped, Dropped(norm, embed, via_tie=True, code="TC101"))
    refused(tieable, before, dataclasses.replace(plan, files=(short,), dropped=dropped), "norm.weight would be lost")


def test_a_new_finding(merged: Path) -> None:
    before, plan = planned(merged, Options(drop_duplicates=True))
    assert plan.index_text is not None
    index = json.loads(plan.index_text)
    index["metadata"]["total_size"] += 2
    refused(merged, before, dataclasses.replace(plan, index_text=json.dumps(index)), "finding it should not: TC006")


def test_a_finding_not_resolved(merged: Path) -> None:
    """The plan claims TC101 but rewrites the shard with the head still in it."""
    before, plan = planned(merged, Options(drop_duplicates=True))
    (d,) = plan.dropped
    full = tuple(
        dataclasses.replace(out, tensors=(*out.tensors, d.record)) if out.source is None else out for out in plan.files
    )
    index = json.loads(plan.index_text or "{}")
    index["weight_map"][d.record.name] = d.record.file
    index["metadata"]["total_size"] += d.record.nbytes
    bad = dataclasses.replace(plan, files=full, dropped=(), index_text=json.dumps(index))
    refused(merged, before, bad, "TC101")


def test_bytes_from_another_tensor(tieable: Path) -> None:
    """Same name, dtype and shape, other bytes: the invariant compares what loaders read before and after."""
    before, plan = planned(tieable, Options(tie_head=True))
    (out,) = plan.files
    victim, other = next(
        (a, b) for a in out.tensors for b in out.tensors if a is not b and (a.dtype, a.shape) == (b.dtype, b.shape)
    )
    swapped = tuple(dataclasses.replace(other, name=victim.name) if t is victim else t for t in out.tensors)
    bad = dataclasses.replace(plan, files=(dataclasses.replace(out, tensors=swapped),))
    refused(tieable, before, bad, f"{victim.name}: the fixed checkpoint reads other bytes")


# --- through the CLI: a broken planner or rule, caught by verification ---------------------


def cli_fix(folder: Path, *flags: str) -> Any:
    return runner.invoke(app, ["fix", "--yes", *flags, str(folder)])


def test_truncated_shard_is_not_deleted_when_a_rule_stops_blocking(
    merged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: TC001 removed from the blocking list, the planner drops the unreadable shard."""
    shard = merged / SHARD1
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    monkeypatch.setattr(fix_plan, "BLOCKING", ("TC002", "TC003", "TC008"))
    before = snapshot(merged)
    result = cli_fix(merged, "--drop-duplicates")
    assert result.exit_code == 2 and "verification failed" in result.stderr, result.output
    assert "could not read" in result.stderr or "would be lost" in result.stderr
    assert snapshot(merged) == before


def test_dropped_tensor_without_partner_through_the_cli(merged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fix_plan._Planner._drop_tied_copies

    def also_drop_norm(self: Any, name: str, kept: str, code: str) -> None:
        real(self, name, kept, code)
        self._drop(self.tensors["model.norm.weight"], self.tensors[kept], True, code)

    monkeypatch.setattr(fix_plan._Planner, "_drop_tied_copies", also_drop_norm)
    before = snapshot(merged)
    result = cli_fix(merged, "--drop-duplicates")
    assert result.exit_code == 2 and "model.norm.weight would be lost" in result.stderr, result.output
    assert snapshot(merged) == before


def test_wrong_partner_through_the_cli(merged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fix_plan._Planner._drop

    def wrong_partner(self: Any, rec: Any, partner: Any, via_tie: bool, code: str) -> None:
        real(self, rec, self.tensors["model.norm.weight"], via_tie, code)

    monkeypatch.setattr(fix_plan._Planner, "_drop", wrong_partner)
    before = snapshot(merged)
    result = cli_fix(merged, "--drop-duplicates")
    assert result.exit_code == 2 and "verification failed" in result.stderr, result.output
    assert snapshot(merged) == before


# --- faults --------------------------------------------------------------------------------


def test_full_disk_while_writing_the_journal_leaves_nothing(merged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fix_apply.write_text

    def full(dest: Path, text: str, like: Path | None = None) -> None:
        if "tiecheck-fix" in dest.name:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.close(fd)  # a partial file, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device", str(dest))
        real(dest, text, like)

    monkeypatch.setattr(fix_apply, "write_text", full)
    before = snapshot(merged)
    result = cli_fix(merged, "--drop-duplicates")
    assert (
        result.exit_code == 2 and "no space left on device" in result.stderr and "nothing was changed" in result.stderr
    )
    assert snapshot(merged) == before
    assert not [p for p in merged.iterdir() if p.name.startswith(".tiecheck")], "no shard-sized temp file left"


def test_error_past_the_commit_point_does_not_claim_nothing_changed(
    merged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = fix_apply.run_steps

    def fail_after_first(root: Path, steps: Any, step: Any) -> int:
        real(root, steps[:1], step)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fix_apply, "run_steps", fail_after_first)
    result = cli_fix(merged, "--drop-duplicates")
    assert result.exit_code == 2
    assert "nothing was changed" not in result.stderr and "completes the switch" in result.stderr, result.stderr
    monkeypatch.setattr(fix_apply, "run_steps", real)
    outcome = run_fix(merged, Options(drop_duplicates=True))
    assert outcome.recovery is not None and outcome.recovery.rolled_forward
    assert codes(merged) == set()


# --- the --deep tie compare is exact to the last byte --------------------------------------


@pytest.mark.parametrize("where", ["last-byte", "last-byte-of-first-chunk", "first-byte", "nowhere"])
def test_deep_tie_compare_sees_a_difference_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    import tiecheck._reading

    chunk = 256 * 1024  # above content.SMALL: --deep chunks take the vectorised compare, whose tail is separate
    monkeypatch.setattr(tiecheck._reading, "CHUNK", chunk)  # --deep reads each tensor in these
    monkeypatch.setattr(tiecheck._reading, "PAIR_CHUNK", chunk)  # the exact compare (not --deep) reads in these
    rng = np.random.default_rng(0)
    # 888,658 bytes: three full chunks, then 102,226 bytes, not a multiple of 8 (a tail past the fast path)
    embed = rng.standard_normal((443, 1003)).astype(np.float16)
    head = embed.copy()
    flat = head.reshape(-1).view(np.uint8)
    position = {"last-byte": flat.size - 1, "last-byte-of-first-chunk": chunk - 1, "first-byte": 0}.get(where)
    if position is not None:
        flat[position] ^= 0x01
    folder = tmp_path / "m"
    folder.mkdir()
    tensors = {
        "model.embed_tokens.weight": ("F16", embed.shape, embed.tobytes()),
        "lm_head.weight": ("F16", head.shape, head.tobytes()),
        "model.norm.weight": ("F16", (1003,), np.ones(1003, np.float16).tobytes()),
    }
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    (folder / "config.json").write_text(
        json.dumps({"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"], "tie_word_embeddings": True})
    )
    for deep in (False, True):
        found = {f.code for f in scan(folder, deep=deep).findings}
        if position is None:  # identical, chunk tails included: the compare must not read past the tensor
            assert "TC101" in found and "TC102" not in found, (deep, found)
        else:
            assert "TC102" in found and "TC101" not in found, (deep, found)


@pytest.mark.parametrize("at", ["staged model-00002-of-00002.safetensors", "verified"])
def test_ctrl_c_before_the_commit_point_leaves_no_temp_file(merged: Path, at: str) -> None:
    class Interrupt:
        def step(self, name: str) -> None:
            if name == at:
                raise KeyboardInterrupt

    before = snapshot(merged)
    with pytest.raises(KeyboardInterrupt):
        run_fix(merged, Options(drop_duplicates=True), hooks=Interrupt())
    assert snapshot(merged) == before
    assert not [p for p in merged.iterdir() if p.name.startswith(".tiecheck")]


def test_ctrl_c_after_the_commit_point_leaves_a_consistent_journal(merged: Path) -> None:
    class Interrupt:
        def step(self, name: str) -> None:
            if name == f"replace {INDEX}":
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fix(merged, Options(drop_duplicates=True), hooks=Interrupt())
    assert "TC020" in codes(merged)
    outcome = run_fix(merged, Options(drop_duplicates=True))
    assert outcome.recovery is not None and outcome.recovery.rolled_forward
    assert codes(merged) == set()


# --- files changed under the fix -------------------------------------------------------------
# The scan's byte comparison of the pair is the drop's proof, and the scan's headers say what to
# copy: both hold only while the files are the ones the fix first saw.


def test_a_shard_rewritten_in_place_while_the_fix_runs_is_refused(merged: Path) -> None:
    shard = merged / SHARD1  # holds the embedding the dropped head is restored from

    class Rewrite:
        def step(self, name: str) -> None:
            if name == "staged all":
                with shard.open("r+b") as f:  # same size, same inode: only the bytes and mtime change
                    f.seek(-1, os.SEEK_END)
                    last = f.read(1)
                    f.seek(-1, os.SEEK_END)
                    f.write(bytes([last[0] ^ 1]))

    with pytest.raises(VerificationError, match=f"{SHARD1} changed while the fix ran"):
        run_fix(merged, Options(drop_duplicates=True), hooks=Rewrite())
    assert not [p for p in merged.iterdir() if p.name.startswith(".tiecheck")]
    assert codes(merged) == {"TC101"}, "the folder keeps its old index and shards"


def test_a_shard_swapped_after_planning_is_refused(merged: Path) -> None:
    shard = merged / SHARD2  # the one the fix rewrites

    def swap(plan: Plan) -> bool:
        other = merged / "other"
        shutil.copyfile(shard, other)
        other.replace(shard)  # same bytes, another file: the scan's reading no longer vouches for it
        return True

    before = snapshot(merged)
    with pytest.raises(VerificationError, match=f"{SHARD2} changed while the fix ran"):
        run_fix(merged, Options(drop_duplicates=True), confirm=swap)
    assert snapshot(merged) == before
