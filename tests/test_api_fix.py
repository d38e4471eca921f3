"""``tiecheck.fix()``: the plan, a dry run and the apply as data, with no printing and no prompting."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tiecheck
from fixhelpers import loadable, snapshot


@pytest.fixture
def merged(tmp_path: Path, fixtures_dir: Path) -> Path:
    folder = tmp_path / "merged"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", folder)
    return folder


def _cli_json(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", "fix", *args, "-f", "json"], capture_output=True, text=True
    )
    assert done.returncode in (0, 1), done.stderr
    document: dict[str, object] = json.loads(done.stdout)
    return document


def test_a_dry_run_returns_the_plan_and_changes_nothing(merged: Path, capfd: pytest.CaptureFixture[str]) -> None:
    before = snapshot(merged)
    result = tiecheck.fix(merged, drop_duplicates=True, dry_run=True)
    assert snapshot(merged) == before
    assert capfd.readouterr() == ("", "")  # no printing, no progress bar
    assert result.mode == "dry-run" and not result.applied and result.after is None
    assert [a.kind.value for a in result.plan.actions][:1] == ["drop-tensor"]
    assert result.plan.bytes_saved > 0 and not result.plan.empty
    assert {f.code for f in result.before.findings} == {"TC101"} == {f.code for f in result.remaining}
    assert json.loads(result.to_json()) == _cli_json(str(merged), "--drop-duplicates", "--dry-run")


def test_output_writes_a_verified_copy(merged: Path, tmp_path: Path) -> None:
    before = snapshot(merged)
    out = tmp_path / "fixed"
    result = tiecheck.fix(merged, drop_duplicates=True, output=out)
    assert snapshot(merged) == before
    assert result.applied and result.mode == "output" and result.destination == out
    assert result.verification is not None and result.verification.dropped_checked == 1
    assert {f.code for f in result.verification.resolved} == {"TC101"}
    assert result.after is not None and result.after.findings == () and result.remaining == ()
    assert loadable(out) == {k: v for k, v in loadable(merged).items() if k in loadable(out)}
    document = result.to_dict()
    assert document["applied"] is True and document["destination"] == str(out)
    assert tiecheck.diff(merged, out).lossless


def test_in_place_asks_confirm_with_the_plan_it_applies(merged: Path) -> None:
    planned = tiecheck.fix(merged, drop_duplicates=True, dry_run=True).plan
    seen: list[tiecheck.FixPlan] = []

    def no(plan: tiecheck.FixPlan) -> bool:
        seen.append(plan)
        return False

    before = snapshot(merged)
    declined = tiecheck.fix(merged, drop_duplicates=True, confirm=no)
    assert seen == [planned] and declined.declined and not declined.applied
    assert snapshot(merged) == before

    applied = tiecheck.fix(merged, drop_duplicates=True, confirm=lambda plan: plan == planned)
    assert applied.applied and applied.mode == "in-place" and applied.destination == merged
    assert snapshot(merged) != before and tiecheck.scan(merged).findings == ()


def test_without_confirm_in_place_applies(merged: Path) -> None:
    result = tiecheck.fix(merged, drop_duplicates=True)
    assert result.applied and result.after is not None and result.after.findings == ()
    again = tiecheck.fix(merged, drop_duplicates=True)
    assert again.plan.empty and not again.applied


def test_plan_and_result_are_frozen_and_serialisable(merged: Path) -> None:
    result = tiecheck.fix(merged, drop_duplicates=True, dry_run=True)
    with pytest.raises(AttributeError):
        result.plan.actions = ()  # type: ignore[misc]
    assert json.loads(result.plan.to_json()) == result.to_dict()["plan"]
