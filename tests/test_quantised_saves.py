"""Real quantisers' output: bitsandbytes (4-bit NF4/FP4, 8-bit) and compressed-tensors (pack-quantized).

Both run on this CPU-only machine. Their saves must scan with no warning or error (their code books,
stored shapes and zero points repeat across layers by construction, which is no duplicate and no sign
of an untrained model), and the same tensors without their quantization_config are TC304.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

from tiecheck import Finding, Severity, scan


def _trained_llama(folder: Path, tied: bool) -> Path:
    """A tiny Llama whose every parameter is random, as a trained model's are (no all-ones norms)."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tied,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    model.save_pretrained(folder)
    return folder


def _bitsandbytes(config: BitsAndBytesConfig) -> Callable[[Path, Path], None]:
    def quantise(plain: Path, out: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(plain, quantization_config=config, device_map="cpu")
        model.save_pretrained(out)

    return quantise


def _compressed_tensors(**weights: object) -> Callable[[Path, Path], None]:
    def quantise(plain: Path, out: Path) -> None:
        from compressed_tensors.compressors import ModelCompressor
        from compressed_tensors.quantization import (
            QuantizationArgs,
            QuantizationConfig,
            QuantizationScheme,
            QuantizationStatus,
            apply_quantization_config,
        )

        model = AutoModelForCausalLM.from_pretrained(plain)
        scheme = QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**weights))
        config = QuantizationConfig(
            config_groups={"group_0": scheme}, ignore=["lm_head"], quantization_status=QuantizationStatus.CALIBRATION
        )
        apply_quantization_config(model, config)
        with torch.no_grad():  # a crude calibration: scales from each weight's range, per output row
            for module in model.modules():
                scale = getattr(module, "weight_scale", None)
                if scale is not None:
                    rows = module.weight.abs().amax(dim=1, keepdim=True) / 7
                    scale.copy_(rows.expand_as(scale).to(scale.dtype))
        compressor = ModelCompressor.from_pretrained_model(model, quantization_format="pack-quantized")
        compressor.compress_model(model)
        model.save_pretrained(out)
        compressor.update_config(str(out))

    return quantise


QUANTISERS = {
    "bnb-nf4-double": _bitsandbytes(
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
    ),
    "bnb-fp4": _bitsandbytes(BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4")),
    "bnb-int8": _bitsandbytes(BitsAndBytesConfig(load_in_8bit=True)),
    "ct-w4-group": _compressed_tensors(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32),
    "ct-w8-asym": _compressed_tensors(num_bits=8, type="int", symmetric=False, strategy="channel"),
}


@pytest.fixture(scope="module", params=[(q, tied) for q in QUANTISERS for tied in (True, False)], ids=str)
def quantised(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    name, tied = request.param
    root = tmp_path_factory.mktemp(f"{name}-{'tied' if tied else 'untied'}")
    plain = _trained_llama(root / "plain", tied)
    QUANTISERS[name](plain, root / "quantised")
    return root / "quantised"


def _loud(findings: tuple[Finding, ...]) -> list[str]:
    return [f"{f.code}: {f.message[:200]}" for f in findings if f.severity >= Severity.WARNING]


def test_a_real_quantised_save_scans_clean(quantised: Path) -> None:
    config = json.loads((quantised / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] in ("bitsandbytes", "compressed-tensors")
    report = scan(quantised)
    assert _loud(report.findings) == []
    # Code books, shapes and zero points are not reported as repeats or constants, nor as untrained.
    named = {n for f in report.findings if f.code in ("TC202", "TC203") for n in f.tensors}
    assert not [n for n in named if n.endswith(BOOKKEEPING_ENDS) or ".quant_state." in n]


BOOKKEEPING_ENDS = ("quant_map", "weight_shape", "weight_zero_point", "g_idx", "qzeros")


def test_the_same_tensors_without_their_quantization_config_are_tc304(quantised: Path, tmp_path: Path) -> None:
    folder = tmp_path / "stripped"
    shutil.copytree(quantised, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["quantization_config"]
    (folder / "config.json").write_text(json.dumps(config))
    (found,) = [f for f in scan(folder).findings if f.code == "TC304"]
    assert found.severity is Severity.ERROR and found.tensors
    assert "no quantization_config" in found.message
