"""Tiny real transformers models for the tests (built in milliseconds, random weights), and what a scan of a
folder they were saved to says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

LLAMA: dict[str, Any] = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}

_SMALL = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2}


def build(name: str) -> torch.nn.Module:
    """A tiny model by short name: llama-tied, llama-untied, gpt2, t5, bert, gemma2."""
    import transformers as tf

    torch.manual_seed(0)
    heads = {"num_attention_heads": 2, "num_key_value_heads": 2}
    if name in ("llama-tied", "llama-untied"):
        config = tf.LlamaConfig(**_SMALL, **heads, tie_word_embeddings=name == "llama-tied")
        return tf.LlamaForCausalLM(config)
    if name == "gpt2":
        return tf.GPT2LMHeadModel(
            tf.GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)
        )
    if name == "t5":
        return tf.T5ForConditionalGeneration(
            tf.T5Config(vocab_size=64, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2)
        )
    if name == "bert":
        return tf.BertForMaskedLM(
            tf.BertConfig(
                vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
            )
        )
    if name == "gemma2":
        return tf.Gemma2ForCausalLM(tf.Gemma2Config(**_SMALL, num_attention_heads=2, num_key_value_heads=1, head_dim=8))
    raise ValueError(name)


def scan_findings(folder: Path) -> tuple[int, dict[str, tuple[str, str]]]:
    """``tiecheck scan FOLDER -f json``: the exit code, and each finding's code to its severity and message."""
    from typer.testing import CliRunner

    from tiecheck.cli import app

    result = CliRunner().invoke(app, ["scan", str(folder), "-f", "json"])
    data = json.loads(result.stdout)
    return result.exit_code, {f["code"]: (f["severity"], f["message"]) for f in data["reports"][0]["findings"]}
