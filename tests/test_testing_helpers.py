"""tiecheck.testing: the public helpers make the same checkpoints the repository ships."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tiecheck import scan
from tiecheck.testing import CASES, make_checkpoint


def test_every_case_is_described_and_matches_the_shipped_fixture(fixtures_dir: Path, tmp_path: Path) -> None:
    for name, description in CASES.items():
        assert description, name
        folder = make_checkpoint(name, tmp_path / name)
        shipped = fixtures_dir / name
        names = sorted(p.name for p in shipped.iterdir())
        assert sorted(p.name for p in folder.iterdir()) == names
        _, mismatch, errors = filecmp.cmpfiles(shipped, folder, names, shallow=False)
        assert (mismatch, errors) == ([], [])


def test_make_checkpoint_replaces_the_folder_and_refuses_unknown_cases(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / "stale.safetensors").write_bytes(b"junk")
    make_checkpoint("gemma2-merge-duplicated-head", target)
    assert not (target / "stale.safetensors").exists()
    assert {f.code for f in scan(target).findings} == {"TC101"}
    with pytest.raises(ValueError, match="unknown case 'nope'"):
        make_checkpoint("nope", tmp_path / "x")
