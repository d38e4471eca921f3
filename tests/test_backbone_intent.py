"""TC105 with evidence: a backbone saved where a text generator was meant, and what the causal-LM loader does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiecheck import Severity, scan

pytestmark = pytest.mark.transformers


def _backbone(folder: Path, tied: bool) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        tie_word_embeddings=tied,
    )
    tf.LlamaModel(config).save_pretrained(folder)  # what AutoModel.from_pretrained(...).save_pretrained writes
    return folder


def _tc105(folder: Path) -> tuple[Severity, str]:
    (found,) = [f for f in scan(folder).findings if f.code == "TC105"]
    return found.severity, found.message


def test_a_plain_backbone_is_information(tmp_path: Path) -> None:
    severity, message = _tc105(_backbone(tmp_path, tied=False))
    assert severity is Severity.INFO and "feature-extraction" in message


@pytest.mark.parametrize(
    "evidence",
    [
        {"generation_config.json": {"max_new_tokens": 20}},
        {"tokenizer_config.json": {"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}},
        {"README.md": "---\npipeline_tag: text-generation\n---\n# My chat model\n"},
    ],
)
def test_evidence_of_a_generator_makes_it_a_warning_that_says_what_the_loader_does(
    tmp_path: Path, evidence: dict[str, object]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    folder = _backbone(tmp_path / "untied", tied=False)
    for name, content in evidence.items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    severity, message = _tc105(folder)
    assert severity is Severity.WARNING
    assert "the head is initialised at random" in message and name.split(".")[0] in message
    # The claim, checked: the causal-LM loader's head is not the embedding (random), and loading succeeds.
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_a_tied_backbone_with_evidence_is_information_and_loads_tied(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    folder = _backbone(tmp_path, tied=True)
    (folder / "generation_config.json").write_text("{}")
    severity, message = _tc105(folder)
    assert severity is Severity.INFO and "generation works" in message
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
