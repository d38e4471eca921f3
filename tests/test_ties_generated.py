"""The generated tie knowledge: fresh, complete, and a superset of the hand-written table it replaced."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiecheck.ties.known import CURRENT, LEGACY, knowledge

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "generate_ties.py"

# The hand-written table of tiecheck <= 0.x, verbatim: model types -> (default tie, groups (kept, restored...)).
# Groups in one inner list are naming variants of one tie (old and new prefixes); one of them must be generated.
HAND_TABLE: list[tuple[tuple[str, ...], bool, list[list[tuple[str, tuple[str, ...]]]]]] = [
    (
        ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "phi", "phi3"),
        False,
        [[("model.embed_tokens.weight", ("lm_head.weight",))]],
    ),
    (("gemma", "gemma2", "gemma3_text"), True, [[("model.embed_tokens.weight", ("lm_head.weight",))]]),
    (
        ("gemma3",),
        True,
        [
            [
                ("model.language_model.embed_tokens.weight", ("lm_head.weight",)),
                ("language_model.model.embed_tokens.weight", ("language_model.lm_head.weight",)),
                ("model.embed_tokens.weight", ("lm_head.weight",)),
            ]
        ],
    ),
    (("gpt2",), True, [[("transformer.wte.weight", ("lm_head.weight",))]]),
    (
        ("gpt_neox",),
        False,
        [[("gpt_neox.embed_in.weight", ("embed_out.weight",)), ("gpt_neox.embed_in.weight", ("lm_head.weight",))]],
    ),
    (("opt",), True, [[("model.decoder.embed_tokens.weight", ("lm_head.weight",))]]),
    (("bloom", "falcon"), True, [[("transformer.word_embeddings.weight", ("lm_head.weight",))]]),
    (
        ("t5", "mt5", "umt5"),
        True,
        [
            [("shared.weight", ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"))],
            [("shared.weight", ("lm_head.weight",))],
        ],
    ),
    (
        ("bart", "mbart"),
        True,
        [
            [("model.shared.weight", ("lm_head.weight",))],
            [("model.shared.weight", ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"))],
        ],
    ),
    (
        ("bert",),
        True,
        [
            [("bert.embeddings.word_embeddings.weight", ("cls.predictions.decoder.weight",))],
            [("cls.predictions.bias", ("cls.predictions.decoder.bias",))],
        ],
    ),
    (
        ("roberta", "xlm-roberta"),
        True,
        [
            [("roberta.embeddings.word_embeddings.weight", ("lm_head.decoder.weight",))],
            [("lm_head.bias", ("lm_head.decoder.bias",))],
        ],
    ),
]


def _generated_pairs(model_type: str) -> set[tuple[str, str]]:
    return {(t.source, t.target) for c in knowledge().by_model_type(model_type) for t in c.ties}


@pytest.mark.parametrize("entry", HAND_TABLE, ids=lambda e: e[0][0])
def test_generated_table_reproduces_the_hand_written_entries(
    entry: tuple[tuple[str, ...], bool, list[list[tuple[str, tuple[str, ...]]]]],
) -> None:
    model_types, default, groups = entry
    for model_type in model_types:
        known = knowledge().model_types[model_type]
        assert known.flag("", None, None) is default, model_type
        pairs = _generated_pairs(model_type)
        for variants in groups:
            reproduced = [(kept, restored) for kept, restored in variants if all((kept, r) in pairs for r in restored)]
            assert reproduced, f"{model_type}: none of {variants} in {sorted(pairs)}"


def test_the_custom_code_entry_is_left_to_name_patterns() -> None:
    assert "hf_olmo" not in knowledge().model_types  # OLMo 1's own modeling code: not a transformers class
    from tiecheck.ties.table import NAME_PATTERNS

    assert ("model.transformer.wte.weight", ("model.transformer.ff_out.weight",)) in {
        (g.kept, g.restored) for g in NAME_PATTERNS
    }


def test_knowledge_covers_hundreds_of_model_types() -> None:
    data = knowledge()
    assert data.version == CURRENT
    assert len(data.model_types) > 400
    assert len(data.classes) > 1000
    legacy = knowledge(LEGACY)
    assert legacy.version.startswith("4.57")
    assert len(legacy.classes) > 800


def test_regex_ties_are_expanded_against_real_names() -> None:
    """DETR-style ``_tied_weights_keys`` regexes become parameter names, as transformers expands them."""
    ties = knowledge().classes["DFineForObjectDetection"].ties
    assert ties and all("(" not in t.target and "\\" not in t.target for t in ties)
    assert all(t.target.endswith(("weight", "bias")) for t in ties)


def test_marian_sinusoidal_positions_are_not_saved() -> None:
    assert knowledge().classes["MarianMTModel"].dropped == {
        "model.decoder.embed_positions.weight",
        "model.encoder.embed_positions.weight",
    }


# --- staleness: the shipped data is what the generator writes with the pinned transformers --------------

SAMPLE = "llama,gemma3,llava,bart,marian,whisper,bert,albert,t5,mamba,d_fine,qwen2_audio,trocr,fsmt"


@pytest.mark.transformers
def test_shipped_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    assert transformers.__version__ == CURRENT, "regenerate: python scripts/generate_ties.py ..."
    out = tmp_path / "sample.json"
    subprocess.run([sys.executable, str(GENERATOR), str(out), "--only", SAMPLE], check=True, capture_output=True)
    fresh = json.loads(out.read_text())
    shipped = json.loads(
        (ROOT / "src" / "tiecheck" / "ties" / "data" / f"transformers-{CURRENT}.json").read_text(encoding="utf-8")
    )
    assert fresh["transformers"] == shipped["transformers"]
    assert len(fresh["classes"]) > 40
    for name, entry in fresh["classes"].items():
        assert shipped["classes"].get(name) == entry, f"{name} is stale: regenerate the data file"
    for model_type, entry in fresh["model_types"].items():
        assert shipped["model_types"].get(model_type) == entry, f"{model_type} is stale"


@pytest.mark.parametrize("version", [CURRENT, LEGACY])
def test_each_model_type_s_classes_are_those_the_index_lists(version: str) -> None:
    """``classes_by_model_type`` (what a scan looks a type's classes up in) is the classes grouped by type."""
    shipped = json.loads((ROOT / "src" / "tiecheck" / "ties" / "data" / f"transformers-{version}.json").read_text())
    grouped: dict[str, list[str]] = {}
    for name, entry in sorted(shipped["classes"].items()):
        grouped.setdefault(entry["model_type"], []).append(name)
    assert shipped["classes_by_model_type"] == grouped
    data = knowledge(version)
    for model_type in ("llama", "gemma2", "bert"):
        assert {c.name for c in data.by_model_type(model_type)} == set(grouped.get(model_type, ()))
