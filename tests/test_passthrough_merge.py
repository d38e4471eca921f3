"""A real frankenmerge: mergekit's ``passthrough`` method repeating layers of a Llama saved by transformers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiecheck import scan

mergekit_merge = pytest.importorskip("mergekit.merge")
mergekit_config = pytest.importorskip("mergekit.config")


@pytest.mark.transformers
def test_passthrough_merge_is_reported_as_repeated_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "base")
    # Output layers 0-2 are source layers 0-2, output layers 3-5 are source layers 1-3 again.
    merge = mergekit_config.MergeConfiguration.model_validate(
        {
            "merge_method": "passthrough",
            "dtype": "bfloat16",
            "slices": [
                {"sources": [{"model": str(tmp_path / "base"), "layer_range": [0, 3]}]},
                {"sources": [{"model": str(tmp_path / "base"), "layer_range": [1, 4]}]},
            ],
        }
    )
    mergekit_merge.run_merge(
        merge, str(tmp_path / "merged"), options=mergekit_merge.MergeOptions(copy_tokenizer=False, quiet=True)
    )

    report = scan(tmp_path / "merged")
    (dup,) = [f for f in report.findings if f.code == "TC202"]
    assert "layers 3\u20134 repeat layers 1\u20132" in dup.message
    assert len(dup.tensors) == 2 * 9  # every tensor of the two repeated layers, norms included
    assert all(name.startswith(("model.layers.3.", "model.layers.4.")) for name in dup.tensors)
    # The freshly initialised all-ones norms are grouped once under TC203, not flooded into TC202.
    (ones,) = [f for f in report.findings if f.code == "TC203"]
    assert "every element is 1.0" in ones.message
    assert {f.code for f in report.findings} == {"TC202", "TC203"}
