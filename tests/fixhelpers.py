"""Helpers shared by the fix tests: folder snapshots, a 'does it load' check, and a fix runner with hooks.

Run as a script (``python tests/fixhelpers.py FOLDER [--kill-at N] [--trace FILE] [--chunk N] FLAGS``),
it fixes FOLDER in place with injected hooks: each named step is appended to the trace file,
and at step N the process SIGKILLs itself. Production code has no such hook.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tiecheck import scan

LOAD_ERRORS = {"TC001", "TC002", "TC003", "TC008", "TC009"}
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"


def copy_fixture(fixtures_dir: Path, name: str, tmp_path: Path, as_name: str | None = None) -> Path:
    """A writable copy of the generated fixture ``name`` (tests fix it in place)."""
    folder = tmp_path / (as_name or name)
    shutil.copytree(fixtures_dir / name, folder)
    return folder


@pytest.fixture(name="merged")
def use_merged(tmp_path: Path, fixtures_dir: Path) -> Path:
    """Fixture ``merged``, the fix tests' usual patient: a two-shard Gemma2 with its tied head stored again (TC101),
    as merges leave it. A test module imports ``use_merged`` to have it (the name differs so arguments do not
    shadow the import)."""
    return copy_fixture(fixtures_dir, "gemma2-merge-duplicated-head", tmp_path, "merged")


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


class KillHooks:
    """Injected into ``run_fix``: number the steps, trace them, SIGKILL the process at one of them."""

    def __init__(self, trace: Path | None, kill_at: int | None) -> None:
        self.count = 0
        self.trace = trace
        self.kill_at = kill_at

    def step(self, name: str) -> None:
        self.count += 1
        if self.trace is not None:
            with self.trace.open("a", encoding="utf-8") as out:
                out.write(f"{self.count} {name}\n")
        if self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


RUNNER = Path(__file__).resolve()


def run_hooked(
    folder: Path, flags: list[str], *, chunk: int, trace: Path | None = None, kill_at: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Fix ``folder`` in a child process with :class:`KillHooks` (see the module docstring)."""
    args = [sys.executable, str(RUNNER), str(folder), "--chunk", str(chunk), *flags]
    args += ["--trace", str(trace)] if trace is not None else []
    args += ["--kill-at", str(kill_at)] if kill_at is not None else []
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)


def _main() -> None:
    from tiecheck.fixer import Options, run_fix

    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--chunk", type=int, default=8 << 20)
    parser.add_argument("--trace", type=Path)
    parser.add_argument("--kill-at", type=int)
    for flag in ("drop-duplicates", "tie-head", "to-safetensors"):
        parser.add_argument(f"--{flag}", action="store_true")
    ns = parser.parse_args()
    options = Options(drop_duplicates=ns.drop_duplicates, tie_head=ns.tie_head, to_safetensors=ns.to_safetensors)
    run_fix(ns.folder, options, hooks=KillHooks(ns.trace, ns.kill_at), chunk=ns.chunk)


if __name__ == "__main__":
    _main()
