"""Helpers shared by the fix tests: folder snapshots and a 'does it load' check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open

from tiecheck import scan

LOAD_ERRORS = {"TC001", "TC002", "TC003", "TC008", "TC009"}


def snapshot(folder: Path) -> dict[str, str]:
    """Name -> sha256 of every file: proves a refused fix touched nothing."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def loadable(folder: Path) -> dict[str, bytes]:
    """Assert the folder is a loadable checkpoint; return every tensor a loader reads, as bytes.

    tiecheck's own scan reports no load error, and safetensors' reference reader opens every
    weight file the index names (or model.safetensors) and reads each indexed tensor from it.
    """
    report = scan(folder)
    errors = [f for f in report.findings if f.code in LOAD_ERRORS and f.severity.label == "error"]
    assert not errors, errors
    index = folder / "model.safetensors.index.json"
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
    else:
        with safe_open(folder / "model.safetensors", "pt") as f:
            weight_map = dict.fromkeys(f.keys(), "model.safetensors")
    tensors: dict[str, bytes] = {}
    for shard in sorted(set(weight_map.values())):
        with safe_open(folder / shard, "pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                if weight_map.get(name) == shard:
                    tensors[name] = as_bytes(f.get_tensor(name))
    assert set(tensors) == set(weight_map)
    return tensors


def as_bytes(tensor: torch.Tensor) -> bytes:
    return bytes(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def codes(folder: Path) -> set[str]:
    """Finding codes, less TC203 (info): freshly initialised models have all-ones norms, and no fix touches them."""
    return {f.code for f in scan(folder).findings} - {"TC203"}
