"""The tie decision logic on assembled checkpoints: governing level, guesses, v4/v5 differences."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from conftest import make, t
from tiecheck import Severity, scan


def test_custom_code_ties_are_guesses_and_never_errors(tmp_path: Path, gen: ModuleType) -> None:
    """auto_map: the repo's own code builds the model; a tie judged from transformers' llama is a guess."""
    folder = make(
        tmp_path,
        {"model.embed_tokens.weight": t(gen, "emb"), "lm_head.weight": t(gen, "head")},
        {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "tie_word_embeddings": True,
            "auto_map": {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"},
        },
    )
    report = scan(folder)
    assert [(f.code, f.severity) for f in report.findings] == [("TC102", Severity.WARNING)]
    assert "guess" in report.findings[0].message
    assert all(tie.guess for tie in report.ties)


def test_head_not_called_lm_head_is_missing(tmp_path: Path, gen: ModuleType) -> None:
    """Whisper's head is proj_out: untied and absent, the loader starts it random."""
    folder = make(
        tmp_path,
        {"model.decoder.embed_tokens.weight": t(gen, "emb")},
        {"model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"], "tie_word_embeddings": False},
    )
    report = scan(folder)
    assert [(f.code, f.tensors, f.severity) for f in report.findings] == [
        ("TC103", ("proj_out.weight",), Severity.ERROR)
    ]


def test_a_class_without_a_declared_tie_needs_its_head(tmp_path: Path, gen: ModuleType) -> None:
    """Qwen2AudioForConditionalGeneration declares no tie in transformers 5: a missing head stays random."""
    folder = make(
        tmp_path,
        {"language_model.model.embed_tokens.weight": t(gen, "emb")},
        {
            "model_type": "qwen2_audio",
            "architectures": ["Qwen2AudioForConditionalGeneration"],
            "text_config": {"model_type": "qwen2", "tie_word_embeddings": True},
        },
    )
    report = scan(folder)
    assert [(f.code, f.tensors) for f in report.findings] == [("TC103", ("language_model.lm_head.weight",))]
    assert "declares no tie" in report.findings[0].message


def test_only_the_head_stored_is_restored_symmetrically_by_transformers_5(tmp_path: Path, gen: ModuleType) -> None:
    folder = make(
        tmp_path,
        {"lm_head.weight": t(gen, "head")},
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "tie_word_embeddings": True},
    )
    report = scan(folder)
    assert [(f.code, f.severity) for f in report.findings] == [("TC106", Severity.WARNING)]
    assert "ties symmetrically" in report.findings[0].message


def test_t5_head_that_differs_is_fine_although_its_config_forces_the_tie(tmp_path: Path, gen: ModuleType) -> None:
    """T5Config sets tie_word_embeddings true in transformers 5; a differing head is kept, as 4.x kept it."""
    folder = make(
        tmp_path,
        {"shared.weight": t(gen, "shared"), "lm_head.weight": t(gen, "head")},
        {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "tie_word_embeddings": False},
    )
    report = scan(folder)
    assert report.findings == ()
    assert all(tie.group.always for tie in report.ties)


def test_encoder_decoder_embeddings_stored_once_and_restored_under_several_names(
    tmp_path: Path, gen: ModuleType
) -> None:
    shared = t(gen, "shared")
    folder = make(
        tmp_path,
        {"model.shared.weight": shared, "model.encoder.embed_tokens.weight": shared},
        {"model_type": "bart", "architectures": ["BartForConditionalGeneration"]},
    )
    report = scan(folder)
    assert [(f.code, f.tensors) for f in report.findings] == [
        ("TC101", ("model.encoder.embed_tokens.weight", "model.shared.weight"))
    ]


def test_a_head_only_4x_restored_says_so(tmp_path: Path, gen: ModuleType) -> None:
    """Gemma3ForConditionalGeneration: 5.x ties by the outer flag (false here), 4.57 by text_config's (true)."""
    folder = make(
        tmp_path,
        {"language_model.model.embed_tokens.weight": t(gen, "emb")},
        {
            "model_type": "gemma3",
            "architectures": ["Gemma3ForConditionalGeneration"],
            "tie_word_embeddings": False,
            "text_config": {"model_type": "gemma3_text", "tie_word_embeddings": True},
        },
    )
    report = scan(folder)
    assert [(f.code, f.tensors) for f in report.findings] == [("TC103", ("language_model.lm_head.weight",))]
    assert "transformers 4.57.6 tied it" in report.findings[0].message


def test_a_class_that_cannot_be_built_gets_the_saved_naming(tmp_path: Path, gen: ModuleType) -> None:
    """AyaVision's default config does not build; its plain _tied_weights_keys, renamed as save_pretrained
    renames the classes that do build (model.language_model.* -> language_model.model.*), still applies."""
    emb = t(gen, "emb")
    folder = make(
        tmp_path,
        {"language_model.model.embed_tokens.weight": emb, "language_model.lm_head.weight": emb},
        {
            "model_type": "aya_vision",
            "architectures": ["AyaVisionForConditionalGeneration"],
            "tie_word_embeddings": True,
        },
    )
    report = scan(folder)
    assert [(f.code, f.tensors) for f in report.findings] == [
        ("TC101", ("language_model.lm_head.weight", "language_model.model.embed_tokens.weight"))
    ]
    assert "cannot be built" in report.findings[0].message
