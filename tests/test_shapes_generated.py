"""The generated shape knowledge: fresh, and saying what the architectures are known to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiecheck.ties.known import CURRENT
from tiecheck.ties.shapes import Dim, IndexList, shape_knowledge

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "generate_shapes.py"


def test_knowledge_covers_the_registered_classes() -> None:
    assert len(shape_knowledge()) > 1200


def test_llama_rows_columns_and_layers() -> None:
    llama = shape_knowledge()["LlamaForCausalLM"]
    assert set(llama.dims) == {
        Dim("lm_head.weight", 0, "vocab_size", 0),
        Dim("model.embed_tokens.weight", 0, "vocab_size", 0),
    }
    assert Dim("model.embed_tokens.weight", 1, "hidden_size", 0) in llama.widths
    assert llama.lists == (IndexList("model.layers.", "num_hidden_layers", 0),)


def test_keys_are_spelled_as_config_json_spells_them() -> None:
    gpt2 = shape_knowledge()["GPT2LMHeadModel"]  # attribute_map: hidden_size -> n_embd, num_hidden_layers -> n_layer
    assert {d.key for d in gpt2.widths} == {"n_embd"} and {lst.key for lst in gpt2.lists} == {"n_layer"}
    llava = shape_knowledge()["LlavaForConditionalGeneration"]  # at the level where they live
    assert {d.key for d in llava.dims} == {"text_config.vocab_size"}
    assert IndexList("language_model.model.layers.", "text_config.num_hidden_layers", 0) in llava.lists
    assert llava.alias is not None  # checkpoints in the in-memory naming load too
    assert IndexList("model.language_model.layers.", "text_config.num_hidden_layers", 0) in llava.alias.lists


def test_experts_saved_one_per_index_and_fused_in_memory() -> None:
    mixtral = shape_knowledge()["MixtralForCausalLM"]
    assert IndexList("model.layers.*.block_sparse_moe.experts.", "num_local_experts", 0) in mixtral.lists
    assert Dim("model.layers.*.block_sparse_moe.gate.weight", 0, "num_local_experts", 0) in mixtral.dims
    assert mixtral.alias is not None
    assert Dim("model.layers.*.mlp.experts.gate_up_proj", 0, "num_local_experts", 0) in mixtral.alias.dims


def test_offsets_come_from_the_architecture() -> None:
    """Rows beyond vocab_size where the model builds them so (Mllama's image tokens): an offset, not an alarm."""
    offsets = {d.offset for c in shape_knowledge().values() for d in c.dims if d.key.endswith("vocab_size")}
    assert 0 in offsets and len(offsets) > 1
    mllama = shape_knowledge()["MllamaForCausalLM"]
    assert {d.offset for d in mllama.dims if d.name == "model.embed_tokens.weight"} == {8}


# --- staleness: the shipped data is what the generator writes with the pinned transformers --------------

SAMPLE = (
    "LlamaForCausalLM,GPT2LMHeadModel,MixtralForCausalLM,LlavaForConditionalGeneration,BartForConditionalGeneration,"
    "CLIPVisionModel,MoonshineForConditionalGeneration,Speech2TextForConditionalGeneration"
)


@pytest.mark.transformers
def test_shipped_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    assert transformers.__version__ == CURRENT, "regenerate: python scripts/generate_shapes.py ..."
    out = tmp_path / "sample.json"
    subprocess.run([sys.executable, str(GENERATOR), str(out), "--only", SAMPLE], check=True, capture_output=True)
    fresh = json.loads(out.read_text())
    shipped = json.loads((ROOT / "src" / "tiecheck" / "ties" / "data" / f"shapes-{CURRENT}.json").read_text("utf-8"))
    assert fresh["transformers"] == shipped["transformers"]
    assert len(fresh["classes"]) == len(SAMPLE.split(","))
    for name, entry in fresh["classes"].items():
        assert shipped["classes"].get(name) == entry, f"{name} is stale: regenerate the data file"
