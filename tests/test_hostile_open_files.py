"""Open files stay bounded: a checkpoint of 2,000 shards scans under ``ulimit -n 128``."""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tiecheck.io.source import MAX_OPEN_SOURCES, LocalStore, SourcePool

SRC = Path(__file__).resolve().parents[1] / "src"
SHARDS = 2000
LIMIT = 128


def safetensors_bytes(name: str, values: list[float]) -> bytes:
    data = struct.pack(f"<{len(values)}f", *values)
    header = json.dumps({name: {"dtype": "F32", "shape": [len(values)], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shards")
    weight_map = {}
    for i in range(SHARDS):
        shard = f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors"
        # 2,048 distinct floats a shard: every tensor is sampled, none constant, none alike.
        (folder / shard).write_bytes(safetensors_bytes(f"layers.{i}.weight", [i + j / 4096 for j in range(2048)]))
        weight_map[f"layers.{i}.weight"] = shard
    index = {"metadata": {"total_size": SHARDS * 2048 * 4}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def _low_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))


@pytest.mark.parametrize("deep", [False, True], ids=["default", "deep"])
def test_thousands_of_shards_scan_under_a_low_open_file_limit(many_shards: Path, deep: bool) -> None:
    args = [sys.executable, "-m", "tiecheck", "scan", str(many_shards), "--format", "json", "--quiet"]
    done = subprocess.run(
        args + (["--deep"] if deep else []),
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_low_limit,  # only sets the limit, before exec
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert "Too many open files" not in done.stderr
    (report,) = json.loads(done.stdout)["reports"]
    assert report["summary"]["files"] == SHARDS
    assert report["summary"]["bytes_read"] > 0  # the content questions were answered, file by file


def test_the_pool_never_holds_more_than_its_limit(many_shards: Path) -> None:
    names = sorted(p.name for p in many_shards.glob("*.safetensors"))[:200]
    with SourcePool(LocalStore(many_shards), limit=8) as pool:
        for name in names:
            assert pool.get(name).size > 0
            assert pool.open_count <= 8
        with pool.pinned(names[:10]):
            for name in names[:10]:
                pool.get(name)
            assert pool.open_count == 10  # pinned sources are never closed under their user
        assert pool.open_count <= 8
    assert MAX_OPEN_SOURCES * 2 < LIMIT // 2
