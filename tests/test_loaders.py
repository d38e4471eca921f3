"""The loader-behaviour table (ties/data/loaders.json) and the messages built from it; no transformers needed.

tests/test_loaders_transformers.py checks the transformers 5 column against from_pretrained.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from conftest import Tensor, make, t
from tiecheck import Severity, scan
from tiecheck.ties.known import CURRENT, LEGACY, knowledge
from tiecheck.ties.loaders import LOADERS, Outcome, disagree, loader_table, outcomes, tie_cases, with_loaders


def test_the_table_says_what_it_was_checked_against() -> None:
    table = loader_table()
    assert set(table.labels) == set(LOADERS)
    assert CURRENT in table.checked["transformers 5"] and LEGACY in table.checked["transformers 4"]
    assert table.labels["transformers 4"] == "transformers " + ".".join(LEGACY.split(".")[:2])
    assert "@" in table.checked["vLLM"] and "@" in table.checked["llama.cpp"]  # pinned commits
    for case, per_loader in table.cases.items():
        assert set(per_loader) == set(LOADERS), case
        for loader, per_arch in per_loader.items():
            assert "*" in per_arch, (case, loader)
            assert set(per_arch.values()) <= set(table.outcomes), (case, loader)


def test_the_transformers_columns_hold_for_every_architecture_and_the_others_only_where_checked() -> None:
    """transformers' tie code is generic (and probed on four classes); vLLM and llama.cpp were read per class."""
    table = loader_table()
    for case, per_loader in table.cases.items():
        assert set(per_loader["transformers 5"]) == {"*"} and set(per_loader["transformers 4"]) == {"*"}
        if not case.startswith("dtype-"):  # the dtype choice is generic code in both (config/model.py, the converter)
            assert per_loader["vLLM"]["*"] == "unknown" and per_loader["llama.cpp"]["*"] == "unknown"


def test_a_message_never_claims_what_the_table_does_not_know() -> None:
    found = outcomes(tie_cases("head-absent", False, False), "SomeNewModelForCausalLM")
    assert [(o.loader, o.phrase) for o in found] == [
        ("transformers 5", "initialises it at random"),
        ("transformers 4", "initialises it at random"),
        ("vLLM", "not checked"),
        ("llama.cpp", "not checked"),
    ]
    # transformers 4 unknown (a class 4.57 did not have): not checked, and vLLM (which reads it) neither
    found = outcomes(tie_cases("head-absent", True, None), "LlamaForCausalLM")
    assert [o.phrase for o in found][1:3] == ["not checked", "not checked"]
    assert found[3].phrase == "uses the embedding (no output.weight)"


def test_disagreement_is_about_the_model_the_loaders_end_up_with() -> None:
    same = outcomes(tie_cases("head-identical", True, True), "LlamaForCausalLM")
    assert {o.code for o in same} == {"ties", "uses-stored"}  # llama.cpp keeps the stored copy
    assert disagree(same) and not disagree(same, identical=True)  # identical bytes: the same model
    message = with_loaders("M.", same, identical=True)
    assert message.startswith("M. Loaders: transformers 5: ties · ")
    differs = outcomes(tie_cases("head-differs", True, True), "LlamaForCausalLM")
    assert with_loaders("M.", differs).startswith("Loaders disagree (transformers 5: uses the stored tensor · ")
    unknown = (Outcome("vLLM", "vLLM", "unknown", "not checked", "unknown"),)
    assert not disagree(unknown + outcomes(tie_cases("head-absent", True, True), None)[:2])


def test_the_unconditional_pairs_are_the_masked_lm_decoder_biases() -> None:
    """Derived under 4.57 (scripts/derive_unconditional_ties.py): shared whatever the flag; 5.x ties them by flag."""
    table = loader_table()
    assert table.unconditional["BertForMaskedLM"] == (("cls.predictions.decoder.bias", "cls.predictions.bias"),)
    assert table.unconditional["RobertaForMaskedLM"] == (("lm_head.decoder.bias", "lm_head.bias"),)
    current = knowledge(CURRENT).classes
    declared_in_5 = 0
    for name, pairs in table.unconditional.items():
        assert name in knowledge(LEGACY).classes
        for target, source in pairs:
            assert target.endswith("decoder.bias") and source.endswith(".bias")
            # TC107 speaks only where 5.x declares the tie (so the name is a 5.x parameter): most of them
            declared_in_5 += name in current and (target, source) in {(x.target, x.source) for x in current[name].ties}
    assert declared_in_5 >= 50


BERT = {"model_type": "bert", "architectures": ["BertForMaskedLM"]}


def _bert(gen: ModuleType, *, decoder_bias: bool) -> dict[str, Tensor]:
    tensors = {
        "bert.embeddings.word_embeddings.weight": t(gen, "emb"),
        "cls.predictions.decoder.weight": t(gen, "head"),
        "cls.predictions.bias": t(gen, "bias", (8,)),
    }
    if decoder_bias:
        tensors["cls.predictions.decoder.bias"] = t(gen, "bias", (8,))
    return tensors


