"""Scanning a Hub repo by range requests, against a real HTTP Hub (and CDN) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from hub_server import FakeHub, serve, write_hf_cache
from tiecheck.errors import TiecheckError
from tiecheck.findings import Finding
from tiecheck.io.hub import HubStore, parse_hub_target
from tiecheck.scan import Report, scan, scan_store
from tiecheck.testing import config, llama_like, values, write_json, write_sharded


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with serve() as state:
        yield state


def _key(f: Finding) -> tuple[object, ...]:
    return (f.code, f.severity, f.tensors, f.files, f.bytes, f.fixable)


def _remote(hub: FakeHub, repo: str, revision: str | None = None, token: str | None = "hf_test_token") -> Report:
    return scan_store(HubStore(repo, revision, endpoint=hub.hub_url, token=token))


@pytest.mark.parametrize(
    "fixture",
    ["gemma2-merge-duplicated-head", "index-drift", "clean-llama-sharded", "llama-missing-head", "invalid-safetensors"],
)
def test_findings_equal_the_local_scan(hub: FakeHub, fixtures_dir: Path, fixture: str) -> None:
    hub.add_folder("org/repo", fixtures_dir / fixture)
    remote = _remote(hub, "org/repo")
    local = scan(fixtures_dir / fixture)
    assert [_key(f) for f in remote.findings] == [_key(f) for f in local.findings]
    assert remote.summary == local.summary


def test_a_pickle_repo_is_read_by_ranges(hub: FakeHub, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    embedding = torch.randn(64, 16)
    torch.save({"model.embed_tokens.weight": embedding, "lm_head.weight": embedding}, tmp_path / "pytorch_model.bin")
    write_json(tmp_path / "config.json", config("llama", "LlamaForCausalLM", dtype="float32", tie_word_embeddings=True))
    hub.add_folder("org/pickle", tmp_path)
    remote = _remote(hub, "org/pickle")
    assert [_key(f) for f in remote.findings] == [_key(f) for f in scan(tmp_path).findings]
    assert "TC402" in {f.code for f in remote.findings}


def test_only_headers_config_index_and_samples_are_transferred(hub: FakeHub, tmp_path: Path) -> None:
    tensors = {f"model.layers.{i}.mlp.weight": values(f"w{i}", (256, 256), "F32") for i in range(6)}
    tensors |= llama_like(dtype="F32", head=True)
    write_sharded(tmp_path, [dict(list(tensors.items())[i::3]) for i in range(3)])
    write_json(
        tmp_path / "config.json",
        config("llama", "LlamaForCausalLM", dtype="float32", tie_word_embeddings=False, num_hidden_layers=6),
    )
    hub.add_folder("org/big", tmp_path)
    repo_bytes = sum(p.stat().st_size for p in tmp_path.iterdir())

    store = HubStore("org/big", endpoint=hub.hub_url, token=hub.token)
    report = scan_store(store)
    assert report.findings == ()
    headers = sum(min(64 << 10, p.stat().st_size) for p in tmp_path.glob("*.safetensors"))
    companions = sum(p.stat().st_size for p in tmp_path.glob("*.json"))
    assert store.transfer.bytes <= headers + companions + report.bytes_read
    assert store.transfer.bytes < repo_bytes / 4
    # The server agrees with the store's count of file bytes; API answers (info, listing) are a few KB more.
    assert hub.hub.bytes - hub.hub.api_bytes + hub.cdn.bytes == store.transfer.bytes
    assert hub.hub.api_bytes < 4096


def test_the_token_reaches_the_hub_and_never_the_cdn(hub: FakeHub, fixtures_dir: Path) -> None:
    hub.add_folder("org/repo", fixtures_dir / "gemma2-merge-duplicated-head", gated=True)
    _remote(hub, "org/repo")
    assert hub.cdn.requests > 0 and set(hub.cdn.authorizations) == {None}
    assert set(hub.hub.authorizations) == {"Bearer hf_test_token"}


def test_the_revision_is_pinned_to_its_commit(hub: FakeHub, fixtures_dir: Path) -> None:
    repo = hub.add_folder("org/repo", fixtures_dir / "clean-llama-sharded", refs={"v1": "f" * 40})
    repo.sha = "f" * 40
    store = HubStore("org/repo", "v1", endpoint=hub.hub_url, token=hub.token)
    assert store.sha == "f" * 40 and store.location == f"hf://org/repo@{'f' * 40}"
    scan_store(store)
    resolves = [p for p in hub.hub.paths if "/resolve/" in p]
    assert resolves and all(f"/resolve/{'f' * 40}/" in p for p in resolves)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda hub: None, "repository not found"),
        (lambda hub: hub.add_folder("org/other", Path("fixtures/clean-llama-sharded")), "repository not found"),
        (lambda hub: setattr(hub, "rate_limited", True), "rate limited by the Hub (429); retry after 17 s"),
    ],
)
def test_hub_refusals_are_one_line(hub: FakeHub, setup: object, message: str) -> None:
    setup(hub)  # type: ignore[operator]
    with pytest.raises(TiecheckError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        _remote(hub, "org/repo")
    assert "\n" not in str(info.value)


def test_revision_gated_and_network_errors(hub: FakeHub, fixtures_dir: Path) -> None:
    hub.add_folder("org/repo", fixtures_dir / "clean-llama-sharded")
    with pytest.raises(TiecheckError, match="revision not found"):
        _remote(hub, "org/repo", "nope")
    hub.add_folder("org/gated", fixtures_dir / "clean-llama-sharded", gated=True)
    with pytest.raises(TiecheckError, match="gated repository; request access"):
        _remote(hub, "org/gated", token=False)  # False: send no token at all
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(TiecheckError, match="cannot reach the Hub"):
        HubStore("org/repo", endpoint=closed, token=False)


@pytest.mark.parametrize(
    ("switch", "message"),
    [
        ("ignore_range", "answered 200 to a range request"),
        ("short_body", "does not match the request"),
    ],
)
def test_broken_range_responses_are_errors(hub: FakeHub, fixtures_dir: Path, switch: str, message: str) -> None:
    hub.add_folder("org/repo", fixtures_dir / "clean-llama-sharded")
    setattr(hub, switch, True)
    with pytest.raises(TiecheckError, match=message):
        _remote(hub, "org/repo")


def test_a_file_changed_between_two_reads_is_detected(hub: FakeHub, fixtures_dir: Path) -> None:
    hub.add_folder("org/repo", fixtures_dir / "gemma2-merge-duplicated-head")
    shard = "model-00002-of-00002.safetensors"
    hub.change_after = (shard, 1)
    with pytest.raises(TiecheckError, match="changed while it was being scanned"):
        _remote(hub, "org/repo")


def test_a_header_length_past_the_end_of_the_file_is_a_finding(hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes((10**6).to_bytes(8, "little") + b'{"a": 1}')
    (tmp_path / "config.json").write_text(json.dumps(config("llama", "LlamaForCausalLM")))
    hub.add_folder("org/repo", tmp_path)
    assert [f.code for f in _remote(hub, "org/repo").findings] == [f.code for f in scan(tmp_path).findings]


def test_scan_accepts_hf_urls(hub: FakeHub, fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    hub.add_folder("org/repo", fixtures_dir / "gemma2-merge-duplicated-head")
    monkeypatch.setattr(constants, "ENDPOINT", hub.hub_url)
    assert [f.code for f in scan("hf://org/repo@main").findings] == ["TC101"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hf://org/name", ("org/name", None)),
        ("hf://org/name@v1.0", ("org/name", "v1.0")),
        ("hf://org/na.me-2@" + "a" * 40, ("org/na.me-2", "a" * 40)),
        ("hf://org/../etc", None),
        ("hf://org", None),
        ("org/name", None),
    ],
)
def test_hub_target_syntax(text: str, expected: tuple[str, str | None] | None) -> None:
    target = parse_hub_target(text)
    assert (None if target is None else (target.repo_id, target.revision)) == expected


def test_offline_scans_the_local_cache_without_a_request(
    fixtures_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from tiecheck.io.hub import open_hub

    write_hf_cache(tmp_path, "org/repo", fixtures_dir / "gemma2-merge-duplicated-head")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would fail
    store = open_hub("hf://org/repo", offline=True)
    assert [f.code for f in scan_store(store).findings] == ["TC101"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert [f.code for f in scan("hf://org/repo").findings] == ["TC101"]
    with pytest.raises(TiecheckError, match="offline, and the repo is not in the local Hugging Face cache"):
        open_hub("hf://org/absent", offline=True)


def _cli(hub: FakeHub, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_ENDPOINT": hub.hub_url, "HF_TOKEN": hub.token, "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    command = [sys.executable, "-m", "tiecheck", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_cli_scans_repo_ids_beside_folders(hub: FakeHub, fixtures_dir: Path, tmp_path: Path) -> None:
    hub.add_folder("org/merge", fixtures_dir / "gemma2-merge-duplicated-head")
    hub.add_folder("org/clean", fixtures_dir / "clean-llama-sharded")
    done = _cli(hub, "scan", "hf://org/merge", "org/clean@main", str(fixtures_dir / "llama-missing-head"), "-f", "json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    codes = {r["target"]: sorted({f["code"] for f in r["findings"]}) for r in document["reports"]}
    assert codes == {
        "hf://org/merge": ["TC101"],
        "hf://org/clean@main": [],
        str(fixtures_dir / "llama-missing-head"): ["TC103"],
    }
    assert set(hub.cdn.authorizations) == {None} and "Bearer hf_test_token" in hub.hub.authorizations
    schema = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "tiecheck-report.schema.json").read_text())
    jsonschema.validate(document, schema)
    remote = next(r for r in document["reports"] if r["target"] == "hf://org/merge")
    assert remote["transferred"]["requests"] > 0 and remote["transferred"]["bytes"] > 0
    assert all("transferred" not in r for r in document["reports"] if not r["target"].startswith("hf://"))


def test_cli_hub_errors_are_one_line_and_exit_2(hub: FakeHub, tmp_path: Path) -> None:
    done = _cli(hub, "scan", "hf://org/absent", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tiecheck: error: hf://org/absent: repository not found, or private without access "
        "(log in with `hf auth login` or set HF_TOKEN)"
    ]
    done = _cli(hub, "scan", "-f", "json", "hf://org/absent", cwd=tmp_path)
    assert done.returncode == 2 and json.loads(done.stdout)["errors"][0]["target"] == "hf://org/absent"


def test_cli_revision_and_offline(hub: FakeHub, fixtures_dir: Path, tmp_path: Path) -> None:
    repo = hub.add_folder("org/repo", fixtures_dir / "clean-llama-sharded", refs={"v1": "e" * 40})
    repo.sha = "e" * 40
    done = _cli(hub, "scan", "hf://org/repo", "--revision", "v1", "-f", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [r["target"] for r in json.loads(done.stdout)["reports"]] == ["hf://org/repo@v1"]

    write_hf_cache(tmp_path / "cache", "org/cached", fixtures_dir / "gemma2-merge-duplicated-head")
    before = hub.hub.requests
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_ENDPOINT": hub.hub_url}
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-m", "tiecheck", "scan", "hf://org/cached", "--offline", "-q"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 1 and "TC101" in done.stdout, done.stderr
    assert hub.hub.requests == before  # not one request


def test_fix_refuses_a_hub_repo_with_the_way_forward(hub: FakeHub, tmp_path: Path) -> None:
    done = _cli(hub, "fix", "hf://org/repo", "--drop-duplicates", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("tiecheck: error: hf://org/repo: fix rewrites files, so it works on a local copy")
    assert "hf download" in line and "hf upload" in line and hub.hub.requests == 0


def test_remote_ties_are_compared_by_samples_unless_asked(hub: FakeHub, tmp_path: Path) -> None:
    tensors = llama_like(dtype="F32")
    embedding = values("embed-big", (512, 64), "F32")  # 128 KB: more than the samples cover
    tensors["model.embed_tokens.weight"] = embedding
    write_sharded(tmp_path, [tensors, {"lm_head.weight": embedding}])
    write_json(tmp_path / "config.json", config("gemma2", "Gemma2ForCausalLM", dtype="float32"))
    hub.add_folder("org/repo", tmp_path)

    sampled_store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    sampled = scan_store(sampled_store)
    (finding,) = [f for f in sampled.findings if f.code == "TC101"]
    assert "Confirmed by sampled blocks, not byte for byte" in finding.message
    full_store = HubStore("org/repo", endpoint=hub.hub_url, token=False)
    full = scan_store(full_store, content="full")
    (exact,) = [f for f in full.findings if f.code == "TC101"]
    assert "sampled" not in exact.message
    assert full_store.transfer.bytes - sampled_store.transfer.bytes >= 2 * len(embedding[2]) - 2 * 4 * 4096
    # A difference found in a sample is certain: a perturbed head is TC102 either way.
    changed = bytearray(embedding[2])
    changed[0] ^= 0xFF
    write_sharded(tmp_path, [tensors, {"lm_head.weight": ("F32", embedding[1], bytes(changed))}])
    hub.add_folder("org/changed", tmp_path)
    assert "TC102" in {f.code for f in scan_store(HubStore("org/changed", endpoint=hub.hub_url, token=False)).findings}
    # Locally, the default stays byte for byte.
    assert all("sampled" not in f.message for f in scan(tmp_path).findings)
