"""Ties transformers 4.57 and 5.x read differently, on real 4.57 saves (tests/data/tf457) and 5.x saves.

- Model types transformers 5 removed (Mega, Nezha): 4.57 is their only loader, and its generated data, not name
  patterns, says which head is tied and what a lost or rewritten head does there.
- A head 4.57 ties and 5.x's class declares no tie for (BigBird-Pegasus's causal LM): stored and differing from
  the embedding, 4.57 overwrites it and 5.x keeps it (TC108).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tiecheck import Severity, scan

DATA = Path(__file__).resolve().parent / "data" / "tf457"
REMOVED = {  # name -> (head, embedding)
    "mega": ("lm_head.weight", "mega.embedding_layer.word_embeddings.weight"),
    "nezha": ("cls.predictions.decoder.weight", "nezha.embeddings.word_embeddings.weight"),
}


def _rewrite(folder: Path, change: dict[str, np.ndarray | None]) -> None:
    tensors = load_file(folder / "model.safetensors")
    for name, value in change.items():
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _copy(name: str, tmp_path: Path) -> Path:
    folder = tmp_path / name
    shutil.copytree(DATA / name, folder)
    return folder


def _warnings(folder: Path) -> list[tuple[str, Severity, str]]:
    return [(f.code, f.severity, f.message) for f in scan(folder).findings if f.severity >= Severity.WARNING]


@pytest.mark.parametrize("model_type", sorted(REMOVED))
def test_a_head_lost_from_a_removed_model_type_is_an_error(model_type: str, tmp_path: Path) -> None:
    head, embedding = REMOVED[model_type]
    folder = _copy(f"{model_type}-untied-safetensors", tmp_path)
    _rewrite(folder, {head: None})
    ((code, severity, message),) = _warnings(folder)
    assert (code, severity) == ("TC103", Severity.ERROR), message
    assert "transformers 5: cannot load it (the model type was removed)" in message
    assert "transformers 4.57: initialises it at random" in message
    assert embedding in message


@pytest.mark.parametrize("model_type", sorted(REMOVED))
def test_a_rewritten_head_of_a_removed_model_type_is_ignored_by_its_loader(model_type: str, tmp_path: Path) -> None:
    head, embedding = REMOVED[model_type]
    folder = _copy(f"{model_type}-tied-safetensors", tmp_path)
    rows = load_file(folder / "model.safetensors")[embedding]
    _rewrite(folder, {head: rows[::-1].copy()})  # what a merge tool writes back, changed
    ((code, severity, message),) = _warnings(folder)
    assert (code, severity) == ("TC102", Severity.WARNING), message
    assert "the last version with this model type" in message and "transformers >= 5" not in message
    # the same bytes written back are a redundant copy, not a disagreement
    _rewrite(folder, {head: rows})
    assert [c for c, _, _ in _warnings(folder)] == ["TC101"]


def test_open_llama_without_a_head_is_how_its_loader_saves_it() -> None:
    """OpenLlama (removed in 5) computes its logits from the input embedding: no head to miss, no tie to guess."""
    report = scan(DATA / "open-llama-untied-safetensors")
    assert not [f for f in report.findings if f.severity >= Severity.WARNING]
    assert report.ties == ()


@pytest.mark.parametrize("explicit", [False, True])
def test_a_head_only_457_ties_that_differs_is_read_differently(explicit: bool, tmp_path: Path) -> None:
    """BigBirdPegasusForCausalLM: 4.57 ties the head (flag true by default), 5.x declares no tie and keeps it."""
    folder = _copy("bigbird_pegasus-tied-safetensors", tmp_path)
    embedding = load_file(folder / "model.safetensors")["model.decoder.embed_tokens.weight"]
    _rewrite(folder, {"lm_head.weight": embedding[::-1].copy()})
    if explicit:  # as transformers 5's save_pretrained writes it
        config = json.loads((folder / "config.json").read_text())
        config["tie_word_embeddings"] = True
        (folder / "config.json").write_text(json.dumps(config))
    (found,) = [f for f in scan(folder).findings if f.code.startswith("TC1")]
    assert found.code == "TC108" and found.tensors == ("lm_head.weight", "model.decoder.embed_tokens.weight")
    assert found.severity is (Severity.INFO if explicit else Severity.WARNING)
    assert found.message.startswith(
        "Loaders disagree (transformers 5: uses the stored tensor · transformers 4.57: ties (stored copy ignored)"
    ), found.message
    # identical to the embedding: both loaders read the same model
    _rewrite(folder, {"lm_head.weight": embedding})
    assert not _warnings(folder)
    assert not [f for f in scan(folder).findings if f.code == "TC108"]


@pytest.mark.transformers
def test_transformers_5_keeps_the_head_it_declares_no_tie_for(tmp_path: Path) -> None:
    """A clean 5.x save of BigBirdPegasusForCausalLM: TC108 as information, and 5.x reads the head as stored."""
    import torch
    import transformers

    config = transformers.BigBirdPegasusConfig(
        vocab_size=64, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=32,
        attention_type="original_full",
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BigBirdPegasusForCausalLM(config).save_pretrained(tmp_path)
    (found,) = [f for f in scan(tmp_path).findings if f.code.startswith("TC1")]
    assert (found.code, found.severity) == ("TC108", Severity.INFO), found.message
    stored = load_file(tmp_path / "model.safetensors")["lm_head.weight"]
    loaded = transformers.BigBirdPegasusForCausalLM.from_pretrained(tmp_path)
    assert np.array_equal(loaded.lm_head.weight.detach().numpy(), stored)


def test_no_cross_version_claim_for_a_repo_with_its_own_modeling_code(tmp_path: Path) -> None:
    """auto_map: the repo's code builds the model, whose ties are not transformers' to tell."""
    folder = _copy("bigbird_pegasus-tied-safetensors", tmp_path)
    embedding = load_file(folder / "model.safetensors")["model.decoder.embed_tokens.weight"]
    _rewrite(folder, {"lm_head.weight": embedding[::-1].copy()})
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    assert not [f for f in scan(folder).findings if f.code == "TC108"]


@pytest.mark.parametrize("model_type", sorted(REMOVED))
def test_only_the_head_of_a_removed_model_type_stored_is_an_error(model_type: str, tmp_path: Path) -> None:
    """transformers 5 would restore the embedding from the head; 4.57, the only loader left, leaves it random."""
    head, embedding = REMOVED[model_type]
    folder = _copy(f"{model_type}-tied-safetensors", tmp_path)
    rows = load_file(folder / "model.safetensors")[embedding]
    _rewrite(folder, {head: rows, embedding: None})
    ((code, severity, message),) = _warnings(folder)
    assert (code, severity) == ("TC106", Severity.ERROR), message
    assert "starts at random" in message and "transformers >= 5" not in message
