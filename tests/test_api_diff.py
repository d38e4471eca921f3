"""``tiecheck.diff()`` on local folders and Hub repos (a real HTTP Hub on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tiecheck
from hub_server import FakeHub, serve, write_hf_cache
from tiecheck.testing import config, values, write_json, write_sharded


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    with serve() as state:
        monkeypatch.setattr(constants, "ENDPOINT", state.hub_url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield state


@pytest.fixture
def pair(tmp_path: Path, fixtures_dir: Path) -> tuple[Path, Path]:
    """A merge with a duplicated head, and the same checkpoint fixed (the head dropped, restorable)."""
    merged = tmp_path / "merged"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", merged)
    fixed = tmp_path / "fixed"
    tiecheck.fix(merged, drop_duplicates=True, output=fixed)
    return merged, fixed


def _statuses(result: tiecheck.Diff) -> dict[str, tuple[str, str]]:
    return {t.name: (t.status.value, t.detail) for t in result.tensors}


def test_a_local_diff_is_what_the_cli_prints(pair: tuple[Path, Path]) -> None:
    a, b = pair
    result = tiecheck.diff(a, b)
    assert result.lossless and result.content == "full" and result.transferred is None
    assert result.count(tiecheck.DiffStatus.RESTORABLE) == 1
    printed = subprocess.run(
        [sys.executable, "-m", "tiecheck", "diff", str(a), str(b), "-f", "json"], capture_output=True, text=True
    )
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads(result.to_json())


@pytest.mark.parametrize("content", [None, "sample", "full", "header"])
def test_a_remote_diff_equals_the_local_diff_of_the_same_files(
    hub: FakeHub, pair: tuple[Path, Path], content: str | None
) -> None:
    a, b = pair
    hub.add_folder("org/merged", a)
    hub.add_folder("org/fixed", b)
    local = tiecheck.diff(a, b, content=content)  # type: ignore[arg-type]
    remote = tiecheck.diff("hf://org/merged", "hf://org/fixed@main", content=content)  # type: ignore[arg-type]
    mixed = tiecheck.diff(a, "hf://org/fixed", content=content)  # type: ignore[arg-type]
    assert _statuses(remote) == _statuses(local) == _statuses(mixed)
    assert remote.content == mixed.content == (content or "sample")
    assert local.content == (content or "full")
    assert remote.transferred is not None and remote.transferred.requests > 0
    assert remote.bytes_hashed == local.bytes_hashed == mixed.bytes_hashed  # the same bytes, read by ranges
    if remote.content == "header":
        assert remote.bytes_hashed == 0 == local.bytes_hashed


@pytest.fixture
def subtle(tmp_path: Path) -> tuple[Path, Path]:
    """Two checkpoints whose 256 KiB tensor differs in one element between the sampled blocks."""
    folders = []
    for name, value in (("a", b"\x00\x00\x80\x3f"), ("b", b"\x00\x00\x00\x40")):
        folder = tmp_path / name
        folder.mkdir()
        data = bytearray(values("w", (256, 256), "F32")[2])
        data[len(data) // 2 + 8192 : len(data) // 2 + 8196] = value
        write_sharded(folder, [{"model.layers.0.mlp.weight": ("F32", (256, 256), bytes(data))}])
        write_json(folder / "config.json", config("llama", "LlamaForCausalLM", dtype="float32"))
        folders.append(folder)
    return folders[0], folders[1]


def test_samples_miss_what_full_hashes_see(hub: FakeHub, subtle: tuple[Path, Path]) -> None:
    a, b = subtle
    hub.add_folder("org/a", a)
    hub.add_folder("org/b", b)
    assert not tiecheck.diff(a, b).lossless
    assert not tiecheck.diff("hf://org/a", "hf://org/b", content="full").lossless
    sampled = tiecheck.diff("hf://org/a", "hf://org/b")
    assert sampled.content == "sample" and sampled.lossless  # as documented: a difference between samples
    assert sampled.bytes_hashed == 2 * 4 * 4096
    total = sum(p.stat().st_size for p in (*a.iterdir(), *b.iterdir()))
    assert sampled.transferred is not None and sampled.transferred.bytes < total / 4


def test_cli_diffs_hub_repos(hub: FakeHub, pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = pair
    hub.add_folder("org/merged", a)
    env = {**os.environ, "HF_ENDPOINT": hub.hub_url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", "diff", "hf://org/merged", str(b)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())  # the first line wraps at the log width
    assert text.startswith(f"hf://org/merged -> {b}: ") and "sampled fingerprints" in text and "request(s)" in text
    absent = subprocess.run(
        [sys.executable, "-m", "tiecheck", "diff", "hf://org/absent", str(b)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert absent.returncode == 2 and absent.stderr.startswith("tiecheck: error: hf://org/absent: repository not found")


def test_offline_diffs_the_local_cache_without_a_request(
    pair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    a, b = pair
    write_hf_cache(tmp_path / "cache", "org/merged", a, sha="b" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would fail
    cached = tiecheck.diff("hf://org/merged", b, offline=True)
    assert _statuses(cached) == _statuses(tiecheck.diff(a, b)) and cached.lossless
    assert cached.content == "full" and cached.transferred is None  # the cache is local: hashed in full
    with pytest.raises(tiecheck.NotCached):
        tiecheck.diff("hf://org/absent", b, offline=True)


def _unsafe_checkpoint(folder: Path, fixtures_dir: Path) -> Path:
    """A config and a pytorch_model.bin whose pickle calls os.system: no tensor can be listed without running it."""
    import pickle

    from pickle_helpers import glob, write_torch_zip

    folder.mkdir()
    shutil.copy(fixtures_dir / "gemma2-merge-duplicated-head" / "config.json", folder)
    payload = pickle.PROTO + b"\x02" + glob("os", "system") + pickle.MARK + b"X\x04\x00\x00\x00true" + b"tR."
    write_torch_zip(folder / "pytorch_model.bin", payload)
    return folder


def test_files_that_cannot_be_read_make_no_diff_lossless(tmp_path: Path, fixtures_dir: Path) -> None:
    """Two copies of a checkpoint whose weights cannot be read agree on every tensor they list (none); what the
    file holds is unknown, so the diff cannot say nothing was lost (it said so, exit 0)."""
    a, b = _unsafe_checkpoint(tmp_path / "a", fixtures_dir), _unsafe_checkpoint(tmp_path / "b", fixtures_dir)
    result = tiecheck.diff(a, b)
    assert not result.tensors and not result.lossless
    assert [line.split(":")[0] for line in result.unread] == ["A", "B"] and "pytorch_model.bin" in result.unread[0]
    printed = subprocess.run([sys.executable, "-m", "tiecheck", "diff", str(a), str(b)], capture_output=True, text=True)
    assert printed.returncode == 1 and "unread" in printed.stdout and "nothing lost" not in printed.stdout


def test_a_shard_the_index_names_and_that_is_gone_is_unread(tmp_path: Path, fixtures_dir: Path) -> None:
    a = tmp_path / "a"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", a)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "model-00002-of-00002.safetensors").unlink()
    result = tiecheck.diff(a, b)
    assert result.unread == ("B: model-00002-of-00002.safetensors: named by the index, absent",)
    assert not result.lossless and json.loads(result.to_json())["unread"] == list(result.unread)
