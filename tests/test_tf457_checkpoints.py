"""Checkpoints written by transformers 4.57 (shipped, so no transformers needed here) scan clean.

tests/data/tf457/ holds tiny ``save_pretrained`` output of common architectures, tied and untied, with
safetensors and as pytorch_model.bin (``safe_serialization=False``), written by tests/data/tf457/make_tf457.py
under transformers 4.57. The people who upload checkpoints today mostly ran transformers 4: a warning on what
their saver wrote is a false alarm.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tiecheck import Severity, scan

DATA = Path(__file__).resolve().parent / "data" / "tf457"
CHECKPOINTS = sorted(p.name for p in DATA.iterdir() if p.is_dir())


def test_the_shipped_set_is_complete() -> None:
    assert (DATA / "VERSION").read_text().startswith("transformers 4.57.")
    assert len(CHECKPOINTS) >= 60  # ~15 architectures x tied/untied x safetensors/bin
    assert {p.split("-")[-1] for p in CHECKPOINTS} == {"safetensors", "bin"}


#: Not false alarms: checkpoints transformers 5 loads otherwise than the 4.57 that saved them (each loaded below).
#: - An untied masked-LM head (BERT, RoBERTa, ALBERT): 4.x shared the decoder bias with the head's bias whatever
#:   the tie flag and stored it under one name; 5 initialises the other (TC107). Safetensors only: a pickle
#:   stores both names.
#: - FSMT untied: 4.x always shared the decoder's embedding with its output projection and stored one of them;
#:   5 ties them only under the flag and initialises the embedding (TC103). Safetensors only, as above.
#: - Moshi tied: 4.x tied the head to the embedding (vocab_size + 1 rows); 5's MoshiForCausalLM declares no tie,
#:   so the dropped head starts random (TC103), and a pickle's head, with the embedding's extra row, no longer
#:   fits it (TC014: from_pretrained refuses it).
#: - LUKE and BigBird-Pegasus (causal LM) tied: 5's class declares no head tie, so the dropped head starts random
#:   (TC103). LUKE's head bias, which 4.x shared the other way round whatever the flags, both restore: no TC106.
LOADS_DIFFERENTLY_UNDER_5 = {
    "bert-untied-safetensors": {"TC107"},
    "roberta-untied-safetensors": {"TC107"},
    "albert-untied-safetensors": {"TC107"},
    "fsmt-untied-safetensors": {"TC103"},
    "moshi-tied-safetensors": {"TC103"},
    "moshi-tied-bin": {"TC014"},
    "luke-tied-safetensors": {"TC103"},
    "bigbird_pegasus-tied-safetensors": {"TC103"},
}


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_transformers_457_save_scans_clean(name: str) -> None:
    report = scan(DATA / name)
    expected = LOADS_DIFFERENTLY_UNDER_5.get(name, set())
    bad = [(f.code, f.tensors, f.message) for f in report.findings if f.severity >= Severity.WARNING]
    assert {code for code, _, _ in bad} == expected, bad
    # Known from generated data, not name patterns (5.x's Moshi and BigBird-Pegasus causal LM declare no tie: their
    # 4.x tie is what is known; OpenLlama, which 5 removed, has no head: 4.x computes its logits from the input
    # embedding; a CLIP vision tower has no embedding to tie).
    untied_in_5 = ("moshi-", "open-llama-", "bigbird_pegasus-", "clip_vision_model-")
    assert report.ties or name.startswith(untied_in_5), "the architecture's ties are known"
    assert all("name pattern" not in t.basis for t in report.ties), report.ties
    assert report.checkpoint.config is not None


@pytest.mark.transformers
@pytest.mark.parametrize("name", sorted(LOADS_DIFFERENTLY_UNDER_5))
def test_what_the_findings_say_transformers_5_does(name: str) -> None:
    """The loader does what the message says: initialises the named tensor, or refuses a size mismatch."""
    import json

    import transformers

    (found,) = [f for f in scan(DATA / name).findings if f.severity >= Severity.WARNING]
    architecture = json.loads((DATA / name / "config.json").read_text())["architectures"][0]
    cls = getattr(transformers, architecture)
    if found.code == "TC014":
        with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
            cls.from_pretrained(DATA / name)
        return
    _, info = cls.from_pretrained(DATA / name, output_loading_info=True)
    assert found.tensors[0] in info["missing_keys"], (found.message, info)
    # 4.57 wrote it and read it back whole: the message says the loaders disagree, not that both fail.
    assert found.message.startswith("Loaders disagree (transformers 5: initialises it at random"), found.message


@pytest.mark.parametrize(
    "name", ["qwen2_vl-untied-safetensors", "qwen2_5_vl-untied-safetensors", "llama-untied-safetensors"]
)
def test_a_head_lost_from_an_untied_457_save_is_an_error(name: str, tmp_path: Path) -> None:
    """4.57 writes Qwen2-VL's ``architectures`` into text_config only: the class must still be known from it."""
    import shutil

    from safetensors.numpy import load_file, save_file

    folder = tmp_path / name
    shutil.copytree(DATA / name, folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors["lm_head.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    errors = [f for f in scan(folder).findings if f.severity is Severity.ERROR]
    assert [(f.code, f.tensors) for f in errors] == [("TC103", ("lm_head.weight",))]
