"""The loader table's transformers 5 column is what transformers 5 does: each case is saved, scanned and loaded.

For every tie/head case that a rule reports (TC101, TC102, TC103, TC104, TC106, TC107), the test writes the
checkpoint with ``save_pretrained`` (tiny Llama, Gemma 2, GPT-2, BERT), edits it the way the case says, scans it,
loads it with ``from_pretrained`` and checks that the finding's "transformers 5: ..." claim is what happened:
head == embedding, head == stored, head random, or the load failed.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from tiecheck import scan
from tiecheck.ties.loaders import loader_table

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

pytestmark = pytest.mark.transformers

DECODER = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
MODELS: dict[str, tuple[str, dict[str, Any], str]] = {
    "LlamaForCausalLM": ("LlamaConfig", {**DECODER, "num_key_value_heads": 2, "vocab_size": 48}, "model.embed_tokens"),
    "Gemma2ForCausalLM": (
        "Gemma2Config",
        {**DECODER, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 48},
        "model.embed_tokens",
    ),
    "GPT2LMHeadModel": ("GPT2Config", {"n_embd": 16, "n_layer": 1, "n_head": 2, "vocab_size": 48}, "transformer.wte"),
    "BertForMaskedLM": ("BertConfig", {**DECODER, "vocab_size": 48}, "bert.embeddings.word_embeddings"),
}
HEADS = {"BertForMaskedLM": "cls.predictions.decoder.weight"}

#: case -> (tie flag in config.json, what is stored under the head's name, the rule that reports it)
CASES = {
    "tied-head-identical": (True, "identical", "TC101"),
    "tied-head-differs": (True, "differs", "TC102"),
    "tied-embedding-absent": (True, "only", "TC106"),
    "untied-head-absent": (False, "absent", "TC103"),
    "untied-head-identical": (False, "identical", "TC104"),
}


def _phrase_to_effect() -> dict[str, str]:
    table = loader_table()
    return dict(table.outcomes.values())


def claimed_effect(message: str) -> str:
    """The effect of the message's transformers 5 claim (``transformers 5: <phrase> ·``)."""
    match = re.search(r"transformers 5: (.+?)(?: · |\)\. |\.$)", message)
    assert match, message
    return _phrase_to_effect()[match.group(1)]


def observed_effect(folder: Path, arch: str, embedding: str, head: str, stored: Any) -> str:
    """What from_pretrained did: the head is the embedding, the stored tensor, random, or the load failed."""
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = getattr(transformers, arch).from_pretrained(folder)
    except Exception:  # noqa: BLE001 - a refusal to load is an outcome
        return "fails"
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded_head, loaded_embedding = params[head].detach(), params[embedding].detach()
    if stored is not None and torch.equal(loaded_head, stored):
        return "stored"
    if torch.equal(loaded_head, loaded_embedding):
        return "embedding"
    return "random"


def build(tmp_path: Path, arch: str, case: str) -> tuple[Path, str, str, Any]:
    flag, stored, _ = CASES[case]
    config_name, kwargs, embedding_module = MODELS[arch]
    embedding, head = f"{embedding_module}.weight", HEADS.get(arch, "lm_head.weight")
    config = getattr(transformers, config_name)(**kwargs, tie_word_embeddings=flag)
    torch.manual_seed(0)
    folder = tmp_path / f"{arch}-{case}"
    getattr(transformers, arch)(config).save_pretrained(folder)
    path = folder / "model.safetensors"
    tensors = safetensors_torch.load_file(path)
    values = tensors[embedding] if embedding in tensors else tensors[head]
    head_value = None
    if stored == "identical":
        head_value = values.clone()
    elif stored in ("differs", "only"):
        head_value = values.clone() + 1.0
    tensors.pop(head, None)
    if head_value is not None:
        tensors[head] = head_value
    if stored == "only":
        del tensors[embedding]
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    return folder, embedding, head, head_value


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("arch", MODELS)
def test_the_transformers_5_claim_is_what_from_pretrained_does(tmp_path: Path, arch: str, case: str) -> None:
    folder, embedding, head, stored = build(tmp_path, arch, case)
    code = CASES[case][2]
    found = [f for f in scan(folder).findings if f.code == code and head in f.tensors]
    assert len(found) == 1, [(f.code, f.message) for f in scan(folder).findings]
    message = found[0].message
    assert "vLLM: " in message and "llama.cpp: " in message and "transformers 4.57: " in message
    effect = observed_effect(folder, arch, embedding, head, stored)
    claim = claimed_effect(message)
    if case.endswith("identical"):  # the head and the embedding hold the same values: either is the model
        assert {claim, effect} <= {"embedding", "stored"}
    elif case == "tied-embedding-absent":  # the head's values end up in the embedding too
        assert claim == "stored" and effect == "stored"
    else:
        assert claim == effect, message


