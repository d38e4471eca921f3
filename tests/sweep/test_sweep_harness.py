"""The sweep's own machinery on one architecture (default run): what it builds, expects and judges.

The full sweep is slow and runs in CI with ``-m slow``; this keeps the builder and the judge honest in the
default run: Llama's saves, their damaged copies with transformers' own head and embedding names, and a judge
that reports a miss when the expected finding is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import _harness
import pytest

pytestmark = pytest.mark.transformers


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("sweep")
    _harness.build_missing(root, ["llama"], workers=1)
    return root


def test_builds_clean_and_damaged_saves_with_transformers_names(llama: Path) -> None:
    manifest = json.loads((llama / "llama" / "manifest.json").read_text())
    assert manifest["failed"] == {}
    (entry,) = manifest["classes"]
    assert entry["class"] == "LlamaForCausalLM"
    expect = {ck["path"]: ck["expect"] for ck in entry["checkpoints"]}
    assert expect["LlamaForCausalLM-tied-sharded"] is None
    assert expect["LlamaForCausalLM-tied-single-duplicated-head"] == {"code": "TC101", "tensors": ["lm_head.weight"]}
    assert expect["LlamaForCausalLM-tied-sharded-changed-head"] == {
        "code": "TC102",
        "tensors": ["lm_head.weight", "model.embed_tokens.weight"],
    }
    assert expect["LlamaForCausalLM-untied-sharded-missing-head"] == {"code": "TC103", "tensors": ["lm_head.weight"]}
    index = json.loads(
        (llama / "llama" / "LlamaForCausalLM-untied-sharded-missing-head" / "model.safetensors.index.json").read_text()
    )
    assert "lm_head.weight" not in index["weight_map"]
    assert len(set(index["weight_map"].values())) > 1


def test_judge_reports_a_miss_when_the_finding_is_absent(llama: Path, tmp_path: Path) -> None:
    assert _harness.judge_type(llama, "llama").status == "ok"
    # The same clean save, now claimed to be missing its head: no TC103 there, so the judge must call it a miss.
    copy = tmp_path / "llama"
    copy.mkdir()
    manifest = json.loads((llama / "llama" / "manifest.json").read_text())
    (entry,) = manifest["classes"]
    clean = next(ck for ck in entry["checkpoints"] if ck["path"] == "LlamaForCausalLM-untied-single")
    (copy / clean["path"]).symlink_to(llama / "llama" / clean["path"])
    clean["expect"] = {"code": "TC103", "tensors": ["lm_head.weight"]}
    entry["checkpoints"] = [clean]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = _harness.judge_type(tmp_path, "llama")
    assert result.status == "miss"
    assert result.misses[0]["checkpoint"] == "LlamaForCausalLM-untied-single"


def test_shape_damage_is_derived_from_the_clean_saves_and_caught(llama: Path) -> None:
    _harness.damage_shapes_missing(llama, ["llama"], workers=1)
    derived = json.loads((llama / "llama" / "shapes.json").read_text())
    assert derived["failed"] == {}
    (entry,) = derived["classes"]
    expect = {ck["kind"]: ck["expect"] for ck in entry["checkpoints"]}
    # what transformers sizes by vocab_size, and a tensor of the last layer the layer count sizes
    assert expect["vocab-config"] == {"code": "TC014", "tensors": ["lm_head.weight", "model.embed_tokens.weight"]}
    assert expect["missing-last-layer"] == {"code": "TC016", "tensors": ["model.layers.1.input_layernorm.weight"]}
    result = _harness.judge_type(llama, "llama")
    assert result.status == "ok" and result.damaged == 8  # the 6 tie damages and the 2 shape damages
