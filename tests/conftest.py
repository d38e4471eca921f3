"""Shared test set-up: the shipped fixtures, their generator, and a CLI runner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
sys.path.insert(0, str(FIXTURES))

import make_fixtures  # noqa: E402


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def gen() -> object:
    """The fixture generator module: tiny tensors and configs for tests to assemble checkpoints."""
    return make_fixtures


def sampled_bytes(report: object) -> int:
    """What the default scan reads for content fingerprints alone: the sampled blocks of every stored tensor.

    A scan that reads exactly this much (plus the tie pairs it must compare) read nothing else.
    """
    from tiecheck.content import location, sample_spans

    seen = {}
    for t in report.checkpoint.tensors:  # type: ignore[attr-defined]
        if t.contiguous and t.numel > 1 and t.nbytes > 0:
            seen.setdefault(location(t), t)
    return sum(n for t in seen.values() for _, n in sample_spans(t))
