"""scan_state_dict: memory sharing found and the savers' outcomes predicted, checked against the real savers."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import modeling_utils

import tiecheck
from live_models import LLAMA, build
from tiecheck.errors import TiecheckError
from tiecheck.live.state_dict import scan_state_dict

pytestmark = pytest.mark.transformers


def _save_file_refusal(state_dict: dict[str, torch.Tensor], tmp_path: Path) -> set[frozenset[str]]:
    """The groups the real ``safetensors.torch.save_file`` names when it refuses, or the empty set."""
    try:
        save_file({k: v.contiguous() if not v.is_contiguous() else v for k, v in state_dict.items()}, tmp_path / "x")
    except RuntimeError as exc:
        listed = re.search(r"again: (\[.*\])", str(exc), re.S)
        assert listed, exc
        return {frozenset(group) for group in ast.literal_eval(listed.group(1))}
    return set()


def _predicted(state_dict: dict[str, torch.Tensor]) -> set[frozenset[str]]:
    return {frozenset(g) for g in scan_state_dict(state_dict).save_file.refused}


def test_views_of_one_storage_are_grouped_by_how_they_overlap(tmp_path: Path) -> None:
    base = torch.arange(100, dtype=torch.float32)
    cases = {
        "identical": {"a": base, "b": base},
        "overlapping": {"full": base, "slice": base[10:20]},
        "disjoint": {"left": base[:50], "right": base[50:]},
    }
    for relation, state_dict in cases.items():
        (shared,) = scan_state_dict(state_dict).shared
        assert shared.relation == relation
        assert set(shared.names) == set(state_dict)
        assert _predicted(state_dict) == _save_file_refusal(state_dict, tmp_path)
    assert scan_state_dict({"a": base[:50].clone(), "b": base[50:].clone()}).shared == ()


def test_safetensors_quirk_full_tensor_then_two_slices(tmp_path: Path) -> None:
    """save_file remembers only the last area's end: a full tensor and two slices make two groups, not one."""
    base = torch.arange(100, dtype=torch.float32)
    state_dict = {"full": base, "s1": base[10:20], "s2": base[50:60]}
    assert _predicted(state_dict) == _save_file_refusal(state_dict, tmp_path) == {frozenset({"full", "s1"})}


views = st.lists(
    st.tuples(st.integers(0, 63), st.integers(0, 64)).map(lambda t: (t[0], min(64, t[0] + t[1]))),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(views=views, tied=st.sets(st.integers(0, 4)))
def test_any_views_predict_both_savers(views: list[tuple[int, int]], tied: set[int], tmp_path: Path) -> None:
    base = torch.arange(64, dtype=torch.float32)
    state_dict = {f"t{i}": base[a:b] for i, (a, b) in enumerate(views)}
    state_dict["other"] = torch.zeros(3)
    assert _predicted(state_dict) == _save_file_refusal(state_dict, tmp_path)

    # transformers' own function, on a module that declares the chosen names as tie targets.
    owner = torch.nn.Module()
    owner._tied_weights_keys = {f"^t{i}$": "other" for i in tied}  # type: ignore[assignment]
    keys = [f"^t{i}$" for i in tied]
    report = scan_state_dict(state_dict, tied_keys=keys)
    assert report.save_pretrained is not None
    try:
        written = modeling_utils.remove_tied_weights_from_state_dict(dict(state_dict), owner)
    except RuntimeError:
        assert report.save_pretrained.raises
    else:
        assert not report.save_pretrained.raises
        assert set(state_dict) - set(written) == set(report.save_pretrained.dropped)


@pytest.mark.parametrize("name", ["llama-tied", "llama-untied", "gpt2", "t5", "bert", "gemma2"])
def test_predicts_exactly_the_keys_save_pretrained_writes(name: str, tmp_path: Path) -> None:
    model = build(name)
    state_dict = model.state_dict()
    report = scan_state_dict(state_dict, model.config)
    model.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", "pt") as f:
        written = set(f.keys())
    assert report.save_pretrained is not None
    assert written == set(state_dict) - set(report.save_pretrained.dropped)
    assert set(report.restored) == set(report.save_pretrained.dropped)
    assert not [f for f in report.findings if f.severity >= tiecheck.Severity.WARNING and f.code != "TC501"]
    # The reloaded file scans clean too, and agrees about the tie.
    assert not [f for f in tiecheck.scan(tmp_path).findings if f.severity >= tiecheck.Severity.WARNING]


def test_a_hand_tied_head_under_an_untied_config_is_lost_on_load() -> None:
    model = build("llama-untied")
    model.lm_head.weight = model.model.embed_tokens.weight
    report = scan_state_dict(model.state_dict(), model.config)
    codes = {f.code for f in report.findings}
    assert {"TC501", "TC503"} <= codes
    assert report.save_pretrained is not None and report.save_pretrained.dropped == ("lm_head.weight",)


def test_config_as_dict_path_and_object(tmp_path: Path) -> None:
    model = build("llama-tied")
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict(), default=str))
    outcomes = {
        str(type(c).__name__): scan_state_dict(model.state_dict(), c).save_pretrained
        for c in (model.config, model.config.to_dict(), tmp_path, tmp_path / "config.json", str(tmp_path))
    }
    assert len(set(outcomes.values())) == 1
    with pytest.raises(TiecheckError, match="cannot read the config"):
        scan_state_dict({}, tmp_path / "missing.json")


def test_numpy_arrays_share_by_base_and_are_compared_by_bytes() -> None:
    a = np.arange(20, dtype=np.float32)
    report = scan_state_dict({"x": a, "y": a[5:], "z": a.copy(), "w": a[::-1]})
    (shared,) = report.shared
    assert set(shared.names) == {"x", "y"} and shared.relation == "overlapping"
    assert report.save_file.refused == ()  # numpy's save_file copies bytes, it never refuses
    assert any(f.code == "TC202" and set(f.tensors) == {"x", "z"} for f in report.findings)


def test_meta_tensors_are_checked_by_identity_only() -> None:
    weight = torch.empty(8, 4, device="meta")
    report = scan_state_dict(
        {"model.embed_tokens.weight": weight, "lm_head.weight": weight, "other": torch.empty(8, 4, device="meta")},
        LLAMA | {"tie_word_embeddings": True},
    )
    assert report.report is None and any("identity only" in n for n in report.notes)
    (shared,) = report.shared
    assert set(shared.names) == {"model.embed_tokens.weight", "lm_head.weight"}
    assert report.save_file.refused == ()  # safetensors skips meta tensors
    assert report.save_pretrained is not None and report.save_pretrained.dropped == ("lm_head.weight",)


def test_not_a_tensor_is_one_clear_error() -> None:
    with pytest.raises(TiecheckError, match="'x' is a list"):
        scan_state_dict({"x": [1, 2]})


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("torch.sparse_coo", lambda: torch.eye(4).to_sparse()),
        ("torch.sparse_csr", lambda: torch.eye(4).to_sparse_csr()),
        ("torch.qint8", lambda: torch.quantize_per_tensor(torch.eye(4), 0.1, 0, torch.qint8)),
    ],
)
def test_a_tensor_without_plain_storage_is_one_clear_error(kind: str, make: Callable[[], torch.Tensor]) -> None:
    with pytest.raises(TiecheckError, match=f"'w' .*{kind}.*cannot check"):
        scan_state_dict({"w": make()})
