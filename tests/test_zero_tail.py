"""TC205: a weight file whose second half is zeros, as an interrupted pre-allocating download leaves it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from tiecheck import Finding, scan
from tiecheck.cli import app
from tiecheck.rules import RULES


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real save_pretrained output, about 6 MB, untied so the head sits in the file too."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=2048,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    folder = tmp_path_factory.mktemp("llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _tc205(folder: Path) -> list[Finding]:
    return [f for f in scan(folder).findings if f.code == "TC205"]


def _zero_from(path: Path, offset: int, sparse: bool) -> None:
    size = path.stat().st_size
    if sparse:  # cut and grow back: the tail becomes a hole, as a pre-allocating downloader leaves it
        os.truncate(path, offset)
        os.truncate(path, size)
    else:
        with path.open("r+b") as f:
            f.seek(offset)
            f.write(bytes(size - offset))


@pytest.mark.parametrize("fraction", [0.5, 0.8], ids=["half", "last-fifth"])
@pytest.mark.parametrize("sparse", [False, True], ids=["written-zeros", "sparse-hole"])
def test_data_that_stops_part_way_is_named(saved: Path, tmp_path: Path, sparse: bool, fraction: float) -> None:
    folder = _copy(saved, tmp_path / "m")
    weights = folder / "model.safetensors"
    cut = int(weights.stat().st_size * fraction)
    _zero_from(weights, cut, sparse)
    (found,) = _tc205(folder)
    # The message names the byte where the data stops (random float bytes may end in a zero or two).
    match = re.search(r"every byte from offset (\d+) to the", found.message)
    assert match and 0 <= cut - int(match[1]) < 8
    with safe_open(str(weights), "np") as f:
        stored = set(f.keys())
    assert found.severity.name == "ERROR" and found.files == ("model.safetensors",)
    # The first named tensor is the one the cut falls in, then every tensor after it.
    assert f"stops part-way through {found.tensors[0]}" in found.message
    assert set(found.tensors) <= stored
    # TC203 does not list the same tensors a second time.
    constants = [f for f in scan(folder).findings if f.code == "TC203"]
    assert not set(found.tensors) & {n for f in constants for n in f.tensors}
    result = CliRunner().invoke(app, ["scan", str(folder)])
    assert result.exit_code == 1 and "TC205" in result.output


def _write(folder: Path, tensors: dict[str, np.ndarray]) -> Path:
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "float32"}))
    return folder


def test_zeros_a_model_holds_on_purpose_are_not_a_cut(saved: Path, tmp_path: Path) -> None:
    """The signature is where the zeros start: not at a tensor's first byte, not at a row boundary."""
    assert _tc205(saved) == []
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((512, 256)).astype(np.float32)
    # A zero-initialised parameter ends the file (an untrained model's position embeddings, YOLOS).
    zero_init = {"a.weight": weights, "z.position_embeddings": np.zeros((1024, 512), np.float32)}
    assert _tc205(_write(tmp_path / "zero-init", zero_init)) == []
    # Zeroed padding rows end the embedding, itself the last tensor.
    padded = weights.copy()
    padded[-64:] = 0
    assert _tc205(_write(tmp_path / "padding", {"embed.weight": padded})) == []
    # The tensor before a zero-initialised one ends in a few zero elements by chance.
    chance = weights.copy()
    chance[-1, -3:] = 0
    tail = {"a.weight": chance, "b.bias": np.zeros(1 << 18, np.float32)}
    assert _tc205(_write(tmp_path / "chance", tail)) == []
    # Zero biases end the file: vectors have no rows to be cut inside.
    assert _tc205(_write(tmp_path / "bias", {"a.weight": weights, "a.bias": np.zeros(1 << 19, np.float32)})) == []


def test_a_cut_inside_a_row_is_named_in_hand_written_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((512, 256)).astype(np.float32)
    weights[300, 17:] = 0
    weights[301:] = 0
    folder = _write(tmp_path / "cut", {"a.weight": weights, "b.weight": np.zeros((64, 64), np.float32)})
    (found,) = _tc205(folder)
    assert found.tensors == ("a.weight", "b.weight")


def test_ignoring_the_rule_reads_no_tensor(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path / "m")
    weights = folder / "model.safetensors"
    _zero_from(weights, weights.stat().st_size // 2, sparse=False)
    report = scan(folder, rules=frozenset(RULES) - {"TC202", "TC203", "TC205"})
    assert "TC205" not in {f.code for f in report.findings}
    # Only the head/embedding pair's samples are read (the tie rules' question), not the tail.
    assert report.bytes_read <= 2 * 4 * 4096


def test_content_none_reads_no_byte_and_claims_no_cut(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path / "m")
    weights = folder / "model.safetensors"
    _zero_from(weights, weights.stat().st_size // 2, sparse=False)
    report = scan(folder, content="none")
    assert "TC205" not in {f.code for f in report.findings} and report.bytes_read == 0
