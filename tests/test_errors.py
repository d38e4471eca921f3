"""The typed exceptions: each is raised where docs/python-api.md says, and all are TiecheckErrors."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tiecheck
from hub_server import FakeHub, serve
from tiecheck.io.hub import HubStore, open_hub


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with serve() as state:
        yield state


@pytest.fixture
def merged(tmp_path: Path, fixtures_dir: Path) -> Path:
    folder = tmp_path / "merged"
    shutil.copytree(fixtures_dir / "gemma2-merge-duplicated-head", folder)
    return folder


def test_the_hierarchy_and_the_old_names() -> None:
    from tiecheck.fixer import CommittedError, RefusedError, VerificationError
    from tiecheck.integrations import transformers as integration
    from tiecheck.selection import SelectionError

    for name in tiecheck.__all__:
        value = getattr(tiecheck, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, tiecheck.TiecheckError), name
            assert (value.__doc__ or "").strip(), name
    for remote in (tiecheck.RepoNotFound, tiecheck.RateLimited, tiecheck.NotCached, tiecheck.ChangedDuringScan):
        assert issubclass(remote, tiecheck.RemoteError)
    assert issubclass(RefusedError, tiecheck.FixRefused)
    assert issubclass(VerificationError, tiecheck.VerificationFailed)
    assert issubclass(CommittedError, tiecheck.TiecheckError) and issubclass(SelectionError, tiecheck.TiecheckError)
    assert integration.CheckpointRejected is tiecheck.CheckpointRejected


def test_target_not_found(tmp_path: Path, fixtures_dir: Path) -> None:
    missing = tmp_path / "absent"
    for call in (
        lambda: tiecheck.scan(missing),
        lambda: tiecheck.fix(missing, dry_run=True),
        lambda: tiecheck.diff(fixtures_dir / "clean-llama-sharded", missing),
        lambda: tiecheck.diff("hf://not a repo", fixtures_dir / "clean-llama-sharded"),
    ):
        with pytest.raises(tiecheck.TargetNotFound) as info:
            call()
        assert "\n" not in str(info.value)
    with pytest.raises(tiecheck.TargetNotFound, match="no such file or directory"):
        tiecheck.scan(missing)


def test_unreadable_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(tiecheck.UnreadableCheckpoint, match=r"notes\.txt: not a checkpoint"):
        tiecheck.scan(tmp_path / "notes.txt")
    with pytest.raises(tiecheck.UnreadableCheckpoint, match=r"no \.safetensors or pytorch_model"):
        tiecheck.scan(tmp_path)
    with pytest.raises(tiecheck.UnreadableCheckpoint, match="not a checkpoint"):
        tiecheck.fix(tmp_path / "notes.txt", dry_run=True)


def test_remote_errors_have_their_types(hub: FakeHub, fixtures_dir: Path) -> None:
    def store(repo: str, revision: str | None = None, token: Any = None) -> HubStore:
        return HubStore(repo, revision, endpoint=hub.hub_url, token=token)

    with pytest.raises(tiecheck.RepoNotFound) as not_found:
        store("org/absent")
    assert not_found.value.target == "hf://org/absent"
    hub.add_folder("org/repo", fixtures_dir / "clean-llama-sharded")
    with pytest.raises(tiecheck.RevisionNotFound):
        store("org/repo", "nope")
    hub.add_folder("org/gated", fixtures_dir / "clean-llama-sharded", gated=True)
    with pytest.raises(tiecheck.AccessDenied) as gated:
        store("org/gated", token=False)
    assert gated.value.gated
    hub.rate_limited = True
    with pytest.raises(tiecheck.RateLimited) as limited:
        store("org/repo")
    assert limited.value.retry_after == 17.0
    hub.rate_limited = False
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(tiecheck.NetworkError, match="cannot reach the Hub"):
        HubStore("org/repo", endpoint=closed, token=False)
    with pytest.raises(tiecheck.NotCached):
        open_hub("hf://org/absent", offline=True)


def test_a_file_changed_mid_scan(hub: FakeHub, fixtures_dir: Path) -> None:
    hub.add_folder("org/repo", fixtures_dir / "gemma2-merge-duplicated-head")
    hub.change_after = ("model-00002-of-00002.safetensors", 1)
    with pytest.raises(tiecheck.ChangedDuringScan, match="changed while it was being scanned"):
        tiecheck.scan_store(HubStore("org/repo", endpoint=hub.hub_url, token=hub.token))


def test_fix_refused_names_the_blocking_findings(tmp_path: Path, fixtures_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fixtures_dir / "invalid-safetensors", broken)
    with pytest.raises(tiecheck.FixRefused) as info:
        tiecheck.fix(broken, drop_duplicates=True, dry_run=True)
    assert info.value.findings and all(f.code.startswith("TC0") for f in info.value.findings)
    assert info.value.findings[0].code in str(info.value)
    with pytest.raises(tiecheck.FixRefused, match="works on a local copy") as remote:
        tiecheck.fix("hf://org/repo")
    assert remote.value.findings == ()


def test_fix_refused_for_the_folder_not_a_finding(merged: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(tiecheck.FixRefused, match="already exists and is not an empty folder") as info:
        tiecheck.fix(merged, drop_duplicates=True, output=tmp_path / "taken")
    assert info.value.findings == ()


def test_verification_failed_changes_nothing(merged: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fixhelpers import snapshot
    from tiecheck.fixer import plan as fix_plan

    real = fix_plan._Planner._drop_tied_copies

    def also_drop_norm(self: Any, name: str, kept: str, code: str) -> None:  # a planner bug, on purpose
        real(self, name, kept, code)
        self._drop(self.tensors["model.norm.weight"], self.tensors[kept], True, code)

    monkeypatch.setattr(fix_plan._Planner, "_drop_tied_copies", also_drop_norm)
    before = snapshot(merged)
    with pytest.raises(tiecheck.VerificationFailed, match=r"model\.norm\.weight would be lost"):
        tiecheck.fix(merged, drop_duplicates=True)
    assert snapshot(merged) == before


def test_checkpoint_rejected_by_the_callback(fixtures_dir: Path) -> None:
    pytest.importorskip("transformers")
    from tiecheck.integrations.transformers import TiecheckCallback

    with pytest.raises(tiecheck.CheckpointRejected, match="TC101") as info:
        TiecheckCallback(fail_on="warning").check(fixtures_dir / "gemma2-merge-duplicated-head")
    assert {f.code for f in info.value.report.findings} == {"TC101"}


def test_a_folder_of_another_format_says_which(tmp_path: Path) -> None:
    """accelerate's FSDP SHARDED_STATE_DICT save (a torch.distributed.checkpoint), GGUF: named, with what to do."""
    torch = pytest.importorskip("torch")
    import torch.distributed.checkpoint as dcp

    (tmp_path / "config.json").write_text("{}")
    dcp.save({"model.embed_tokens.weight": torch.zeros(4, 2)}, checkpoint_id=tmp_path / "pytorch_model_fsdp_0")
    for target in (tmp_path, tmp_path / "pytorch_model_fsdp_0"):
        with pytest.raises(tiecheck.UnreadableCheckpoint, match=r"torch\.distributed\.checkpoint") as info:
            tiecheck.scan(target)
        assert "accelerate merge-weights" in str(info.value) and "\n" not in str(info.value)
    deepspeed = tmp_path / "deepspeed"
    deepspeed.mkdir()
    (deepspeed / "zero_to_fp32.py").write_text("# DeepSpeed writes this beside global_step*/\n")
    (deepspeed / "latest").write_text("global_step10")
    with pytest.raises(tiecheck.UnreadableCheckpoint, match="DeepSpeed checkpoint"):
        tiecheck.scan(deepspeed)
    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    with pytest.raises(tiecheck.UnreadableCheckpoint, match="GGUF"):
        tiecheck.scan(gguf)
