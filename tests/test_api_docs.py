"""The public API is documented: every public name has a docstring, and the reference site builds."""

from __future__ import annotations

import inspect
from pathlib import Path

import pdoc

import tiecheck
import tiecheck.integrations.transformers as trainer_integration
import tiecheck.testing

PUBLIC = [
    *((tiecheck, name) for name in tiecheck.__all__ if name != "__version__"),
    *((tiecheck.testing, name) for name in tiecheck.testing.__all__),
    (trainer_integration, "TiecheckCallback"),
    (trainer_integration, "CheckpointRejected"),
]


def test_every_public_name_has_its_own_docstring() -> None:
    missing = []
    for module, name in PUBLIC:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        doc = (obj.__doc__ or "").strip()
        if not doc or doc.startswith(f"{obj.__name__}("):  # a dataclass's generated signature is no docstring
            missing.append(f"{module.__name__}.{name}")
    assert missing == []


def test_reference_site_builds_with_the_guide(tmp_path: Path) -> None:
    pdoc.pdoc("tiecheck", "tiecheck.testing", "tiecheck.integrations.transformers", output_directory=tmp_path)
    page = (tmp_path / "tiecheck.html").read_text(encoding="utf-8")
    assert "Check a state dict before saving it" in page  # the guide, included from docs/python-api.md
    for name in ("scan", "scan_state_dict", "inspect_model", "Report", "StateDictReport", "fix", "diff"):
        assert f'id="{name}"' in page, name
    for name in ("FixResult", "FixPlan", "Diff", "TiecheckError", "FixRefused", "RateLimited"):
        assert f'id="{name}"' in page, name
    assert (tmp_path / "tiecheck" / "testing.html").exists()
    assert (tmp_path / "tiecheck" / "integrations" / "transformers.html").exists()


def test_report_to_json_is_what_the_cli_prints(fixtures_dir: Path) -> None:
    import json
    import subprocess
    import sys

    target = fixtures_dir / "gemma2-merge-duplicated-head"
    printed = subprocess.run(
        [sys.executable, "-m", "tiecheck", "scan", "-f", "json", str(target)], capture_output=True, text=True
    ).stdout
    report = tiecheck.scan(target)
    assert json.loads(report.to_json()) == json.loads(printed)
    assert report.to_dict()["findings"][0]["code"] == "TC101"
