"""Pickles that do not look like torch.save's still run code when loaded: each is reported.

torch.load and pickle.load read any non-zip file as a stream of pickles, whatever its first byte
(protocols 0 and 1 have no PROTO opcode, and PROTO may come after other opcodes), and neither looks at
the file's name. Each hostile file here is checked to run its payload under pickle.load with a
harmless callable, then expected to be reported beside clean safetensors weights.
"""

from __future__ import annotations

import io
import pickle
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from pickle_helpers import glob, text
from test_cli_pickles import CLEAN, codes_by_file, scan_json

torch = pytest.importorskip("torch")


class _Payload:
    """Unpickling it calls ``callable_(argument)``."""

    def __init__(self, callable_: Callable[[str], object], argument: str) -> None:
        self.call = (callable_, argument)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (self.call[0], (self.call[1],))


def _hostile(protocol: int) -> bytes:
    return pickle.dumps(_Payload(print, "pwned"), protocol=protocol)


def _padded(prefix: bytes, count: int) -> bytes:
    """A protocol-2 pickle whose import comes after ``count`` do-nothing opcode pairs (``N0``: push None, pop)."""
    return b"\x80\x02" + prefix * count + glob("builtins", "print") + text("pwned") + b"\x85R."


HOSTILE: dict[str, bytes] = {
    "protocol-0": _hostile(0),
    "protocol-1": _hostile(1),
    "none-pop-before-proto": b"N0" + _hostile(2),
    "past-the-opcode-budget": _padded(b"N0", 600_000),
}


def _runs_print(data: bytes, capsys: pytest.CaptureFixture[str]) -> bool:
    pickle.loads(data)  # the payload is builtins.print: what a loader would run, harmlessly
    return "pwned" in capsys.readouterr().out


@pytest.fixture
def folder(tmp_path: Path, fixtures_dir: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(fixtures_dir / CLEAN, target)
    return target


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_pickle_that_does_not_start_like_torch_save_is_still_read_for_imports(
    folder: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = HOSTILE[case]
    assert _runs_print(data, capsys)
    (folder / "extra.pkl").write_bytes(data)
    code, document = scan_json(folder)
    found = codes_by_file(document)
    assert code == 1, document
    # Within the opcode budget the import is named (TC401); past it, the file is reported as unchecked.
    expected = "TC403" if case == "past-the-opcode-budget" else "TC401"
    assert (expected, "extra.pkl") in found, found


def test_a_side_pickle_past_the_budget_is_a_warning_that_says_why(folder: Path) -> None:
    (folder / "extra.pkl").write_bytes(HOSTILE["past-the-opcode-budget"])
    _, document = scan_json(folder)
    (finding,) = [f for r in document["reports"] for f in r["findings"] if f["code"] == "TC403"]  # type: ignore[attr-defined]
    assert finding["severity"] == "warning"
    assert "could not all be checked" in finding["message"] and "budget" in finding["message"]


@pytest.mark.parametrize(
    "name", ["X.PKL", "optimizer.Pt", "model.BIN", "checkpoint.pth.tar", "state.pickle", "model.joblib"]
)
def test_a_pickle_under_any_name_a_pickle_goes_by_is_read(folder: Path, name: str) -> None:
    torch.save({"w": torch.zeros(2), "extra": _Payload(print, "pwned")}, folder / name)
    code, document = scan_json(folder)
    assert code == 1
    assert ("TC401", name) in codes_by_file(document)


@pytest.mark.parametrize("name", ["notes.bin", "data.pkl", "archive.tar"])
def test_files_that_are_no_pickle_stay_quiet(folder: Path, name: str) -> None:
    """A text file, random bytes and a real tar archive under pickle-like names: nothing to report."""
    (folder / "readme.txt").write_text("x")
    if name == "archive.tar":
        with tarfile.open(folder / name, "w") as tar:
            tar.add(folder / "readme.txt", arcname="readme.txt")
    elif name == "data.pkl":
        (folder / name).write_bytes(bytes(range(256)) * 4)
    else:
        (folder / name).write_text("Version 2 of the notes.\nNothing to load here.\n")
    code, document = scan_json(folder)
    assert code == 0, document


def test_a_protocol_0_torch_file_is_named_for_what_it_is(tmp_path: Path) -> None:
    """torch.save(pickle_protocol=0) writes a file torch itself cannot load (its PERSID is a string):
    TC403, with the pickle walked, not called "neither a zip archive nor a pickle"."""
    sd = {"a": torch.arange(6.0).reshape(2, 3)}
    torch.save(sd, tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=False, pickle_protocol=0)
    with pytest.raises(AssertionError):
        torch.load(tmp_path / "pytorch_model.bin", weights_only=False)
    _, document = scan_json(tmp_path)
    (finding,) = [f for r in document["reports"] for f in r["findings"] if f["code"] == "TC403"]  # type: ignore[attr-defined]
    assert "legacy" in finding["message"] and "neither" not in finding["message"]


def test_recursive_scan_reads_a_subfolder_that_holds_only_a_pickle(folder: Path) -> None:
    """sentence-transformers' ``2_Dense/`` and stray Trainer files live in subfolders without safetensors."""
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "Extra.PICKLE").write_bytes(_hostile(2))
    (folder / "clean").mkdir()
    torch.save({"step": 3}, folder / "clean" / "scheduler.pt")
    code, document = scan_json("-r", folder)
    assert code == 1
    by_target = {r["target"].rsplit("/", 1)[-1]: r["findings"] for r in document["reports"]}  # type: ignore[attr-defined]
    assert [f["code"] for f in by_target["2_Dense"]] == ["TC401"]
    assert by_target["clean"] == [], "a folder of side files only needs no config.json (no TC010)"


def test_from_files_reads_a_staged_pickle_under_any_pickle_name(tmp_path: Path) -> None:
    (tmp_path / "Model.JOBLIB").write_bytes(_hostile(2))
    code, document = scan_json("--from-files", tmp_path / "Model.JOBLIB")
    assert code == 1 and ("TC401", "Model.JOBLIB") in codes_by_file(document)


def _legacy_tar(path: Path, storages: bytes) -> Path:
    """torch's pre-0.1.10 tar format: torch.load unpickles its ``storages`` member first."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("sys_info", pickle.dumps({"little_endian": True}, protocol=2)),
            ("storages", storages),
            ("tensors", pickle.dumps(0, protocol=2)),
            ("pickle", pickle.dumps({}, protocol=2)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_legacy_torch_tar_beside_the_weights_is_read_for_imports(folder: Path) -> None:
    hostile = _legacy_tar(folder / "old.pth.tar", _hostile(2))
    child = subprocess.run(
        [sys.executable, "-c", f"import torch; torch.load({str(hostile)!r}, weights_only=False)"],
        capture_output=True,
        text=True,
    )
    assert "pwned" in child.stdout, "torch.load runs the storages member"
    code, document = scan_json(folder)
    assert code == 1 and ("TC401", "old.pth.tar") in codes_by_file(document)


def test_a_harmless_legacy_torch_tar_is_reported_as_unchecked(folder: Path) -> None:
    """Only the first pickle of each member is walked: the rest of the format is not read, and that is said."""
    _legacy_tar(folder / "old.pth.tar", pickle.dumps(0, protocol=2))
    _, document = scan_json(folder)
    (finding,) = [f for r in document["reports"] for f in r["findings"]]  # type: ignore[attr-defined]
    assert (finding["code"], finding["severity"]) == ("TC403", "warning") and "tar" in finding["message"]
