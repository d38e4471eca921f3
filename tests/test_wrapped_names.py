"""TC018: a state dict taken from a training wrapper (DataParallel/DDP's ``module.``, torch.compile's
``_orig_mod.``) instead of the model names nothing a loader looks for; transformers initialises it all at random."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from live_models import build, scan_findings

transformers = pytest.importorskip("transformers")

WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "data-parallel": torch.nn.DataParallel,
    "compile": torch.compile,  # lazy: nothing is compiled until a forward pass
    "data-parallel-of-compile": lambda m: torch.nn.DataParallel(torch.compile(m)),
}


def tiny_llama(tied: bool = False) -> Any:
    return build("llama-tied" if tied else "llama-untied")


def save(folder: Path, model: Any, state: dict[str, torch.Tensor], pickle: bool) -> Path:
    model.config.save_pretrained(folder)
    if pickle:
        torch.save(state, folder / "pytorch_model.bin")
    else:  # safetensors stores no shared storage: one copy per name
        save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize("pickle", [False, True], ids=["safetensors", "torch.save"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_a_wrapped_state_dict_is_an_error(tmp_path: Path, wrapper: str, tied: bool, pickle: bool) -> None:
    model = tiny_llama(tied)
    state = WRAPPERS[wrapper](model).state_dict()
    save(tmp_path, model, state, pickle)
    exit_code, found = scan_findings(tmp_path)
    severity, message = found["TC018"]
    assert exit_code == 1 and severity == "error"
    prefix = next(iter(state)).split(".")[0] + "."
    assert f"starts with '{prefix}" in message and "LlamaForCausalLM" in message
    if not pickle:  # what the message says transformers does
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
        expected = {n for n, _ in model.named_parameters()}
        assert set(info["missing_keys"]) >= expected and set(info["unexpected_keys"]) == set(state)


@pytest.mark.parametrize("prefix", ["", "model."])
def test_names_a_loader_accepts_are_not_wrapped(tmp_path: Path, prefix: str) -> None:
    """transformers strips the model's own base_model_prefix (``model.``): such a save loads, and is no TC018."""
    model = tiny_llama()
    save(tmp_path, model, {prefix + k: v for k, v in model.state_dict().items()}, pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"]
    assert "TC018" not in scan_findings(tmp_path)[1]


def test_custom_code_is_a_guess_and_a_warning(tmp_path: Path) -> None:
    model = tiny_llama()
    save(tmp_path, model, torch.nn.DataParallel(model).state_dict(), pickle=False)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    severity, message = scan_findings(tmp_path)[1]["TC018"]
    assert severity == "warning" and "A guess" in message


def test_an_architecture_tiecheck_does_not_know_is_not_judged(tmp_path: Path) -> None:
    model = tiny_llama()
    save(tmp_path, model, torch.nn.DataParallel(model).state_dict(), pickle=False)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["Unknown"], "model_type": "x"}))
    assert "TC018" not in scan_findings(tmp_path)[1]


def _wrap_layers(model: Any, wrap: Callable[[Any], Any]) -> Any:
    for i, layer in enumerate(model.model.layers):
        model.model.layers[i] = wrap(layer)
    return model


def test_each_layer_compiled_saves_names_no_loader_reads(tmp_path: Path) -> None:
    """torch.compile of each decoder layer (not of the model): save_pretrained writes ``layers.N._orig_mod.``."""
    model = _wrap_layers(tiny_llama(tied=True), torch.compile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp_path)
        _, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    exit_code, found = scan_findings(tmp_path)
    severity, message = found["TC018"]
    assert exit_code == 1 and severity == "error"
    assert "contain '_orig_mod.'" in message and "LlamaForCausalLM" in message
    wrapped = {k for k in model.state_dict() if "._orig_mod." in k}
    assert wrapped and set(info["unexpected_keys"]) == wrapped  # what the message says transformers does
    assert {k.replace("._orig_mod.", ".") for k in wrapped} <= set(info["missing_keys"])
    assert f"{len(wrapped)} of the" in message


def test_checkpoint_wrapped_parameters_are_named_so(tmp_path: Path) -> None:
    """named_parameters() of layers under checkpoint_wrapper (its state-dict hooks are not on that path)."""
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    model = tiny_llama()
    wrapped = _wrap_layers(tiny_llama(), checkpoint_wrapper)
    state = {name: p.detach() for name, p in wrapped.named_parameters()}
    save(tmp_path, model, state, pickle=False)
    severity, message = scan_findings(tmp_path)[1]["TC018"]
    assert severity == "error" and "'_checkpoint_wrapped_module.'" in message


def test_layers_compiled_in_place_keep_their_names(tmp_path: Path) -> None:
    """``module.compile()`` compiles without a wrapper: the names stay the model's, no TC018."""
    model = tiny_llama(tied=True)
    for layer in model.model.layers:
        layer.compile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(tmp_path)
    assert "TC018" not in scan_findings(tmp_path)[1]


def test_inspect_model_says_what_save_pretrained_of_compiled_layers_writes() -> None:
    from tiecheck import inspect_model

    found = {f.code: f for f in inspect_model(_wrap_layers(tiny_llama(tied=True), torch.compile)).findings}
    assert found["TC018"].severity.name == "ERROR" and "_orig_mod." in found["TC018"].message
    model = tiny_llama(tied=True)
    for layer in model.model.layers:
        layer.compile()
    assert "TC018" not in {f.code for f in inspect_model(model).findings}


def _peft(model: Any) -> Any:
    peft = pytest.importorskip("peft")
    return peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))


def test_a_peft_models_own_state_dict_saved_as_the_model_is_an_error(tmp_path: Path) -> None:
    """torch.save / save_file of PeftModel.state_dict() beside the base config: no loader reads those names."""
    model = tiny_llama()
    state = _peft(model).state_dict()
    save(tmp_path, model, state, pickle=False)
    exit_code, found = scan_findings(tmp_path)
    severity, message = found["TC018"]
    assert exit_code == 1 and severity == "error"
    assert "'base_model.model.'" in message and "merge_and_unload()" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert set(info["missing_keys"]) >= {n for n, _ in tiny_llama().named_parameters()}


def test_a_peft_adapter_beside_the_base_config_is_not_wrapped(tmp_path: Path) -> None:
    """PEFT's save_pretrained writes adapter_model.safetensors with base_model.model. names, which PEFT reads;
    a merged model has the base names. Neither is TC018."""
    model = tiny_llama()
    peft_model = _peft(model)
    peft_model.save_pretrained(tmp_path / "adapter")
    model.config.save_pretrained(tmp_path / "adapter")
    assert "TC018" not in scan_findings(tmp_path / "adapter")[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model.merge_and_unload().save_pretrained(tmp_path / "merged")
    assert "TC018" not in scan_findings(tmp_path / "merged")[1]


def test_the_model_inside_a_peft_model_saved_unmerged_is_an_error(tmp_path: Path) -> None:
    """peft_model.base_model.model.save_pretrained(): the LoRA layers stay injected, q_proj.base_layer.weight."""
    peft_model = _peft(tiny_llama())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model.base_model.model.save_pretrained(tmp_path)
        _, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    severity, message = scan_findings(tmp_path)[1]["TC018"]
    assert severity == "error" and "'base_layer.'" in message and "merge_and_unload()" in message
    assert "model.layers.0.self_attn.q_proj.weight" in info["missing_keys"]
