"""Checkpoints written by transformers 4.57's save_pretrained scan clean (with and without safetensors).

The fixtures are tiny models made by scripts/make_tf4_fixtures.py under transformers 4.57; they are
checked in, so this runs without a 4.x environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiecheck import Severity, scan

DATA = Path(__file__).parent / "data" / "transformers-4.57"
FOLDERS = sorted(p for p in DATA.iterdir() if p.is_dir())


def test_fixtures_come_from_transformers_4_57() -> None:
    assert json.loads((DATA / "VERSION").read_text())["transformers"].startswith("4.57.")
    assert len(FOLDERS) >= 16


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_transformers_4_57_saves_scan_clean(folder: Path) -> None:
    report = scan(folder)
    loud = [f"{f.code}: {f.message}" for f in report.findings if f.severity >= Severity.WARNING]
    assert loud == []
    assert report.ties, "the architecture's ties are known"
