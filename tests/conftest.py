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
