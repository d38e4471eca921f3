"""TC011-TC013 and TC303: weights that never arrived, and a config that leaves the dtype to a guess."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiecheck import Severity, scan
from tiecheck.formats.lfs import parse_lfs_pointer
from tiecheck.formats.safetensors import write_file
from tiecheck.testing import config, llama_like, make_checkpoint, write_json


def _pointer(data: bytes) -> bytes:
    """A pointer as `git lfs` writes it (spec v1: version, oid, size, each on its own line, sorted)."""
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


def test_git_lfs_writes_the_pointer_we_parse(tmp_path: Path) -> None:
    if shutil.which("git-lfs") is None:
        pytest.skip("git-lfs is not installed here; the pointer format is the spec's")
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 1000)
    written = subprocess.run(["git", "lfs", "pointer", f"--file={blob}"], capture_output=True, check=True).stdout
    assert written == _pointer(b"x" * 1000)


def _codes(folder: Path) -> dict[str, Severity]:
    return {f.code: f.severity for f in scan(folder).findings}


def test_lfs_pointers_in_place_of_shards_and_pickles(tmp_path: Path) -> None:
    folder = make_checkpoint("clean-llama-sharded", tmp_path / "clone")
    sizes = []
    for shard in folder.glob("*.safetensors"):
        sizes.append(shard.stat().st_size)
        shard.write_bytes(_pointer(shard.read_bytes()))
    report = scan(folder)
    assert [f.code for f in report.findings] == ["TC011"]  # not TC001 "header too large", not a missing head
    (finding,) = report.findings
    assert "git lfs pull" in finding.message and len(finding.files) == 3
    assert all(f"pointer to a {size:,}-byte file" in finding.message for size in sizes)

    pickle = tmp_path / "pickle"
    pickle.mkdir()
    (pickle / "pytorch_model.bin").write_bytes(_pointer(b"\x80\x02" * 5000))
    write_json(pickle / "config.json", config("llama", "LlamaForCausalLM"))
    assert "TC011" in _codes(pickle) and "TC403" not in _codes(pickle)


def test_a_truncated_shard_says_how_much_is_missing(tmp_path: Path) -> None:
    folder = make_checkpoint("clean-llama-sharded", tmp_path / "ckpt")
    shard = folder / "model-00002-of-00003.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    findings = scan(folder).findings
    tc012 = [f for f in findings if f.code == "TC012"]
    assert len(tc012) == 1 and "TC001" not in {f.code for f in findings}
    assert ": 100 bytes are missing" in tc012[0].message and tc012[0].files == (shard.name,)
    # Cut inside the header: still a cut-off transfer, and still not a format error.
    shard.write_bytes(data[:100])
    (tc012,) = [f for f in scan(folder).findings if f.code == "TC012"]
    assert f"at least {int.from_bytes(data[:8], 'little') + 8 - 100:,} bytes are missing" in tc012.message
    # Bytes past the declared end are not a truncation: still a format error.
    shard.write_bytes(data + b"junk")
    assert "TC012" not in _codes(folder) and "TC001" in _codes(folder)


def test_zero3_placeholders_are_an_error_and_a_lone_empty_tensor_information(tmp_path: Path) -> None:
    tensors = llama_like(head=True)
    zero3 = {name: (dtype, (0,), b"") for name, (dtype, _shape, _data) in tensors.items()}
    write_file(tmp_path / "model.safetensors", zero3, {"format": "pt"})
    write_json(tmp_path / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False))
    report = scan(tmp_path)
    (empty,) = [f for f in report.findings if f.code == "TC013"]
    assert empty.severity is Severity.ERROR and "ZeRO-3" in empty.message and len(empty.tensors) == len(tensors)

    one = dict(tensors)
    one["model.layers.0.mlp.up_proj.weight"] = ("BF16", (0, 8), b"")
    write_file(tmp_path / "model.safetensors", one, {"format": "pt"})
    (empty,) = [f for f in scan(tmp_path).findings if f.code == "TC013"]
    # Configs ask for zero sizes (DINOv3 with no register tokens; tiny test models): never more than info.
    assert empty.severity is Severity.INFO and empty.tensors == ("model.layers.0.mlp.up_proj.weight",)


@pytest.mark.transformers
def test_missing_dtype_claim_matches_transformers(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import transformers as tf

    cfg = tf.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    tf.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(tmp_path)
    assert "TC303" not in _codes(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    document.pop("dtype", None)
    document.pop("torch_dtype", None)
    (tmp_path / "config.json").write_text(json.dumps(document))
    (finding,) = [f for f in scan(tmp_path).findings if f.code == "TC303"]
    assert "transformers 5 loads the weights as stored (BF16" in finding.message
    assert tf.AutoModelForCausalLM.from_pretrained(tmp_path).dtype == torch.bfloat16  # what the message claims


@given(st.binary(max_size=300))
def test_lfs_parser_never_raises(data: bytes) -> None:
    parse_lfs_pointer(data)


@given(st.binary(min_size=0, max_size=2000))
def test_lfs_parser_reads_every_pointer_back(data: bytes) -> None:
    pointer = parse_lfs_pointer(_pointer(data))
    assert pointer is not None and pointer.size == len(data) and pointer.oid == hashlib.sha256(data).hexdigest()
