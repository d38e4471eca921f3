"""Write tiny checkpoints with transformers 4.57's save_pretrained, for tests/test_ties_tf4.py.

Run in an environment with transformers 4.57 (see docs/ties.md):
``/tmp/venv-tf4/bin/python scripts/make_tf4_fixtures.py tests/data/transformers-4.57``.
Each architecture is saved with safetensors and as pytorch_model.bin, with its default tie flag.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
import transformers

SMALL: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 32,
}
SEQ2SEQ: dict[str, Any] = {
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
ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaForCausalLM", SMALL),
    "qwen2": ("Qwen2ForCausalLM", {**SMALL, "tie_word_embeddings": True}),
    "gemma2": ("Gemma2ForCausalLM", {**SMALL, "head_dim": 8}),
    "gpt2": ("GPT2LMHeadModel", {"vocab_size": 64, "n_embd": 16, "n_layer": 1, "n_head": 2, "n_positions": 32}),
    "bart": ("BartForConditionalGeneration", SEQ2SEQ),
    "marian": ("MarianMTModel", {**SEQ2SEQ, "pad_token_id": 0, "decoder_start_token_id": 0}),
    "t5": (
        "T5ForConditionalGeneration",
        {"vocab_size": 64, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2},
    ),
    "bert": ("BertForMaskedLM", {**SMALL, "num_key_value_heads": None}),
}


def main() -> int:
    out = Path(sys.argv[1])
    shutil.rmtree(out, ignore_errors=True)
    for model_type, (name, kwargs) in ARCHITECTURES.items():
        args = {k: v for k, v in kwargs.items() if v is not None}
        config = transformers.AutoConfig.for_model(model_type, **args)
        torch.manual_seed(0)
        model = getattr(transformers, name)(config)
        for safe in (True, False):
            folder = out / f"{model_type}-{'safetensors' if safe else 'bin'}"
            model.save_pretrained(folder, safe_serialization=safe)
            (folder / "generation_config.json").unlink(missing_ok=True)
    (out / "VERSION").write_text(json.dumps({"transformers": transformers.__version__}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
