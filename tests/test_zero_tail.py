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


@pytest.mark.parametrize("sparse", [False, True], ids=["written-zeros", "sparse-hole"])
def test_second_half_zero_is_named(saved: Path, tmp_path: Path, sparse: bool) -> None:
    folder = _copy(saved, tmp_path / "m")
    weights = folder / "model.safetensors"
    cut = weights.stat().st_size // 2
    _zero_from(weights, cut, sparse)
    (found,) = _tc205(folder)
    # The message names the byte where the data stops (random float bytes may end in a zero or two).
    match = re.search(r"every byte from offset (\d+) \(inside ", found.message)
    assert match and 0 <= cut - int(match[1]) < 8
    with safe_open(str(weights), "np") as f:
        stored = set(f.keys())
    assert found.severity.name == "ERROR" and found.files == ("model.safetensors",)
    # The first named tensor is the one the cut falls in, then every tensor after it.
    assert found.tensors[0] in found.message and "model.safetensors" in found.message
    assert set(found.tensors) <= stored
    # TC203 does not list the same tensors a second time.
    constants = [f for f in scan(folder).findings if f.code == "TC203"]
    assert not set(found.tensors) & {n for f in constants for n in f.tensors}
    result = CliRunner().invoke(app, ["scan", str(folder)])
    assert result.exit_code == 1 and "TC205" in result.output


def test_clean_save_and_small_zero_tails_are_quiet(saved: Path, tmp_path: Path) -> None:
    assert _tc205(saved) == []
    # A quarter of the file zeroed: all-zero matrices (TC203), not the signature of a cut transfer.
    folder = _copy(saved, tmp_path / "m")
    weights = folder / "model.safetensors"
    _zero_from(weights, weights.stat().st_size * 3 // 4, sparse=False)
    assert _tc205(folder) == []


def _write(folder: Path, tensors: dict[str, np.ndarray]) -> None:
    folder.mkdir()
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "float32"}))


def test_zero_vectors_or_a_small_file_are_not_a_cut_transfer(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # safetensors orders data by dtype/name: the zero-initialised biases end the file, 2 MiB of them.
    _write(
        tmp_path / "biases",
        {"a.weight": rng.standard_normal((512, 512)).astype(np.float32), "z.bias": np.zeros(1 << 19, np.float32)},
    )
    assert _tc205(tmp_path / "biases") == []
    # A tiny model ending in a zero matrix: below the size at which zeros say "transfer".
    _write(
        tmp_path / "tiny",
        {"a.weight": rng.standard_normal((16, 16)).astype(np.float32), "z.weight": np.zeros((64, 64), np.float32)},
    )
    assert _tc205(tmp_path / "tiny") == []
    _write(
        tmp_path / "big",
        {"a.weight": rng.standard_normal((256, 256)).astype(np.float32), "z.weight": np.zeros((512, 1024), np.float32)},
    )
    (found,) = _tc205(tmp_path / "big")
    assert found.tensors == ("z.weight",)


def test_ignoring_the_rule_reads_no_tensor(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path / "m")
    weights = folder / "model.safetensors"
    _zero_from(weights, weights.stat().st_size // 2, sparse=False)
    report = scan(folder, rules=frozenset(RULES) - {"TC202", "TC203", "TC205"})
    assert "TC205" not in {f.code for f in report.findings}
