"""Shared test set-up: the shipped fixtures, their generator, and a CLI runner."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

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


def as_saved(config: dict[str, object], tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> dict[str, object]:
    """A hand-written config as save_pretrained writes it: with the dtype of the first floating tensor.

    Tests about ties and indexes write minimal configs; a config without a dtype is a finding of its
    own (TC303), tested where it is the subject.
    """
    floats = [dtype for dtype, _, _ in tensors.values() if dtype in ("F16", "BF16", "F32", "F64")]
    text = config.get("text_config")
    levels = (config, text if isinstance(text, dict) else {})
    if not floats or any(k in level for level in levels for k in ("dtype", "torch_dtype")):
        return config
    names = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}
    return {**config, "dtype": names[floats[0]]}


Tensor = tuple[str, tuple[int, ...], bytes]


def make(folder: Path, tensors: dict[str, Tensor], config: dict[str, object] | None) -> Path:
    """A single-file checkpoint of hand-made tensors, with its config as ``save_pretrained`` writes it."""
    from tiecheck.formats.safetensors import write_file

    folder.mkdir(parents=True, exist_ok=True)
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    if config is not None:
        (folder / "config.json").write_text(json.dumps(as_saved(config, tensors)))
    return folder


def t(gen: ModuleType, seed: str, shape: tuple[int, ...] = (8, 4), dtype: str = "F32") -> Tensor:
    """A deterministic tensor from the fixture generator (``gen``)."""
    return gen.values(seed, shape, dtype)  # type: ignore[no-any-return]


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
