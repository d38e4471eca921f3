"""The every-architecture sweep with transformers 4.57 doing the saving (slow; CI runs it).

Most checkpoints on the Hub were written by transformers 4. This runs tests/sweep/run_sweep.py with the Python
named by ``TIECHECK_TF4_PYTHON`` (an environment with transformers 4.57 and torch, and tiecheck's own
dependencies; .ci/run makes one) and the tiecheck of this checkout, then holds its clean saves to
``expected_tf4``: a finding there is a false alarm unless transformers 5 is known to load that save otherwise.
The damaged copies are not judged: their expected findings follow 4.57's ties, which transformers 5 no longer
makes for some architectures (docs/transformers-4-saves.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from expected_tf4 import ALLOWED_ON_CLEAN_SAVES

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: Fewer architectures than this means the environment or the builder broke, not tiecheck (300 of 313 in 2026-11).
MIN_COVERED = 300


@pytest.fixture(scope="session")
def sweep() -> dict[str, Any]:
    python = os.environ.get("TIECHECK_TF4_PYTHON")
    if not python:
        pytest.skip("set TIECHECK_TF4_PYTHON to a Python with transformers 4.57 (.ci/run makes one)")
    out = Path(tempfile.mkdtemp(prefix="tiecheck-sweep-tf4-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [python, str(HERE / "run_sweep.py"), "--json", str(out / "sweep.json"), "--md", str(out / "sweep.md")]
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    result: dict[str, Any] = json.loads((out / "sweep.json").read_text())
    return result


def test_it_is_transformers_4_that_saved(sweep: dict[str, Any]) -> None:
    assert sweep["transformers"].startswith("4.57."), sweep["transformers"]
    covered = sweep["totals"]["architectures_covered"]
    assert covered >= MIN_COVERED, f"only {covered} architectures built tiny"


def test_clean_saves_get_only_the_findings_transformers_5_explains(sweep: dict[str, Any]) -> None:
    unexplained = {}
    for model_type, result in sorted(sweep["architectures"].items()):
        allowed = ALLOWED_ON_CLEAN_SAVES.get(model_type, frozenset())
        for alarm in result["false_alarms"]:
            extra = sorted({f["code"] for f in alarm["findings"]} - allowed)
            if extra:
                unexplained[alarm["checkpoint"]] = [f for f in alarm["findings"] if f["code"] in extra]
    assert not unexplained, json.dumps(unexplained, indent=1)[:6000]


def test_the_list_names_only_model_types_the_sweep_knows(sweep: dict[str, Any]) -> None:
    assert set(ALLOWED_ON_CLEAN_SAVES) <= set(sweep["architectures"])
