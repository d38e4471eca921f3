"""How few requests a remote scan makes: coalesced samples, concurrent headers, the CDN address reused,
``If-Range`` on every later range request. Against the HTTP Hub (and CDN) of ``hub_server`` on 127.0.0.1."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub_server import FakeHub, serve
from tiecheck.errors import TiecheckError
from tiecheck.io._ranges import GAP, RUN, coalesce
from tiecheck.io.hub import HubStore
from tiecheck.scan import scan, scan_store
from tiecheck.testing import config, values, write_json, write_sharded


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with serve() as state:
        yield state


def _sharded(folder: Path, shards: int = 4, per_shard: int = 3, rows: int = 256) -> Path:
    """Shards of distinct F32 tensors of ``rows`` x 64 (64 KB each at 256 rows), with a config."""
    parts = [
        {f"model.layers.{s}.w{j}.weight": values(f"s{s}w{j}", (rows, 64), "F32") for j in range(per_shard)}
        for s in range(shards)
    ]
    write_sharded(folder, parts)
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", dtype="float32"))
    return folder


@given(st.lists(st.tuples(st.integers(0, 1 << 22), st.integers(1, 1 << 15)), max_size=40))
def test_coalesced_runs_hold_every_block_and_stay_bounded(spans: list[tuple[int, int]]) -> None:
    blocks = sorted(spans)
    runs = coalesce(blocks)
    assert sum(count for _, _, count in runs) == len(blocks)
    done = 0
    for start, end, count in runs:
        members = blocks[done : done + count]
        assert all(start <= offset and offset + length <= end for offset, length in members)
        assert end - start <= RUN or count == 1
        assert start == members[0][0] and end == max(o + n for o, n in members)  # no byte outside the blocks' span
        done += count
    done = 0
    for (start, end, count), (after, _, _) in itertools.pairwise(runs):
        done += count
        first_end = blocks[done][0] + blocks[done][1]
        # a new run starts only where the gap is too wide, or the run would grow past the limit
        assert after - end >= GAP or max(end, first_end) - start > RUN


def test_neighbouring_samples_share_a_request(hub: FakeHub, tmp_path: Path) -> None:
    # 64 KB tensors: four 4 KB samples each, at most 20 KB apart, so one request reads every sample of a shard.
    _sharded(tmp_path, shards=3, per_shard=3, rows=256)
    hub.add_folder("org/repo", tmp_path)
    store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    report = scan_store(store)
    assert [f.code for f in report.findings] == [f.code for f in scan(tmp_path).findings]
    sample_requests = [p for p in hub.cdn.paths if p.split("?")[0].endswith(".safetensors")]
    # per shard: the header window, then one coalesced run of samples (12 samples without coalescing)
    assert len(sample_requests) == 3 * 2
    # the price: the gaps between samples came along, at most the tensors themselves
    assert report.bytes_read <= 3 * 3 * 64 * 1024


def test_far_apart_samples_are_separate_requests(hub: FakeHub, tmp_path: Path) -> None:
    # 1 MB tensors: the middle samples are 340 KB apart, more than GAP; only a tensor's last block and the next
    # tensor's first (adjacent) merge. Bytes stay the samples' own.
    _sharded(tmp_path, shards=1, per_shard=2, rows=4096)
    hub.add_folder("org/repo", tmp_path)
    store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    report = scan_store(store)
    assert report.bytes_read == 2 * 4 * 4096
    runs = [p for p in hub.cdn.paths if p.split("?")[0].endswith(".safetensors")]
    assert len(runs) == 1 + 7  # the header window; 8 blocks, two of them adjacent


def test_the_cdn_address_is_reused_and_the_token_stays_home(hub: FakeHub, tmp_path: Path) -> None:
    _sharded(tmp_path, shards=2, per_shard=2, rows=4096)
    hub.add_folder("org/repo", tmp_path, gated=True)
    store = HubStore("org/repo", endpoint=hub.hub_url, token=hub.token)
    scan_store(store)
    shard_resolves = [p for p in hub.hub.paths if "/resolve/" in p and p.endswith(".safetensors")]
    assert len(shard_resolves) == 2  # one per shard: its first request; the rest go straight to the CDN
    assert len([p for p in hub.cdn.paths if ".safetensors" in p]) > 2 * 4
    assert set(hub.cdn.authorizations) == {None} and set(hub.hub.authorizations) == {f"Bearer {hub.token}"}
    files = [p for p in hub.hub.paths if not p.startswith("/api/")] + hub.cdn.paths
    assert store.transfer.requests == 2 + len(files)  # the repo info and the listing, then file reads


def test_an_expired_cdn_address_is_asked_for_again(hub: FakeHub, tmp_path: Path) -> None:
    _sharded(tmp_path, shards=1, per_shard=1, rows=4096)
    hub.add_folder("org/repo", tmp_path)
    store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    (name,) = [n for n in store.list_files() if n.endswith(".safetensors")]
    first = store.fetch(name, 0, 100)
    hub.expire_links()
    assert store.fetch(name, 0, 100) == first
    assert store.fetch(name, 200_000, 10) == (tmp_path / name).read_bytes()[200_000:200_010]
    statuses = [p for p in hub.cdn.paths if "expires=0" in p]
    assert len(statuses) == 2  # the first read, and the refused one; then expires=1 from a new resolve
    assert len([p for p in hub.hub.paths if "/resolve/" in p]) == 2


def test_a_file_changed_under_if_range_is_detected(hub: FakeHub, tmp_path: Path) -> None:
    _sharded(tmp_path, shards=1, per_shard=2, rows=4096)
    hub.add_folder("org/repo", tmp_path)
    (name,) = [p.name for p in tmp_path.glob("*.safetensors")]
    hub.change_after = (name, 1)  # the header read sees the old bytes, the first sample the new ones
    store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    before = hub.cdn.bytes
    with pytest.raises(TiecheckError, match="changed while it was being scanned; scan again") as info:
        scan_store(store)
    assert "\n" not in str(info.value)
    assert hub.cdn.statuses[-1] == 200  # If-Range: the server said so itself, with the whole (new) file
    # The changed file answered 200 with its whole body; the scan stopped reading it at once (the server's
    # count includes what it wrote into the socket, at most the file).
    assert store.transfer.bytes < 64 << 10
    assert hub.cdn.bytes - before <= (tmp_path / name).stat().st_size + (64 << 10)


def test_headers_are_read_concurrently(hub: FakeHub, tmp_path: Path) -> None:
    _sharded(tmp_path, shards=12, per_shard=1, rows=16)
    hub.add_folder("org/repo", tmp_path)
    hub.delay = 0.05
    store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    report = scan_store(store, rules=frozenset({"TC001"}))  # headers, config, index: no sample
    assert report.findings == () and len(report.checkpoint.files) == 12
    assert hub.cdn.peak > 1  # one shard after another would never overlap
    shard_reads = [p for p in hub.cdn.paths if ".safetensors" in p]
    assert len(shard_reads) == 12  # each header once: the loader's reads came from memory
