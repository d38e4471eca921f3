"""TC021 tokenizer-beyond-embedding, on tokenizers and models saved by the real tools.

Each claim is checked against transformers itself: where the rule speaks, the model's forward on a text
holding the added token raises IndexError; where it stays silent on ids beyond the embedding's rows
(PaliGemma's image placeholder, Idefics' second table), the forward runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    BertConfig,
    EncoderDecoderConfig,
    EncoderDecoderModel,
    GPT2Config,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

import tiecheck
from tiecheck.formats.tokenizer import _top_level_value

CHAT_MARKERS = ["<|im_start|>", "<|im_end|>"]


def _tokenizer() -> PreTrainedTokenizerFast:
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"])
    backend.train_from_iterator(["hello world, the quick brown fox jumps over the lazy dog"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def _llama(vocab: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    shape = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, num_key_value_heads=2, **shape)).eval()


def _fine_tune_save(path: Path, *, resize: bool, pad_to: int | None = None) -> PreTrainedTokenizerFast:
    """What a chat fine-tune does: add the chat markers, maybe resize, save model and tokenizer."""
    tokenizer = _tokenizer()
    model = _llama(len(tokenizer))
    tokenizer.add_special_tokens({"additional_special_tokens": CHAT_MARKERS})
    if resize:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return tokenizer


def _forward_fails(path: Path, tokenizer: PreTrainedTokenizerFast) -> bool:
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tokenizer("<|im_start|> hello world", return_tensors="pt").input_ids
    try:
        model(ids)
    except IndexError:
        return True
    return False


def _tc021(path: Path) -> list[tiecheck.Finding]:
    return [f for f in tiecheck.scan(path).findings if f.code == "TC021"]


def test_added_tokens_without_resize(tmp_path: Path) -> None:
    tokenizer = _fine_tune_save(tmp_path, resize=False)
    assert _forward_fails(tmp_path, tokenizer), "transformers: the marker's id has no embedding row"
    (found,) = _tc021(tmp_path)
    rows = len(tokenizer) - len(CHAT_MARKERS)
    assert found.severity is tiecheck.Severity.WARNING
    assert found.tensors == ("model.embed_tokens.weight",)
    assert "tokenizer.json" in found.files
    assert f"'<|im_start|>' = {rows}" in found.message
    assert "resize_token_embeddings" in found.message


@pytest.mark.parametrize("pad_to", [None, 64])
def test_resized_embeddings_are_clean(tmp_path: Path, pad_to: int | None) -> None:
    tokenizer = _fine_tune_save(tmp_path, resize=True, pad_to=pad_to)
    assert not _forward_fails(tmp_path, tokenizer)
    assert _tc021(tmp_path) == []


def test_transformers_4_formats(tmp_path: Path) -> None:
    """transformers 4.34+ lists added tokens in tokenizer_config.json; slow tokenizers in added_tokens.json."""
    _fine_tune_save(tmp_path, resize=False)
    added = json.loads((tmp_path / "tokenizer.json").read_text())["added_tokens"]
    (tmp_path / "tokenizer.json").unlink()
    decoder = {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in added}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder}))
    assert len(_tc021(tmp_path)) == 1
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "added_tokens.json").write_text(json.dumps({t["content"]: t["id"] for t in added[-2:]}))
    (found,) = _tc021(tmp_path)
    assert found.files[0] == "added_tokens.json"


def test_placeholder_named_by_the_config_is_left_alone(tmp_path: Path) -> None:
    """PaliGemma (as Gemma 3) maps its image token to padding before the lookup when it is beyond the vocabulary."""
    from transformers import GemmaConfig, PaliGemmaConfig, PaliGemmaForConditionalGeneration, SiglipVisionConfig

    vocab = 50
    text = GemmaConfig(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
    )
    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8
    )
    config = PaliGemmaConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), image_token_id=vocab, projection_dim=16
    )
    model = PaliGemmaForConditionalGeneration(config).eval()
    ids = torch.tensor([[vocab] * config.text_config.num_image_tokens + [2, 3]])
    model(input_ids=ids, pixel_values=torch.randn(1, 3, 16, 16))  # runs: the placeholder is never looked up
    model.save_pretrained(tmp_path)
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<image>": vocab}))
    assert _tc021(tmp_path) == []
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<image>": vocab, "<seg000>": vocab + 1}))
    (found,) = _tc021(tmp_path)
    assert "'<seg000>'" in found.message and "'<image>'" not in found.message


def test_second_embedding_table_is_left_alone(tmp_path: Path) -> None:
    """Idefics keeps added tokens in a second table (model.embed_tokens.additional_embedding)."""
    from transformers import IdeficsConfig, IdeficsForVisionText2Text

    config = IdeficsConfig(
        vocab_size=50,
        additional_vocab_size=2,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        vision_config={
            "embed_dim": 16,
            "image_size": 16,
            "patch_size": 8,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
        },
        perceiver_config={"use_resampler": False},
        cross_layer_interval=1,
        freeze_text_layers=False,
        freeze_vision_layers=False,
    )
    model = IdeficsForVisionText2Text(config).eval()
    model(  # token 51 is the second table's second row
        input_ids=torch.tensor([[51, 2, 3]]),
        pixel_values=torch.randn(1, 1, 3, 16, 16),
        image_attention_mask=torch.ones(1, 3, 1, dtype=torch.long),
    )
    model.save_pretrained(tmp_path)
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<fake_token_around_image>": 50, "<image>": 51}))
    assert _tc021(tmp_path) == []


def test_encoder_decoder_of_two_models_is_left_alone(tmp_path: Path) -> None:
    """The tokenizer saved beside a bert2gpt2 model may be the decoder's: no claim about the encoder's rows."""
    encoder = BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    decoder = GPT2Config(vocab_size=80, n_embd=16, n_layer=1, n_head=2, add_cross_attention=True, is_decoder=True)
    EncoderDecoderModel(EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)).save_pretrained(tmp_path)
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<|endoftext|>": 79}))
    assert _tc021(tmp_path) == []


def test_custom_code_is_left_alone(tmp_path: Path) -> None:
    _fine_tune_save(tmp_path, resize=False)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert _tc021(tmp_path) == []


def test_fix_output_does_not_claim_it_resolved(tmp_path: Path) -> None:
    """The re-scan of `fix --output` sees the files carried over: a finding about the tokenizer stays."""
    source = tmp_path / "in"
    _fine_tune_save(source, resize=False)
    from safetensors.torch import load_file, save_file

    weights = load_file(source / "model.safetensors")
    weights["lm_head.weight"] = weights["model.embed_tokens.weight"].clone()
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    result = tiecheck.fix(source, tie_head=True, output=tmp_path / "out")
    assert result.verification is not None and result.after is not None
    resolved = {f.code for f in result.verification.resolved}
    assert "TC104" in resolved
    assert "TC021" not in resolved
    assert "TC021" in {f.code for f in result.after.findings}


def test_symlink_out_of_the_folder_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    folder = tmp_path / "model"
    _fine_tune_save(folder, resize=False)
    (folder / "tokenizer.json").rename(outside / "tokenizer.json")
    (folder / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    (folder / "tokenizer_config.json").unlink()
    assert _tc021(folder) == []


def test_added_tokens_after_a_large_vocabulary(tmp_path: Path) -> None:
    """Written out of the library's order (the vocabulary first), the file is read on until the key is found."""
    folder = tmp_path / "model"
    _fine_tune_save(folder, resize=False)
    document = json.loads((folder / "tokenizer.json").read_text())
    added = document.pop("added_tokens")
    document["model"]["vocab"].update({f"filler{i}": 1000 + i for i in range(60_000)})  # about 1.3 MB first
    document["added_tokens"] = added
    (folder / "tokenizer.json").write_text(json.dumps(document))
    assert len(_tc021(folder)) == 1


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    document=st.dictionaries(st.text(max_size=12), _json, max_size=6),
    indent=st.sampled_from([None, 0, 2]),
    first=st.integers(min_value=1, max_value=64),
)
@example(document={"0\x07": 10}, indent=None, first=13)  # the window ends inside the number: 1 of 10
def test_member_parse_agrees_with_json(document: dict[str, object], indent: int | None, first: int) -> None:
    """Whatever the window size, the member found is the one json.loads sees (the first of duplicates aside)."""
    data = json.dumps(document, indent=indent, ensure_ascii=False).encode()
    for key in (*document, "absent-key"):
        expected = document.get(key)
        assert _top_level_value(_Bytes(data), len(data), key, first) == expected


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), first=st.integers(min_value=1, max_value=64))
def test_member_parse_never_raises(data: bytes, first: int) -> None:
    _top_level_value(_Bytes(data), len(data), "added_tokens", first)


def test_hub_repo_reads_only_the_beginning_of_tokenizer_json(tmp_path: Path) -> None:
    """Remotely too, a large tokenizer.json costs the range its added tokens lie in, not the vocabulary."""
    from hub_server import serve
    from tiecheck.io.hub import HubStore
    from tiecheck.scan import scan_store

    _fine_tune_save(tmp_path, resize=False)
    document = json.loads((tmp_path / "tokenizer.json").read_text())
    document["model"]["vocab"].update({f"filler{i}": 1000 + i for i in range(150_000)})
    (tmp_path / "tokenizer.json").write_text(json.dumps(document))
    size = (tmp_path / "tokenizer.json").stat().st_size
    assert size > 3 << 20
    with serve() as hub:
        hub.add_folder("org/chat-tune", tmp_path)
        report = scan_store(HubStore("org/chat-tune", endpoint=hub.hub_url, token=False))
        served = hub.hub.bytes + hub.cdn.bytes - hub.hub.api_bytes - hub.cdn.api_bytes
    assert "TC021" in {f.code for f in report.findings}
    assert served < 1 << 20, f"{served:,} bytes served for a {size:,}-byte tokenizer.json"
