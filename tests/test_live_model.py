"""inspect_model on real transformers models and an OLMo-style model, beside accelerate's find_tied_parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from accelerate.utils import find_tied_parameters
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from live_models import build
from tiecheck import inspect_model

pytestmark = pytest.mark.transformers


def _accelerate_groups(model: nn.Module) -> set[frozenset[str]]:
    return {frozenset(group) for group in find_tied_parameters(model)}


def _groups(model: nn.Module) -> set[frozenset[str]]:
    return {frozenset(s.names) for s in inspect_model(model).shared}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llama-tied", [{"lm_head.weight", "model.embed_tokens.weight"}]),
        ("llama-untied", []),
        ("gpt2", [{"lm_head.weight", "transformer.wte.weight"}]),
        (
            "t5",
            [{"shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"}],
        ),
        (
            "bert",
            [
                {"bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"},
                {"cls.predictions.bias", "cls.predictions.decoder.bias"},
            ],
        ),
        ("gemma2", [{"lm_head.weight", "model.embed_tokens.weight"}]),
    ],
)
def test_declared_ties_are_found_and_match_accelerate(name: str, expected: list[set[str]]) -> None:
    model = build(name)
    inspection = inspect_model(model)
    assert _groups(model) == {frozenset(g) for g in expected} == _accelerate_groups(model)
    assert all(s.declared and not s.modules for s in inspection.shared)
    assert inspection.findings == ()
    assert inspection.tie_word_embeddings is bool(expected)


class OlmoStyleConfig(PretrainedConfig):
    model_type = "olmo-style-test"

    def __init__(self, vocab_size: int = 32, d_model: int = 8, weight_tying: bool = True, **kwargs: object) -> None:
        self.vocab_size, self.d_model, self.weight_tying = vocab_size, d_model, weight_tying
        super().__init__(**kwargs)


class OlmoStyleModel(PreTrainedModel):
    """Ties its output layer as OLMo's first release did: the embedding module registered a second time."""

    config_class = OlmoStyleConfig

    def __init__(self, config: OlmoStyleConfig) -> None:
        super().__init__(config)
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(config.vocab_size, config.d_model)})
        self.transformer["ln_f"] = nn.LayerNorm(config.d_model)
        if config.weight_tying:
            self.transformer["ff_out"] = self.transformer["wte"]
        else:
            self.transformer["ff_out"] = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer["ln_f"](self.transformer["wte"](input_ids))
        return nn.functional.linear(hidden, self.transformer["ff_out"].weight)


def test_a_module_registered_twice_is_a_tie_through_the_module(tmp_path: Path) -> None:
    model = OlmoStyleModel(OlmoStyleConfig())
    inspection = inspect_model(model)
    (shared,) = inspection.shared
    assert set(shared.names) == {"transformer.wte.weight", "transformer.ff_out.weight"}
    assert set(shared.modules) == {"transformer.wte", "transformer.ff_out"}
    assert inspection.shared_modules == (("transformer.ff_out", "transformer.wte"),)
    codes = {f.code for f in inspection.findings}
    # Seen through the module and undeclared (no _tied_weights_keys, no tie_word_embeddings in this config).
    assert {"TC505", "TC506"} <= codes
    # accelerate pairs the parameters too, but knows neither the module nor that nothing declares the tie.
    assert _accelerate_groups(model) == {frozenset(shared.names)}
    # What saving does with it: save_pretrained cannot tell which name to keep and refuses.
    assert inspection.saved.save_pretrained is not None and inspection.saved.save_pretrained.raises
    with pytest.raises(RuntimeError, match="shared tensors"):
        model.save_pretrained(tmp_path)


def test_untied_olmo_style_model_has_no_groups() -> None:
    inspection = inspect_model(OlmoStyleModel(OlmoStyleConfig(weight_tying=False)))
    assert inspection.shared == () and inspection.shared_modules == () and inspection.findings == ()


def test_a_declared_tie_broken_by_a_new_parameter() -> None:
    model = build("llama-tied")
    model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())
    inspection = inspect_model(model)
    assert [f.code for f in inspection.findings] == ["TC504"]
    assert _accelerate_groups(model) == set()  # nothing is tied, so accelerate has nothing to say


def test_a_tie_made_by_hand_under_an_untied_config() -> None:
    model = build("llama-untied")
    model.lm_head.weight = model.model.embed_tokens.weight
    inspection = inspect_model(model)
    assert {f.code for f in inspection.findings} == {"TC503", "TC505"}
    (shared,) = inspection.shared
    assert not shared.declared


# --- wrappers that training code puts around a model ------------------------------------------------------


def _wrapped(kind: str, model: nn.Module) -> nn.Module:
    if kind == "torch.compile":
        return torch.compile(model)  # type: ignore[return-value]  # not run: the wrapper only
    if kind == "DataParallel":
        return nn.DataParallel(model)
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "v_proj"] if hasattr(model, "model") else ["c_attn"]
    saved_too = ["lm_head"] if kind == "PEFT with the head trained" else None
    return get_peft_model(model, LoraConfig(r=2, target_modules=targets, modules_to_save=saved_too))  # type: ignore[return-value]


def _summary(model: nn.Module) -> tuple[object, ...]:
    inspection = inspect_model(model)
    return (
        {(s.names, s.declared) for s in inspection.shared},
        [(f.code, f.tensors) for f in inspection.findings],
        sorted((f.code, f.severity) for f in inspection.saved.findings),
    )


@pytest.mark.parametrize("kind", ["torch.compile", "DataParallel", "PEFT", "PEFT with the head trained"])
@pytest.mark.parametrize("name", ["llama-tied", "llama-untied"])
def test_a_wrapped_model_is_inspected_as_the_model_inside(kind: str, name: str) -> None:
    """The wrapper adds a prefix (or PEFT its layers) to every name: inspected as is, a declared tie looked
    undeclared (TC505) and save_pretrained seemed to lose the head (TC503), false alarms on a sound model."""
    bare = _summary(build(name))
    wrapped = _wrapped(kind, build(name))
    assert _summary(wrapped) == bare
    assert inspect_model(wrapped).unwrapped == (kind.split(" ")[0],)


def test_a_real_problem_inside_a_wrapper_is_still_found() -> None:
    model = nn.DataParallel(OlmoStyleModel(OlmoStyleConfig(weight_tying=False)))
    model.module.transformer["ff_out"] = model.module.transformer["wte"]
    assert inspect_model(model).unwrapped == ("DataParallel",)
    assert (
        {f.code for f in inspect_model(model).findings}
        == {f.code for f in inspect_model(model.module).findings}
        >= {"TC506"}
    )
