"""Checkpoints written by transformers' own save_pretrained scan clean, for every architecture in the tie table.

A false alarm on a clean checkpoint is as bad as a miss: these are the checkpoints people upload.
The same models with a merge-tool style duplicated head must then be caught.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tiecheck import Severity, scan

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.transformers

SMALL: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 32,
}
SEQ2SEQ = {
    "d_model": 16,
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 32,
    "decoder_ffn_dim": 32,
}

# model_type -> (class, extra config, the head a merge tool would write back, the embedding it copies)
ARCHITECTURES: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "llama": ("LlamaForCausalLM", {}, "lm_head.weight", "model.embed_tokens.weight"),
    "mistral": ("MistralForCausalLM", {}, "lm_head.weight", "model.embed_tokens.weight"),
    "qwen2": ("Qwen2ForCausalLM", {}, "lm_head.weight", "model.embed_tokens.weight"),
    "qwen3": ("Qwen3ForCausalLM", {"head_dim": 8}, "lm_head.weight", "model.embed_tokens.weight"),
    "gemma": ("GemmaForCausalLM", {"head_dim": 8}, "lm_head.weight", "model.embed_tokens.weight"),
    "gemma2": ("Gemma2ForCausalLM", {"head_dim": 8}, "lm_head.weight", "model.embed_tokens.weight"),
    "gemma3_text": ("Gemma3ForCausalLM", {"head_dim": 8}, "lm_head.weight", "model.embed_tokens.weight"),
    "phi": ("PhiForCausalLM", {}, "lm_head.weight", "model.embed_tokens.weight"),
    "phi3": ("Phi3ForCausalLM", {"pad_token_id": 0}, "lm_head.weight", "model.embed_tokens.weight"),
    "olmo": ("OlmoForCausalLM", {}, "lm_head.weight", "model.embed_tokens.weight"),
    "olmo2": ("Olmo2ForCausalLM", {}, "lm_head.weight", "model.embed_tokens.weight"),
    "gpt2": (
        "GPT2LMHeadModel",
        {"n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32},
        "lm_head.weight",
        "transformer.wte.weight",
    ),
    "gpt_neox": ("GPTNeoXForCausalLM", {}, "embed_out.weight", "gpt_neox.embed_in.weight"),
    "opt": (
        "OPTForCausalLM",
        {"ffn_dim": 32, "word_embed_proj_dim": 16},
        "lm_head.weight",
        "model.decoder.embed_tokens.weight",
    ),
    "bloom": ("BloomForCausalLM", {"n_layer": 1, "n_head": 2}, "lm_head.weight", "transformer.word_embeddings.weight"),
    "falcon": ("FalconForCausalLM", {"num_kv_heads": 2}, "lm_head.weight", "transformer.word_embeddings.weight"),
    "t5": (
        "T5ForConditionalGeneration",
        {"d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2},
        "lm_head.weight",
        "shared.weight",
    ),
    "bart": ("BartForConditionalGeneration", SEQ2SEQ, "lm_head.weight", "model.shared.weight"),
    "mbart": ("MBartForConditionalGeneration", SEQ2SEQ, "lm_head.weight", "model.shared.weight"),
    "bert": ("BertForMaskedLM", {}, "cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
    "roberta": (
        "RobertaForMaskedLM",
        {"pad_token_id": 1},
        "lm_head.decoder.weight",
        "roberta.embeddings.word_embeddings.weight",
    ),
}


def save(tmp: Path, model_type: str, tie: bool, sharded: bool) -> Path:
    cls_name, extra, _, _ = ARCHITECTURES[model_type]
    kwargs = {**SMALL, **extra, "tie_word_embeddings": tie}
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(config)
    folder = tmp / f"{model_type}-{'tied' if tie else 'untied'}-{'sharded' if sharded else 'single'}"
    model.save_pretrained(folder, max_shard_size="8KB" if sharded else "5GB")
    return folder


@pytest.mark.parametrize("sharded", [False, True], ids=["single", "sharded"])
@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_save_pretrained_scans_clean(tmp_path: Path, model_type: str, tie: bool, sharded: bool) -> None:
    folder = save(tmp_path, model_type, tie, sharded)
    assert (folder / "model.safetensors.index.json").exists() == sharded
    report = scan(folder)
    loud = [f for f in report.findings if f.severity >= Severity.WARNING]
    assert loud == [], [f.message for f in loud]


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_duplicated_head_written_back_by_a_merge_is_caught(tmp_path: Path, model_type: str) -> None:
    """The Gemma2 merge story for every architecture: a tied model, the head copied back into the last shard."""
    folder = save(tmp_path, model_type, tie=True, sharded=True)
    _, _, head, embedding = ARCHITECTURES[model_type]
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    weight_map = index["weight_map"]
    if head in weight_map:
        pytest.skip(f"{model_type}: save_pretrained keeps {head} even when tied")
    embedding_file = folder / weight_map[embedding]
    with safetensors_torch.safe_open(embedding_file, "pt") as f:
        copy = f.get_tensor(embedding).clone()
    last = sorted(set(weight_map.values()))[-1]
    shard = safetensors_torch.load_file(folder / last)
    shard[head] = copy
    safetensors_torch.save_file(shard, folder / last, metadata={"format": "pt"})
    weight_map[head] = last
    index["metadata"]["total_size"] += copy.numel() * copy.element_size()
    index_path.write_text(json.dumps(index))

    report = scan(folder)
    codes = [f.code for f in report.findings if f.severity >= Severity.WARNING]
    assert codes == ["TC101"], [f.message for f in report.findings]
    (finding,) = (f for f in report.findings if f.code == "TC101")
    assert finding.tensors == (head, embedding)
    assert finding.bytes == copy.numel() * copy.element_size()


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt_neox"])
def test_untied_model_saved_without_head_is_an_error(tmp_path: Path, model_type: str) -> None:
    folder = save(tmp_path, model_type, tie=False, sharded=False)
    _, _, head, _ = ARCHITECTURES[model_type]
    tensors = safetensors_torch.load_file(folder / "model.safetensors")
    del tensors[head]
    safetensors_torch.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    report = scan(folder)
    assert [(f.code, f.tensors) for f in report.findings if f.code != "TC203"] == [("TC103", (head,))]


def test_tied_head_that_differs_is_a_mismatch(tmp_path: Path) -> None:
    folder = save(tmp_path, "gemma2", tie=False, sharded=False)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config["tie_word_embeddings"] = True
    config_path.write_text(json.dumps(config))
    report = scan(folder)
    (finding,) = (f for f in report.findings if f.code != "TC203")  # fresh models have constant norms
    assert finding.code == "TC102"
    assert "transformers < 5 overwrites" in finding.message


def save_gemma3_multimodal(tmp: Path, tie: bool) -> Path:
    config = transformers.Gemma3Config(
        text_config={
            "vocab_size": 300,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
        },
        mm_tokens_per_image=4,
        boi_token_index=297,
        eoi_token_index=298,
        image_token_index=299,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(0)
    folder = tmp / f"gemma3-{tie}"
    transformers.Gemma3ForConditionalGeneration(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_gemma3_for_conditional_generation_scans_clean(tmp_path: Path, tie: bool) -> None:
    report = scan(save_gemma3_multimodal(tmp_path, tie))
    assert [f for f in report.findings if f.severity >= Severity.WARNING] == []
    assert [t.group.kept for t in report.ties] == ["language_model.model.embed_tokens.weight"]


def test_gemma3_for_conditional_generation_duplicated_head(tmp_path: Path) -> None:
    folder = save_gemma3_multimodal(tmp_path, tie=True)
    tensors = safetensors_torch.load_file(folder / "model.safetensors")
    tensors["language_model.lm_head.weight"] = tensors["language_model.model.embed_tokens.weight"].clone()
    safetensors_torch.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    report = scan(folder)
    found = [(f.code, f.tensors[0]) for f in report.findings if f.code != "TC203"]
    assert found == [("TC101", "language_model.lm_head.weight")]
