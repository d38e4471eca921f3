"""Every architecture transformers registers: clean saves scan clean, damaged saves are caught (slow; CI runs it).

One test per model type. The checkpoints are built once per session (cached across runs, keyed by transformers
version and the builder's source); see ``_harness`` for what is built and judged, and ``expected_failures`` for
the reviewed list of known failures. Model types that cannot be built tiny are skipped with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import _harness
import pytest
from expected_failures import EXPECTED_FAILURES, SHAPE_DAMAGE_ONLY

pytestmark = pytest.mark.slow

#: Fewer covered architectures than this means the tiny-config maker or the builder broke, not tiecheck.
MIN_COVERED = 400


def _selected(config: pytest.Config) -> bool:
    expr = config.getoption("markexpr") or ""
    return "slow" in expr and "not slow" not in expr


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model_type" in metafunc.fixturenames:
        # Listing the types imports transformers: only when the slow tests are selected at all.
        types = _harness.model_types() if _selected(metafunc.config) else ["-"]
        metafunc.parametrize("model_type", types)


@pytest.fixture(scope="session")
def sweep() -> dict[str, _harness.TypeResult]:
    pytest.importorskip("torch")  # imported here, not at collection: the default run stays fast
    pytest.importorskip("transformers")
    return {r.model_type: r for r in _harness.run()}


def _explain(result: _harness.TypeResult) -> str:
    detail: dict[str, Any] = {"false_alarms": result.false_alarms, "misses": result.misses}
    return f"{result.model_type}: {result.status}\n{json.dumps(detail, indent=1)[:4000]}"


def _only_expected_misses(result: _harness.TypeResult) -> bool:
    """A listed type may miss what its entry says, nothing else (no false alarm ever reaches here)."""
    if result.model_type not in SHAPE_DAMAGE_ONLY:
        return True
    return all(str(miss["checkpoint"]).startswith("shapes/") for miss in result.misses)


def test_architecture_scans_right(sweep: dict[str, _harness.TypeResult], model_type: str) -> None:
    result = sweep[model_type]
    if not result.built:
        pytest.skip(f"cannot build tiny: {result.cannot_build}")
    if result.status == "miss" and model_type in EXPECTED_FAILURES and _only_expected_misses(result):
        pytest.xfail(EXPECTED_FAILURES[model_type])
    assert result.status == "ok", _explain(result)


def test_sweep_covers_enough(sweep: dict[str, _harness.TypeResult]) -> None:
    covered = sum(r.built for r in sweep.values())
    assert covered >= MIN_COVERED, f"only {covered} architectures built tiny"


def test_expected_failures_are_known_types(sweep: dict[str, _harness.TypeResult]) -> None:
    assert set(EXPECTED_FAILURES) <= set(sweep)