def test_tc107_an_untied_masked_lm_without_its_decoder_bias(tmp_path: Path, gen: ModuleType) -> None:
    report = scan(make(tmp_path / "a", _bert(gen, decoder_bias=False), {**BERT, "tie_word_embeddings": False}))
    (found,) = [f for f in report.findings if f.code == "TC107"]
    assert found.severity == Severity.WARNING
    assert found.tensors == ("cls.predictions.decoder.bias", "cls.predictions.bias")
    assert found.message.startswith("Loaders disagree (transformers 5: initialises it at random · transformers 4.57: ")
    assert "Write cls.predictions.bias's bytes under cls.predictions.decoder.bias" in found.message


@pytest.mark.parametrize(
    ("flag", "decoder_bias"),
    [(True, False), (False, True)],
    ids=["tied: 5.x restores it", "both names stored"],
)
def test_tc107_is_silent_when_transformers_5_loads_the_same(
    tmp_path: Path, gen: ModuleType, flag: bool, decoder_bias: bool
) -> None:
    tensors = _bert(gen, decoder_bias=decoder_bias)
    if flag:
        del tensors["cls.predictions.decoder.weight"]
    report = scan(make(tmp_path / "a", tensors, {**BERT, "tie_word_embeddings": flag}))
    assert not [f for f in report.findings if f.code == "TC107"]


IDEFICS2 = {
    "model_type": "idefics2",
    "architectures": ["Idefics2ForConditionalGeneration"],
    # no outer tie_word_embeddings: 4.57 read text_config's true flag, 5.x's outer default is false
    "text_config": {"model_type": "mistral", "tie_word_embeddings": True},
}


def test_tc108_a_head_transformers_4_overwrote(tmp_path: Path, gen: ModuleType) -> None:
    tensors = {"model.text_model.embed_tokens.weight": t(gen, "emb"), "lm_head.weight": t(gen, "head")}
    report = scan(make(tmp_path / "a", tensors, IDEFICS2))
    assert [(f.code, f.severity) for f in report.findings if f.code.startswith("TC1")] == [("TC108", Severity.WARNING)]
    message = report.findings[0].message
    assert message.startswith(
        "Loaders disagree (transformers 5: uses the stored tensor · transformers 4.57: ties (stored copy ignored)"
    )
    assert "overwrites it with model.text_model.embed_tokens.weight" in message


def test_no_flag_in_config_tied_by_4_and_not_by_5_is_reported_with_each_loader(tmp_path: Path, gen: ModuleType) -> None:
    """The issue's second example: the head absent, 4.57 restores it, transformers 5 starts it random."""
    report = scan(make(tmp_path / "a", {"model.text_model.embed_tokens.weight": t(gen, "emb")}, IDEFICS2))
    (found,) = [f for f in report.findings if f.code.startswith("TC1")]
    assert (found.code, found.severity) == ("TC103", Severity.ERROR)
    assert found.message.startswith(
        "Loaders disagree (transformers 5: initialises it at random · transformers 4.57: ties · vLLM: not checked"
    )


def test_identical_copies_do_not_disagree(tmp_path: Path, gen: ModuleType) -> None:
    tensors = {"model.embed_tokens.weight": t(gen, "emb"), "lm_head.weight": t(gen, "emb")}
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "tie_word_embeddings": True}
    (found,) = scan(make(tmp_path / "a", tensors, config)).findings
    assert found.code == "TC101"
    assert found.message.endswith(
        "Loaders: transformers 5: ties · transformers 4.57: ties · vLLM: ties · llama.cpp: uses the stored tensor."
    )


def test_dtype_findings_name_each_loaders_load_dtype(tmp_path: Path, gen: ModuleType) -> None:
    tensors = {"model.embed_tokens.weight": t(gen, "emb"), "lm_head.weight": t(gen, "head")}
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "tie_word_embeddings": False}
    folder = tmp_path / "a"
    make(folder, tensors, {**config, "dtype": "bfloat16"})
    (tc301,) = [f for f in scan(folder).findings if f.code == "TC301"]
    assert tc301.message.startswith("config.json declares bfloat16")  # loaders differ by their defaults: not first
    assert "transformers 4.57: loads float32 unless dtype='auto' · vLLM: loads the declared dtype" in tc301.message
    (folder / "config.json").write_text(json.dumps(config))
    (tc303,) = [f for f in scan(folder).findings if f.code == "TC303"]
    assert "transformers 5: loads the stored dtype" in tc303.message
    assert "llama.cpp: converts to float16 (default --outtype; ignores the config)" in tc303.message


def test_tc108_is_information_when_the_flag_transformers_5_reads_is_explicit(tmp_path: Path, gen: ModuleType) -> None:
    """What transformers 5's own save_pretrained writes for an untied Gemma 3 or Mistral 3: outer false, text true."""
    tensors = {"language_model.model.embed_tokens.weight": t(gen, "emb"), "language_model.lm_head.weight": t(gen, "h")}
    config = {
        "model_type": "mistral3",
        "architectures": ["Mistral3ForConditionalGeneration"],
        "tie_word_embeddings": False,
        "text_config": {"model_type": "mistral", "tie_word_embeddings": True},
    }
    (found,) = [f for f in scan(make(tmp_path / "a", tensors, config)).findings if f.code.startswith("TC1")]
    assert (found.code, found.severity) == ("TC108", Severity.INFO)
    assert found.message.startswith("Loaders disagree (transformers 5: uses the stored tensor")
    assert "Fine for transformers 5; for 4.x users also set" in found.message
