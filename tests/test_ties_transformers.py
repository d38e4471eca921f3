"""Ties judged from the generated knowledge, on real save_pretrained output of the classes the issue names.

Heads not called ``lm_head.weight`` (Whisper ``proj_out``, BioGPT ``output_projection``, ALBERT
``predictions.decoder``), an encoder-decoder whose shared embedding is stored once and restored under
several names (BART), a saver that drops parameters it counts (Marian), a state-space model whose fresh
initialisation repeats byte for byte across layers (Mamba).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tiecheck import Severity, scan

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.transformers

SEQ2SEQ = {
    "vocab_size": 64,
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
    "max_position_embeddings": 32,
}
BERTISH = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "max_position_embeddings": 32,
}

# class -> (model_type, config, head, embedding)
CASES: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "BartForConditionalGeneration": ("bart", SEQ2SEQ, "lm_head.weight", "model.shared.weight"),
    "WhisperForConditionalGeneration": (
        "whisper",
        {
            **SEQ2SEQ,
            "num_mel_bins": 8,
            "max_source_positions": 16,
            "max_target_positions": 32,
            "pad_token_id": 1,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "decoder_start_token_id": 1,
            "begin_suppress_tokens": [],
            "suppress_tokens": [],
        },
        "proj_out.weight",
        "model.decoder.embed_tokens.weight",
    ),
    "AlbertForMaskedLM": (
        "albert",
        {**BERTISH, "embedding_size": 8},
        "predictions.decoder.weight",
        "albert.embeddings.word_embeddings.weight",
    ),
    "BioGptForCausalLM": ("biogpt", BERTISH, "output_projection.weight", "biogpt.embed_tokens.weight"),
    "MarianMTModel": ("marian", {**SEQ2SEQ, "pad_token_id": 0, "decoder_start_token_id": 0}, "lm_head.weight", ""),
    # sinusoidal position tables of encoder and decoder: frozen parameters, byte-identical by construction
    "PegasusForConditionalGeneration": (
        "pegasus",
        {**SEQ2SEQ, "pad_token_id": 0, "decoder_start_token_id": 0},
        "lm_head.weight",
        "model.shared.weight",
    ),
    "MambaForCausalLM": (
        "mamba",
        {"vocab_size": 64, "hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "expand": 2},
        "lm_head.weight",
        "backbone.embeddings.weight",
    ),
}


def save(tmp: Path, name: str, tie: bool, sharded: bool = False) -> Path:
    model_type, extra, _, _ = CASES[name]
    config = transformers.AutoConfig.for_model(model_type, **extra, tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = getattr(transformers, name)(config)
    folder = tmp / f"{name}-{tie}-{sharded}"
    model.save_pretrained(folder, max_shard_size="8KB" if sharded else "5GB")
    return folder


def loud(folder: Path) -> list[str]:
    return [f"{f.code}: {f.message}" for f in scan(folder).findings if f.severity >= Severity.WARNING]


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_clean_saves_scan_clean(tmp_path: Path, name: str, tie: bool, sharded: bool) -> None:
    assert loud(save(tmp_path, name, tie, sharded)) == []


def _rewrite(folder: Path, change: Any) -> None:
    tensors = safetensors_torch.load_file(folder / "model.safetensors")
    change(tensors)
    safetensors_torch.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[3]))
def test_head_written_back_is_redundant(tmp_path: Path, name: str) -> None:
    _, _, head, embedding = CASES[name]
    folder = save(tmp_path, name, tie=True)
    _rewrite(folder, lambda t: t.__setitem__(head, t[embedding].clone()))
    found = [(f.code, f.tensors) for f in scan(folder).findings if f.severity >= Severity.WARNING]
    assert found == [("TC101", (head, embedding))]


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[3]))
def test_untied_save_without_its_head_is_an_error(tmp_path: Path, name: str) -> None:
    _, _, head, _ = CASES[name]
    folder = save(tmp_path, name, tie=False)
    _rewrite(folder, lambda t: t.pop(head))
    found = [(f.code, f.tensors, f.severity) for f in scan(folder).findings if f.severity >= Severity.WARNING]
    assert found == [("TC103", (head,), Severity.ERROR)]


def test_bart_shared_embedding_is_stored_once_and_restored_under_three_names(tmp_path: Path) -> None:
    folder = save(tmp_path, "BartForConditionalGeneration", tie=True)
    report = scan(folder)
    restored = {n for t in report.ties if t.tied for n in t.group.restored}
    assert {"lm_head.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"} <= restored
    assert all(t.group.kept == "model.shared.weight" for t in report.ties)


def test_a_fresh_mamba_is_reported_once_as_untrained(tmp_path: Path) -> None:
    report = scan(save(tmp_path, "MambaForCausalLM", tie=True))
    fresh = [f for f in report.findings if f.code == "TC202"]
    assert [f.severity for f in fresh] == [Severity.INFO]
    assert "freshly initialised" in fresh[0].message
    assert "backbone.layers.*.mixer.A_log" in fresh[0].message


def test_frozen_sinusoidal_tables_of_a_trained_looking_model_are_no_duplicates(tmp_path: Path) -> None:
    """Pegasus's encoder and decoder position tables are identical by construction, trained or not."""
    model_type, extra, _, _ = CASES["PegasusForConditionalGeneration"]
    config = transformers.AutoConfig.for_model(model_type, **extra)
    torch.manual_seed(0)
    model = transformers.PegasusForConditionalGeneration(config)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.dim() == 1:
                parameter.normal_()  # no all-ones norms, no all-zero biases: nothing looks fresh
    model.save_pretrained(tmp_path)
    report = scan(tmp_path)
    assert [f.tensors for f in report.findings if f.code == "TC202"] == []