def test_a_disagreement_is_said_first(tmp_path: Path) -> None:
    folder, _, _, _ = build(tmp_path, "LlamaForCausalLM", "tied-head-differs")
    (message,) = [f.message for f in scan(folder).findings if f.code == "TC102"]
    assert message.startswith("Loaders disagree (transformers 5: uses the stored tensor · transformers 4.57: ties")
    assert "vLLM: ties (stored copy ignored)" in message  # vllm/model_executor/models/llama.py skips lm_head.


DATA = Path(__file__).resolve().parent / "data" / "tf457"


def test_untied_bert_saved_by_457_changes_its_logits_under_5(tmp_path: Path) -> None:
    """TC107: transformers 5 initialises the decoder bias 4.57 stored under cls.predictions.bias only."""
    source = DATA / "bert-untied-safetensors"
    (found,) = [f for f in scan(source).findings if f.code == "TC107"]
    assert found.tensors == ("cls.predictions.decoder.bias", "cls.predictions.bias")
    assert claimed_effect(found.message) == "random"
    assert "transformers 4.57: ties" in found.message

    # give the bias a value a model would have after training (the shipped save holds its zero initialisation)
    folder = tmp_path / "trained"
    folder.mkdir()
    (folder / "config.json").write_text((source / "config.json").read_text())
    tensors = safetensors_torch.load_file(source / "model.safetensors")
    tensors["cls.predictions.bias"] = torch.linspace(-3, 3, tensors["cls.predictions.bias"].numel())
    safetensors_torch.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    fixed = tmp_path / "fixed"  # the fix TC107 names: the partner's bytes under the missing name
    fixed.mkdir()
    (fixed / "config.json").write_text((source / "config.json").read_text())
    safetensors_torch.save_file(
        {**tensors, "cls.predictions.decoder.bias": tensors["cls.predictions.bias"].clone()},
        fixed / "model.safetensors",
        metadata={"format": "pt"},
    )
    assert not [f for f in scan(fixed).findings if f.code == "TC107"]

    arch = json.loads((source / "config.json").read_text())["architectures"][0]
    transformers.logging.set_verbosity_error()
    as_saved = getattr(transformers, arch).from_pretrained(folder).eval()
    repaired = getattr(transformers, arch).from_pretrained(fixed).eval()
    ids = torch.tensor([[1, 5, 7, 9]])
    with torch.no_grad():
        before, after = as_saved(ids).logits, repaired(ids).logits
    bias = dict(as_saved.named_parameters())["cls.predictions.decoder.bias"].detach()
    assert not torch.equal(bias, tensors["cls.predictions.bias"])  # initialised, not restored
    assert not torch.allclose(before, after)  # the logits change
    assert torch.allclose(after - before, (tensors["cls.predictions.bias"] - bias).expand_as(after), atol=1e-5)


def test_a_masked_lm_saved_by_5_without_its_decoder_bias_is_reported(tmp_path: Path) -> None:
    config = transformers.BertConfig(**MODELS["BertForMaskedLM"][1], tie_word_embeddings=False)
    folder = tmp_path / "bert"
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    path = folder / "model.safetensors"
    tensors = safetensors_torch.load_file(path)
    assert "cls.predictions.decoder.bias" in tensors  # 5.x writes both names of an untied model
    assert not [f for f in scan(folder).findings if f.code == "TC107"]
    del tensors["cls.predictions.decoder.bias"]
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    assert [f.code for f in scan(folder).findings if f.code == "TC107"] == ["TC107"]


@pytest.mark.parametrize("declared", [True, False])
def test_the_dtype_claim_is_what_from_pretrained_loads(tmp_path: Path, declared: bool) -> None:
    """TC301 (bfloat16 declared, float32 stored) and TC303 (no dtype, bfloat16 stored) against transformers 5."""
    config_name, kwargs, _ = MODELS["LlamaForCausalLM"]
    config = getattr(transformers, config_name)(**kwargs)
    folder = tmp_path / "llama"
    model = transformers.LlamaForCausalLM(config)
    if declared:
        model.save_pretrained(folder)  # float32 weights
        document = json.loads((folder / "config.json").read_text())
        document["dtype"] = "bfloat16"
        code, expected = "TC301", torch.bfloat16
    else:
        model.to(torch.bfloat16).save_pretrained(folder)
        document = json.loads((folder / "config.json").read_text())
        document.pop("dtype", None)
        document.pop("torch_dtype", None)
        code, expected = "TC303", torch.bfloat16
    (folder / "config.json").write_text(json.dumps(document))
    (message,) = [f.message for f in scan(folder).findings if f.code == code]
    claim = re.search(r"transformers 5: (.+?) · ", message)
    assert claim is not None
    loaded = transformers.LlamaForCausalLM.from_pretrained(folder)
    assert loaded.dtype == expected
    assert claim.group(1) == ("loads the declared dtype" if declared else "loads the stored dtype")
