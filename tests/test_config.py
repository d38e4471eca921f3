"""config.json and index parsing: where the tie flag and dtype come from."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiecheck.errors import FormatError
from tiecheck.formats.jsonfiles import parse_config, parse_index


def cfg(**fields: object) -> str:
    return json.dumps(fields)


@pytest.mark.parametrize(
    ("model_type", "tied"),
    [
        ("llama", False),
        ("mistral", False),
        ("qwen2", False),
        ("qwen3", False),
        ("gpt_neox", False),
        ("olmo", False),
        ("olmo2", False),
        ("phi", False),
        ("phi3", False),
        ("gemma", True),
        ("gemma2", True),
        ("gemma3", True),
        ("gemma3_text", True),
        ("gpt2", True),
        ("opt", True),
        ("bloom", True),
        ("falcon", True),
        ("bart", True),
        ("mbart", True),
        ("bert", True),
        ("roberta", True),
        ("t5", True),
    ],
)
def test_default_tie_per_model_type(model_type: str, tied: bool) -> None:
    config = parse_config(cfg(model_type=model_type))
    assert config.tie_word_embeddings is tied
    assert config.tie_basis.startswith(f"default for model_type {model_type!r}")


def test_explicit_flag_wins_over_default() -> None:
    config = parse_config(cfg(model_type="llama", tie_word_embeddings=True))
    assert config.tie_word_embeddings is True
    assert config.tie_key == "tie_word_embeddings"


def test_flag_in_text_config_for_multimodal_models() -> None:
    """transformers 5 ties Gemma3ForConditionalGeneration by the outer flag; 4.x read text_config."""
    config = parse_config(
        cfg(
            model_type="gemma3",
            architectures=["Gemma3ForConditionalGeneration"],
            text_config={"model_type": "gemma3_text", "tie_word_embeddings": False},
        )
    )
    assert config.tie_word_embeddings is True
    assert config.tie_key == "tie_word_embeddings"
    assert config.tie_levels == {"": True, "text_config": False}


def test_text_flag_copied_to_the_outer_level_by_the_config_class() -> None:
    """LlavaConfig takes a true text_config flag over when the outer one is false or absent."""
    config = parse_config(
        cfg(
            model_type="llava",
            architectures=["LlavaForConditionalGeneration"],
            text_config={"model_type": "llama", "tie_word_embeddings": True},
        )
    )
    assert config.tie_word_embeddings is True
    assert config.tie_key == "text_config.tie_word_embeddings"
    assert "LlavaConfig applies to the outer config" in config.tie_basis


def test_text_config_model_type_gives_the_default() -> None:
    config = parse_config(cfg(model_type="llava", text_config={"model_type": "llama"}))
    assert config.tie_word_embeddings is False


def test_olmo_weight_tying() -> None:
    config = parse_config(cfg(model_type="hf_olmo", weight_tying=False))
    assert config.tie_word_embeddings is False
    assert config.tie_key == "weight_tying"


def test_unknown_model_type_has_no_flag() -> None:
    config = parse_config(cfg(model_type="brand_new"))
    assert config.tie_word_embeddings is None


def test_a_model_type_spelt_otherwise_takes_the_named_class_default() -> None:
    """transformers 4.57 wrote model_type 'lfm2-vl'; 5.x registers 'lfm2_vl', and the class named loads it."""
    document = {"model_type": "lfm2-vl", "architectures": ["Lfm2VlForConditionalGeneration"], "text_config": {}}
    config = parse_config(json.dumps(document))
    assert config.tie_word_embeddings is True and "lfm2_vl" in config.tie_basis


def test_architectures_only_in_text_config_name_the_class_when_it_is_the_outer_types() -> None:
    qwen = {"model_type": "qwen2_vl", "text_config": {"architectures": ["Qwen2VLForConditionalGeneration"]}}
    assert parse_config(json.dumps(qwen)).architectures == ("Qwen2VLForConditionalGeneration",)
    # A text model's own class there is not the class that loads the checkpoint.
    llava = {"model_type": "llava", "text_config": {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}}
    assert parse_config(json.dumps(llava)).architectures == ()


@pytest.mark.parametrize(
    ("fields", "dtype"),
    [
        ({"dtype": "bfloat16"}, "BF16"),
        ({"torch_dtype": "float16"}, "F16"),
        ({"torch_dtype": "torch.float32"}, "F32"),
        ({}, None),
    ],
)
def test_dtype_and_legacy_torch_dtype(fields: dict[str, str], dtype: str | None) -> None:
    assert parse_config(cfg(model_type="llama", **fields)).dtype == dtype


def test_quantized_models_are_marked() -> None:
    assert parse_config(cfg(model_type="llama", quantization_config={"quant_method": "fp8"})).quantized


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        cfg(tie_word_embeddings="yes"),
        cfg(architectures="LlamaForCausalLM"),
        cfg(model_type=3),
        cfg(text_config=[]),
        cfg(dtype=16),
    ],
)
def test_malformed_configs_are_format_errors(text: str) -> None:
    with pytest.raises(FormatError):
        parse_config(text)


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"weight_map": []},
        {"weight_map": {"a": 3}},
        {"weight_map": {"a": "../outside.safetensors"}},
        {"weight_map": {"a": "/etc/passwd"}},
        {"weight_map": {}, "metadata": {"total_size": -1}},
        {"weight_map": {}, "metadata": {"total_size": "12"}},
        {"weight_map": {}, "metadata": []},
    ],
)
def test_malformed_indexes_are_format_errors(document: object) -> None:
    with pytest.raises(FormatError):
        parse_index(json.dumps(document), "model.safetensors.index.json")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_any_json_either_parses_or_is_a_format_error(document: object) -> None:
    text = json.dumps(document)
    for parse in (parse_config, lambda t: parse_index(t, "i.json")):
        with contextlib.suppress(FormatError):
            parse(text)


@given(st.binary(max_size=64))
def test_any_bytes_either_parse_or_are_a_format_error(blob: bytes) -> None:
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return
    for parse in (parse_config, lambda t: parse_index(t, "i.json")):
        with contextlib.suppress(FormatError):
            parse(text)
