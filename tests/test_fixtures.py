"""Every shipped fixture reports exactly the rules it was made to break, naming tensors and files."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from tiecheck import Severity, scan

EXPECTED = {
    "gemma2-merge-duplicated-head": {"TC101"},
    "clean-llama-sharded": set(),
    "llama-missing-head": {"TC103"},
    "gemma-tie-mismatch": {"TC102"},
    "qwen2-tieable-head": {"TC104"},
    "gpt2-head-without-embedding": {"TC106"},
    "index-drift": {"TC002", "TC003", "TC004", "TC005", "TC007"},
    "index-stale-totals": {"TC006"},
    "invalid-safetensors": {"TC012"},
    "invalid-index": {"TC008"},
    "invalid-config": {"TC009"},
    "llama-base-model": {"TC105"},
    "llama-float32-declared-bfloat16": {"TC301", "TC302"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_reports_its_rules(fixtures_dir: Path, name: str) -> None:
    report = scan(fixtures_dir / name)
    assert {f.code for f in report.findings} == EXPECTED[name]
    for f in report.findings:
        if f.code not in {"TC009", "TC105", "TC008"}:
            assert f.tensors or f.files, f


def test_every_fixture_is_listed(fixtures_dir: Path) -> None:
    shipped = {p.name for p in fixtures_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert shipped == set(EXPECTED)


def test_merge_fixture_names_the_duplicated_head(fixtures_dir: Path) -> None:
    report = scan(fixtures_dir / "gemma2-merge-duplicated-head")
    (f,) = report.findings
    assert f.severity is Severity.WARNING
    assert f.tensors == ("lm_head.weight", "model.embed_tokens.weight")
    assert f.files == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    assert f.bytes == 32 * 8 * 2
    assert report.summary.redundant_bytes == f.bytes
    assert report.summary.unique_parameters == report.summary.parameters - 32 * 8
    # The tied pair is compared once; every other tensor is sampled, and tiny tensors are sampled whole.
    assert report.bytes_read == report.summary.bytes


def test_generator_is_deterministic(tmp_path: Path, fixtures_dir: Path, gen: object) -> None:
    gen.main(tmp_path)  # type: ignore[attr-defined]
    for name in EXPECTED:
        cmp = filecmp.dircmp(tmp_path / name, fixtures_dir / name)
        assert not cmp.left_only and not cmp.right_only, name
        _, mismatch, errors = filecmp.cmpfiles(tmp_path / name, fixtures_dir / name, cmp.common_files, shallow=False)
        assert not mismatch and not errors, (name, mismatch)
