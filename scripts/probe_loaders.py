"""Load each tie/head case with the installed transformers and print what happened, as JSON.

    python scripts/probe_loaders.py > /tmp/probe-5.json                        # transformers 5 (the shared venv)
    /tmp/venv-tf4/bin/python scripts/probe_loaders.py > /tmp/probe-4.json      # transformers 4.57, own venv

For every architecture below and every case of ``src/tiecheck/ties/data/loaders.json`` that concerns ties and
heads, it writes a tiny checkpoint (a seeded random model's tensors, chosen and edited as the case says, next
to the config ``save_pretrained`` writes), loads it with ``from_pretrained`` and compares the loaded head with
what was stored:

- ``ties``: the head is the embedding's parameter (the stored head, if any, is not what is used unless equal);
- ``uses-stored``: the head holds the stored head's values and is a parameter of its own;
- ``random``: the head holds neither (initialised);
- ``restores-from-head``: only the head was stored, and the embedding holds its values;
- ``fails``: ``from_pretrained`` raised, or left the parameter without data (on the meta device).

The transformers columns of loaders.json are this script's output; tests/test_loaders_transformers.py
repeats the transformers 5 half on every run. Runs in a few seconds, no network.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import save_file

#: architecture class -> (config class, tiny config, embedding name, head name, [partner pairs (target, source)])
MODELS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "LlamaForCausalLM": (
        "LlamaConfig",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": 48,
            "max_position_embeddings": 64,
        },
        "model.embed_tokens.weight",
        "lm_head.weight",
    ),
    "Gemma2ForCausalLM": (
        "Gemma2Config",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "vocab_size": 48,
            "max_position_embeddings": 64,
        },
        "model.embed_tokens.weight",
        "lm_head.weight",
    ),
    "GPT2LMHeadModel": (
        "GPT2Config",
        {"n_embd": 16, "n_layer": 1, "n_head": 2, "vocab_size": 48, "n_positions": 64},
        "transformer.wte.weight",
        "lm_head.weight",
    ),
    "BertForMaskedLM": (
        "BertConfig",
        {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 48,
            "max_position_embeddings": 64,
        },
        "bert.embeddings.word_embeddings.weight",
        "cls.predictions.decoder.weight",
    ),
}

#: case -> (tie_word_embeddings in config.json: True/False/None = absent, what is stored under the head's name)
CASES: dict[str, tuple[bool | None, str]] = {
    "tied-head-absent": (True, "absent"),
    "tied-head-identical": (True, "identical"),
    "tied-head-differs": (True, "differs"),
    "tied-embedding-absent": (True, "only"),
    "untied-head-absent": (False, "absent"),
    "untied-head-identical": (False, "identical"),
    "untied-head-differs": (False, "differs"),
    "flag-absent-head-absent": (None, "absent"),
}

#: BertForMaskedLM's decoder bias, saved by 4.x under cls.predictions.bias only (one shared Parameter there)
PARTNER = ("cls.predictions.decoder.bias", "cls.predictions.bias")


def _state(arch: str) -> tuple[Any, dict[str, torch.Tensor]]:
    config_name, kwargs, _, _ = MODELS[arch]
    config = getattr(transformers, config_name)(**kwargs, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = getattr(transformers, arch)(config)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return config, state


def _write(folder: Path, config: Any, tensors: dict[str, torch.Tensor], flag: bool | None) -> None:
    config.save_pretrained(folder)
    path = folder / "config.json"
    document = json.loads(path.read_text())
    document.pop("tie_word_embeddings", None)
    if flag is not None:
        document["tie_word_embeddings"] = flag
    path.write_text(json.dumps(document))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _outcome(folder: Path, arch: str, stored_head: torch.Tensor | None, embedding: torch.Tensor | None) -> str:
    _, _, emb_name, head_name = MODELS[arch]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transformers.logging.set_verbosity_error()
            model = getattr(transformers, arch).from_pretrained(folder)
    except Exception as error:  # noqa: BLE001 - any refusal to load is the outcome
        return f"fails: {type(error).__name__}"
    params = dict(model.named_parameters(remove_duplicate=False))
    head, emb = params[head_name], params[emb_name]
    if head.device.type == "meta" or emb.device.type == "meta":
        return "fails: left on the meta device"
    if embedding is None:  # only the head was stored: is the embedding restored from it?
        assert stored_head is not None
        same = torch.equal(emb.detach(), stored_head) and torch.equal(head.detach(), stored_head)
        return "restores-from-head" if same else "random"
    if head.data_ptr() == emb.data_ptr():
        return "ties"
    if stored_head is not None and torch.equal(head.detach(), stored_head):
        return "uses-stored"
    if torch.equal(head.detach(), embedding):
        return "ties"  # a copy of the embedding's values (not one parameter)
    return "random"


def probe(arch: str, case: str) -> str:
    flag, stored = CASES[case]
    config, state = _state(arch)
    _, _, emb_name, head_name = MODELS[arch]
    embedding = state[emb_name]
    tensors = {k: v for k, v in state.items() if k not in (head_name, PARTNER[0])}
    head: torch.Tensor | None = None
    if stored == "identical":
        head = embedding.clone()
    elif stored in ("differs", "only"):
        head = embedding.clone() + 1.0
    if head is not None:
        tensors[head_name] = head
    if stored == "only":
        del tensors[emb_name]
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp), config, tensors, flag)
        return _outcome(Path(tmp), arch, head, embedding if stored != "only" else None)


def probe_partner() -> str:
    """Untied BertForMaskedLM with the decoder bias stored only as cls.predictions.bias (what 4.x saves)."""
    config, state = _state("BertForMaskedLM")
    tensors = {k: v for k, v in state.items() if k != PARTNER[0]}
    tensors[PARTNER[1]] = torch.arange(state[PARTNER[1]].numel(), dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp), config, tensors, False)
        try:
            transformers.logging.set_verbosity_error()
            model = transformers.BertForMaskedLM.from_pretrained(tmp)
        except Exception as error:  # noqa: BLE001
            return f"fails: {type(error).__name__}"
        params = dict(model.named_parameters(remove_duplicate=False))
        target, source = params[PARTNER[0]], params[PARTNER[1]]
        if target.data_ptr() == source.data_ptr() or torch.equal(target.detach(), source.detach()):
            return "ties"
        return "random"


def main() -> None:
    result: dict[str, Any] = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": {}}
    for case in CASES:
        result["cases"][case] = {arch: probe(arch, case) for arch in MODELS}
    result["cases"]["untied-partner-absent"] = {"BertForMaskedLM": probe_partner()}
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
