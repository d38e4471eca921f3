"""TC304: quantization_config against the tensors stored, one case per layout the rule knows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiecheck import Severity, scan
from tiecheck.formats.safetensors import write_file
from tiecheck.testing import config, llama_like, values, write_json

GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128}


def _quantised_layer(prefix: str) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """One linear layer as GPTQ/AWQ store it (int32-packed weights, zeros, fp16 scales)."""
    return {
        f"{prefix}.qweight": ("I32", (1, 8), bytes(32)),
        f"{prefix}.qzeros": ("I32", (1, 1), bytes(4)),
        f"{prefix}.scales": values(prefix, (1, 8), "BF16"),
    }


def _save(folder: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]], **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False, **extra))
    return folder


def _tc304(folder: Path) -> list[str]:
    return [f.message for f in scan(folder).findings if f.code == "TC304"]


def test_a_gptq_config_over_plain_weights_is_an_error(tmp_path: Path) -> None:
    folder = _save(tmp_path, llama_like(head=True), quantization_config=GPTQ)
    (finding,) = [f for f in scan(folder).findings if f.code == "TC304"]
    assert finding.severity is Severity.ERROR and "names gptq" in finding.message


@pytest.mark.parametrize(
    ("tensors", "quantization"),
    [
        ("gptq", GPTQ),
        ("gptq", {"quant_method": "awq", "bits": 4, "version": "gemm"}),
        ("plain", {"quant_method": "gptq", "checkpoint_format": "marlin"}),  # Marlin layout: other names
        ("plain", {"quant_method": "bitsandbytes", "load_in_4bit": True}),  # quantised at load time
        ("plain", {"quant_method": "fp8", "weight_block_size": [128, 128]}),  # likewise
        ("plain", {"quant_method": "hqq"}),  # a layout the rule does not know: never a guess
    ],
)
def test_consistent_or_unknown_layouts_are_quiet(tmp_path: Path, tensors: str, quantization: dict[str, object]) -> None:
    stored = llama_like(head=True)
    if tensors == "gptq":
        del stored["model.layers.0.mlp.up_proj.weight"]
        stored |= _quantised_layer("model.layers.0.mlp.up_proj")
    assert _tc304(_save(tmp_path, stored, quantization_config=quantization)) == []


def test_quantised_tensors_without_a_config(tmp_path: Path) -> None:
    stored = llama_like(head=True) | _quantised_layer("model.layers.0.mlp.up_proj")
    (message,) = _tc304(_save(tmp_path / "a", stored))
    assert "no quantization_config" in message and "model.layers.0.mlp.up_proj.qweight" in message
    # compressed-tensors before 0.8 wrote compression_config: that is a config.
    packed = llama_like(head=True) | {"model.layers.0.mlp.up_proj.weight_packed": ("I32", (8, 1), bytes(32))}
    assert _tc304(_save(tmp_path / "b", packed, compression_config={"format": "pack-quantized"})) == []


def test_a_tied_head_stored_quantised(tmp_path: Path) -> None:
    stored = llama_like() | _quantised_layer("lm_head")
    tmp_path.mkdir(exist_ok=True)
    write_file(tmp_path / "model.safetensors", stored, {"format": "pt"})
    write_json(
        tmp_path / "config.json",
        config("gemma2", "Gemma2ForCausalLM", tie_word_embeddings=True, quantization_config=GPTQ),
    )
    messages = _tc304(tmp_path)
    assert any("head is stored quantised (lm_head.qweight)" in m for m in messages)
