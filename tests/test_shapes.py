"""TC014-TC017: stored shapes against config.json, on real save_pretrained outputs, each claim checked by loading."""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tiecheck import Severity, scan
from tiecheck.findings import Finding

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

CODES = ("TC014", "TC015", "TC016", "TC017")

LLAMA = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "tie_word_embeddings": False,
}
MOE = {**LLAMA, "num_hidden_layers": 2, "num_experts_per_tok": 2}


def _save(folder: Path, model: Any, **kwargs: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(str(folder), **kwargs)
    return folder


def _model(cls_name: str, **config: Any) -> Any:
    torch.manual_seed(0)
    cls = getattr(transformers, cls_name)
    return cls(cls.config_class(**config))


@pytest.fixture(scope="module")
def saves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shapes")
    return {
        "llama": _save(root / "llama", _model("LlamaForCausalLM", **LLAMA)),
        "llama-sharded": _save(root / "llama-sharded", _model("LlamaForCausalLM", **LLAMA), max_shard_size="20KB"),
        "mixtral": _save(root / "mixtral", _model("MixtralForCausalLM", **MOE, num_local_experts=3)),
        "qwen2_moe": _save(
            root / "qwen2_moe",
            _model(
                "Qwen2MoeForCausalLM",
                **MOE,
                num_experts=3,
                moe_intermediate_size=8,
                shared_expert_intermediate_size=8,
            ),
        ),
        "gpt2": _save(root / "gpt2", _model("GPT2LMHeadModel", vocab_size=64, n_embd=16, n_layer=2, n_head=2)),
    }


def _copy(saves: dict[str, Path], name: str, dst: Path) -> Path:
    return Path(shutil.copytree(saves[name], dst / name))


def _edit_config(folder: Path, **values: Any) -> None:
    path = folder / "config.json"
    document = json.loads(path.read_text())
    document.update(values)
    path.write_text(json.dumps(document))


def _edit_tensors(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the file(s) as a merge or pruning script would, the index following the change."""
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    for file in sorted(folder.glob("*.safetensors")):
        tensors = safetensors_torch.load_file(str(file))
        before = set(tensors)
        change(tensors)
        safetensors_torch.save_file(tensors, str(file), metadata={"format": "pt"})
        if index is not None:
            for name in before - set(tensors):
                del index["weight_map"][name]
            for name in set(tensors) - before:
                index["weight_map"][name] = file.name
    if index is not None:
        index["metadata"].pop("total_size", None)
        index_path.write_text(json.dumps(index))


def _drop(pattern: str) -> Callable[[dict[str, Any]], None]:
    def change(tensors: dict[str, Any]) -> None:
        for name in [n for n in tensors if pattern in n]:
            del tensors[name]

    return change


def _copy_layer(source: str, target: str) -> Callable[[dict[str, Any]], None]:
    def change(tensors: dict[str, Any]) -> None:
        tensors.update({n.replace(source, target): t.clone() for n, t in tensors.items() if source in n})

    return change


def _shape_findings(folder: Path) -> list[Finding]:
    return [f for f in scan(folder).findings if f.code in CODES]


def _load(folder: Path) -> tuple[Any, dict[str, Any]] | str:
    """What transformers 5 does: the model and its loading info, or the error it raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return transformers.AutoModelForCausalLM.from_pretrained(str(folder), output_loading_info=True)  # type: ignore[no-any-return]
        except RuntimeError as exc:
            return str(exc)


# -- clean saves ---------------------------------------------------------------------------------------------


def test_clean_saves_have_no_shape_findings(saves: dict[str, Path], tmp_path: Path) -> None:
    for folder in saves.values():
        assert _shape_findings(folder) == [], folder.name
    # a vocabulary padded by resize_token_embeddings updates vocab_size: consistent, nothing to say
    model = _model("LlamaForCausalLM", **LLAMA)
    model.resize_token_embeddings(70, pad_to_multiple_of=16)
    assert model.config.vocab_size == 80
    assert _shape_findings(_save(tmp_path / "padded", model)) == []


# -- TC014 vocabulary rows -----------------------------------------------------------------------------------


def test_resized_vocabulary_saved_with_the_old_config(saves: dict[str, Path], tmp_path: Path) -> None:
    model = _model("LlamaForCausalLM", **LLAMA)
    model.resize_token_embeddings(70)  # tokens added...
    folder = _save(tmp_path / "resized", model)
    _edit_config(folder, vocab_size=64)  # ...but the config of the original model shipped with it
    (found,) = _shape_findings(folder)
    assert (found.code, found.severity) == ("TC014", Severity.ERROR)
    assert set(found.tensors) == {"model.embed_tokens.weight", "lm_head.weight"}
    assert found.files == ("model.safetensors",)
    assert "model.embed_tokens.weight has 70 rows" in found.message and "vocab_size is 64" in found.message
    assert "set vocab_size to 70" in found.message
    # the claim: transformers refuses the load (size mismatch)
    loaded = _load(folder)
    assert isinstance(loaded, str) and "ignore_mismatched_sizes" in loaded


def test_config_edited_to_another_vocabulary(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "llama-sharded", tmp_path)
    _edit_config(folder, vocab_size=72)
    (found,) = _shape_findings(folder)
    assert found.code == "TC014" and found.severity is Severity.ERROR
    assert set(found.tensors) == {"model.embed_tokens.weight", "lm_head.weight"}
    assert found.files and all(f.startswith("model-") for f in found.files)
    assert isinstance(_load(folder), str)


def test_embedding_and_head_of_different_vocabularies(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "llama", tmp_path)
    _edit_tensors(folder, lambda t: t.update({"lm_head.weight": torch.zeros(72, 16)}))  # a merge took another head
    (found,) = _shape_findings(folder)
    assert found.code == "TC014" and found.tensors == ("lm_head.weight",)
    assert "do not even agree" in found.message and "set vocab_size to 72" not in found.message


# -- TC015 embedding columns ---------------------------------------------------------------------------------


def test_config_of_another_width(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "gpt2", tmp_path)
    _edit_config(folder, n_embd=32)  # GPT-2 spells hidden_size n_embd in config.json
    found = {f.code: f for f in _shape_findings(folder)}
    assert found["TC015"].tensors == ("transformer.wte.weight",)
    assert "n_embd is 32" in found["TC015"].message
    assert isinstance(_load(folder), str)


# -- TC016 layers --------------------------------------------------------------------------------------------


def _missing_keys(folder: Path) -> set[str]:
    loaded = _load(folder)
    assert not isinstance(loaded, str), loaded
    return set(loaded[1]["missing_keys"])


@pytest.mark.parametrize(("layer", "shape"), [(2, "the last ones are missing"), (1, "a gap in the numbering")])
def test_a_layer_removed_from_the_state_dict(saves: dict[str, Path], tmp_path: Path, layer: int, shape: str) -> None:
    folder = _copy(saves, "llama-sharded", tmp_path)
    _edit_tensors(folder, _drop(f"model.layers.{layer}."))
    (found,) = _shape_findings(folder)
    assert (found.code, found.severity) == ("TC016", Severity.ERROR)
    assert f"model.layers.{{{layer}}}" in found.message and shape in found.message
    assert "num_hidden_layers is 3" in found.message and found.files
    # the claim: the model loads, and exactly these tensors are initialised at random
    assert set(found.tensors) == _missing_keys(folder)


def test_an_extra_layer_is_dropped_by_the_loader(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "llama", tmp_path)
    _edit_tensors(folder, _copy_layer("model.layers.2.", "model.layers.3."))
    (found,) = _shape_findings(folder)
    assert (found.code, found.severity) == ("TC016", Severity.WARNING)
    assert "model.layers.{3}" in found.message
    loaded = _load(folder)
    assert not isinstance(loaded, str)
    assert set(found.tensors) == set(loaded[1]["unexpected_keys"])


def test_layers_of_a_multi_token_prediction_head_are_not_extra(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "llama", tmp_path)
    _edit_tensors(folder, _copy_layer("model.layers.2.", "model.layers.3."))
    _edit_config(folder, num_nextn_predict_layers=1)
    assert _shape_findings(folder) == []


# -- TC017 experts -------------------------------------------------------------------------------------------


def test_experts_removed_from_one_layer(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "mixtral", tmp_path)
    _edit_tensors(folder, _drop("model.layers.1.block_sparse_moe.experts.2."))
    (found,) = _shape_findings(folder)
    assert (found.code, found.severity) == ("TC017", Severity.ERROR)
    assert "model.layers.1.block_sparse_moe.experts.2.w1.weight" in found.tensors
    assert "num_local_experts is 3" in found.message
    loaded = _load(folder)
    assert isinstance(loaded, str) and "ignore_mismatched_sizes" in loaded  # the claim: the stacked experts


def test_an_extra_expert(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "mixtral", tmp_path)
    _edit_tensors(folder, _copy_layer(".experts.2.", ".experts.3."))
    (found,) = _shape_findings(folder)
    assert (found.code, found.severity) == ("TC017", Severity.ERROR)
    assert "model.layers.0.block_sparse_moe.experts.3.w2.weight" in found.tensors
    assert isinstance(_load(folder), str)


@pytest.mark.parametrize(("name", "key"), [("mixtral", "num_local_experts"), ("qwen2_moe", "num_experts")])
def test_config_counts_other_experts(saves: dict[str, Path], tmp_path: Path, name: str, key: str) -> None:
    folder = _copy(saves, name, tmp_path)
    _edit_config(folder, **{key: 4})
    found = _shape_findings(folder)
    assert {f.code for f in found} == {"TC017"} and all(f.severity is Severity.ERROR for f in found)
    named = {n for f in found for n in f.tensors}
    assert any(n.endswith("gate.weight") for n in named)  # the router's rows
    assert any(".experts.3." in n for n in named)  # the expert the config counts and no file holds
    assert isinstance(_load(folder), str)


# -- guesses -------------------------------------------------------------------------------------------------


def test_an_unknown_architecture_is_a_guess_and_never_an_error(saves: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(saves, "llama", tmp_path)
    _edit_config(folder, model_type="my-llama", architectures=["MyLlamaForCausalLM"], vocab_size=72)
    _edit_tensors(folder, _drop("model.layers.2."))
    found = {f.code: f for f in _shape_findings(folder)}
    assert set(found) == {"TC014", "TC016"}
    assert all(f.severity is Severity.WARNING and "guess" in f.message for f in found.values())
    assert "token ids from 64 on have no row" in found["TC014"].message
    # more rows than the vocabulary: some architectures do that on purpose, so without their data only information
    _edit_config(folder, vocab_size=60)
    (more,) = [f for f in _shape_findings(folder) if f.code == "TC014"]
    assert more.severity is Severity.INFO
    # custom code with transformers' names: the same findings, capped
    folder = _copy(saves, "llama", tmp_path / "custom")
    _edit_config(folder, vocab_size=72, auto_map={"AutoModelForCausalLM": "modeling.MyModel"})
    (capped,) = _shape_findings(folder)
    assert capped.code == "TC014" and capped.severity is Severity.WARNING and "guess" in capped.message.lower()
