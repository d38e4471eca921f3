"""TC019: a model pruned with torch.nn.utils.prune and saved before prune.remove stores <name>_orig and
<name>_mask; transformers finds no <name> and initialises it at random."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from torch.nn.utils import prune

from live_models import build, scan_findings

transformers = pytest.importorskip("transformers")


def _pruned_save(folder: Path, remove: bool = False) -> list[str]:
    model = build("llama-tied")
    modules = [layer.mlp.down_proj for layer in model.model.layers]
    for module in modules:
        prune.l1_unstructured(module, "weight", amount=0.5)
        if remove:
            prune.remove(module, "weight")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    return [f"model.layers.{i}.mlp.down_proj.weight" for i in range(len(modules))]


def test_a_pruned_model_saved_before_prune_remove_is_an_error(tmp_path: Path) -> None:
    pruned = _pruned_save(tmp_path)
    exit_code, found = scan_findings(tmp_path)
    severity, message = found["TC019"]
    assert exit_code == 1 and severity == "error"
    assert pruned[0] in message and "prune.remove" in message
    with warnings.catch_warnings():  # what the message says transformers does
        warnings.simplefilter("ignore")
        _, info = transformers.LlamaForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert set(pruned) <= set(info["missing_keys"])
    assert {p + suffix for p in pruned for suffix in ("_orig", "_mask")} <= set(info["unexpected_keys"])


def test_pruning_made_permanent_is_clean(tmp_path: Path) -> None:
    _pruned_save(tmp_path, remove=True)
    assert "TC019" not in scan_findings(tmp_path)[1]


def test_an_architecture_tiecheck_does_not_know_is_not_judged(tmp_path: Path) -> None:
    _pruned_save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["Unknown"], "model_type": "x"}))
    assert "TC019" not in scan_findings(tmp_path)[1]


def test_custom_code_is_a_guess_and_a_warning(tmp_path: Path) -> None:
    _pruned_save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    severity, message = scan_findings(tmp_path)[1]["TC019"]
    assert severity == "warning" and "A guess" in message


def test_inspect_model_says_what_saving_a_pruned_model_writes() -> None:
    from tiecheck import inspect_model

    model = build("llama-tied")
    prune.l1_unstructured(model.model.layers[0].mlp.down_proj, "weight", amount=0.5)
    assert "TC019" in {f.code for f in inspect_model(model).findings}
    prune.remove(model.model.layers[0].mlp.down_proj, "weight")
    assert "TC019" not in {f.code for f in inspect_model(model).findings}
