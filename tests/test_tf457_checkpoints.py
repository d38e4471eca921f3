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


#: Not false alarms: an untied BERT/RoBERTa masked-LM head saved by 4.x stores its decoder bias under one name
#: (4.x shared the two whatever the tie flag); transformers 5 initialises the other (TC107, tests/test_loaders.py
#: loads it and shows the logits change). Safetensors only: a pickle stores both names.
LOADS_DIFFERENTLY_UNDER_5 = {"bert-untied-safetensors": {"TC107"}, "roberta-untied-safetensors": {"TC107"}}


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_transformers_457_save_scans_clean(name: str) -> None:
    report = scan(DATA / name)
    expected = LOADS_DIFFERENTLY_UNDER_5.get(name, set())
    bad = [(f.code, f.tensors, f.message) for f in report.findings if f.severity >= Severity.WARNING]
    assert {code for code, _, _ in bad} == expected, bad
    assert report.ties, "the architecture's ties are known (generated data, not name patterns)"
    assert report.checkpoint.config is not None
