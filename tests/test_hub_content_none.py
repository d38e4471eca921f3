"""``--content none``: no tensor byte is read, and no finding claims what it did not see."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_server import FakeHub, serve
from tiecheck.findings import Severity
from tiecheck.io.hub import HubStore
from tiecheck.scan import scan, scan_store
from tiecheck.testing import config, llama_like, values, write_json, write_sharded

NOT_COMPARED = "bytes not compared (--content none)"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with serve() as state:
        yield state


def _tied_twice(folder: Path, head_changed: bool = False, **config_extra: object) -> Path:
    """A tied gemma2 whose head is stored beside the embedding (copied, or with one byte changed)."""
    tensors = llama_like(dtype="F32")
    embedding = values("embed-big", (512, 64), "F32")
    tensors["model.embed_tokens.weight"] = embedding
    head = bytearray(embedding[2])
    if head_changed:
        head[100] ^= 0xFF
    write_sharded(folder, [tensors, {"lm_head.weight": ("F32", embedding[1], bytes(head))}])
    sizes: dict[str, object] = {"vocab_size": 512, "hidden_size": 64}  # the big embedding's shape (TC014/TC015)
    write_json(
        folder / "config.json", config("gemma2", "Gemma2ForCausalLM", dtype="float32", **{**sizes, **config_extra})
    )
    return folder


@pytest.mark.parametrize("head_changed", [False, True])
def test_a_tied_pair_stored_twice_is_reported_as_not_compared(tmp_path: Path, head_changed: bool) -> None:
    folder = _tied_twice(tmp_path, head_changed)
    exact = {f.code for f in scan(folder).findings}
    assert exact == ({"TC102"} if head_changed else {"TC101"})  # what the bytes say
    report = scan(folder, content="none")
    (found,) = report.findings
    # The same finding whether the copy is exact or not: it never claims either.
    assert found.code == "TC101" and found.severity is Severity.WARNING and not found.fixable
    assert NOT_COMPARED in found.message and "byte-identical" not in found.message and "differs" not in found.message
    assert found.tensors == ("lm_head.weight", "model.embed_tokens.weight")
    assert report.bytes_read == 0
    assert report.summary.redundant_bytes == 0 and report.summary.unique_parameters == report.summary.parameters


def test_metadata_differences_are_still_seen(tmp_path: Path) -> None:
    tensors = llama_like(dtype="F32")
    tensors["model.embed_tokens.weight"] = values("embed", (256, 64), "F32")
    write_sharded(tmp_path, [tensors, {"lm_head.weight": values("head", (512, 64), "F32")}])  # another shape
    write_json(tmp_path / "config.json", config("gemma2", "Gemma2ForCausalLM", dtype="float32"))
    report = scan(tmp_path, content="none")
    assert "TC102" in {f.code for f in report.findings}  # shapes differ: seen in the headers
    assert report.bytes_read == 0


def test_questions_that_need_bytes_find_nothing(tmp_path: Path) -> None:
    # untied and identical (TC104), a duplicated layer (TC202), a constant tensor (TC203): all need bytes.
    tensors = llama_like(dtype="F32")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    tensors["model.layers.1.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"]
    dtype, shape, data = tensors["model.norm.weight"]
    tensors["model.norm.weight"] = (dtype, shape, bytes(len(data)))
    write_sharded(tmp_path, [tensors])
    write_json(tmp_path / "config.json", config("llama", "LlamaForCausalLM", dtype="float32"))
    assert {"TC104", "TC202", "TC203"} <= {f.code for f in scan(tmp_path).findings}
    report = scan(tmp_path, content="none")
    assert not {"TC104", "TC202", "TC203"} & {f.code for f in report.findings}
    assert report.bytes_read == 0


def test_a_remote_scan_reads_headers_config_and_index_only(hub: FakeHub, tmp_path: Path) -> None:
    _tied_twice(tmp_path)
    hub.add_folder("org/repo", tmp_path)
    store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    report = scan_store(store, content="none")
    assert [f.code for f in report.findings] == ["TC101"] and NOT_COMPARED in report.findings[0].message
    headers = sum(8 + int.from_bytes(p.read_bytes()[:8], "little") for p in tmp_path.glob("*.safetensors"))
    companions = sum(p.stat().st_size for p in tmp_path.glob("*.json"))
    file_bytes = hub.hub.bytes - hub.hub.api_bytes + hub.cdn.bytes
    assert file_bytes == store.transfer.bytes
    # the header windows (16 KB at most each) and the JSON files: no request starts inside tensor data
    assert store.transfer.bytes <= companions + 2 * (16 << 10) and store.transfer.bytes >= headers + companions


def _cli(hub: FakeHub, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": hub.hub_url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("HF_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "tiecheck", "scan", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_content_none(hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    _tied_twice(tmp_path / "repo")
    hub.add_folder("org/repo", tmp_path / "repo")
    done = _cli(hub, "hf://org/repo", "--content", "none", "-q")
    assert done.returncode == 1, done.stderr
    assert "TC101" in done.stdout and "--content none" in done.stdout
    done = _cli(hub, "hf://org/repo", "--content", "none", "--deep")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tiecheck: error: --deep reads every tensor and --content none reads none: choose one"
    ]
