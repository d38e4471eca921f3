"""Constancy without reading 10 GB: an all-zero tensor stored as a sparse-file hole is confirmed unread."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from tiecheck import scan
from tiecheck._bytes import CHUNK
from tiecheck.io.source import LocalFileSource

GB = 1 << 30


def sparse_safetensors(path: Path, nbytes: int, head: bytes = b"") -> Path:
    """A safetensors file of one F32 tensor of ``nbytes`` bytes: ``head`` then a hole (zeros) to the end."""
    header = json.dumps(
        {"big.weight": {"dtype": "F32", "shape": [nbytes // 4 // 1024, 1024], "data_offsets": [0, nbytes]}}
    )
    raw = header.encode() + b" " * (-len(header) % 8)
    with path.open("wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw + head)
        out.truncate(8 + len(raw) + nbytes)
    return path


def _holes_supported(tmp_path: Path) -> bool:
    probe = sparse_safetensors(tmp_path / "probe.safetensors", 64 << 20)
    with LocalFileSource(probe) as source:
        return source.data_extents(0, source.size) is not None and source.data_extents(4096, 32 << 20) == []


def test_a_10_gb_all_zero_sparse_tensor_is_reported_without_reading_it(tmp_path: Path) -> None:
    if not _holes_supported(tmp_path):
        pytest.skip("the file system does not report holes (SEEK_DATA)")
    sparse_safetensors(tmp_path / "model.safetensors", 10 * GB)
    start = time.perf_counter()
    report = scan(tmp_path)
    elapsed = time.perf_counter() - start
    assert [f.code for f in report.findings if f.code == "TC203"] == ["TC203"]
    assert report.bytes_read <= 2 * CHUNK  # the chunk holding the header's block and the samples, not 10 GB
    assert elapsed < 60  # hashing 10 GB of zeros from memory, not from disk


def test_data_in_a_sparse_file_is_still_read(tmp_path: Path) -> None:
    """A non-zero element among the holes is found: holes are skipped, stored data is not."""
    if not _holes_supported(tmp_path):
        pytest.skip("the file system does not report holes (SEEK_DATA)")
    path = sparse_safetensors(tmp_path / "model.safetensors", 256 << 20)
    with path.open("r+b") as out:  # one 1.0 in the middle, its own stored block
        out.seek(out.seek(0, 2) - (32 << 20))
        out.write(struct.pack("<f", 1.0))
    report = scan(tmp_path, deep=True)
    assert "TC203" not in [f.code for f in report.findings]
    assert report.bytes_read <= 4 * CHUNK  # only the chunks holding stored blocks, not 256 MB
