"""Every pickle-format file in a scanned folder is read for its imports, beside safetensors weights too."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from test_ci_integration import _git, _local_config, _pre_commit, sample_repo  # noqa: F401  (fixture)
from tiecheck.cli import app

CLEAN = "clean-llama-sharded"


class _Payload:
    """What an attacker pickles: unpickling it calls os.system."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def hostile(path: Path) -> Path:
    torch.save({"lm_head.weight": torch.zeros(2, 2), "extra": _Payload()}, path)
    return path


def scan_json(*args: str | Path) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(app, ["scan", *map(str, args), "--format", "json", "-q"])
    return result.exit_code, json.loads(result.stdout)


def codes_by_file(document: dict[str, object]) -> set[tuple[str, str]]:
    reports = document["reports"]
    assert isinstance(reports, list)
    return {(f["code"], file) for r in reports for f in r["findings"] for file in f["files"]}


@pytest.fixture
def folder(tmp_path: Path, fixtures_dir: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(fixtures_dir / CLEAN, target)
    return target


def test_clean_folder_has_no_tc401(folder: Path) -> None:
    code, document = scan_json(folder)
    assert code == 0 and not any(c == "TC401" for c, _ in codes_by_file(document))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "optimizer.pt", "rng_state_0.pth", "last.ckpt", "x.pkl"])
def test_hostile_pickle_beside_safetensors_is_reported(folder: Path, name: str) -> None:
    hostile(folder / name)
    code, document = scan_json(folder)
    assert code == 1
    assert ("TC401", name) in codes_by_file(document)


def test_from_files_on_the_staged_pickle(folder: Path) -> None:
    bin_file = hostile(folder / "pytorch_model.bin")
    code, document = scan_json("--from-files", bin_file)
    assert code == 1 and ("TC401", "pytorch_model.bin") in codes_by_file(document)


def test_naming_a_pickle_scans_it(tmp_path: Path) -> None:
    for name in ("optimizer.pt", "model.pkl", "epoch=1.ckpt"):
        code, document = scan_json(hostile(tmp_path / name))
        assert code == 1 and ("TC401", name) in codes_by_file(document), name


def test_a_pickle_outside_any_checkpoint_is_scanned_from_files(tmp_path: Path) -> None:
    code, document = scan_json("--from-files", hostile(tmp_path / "optimizer.pt"))
    assert code == 1 and ("TC401", "optimizer.pt") in codes_by_file(document)


def test_real_trainer_side_files_are_not_alarms(folder: Path) -> None:
    """Zero false alarms: what a transformers Trainer writes beside the weights is not reported."""
    from transformers import TrainingArguments

    torch.save(TrainingArguments(output_dir=str(folder / "out"), report_to=[]), folder / "training_args.bin")
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
    torch.save(state, folder / "rng_state.pth")
    model = torch.nn.Linear(4, 4)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    code, document = scan_json(folder)
    assert code == 0, codes_by_file(document)


def test_a_hostile_training_args_is_reported(folder: Path) -> None:
    """The Trainer's file names earn no trust of their own: only the Trainer's classes are passed over."""
    hostile(folder / "training_args.bin")
    code, document = scan_json(folder)
    assert code == 1 and ("TC401", "training_args.bin") in codes_by_file(document)


def test_pre_commit_refuses_a_hostile_pickle_beside_safetensors(
    sample_repo: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    _local_config(sample_repo)
    hostile(sample_repo / "models" / "good" / "pytorch_model.bin")
    _git(sample_repo, "add", "-A")
    run = _pre_commit(sample_repo, tmp_path / "cache")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "TC401" in run.stdout and "pytorch_model.bin" in run.stdout
