"""PEFT's savers: an adapter folder (adapter_config.json + adapter_model.safetensors) is recognised as one, and
neither an adapter nor a merged model made with merge_and_unload raises a warning or an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from live_models import build, scan_findings

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")


def tiny_llama(tied: bool = False) -> Any:
    return build("llama-tied" if tied else "llama-untied")


def adapter(tied: bool, modules_to_save: list[str] | None, trained: bool) -> Any:
    config = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], modules_to_save=modules_to_save)
    model = peft.get_peft_model(tiny_llama(tied), config)
    if trained:  # what training does to LoRA: B leaves its zero start
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter)
    return model


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("modules_to_save", [None, ["lm_head"], ["embed_tokens", "lm_head"]], ids=str)
def test_a_saved_adapter_is_an_adapter_and_raises_nothing(
    tmp_path: Path, tied: bool, modules_to_save: list[str] | None
) -> None:
    adapter(tied, modules_to_save, trained=True).save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").exists() and not (tmp_path / "config.json").exists()
    exit_code, found = scan_findings(tmp_path)
    assert exit_code == 0
    assert not [code for code, (severity, _) in found.items() if severity in ("error", "warning")], found
    assert "PEFT adapter (adapter_config.json)" in found["TC010"][1]
    assert "TC203" not in found
    if tied and modules_to_save == ["embed_tokens", "lm_head"]:
        # PEFT writes both modules of a tied pair (with ensure_weight_tying too): no tie is declared here to
        # say so, and nothing in the adapter can be fixed. Said, not warned about.
        severity, message = found["TC202"]
        assert severity == "info" and "modules_to_save" in message


def test_an_untrained_adapter_is_said_to_change_nothing(tmp_path: Path) -> None:
    adapter(True, None, trained=False).save_pretrained(tmp_path)
    exit_code, found = scan_findings(tmp_path)
    severity, message = found["TC203"]
    assert exit_code == 0 and severity == "info"
    assert "lora_B" in message and "the adapter changes nothing" in message


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_a_merged_adapter_raises_nothing(tmp_path: Path, tied: bool) -> None:
    merged = adapter(tied, ["lm_head"], trained=True).merge_and_unload()
    merged.save_pretrained(tmp_path)
    exit_code, found = scan_findings(tmp_path)
    assert exit_code == 0
    assert not [code for code, (severity, _) in found.items() if severity in ("error", "warning")], found
    assert "TC010" not in found


def test_a_model_folder_that_also_ships_an_adapter_config_is_a_model(tmp_path: Path) -> None:
    """Some repos hold the merged model and the adapter's config: duplicates there are the model's, warned about."""
    model = tiny_llama(False)
    with torch.no_grad():  # trained-looking: norms off their initial ones
        for name, parameter in model.named_parameters():
            if "norm" in name:
                torch.nn.init.normal_(parameter)
    model.save_pretrained(tmp_path)
    state = {**model.state_dict(), "extra.weight": model.state_dict()["lm_head.weight"].clone()}
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    adapter(False, None, trained=True).peft_config["default"].save_pretrained(tmp_path)
    assert (tmp_path / "adapter_config.json").exists()
    _, found = scan_findings(tmp_path)
    severity, message = found["TC202"]
    assert severity == "warning" and "No tie declares them" in message and "TC010" not in found
