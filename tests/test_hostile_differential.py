"""The differential test: every archive ``torch.load(weights_only=False)`` executes is flagged by tiecheck.

A generated corpus of ambiguous and malformed files (duplicate and case-variant entries, central
directory tricks, overlapping entries, bytes outside entries, pickles after STOP, legacy frame tricks,
polyglots) is loaded by torch in throwaway child processes; a marker payload (``open(marker, "w")``,
nothing else) records whether the pickle ran. tiecheck reads each file first and must never run it,
and must report every file torch ran as TC401 or TC403, never clean.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pickle_helpers import state_dict, tensor, text
from tiecheck.errors import FormatError
from tiecheck.formats.torch_pickle import UNREADABLE, UNSAFE, read_torch_file
from tiecheck.io.source import LocalFileSource

ROOT = b"archive/"
RECORD = b"\0\0\x80\x3f"  # 1.0 as float32


def clean_pickle() -> bytes:
    return state_dict({"w": tensor("0", 1, (1,))})


def payload(marker: Path, protocol: int = 2) -> bytes:
    """``open(marker, "w")`` at unpickling time, then an empty dict: a load that looks harmless."""
    call = pickle.GLOBAL + b"builtins\nopen\n" + text(str(marker)) + text("w") + pickle.TUPLE2 + pickle.REDUCE
    return pickle.PROTO + bytes([protocol]) + call + pickle.POP + pickle.EMPTY_DICT + pickle.STOP


# --- a zip writer that can lie ----------------------------------------------------------------------


def local(name: bytes, data: bytes, method: int = 0) -> bytes:
    body = zlib.compress(data)[2:-4] if method == 8 else data
    header = struct.pack(
        "<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, zlib.crc32(data), len(body), len(data), len(name), 0
    )
    return header + name + body


def central(name: bytes, data: bytes, offset: int, method: int = 0) -> bytes:
    size = len(zlib.compress(data)[2:-4]) if method == 8 else len(data)
    fields = (b"PK\x01\x02", 20, 20, 0, method, 0, 0, zlib.crc32(data), size, len(data), len(name), 0, 0, 0, 0, 0)
    return struct.pack("<4s6H3I5H2I", *fields, offset) + name


def assemble(
    entries: list[tuple[bytes, bytes]],
    directory: list[tuple[int, bytes]] | None = None,
    gap: dict[int, bytes] | None = None,
    tail: bytes = b"",
    method: dict[int, int] | None = None,
) -> bytes:
    """Local entries in order (``gap[i]`` bytes before entry i), then a directory naming ``(entry, name)``."""
    out = bytearray()
    offsets = []
    method = method or {}
    for i, (name, data) in enumerate(entries):
        out += (gap or {}).get(i, b"")
        offsets.append(len(out))
        out += local(name, data, method.get(i, 0))
    out += tail
    directory = directory if directory is not None else [(i, name) for i, (name, _) in enumerate(entries)]
    start = len(out)
    for i, name in directory:
        out += central(name, entries[i][1], offsets[i], method.get(i, 0))
    n = len(directory)
    out += struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(out) - start, start, 0)
    return bytes(out)


def torch_zip(pkl: bytes, *extra: tuple[bytes, bytes], first: tuple[bytes, bytes] | None = None) -> bytes:
    entries = [first] if first else []
    entries += [(ROOT + b"data.pkl", pkl), *extra, (ROOT + b"data/0", RECORD), (ROOT + b"version", b"3\n")]
    return assemble(entries)


# --- the corpus ---------------------------------------------------------------------------------------


def legacy(main: bytes, frame_trick: str | None = None) -> bytes:
    """torch's pre-zip format: magic, protocol, system info, the object, storage keys, then the storages."""
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    version = pickle.dumps(1001, protocol=2)
    info = pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {}}, protocol=2)
    keys = pickle.dumps(["0"], protocol=2)
    data = struct.pack("<q", 1) + RECORD
    if frame_trick == "frame-swallows-next":
        # A protocol-4 frame around the magic number that also holds a clean copy of the rest: an
        # unbuffered reader resumes at the frame's end, a buffered one (and a scanner) after STOP.
        inner = magic[2:] + version + info + pickle.dumps({}, protocol=2) + keys
        first = b"\x80\x04\x95" + struct.pack("<Q", len(inner)) + inner
        return first + version + info + main + keys + data
    if frame_trick == "frame-shorter":
        inner = magic[2:]
        first = b"\x80\x04\x95" + struct.pack("<Q", len(inner) - 3) + inner
        return first + version + info + main + keys + data
    return magic + version + info + main + keys + data


def v7_tar_polyglot(marker: Path) -> bytes:
    """A tar whose members torch's legacy tar loader unpickles; its first bytes are also a pickle."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("storages", pickle.dumps(0, protocol=2)), ("tensors", payload(marker))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def corpus(marker: Path) -> dict[str, bytes]:
    bad, ok = payload(marker), clean_pickle()
    pkl = ROOT + b"data.pkl"
    cases = {
        "plain-hostile": torch_zip(bad),
        "duplicate-hostile-first": torch_zip(bad, (pkl, ok)),
        "duplicate-hostile-last": torch_zip(ok, (pkl, bad)),
        "case-variant-upper-hostile": torch_zip(ok, (ROOT + b"DATA.PKL", bad)),
        "case-variant-first-hostile": torch_zip(bad, (ROOT + b"Data.pkl", ok)),
        "case-only-upper": assemble([(ROOT + b"DATA.PKL", bad), (ROOT + b"version", b"3\n")]),
        "case-variant-root": assemble([(ROOT + b"version", b"3\n"), (b"ARCHIVE/data.pkl", bad)]),
        "pickle-after-stop": torch_zip(ok[:-1] + pickle.STOP + bad),
        "deflated-hostile": assemble([(pkl, bad), (ROOT + b"version", b"3\n")], method={0: 8}),
    }
    cases["torchscript-look-alike"] = torch_zip(bad, (ROOT + b"CONSTANTS.PKL", b"\x80\x02)."))
    out = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w") as archive:
        warnings.simplefilter("ignore")  # "Duplicate name"
        for name, data in ((pkl, bad), (pkl, ok), (ROOT + b"data/0", RECORD), (ROOT + b"version", b"3\n")):
            archive.writestr(name.decode(), data)
    cases["duplicate-written-by-zipfile"] = out.getvalue()
    # The directory lists the clean data.pkl; a second local header with the hostile one is not listed.
    entries = [(pkl, bad), (pkl, ok), (ROOT + b"data/0", RECORD), (ROOT + b"version", b"3\n")]
    cases["directory-hides-a-local-entry"] = assemble(
        entries, directory=[(1, pkl), (2, entries[2][0]), (3, entries[3][0])]
    )
    cases["directory-renames-local-entry"] = assemble(
        [(ROOT + b"other.pkl", bad), (ROOT + b"version", b"3\n")], directory=[(0, pkl), (1, ROOT + b"version")]
    )
    cases["overlapping-entries"] = assemble(
        [(pkl, bad), (ROOT + b"version", b"3\n")], directory=[(0, pkl), (0, ROOT + b"data/0"), (1, ROOT + b"version")]
    )
    cases["bytes-between-entries"] = assemble(
        [(pkl, ok), (ROOT + b"data/0", RECORD), (ROOT + b"version", b"3\n")], gap={1: local(pkl, bad)}
    )
    cases["bytes-before-directory"] = torch_zip(ok)[:0] + assemble(
        [(pkl, ok), (ROOT + b"data/0", RECORD)], tail=local(pkl, bad)
    )
    cases["prefixed-zip"] = bad + torch_zip(ok)
    cases["zip-after-legacy-magic"] = legacy(bad) + torch_zip(ok)
    cases["legacy-hostile"] = legacy(bad)
    cases["legacy-frame-swallows-next"] = legacy(bad, "frame-swallows-next")
    cases["legacy-frame-shorter"] = legacy(bad, "frame-shorter")
    cases["bare-hostile-protocol-4"] = payload(marker, protocol=4)
    cases["tar-polyglot"] = v7_tar_polyglot(marker)
    eocd_comment = torch_zip(bad)
    cases["end-record-comment-mismatch"] = eocd_comment[:-2] + struct.pack("<H", 40) + b"junk"
    return cases


CHILD = r"""
import json, os, signal, sys, warnings
import torch
warnings.filterwarnings("ignore")
results = {}
for path, marker in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        signal.alarm(20)
        try:
            torch.load(path, weights_only=False)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    results[path] = os.path.exists(marker)
print(json.dumps(results))
"""


def torch_runs(files: list[tuple[Path, Path]]) -> dict[str, bool]:
    """Which files make ``torch.load(weights_only=False)`` run the payload (each in a forked child)."""
    arg = json.dumps([[str(p), str(m)] for p, m in files])
    done = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, bool] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def tiecheck_verdict(path: Path) -> str:
    with LocalFileSource(path) as source:
        try:
            read_torch_file(source, path.name)
        except FormatError as exc:
            return {UNSAFE: "TC401", UNREADABLE: "TC403"}[exc.rule]
    return "clean"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bool, str]]:
    folder = tmp_path_factory.mktemp("differential")
    files: list[tuple[Path, Path]] = []
    verdicts: dict[str, str] = {}
    names = corpus(folder / "probe.marker")
    for name in names:
        marker = folder / f"{name}.marker"
        path = folder / f"{name}.bin"
        path.write_bytes(corpus(marker)[name])
        verdicts[name] = tiecheck_verdict(path)
        assert not marker.exists(), f"tiecheck ran the payload of {name}"
        files.append((path, marker))
    ran = torch_runs(files)
    return {name: (ran[str(folder / f"{name}.bin")], verdicts[name]) for name in names}


def test_every_file_torch_executes_is_flagged(outcomes: dict[str, tuple[bool, str]]) -> None:
    executed = {name: verdict for name, (ran, verdict) in outcomes.items() if ran}
    assert len(executed) >= 12, outcomes  # the corpus really exercises torch's reader
    assert {n: v for n, v in executed.items() if v == "clean"} == {}


def test_nothing_in_the_corpus_is_clean(outcomes: dict[str, tuple[bool, str]]) -> None:
    assert {n: v for n, (_, v) in outcomes.items() if v == "clean"} == {}


@pytest.mark.parametrize(
    "name",
    [
        "plain-hostile",
        "duplicate-hostile-first",
        "duplicate-hostile-last",
        "case-variant-upper-hostile",
        "case-only-upper",
        "directory-renames-local-entry",
        "legacy-hostile",
        "legacy-frame-shorter",
        "bare-hostile-protocol-4",
        "torchscript-look-alike",
        "deflated-hostile",
    ],
)
def test_a_hostile_candidate_is_named_unsafe(outcomes: dict[str, tuple[bool, str]], name: str) -> None:
    """Whichever entry torch picks, an importing pickle among the candidates is TC401, not just unreadable."""
    assert outcomes[name][1] == "TC401"


def test_torch_save_output_is_not_ambiguous(tmp_path: Path) -> None:
    """The strict reader calls nothing ambiguous that torch itself writes (plain, zip64 records, descriptors)."""
    path = tmp_path / "real.bin"
    torch.save({"a": torch.ones(3), "b": torch.zeros(2, 2, dtype=torch.bfloat16), "c": torch.ones(0)}, path)
    assert tiecheck_verdict(path) == "clean"
    legacy_path = tmp_path / "legacy.bin"
    torch.save({"a": torch.ones(3)}, legacy_path, _use_new_zipfile_serialization=False)
    assert tiecheck_verdict(legacy_path) == "clean"


def _mutations() -> list[Callable[[bytes], bytes]]:
    return [lambda b: b + b"\0", lambda b: b"\0" + b]


@pytest.mark.parametrize("mutate", _mutations(), ids=["trailing-byte", "leading-byte"])
def test_one_stray_byte_makes_a_real_archive_unclean(tmp_path: Path, mutate: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "real.bin"
    torch.save({"a": torch.ones(3)}, path)
    path.write_bytes(mutate(path.read_bytes()))
    assert tiecheck_verdict(path) == "TC403"


def test_an_unreadable_directory_still_names_an_unsafe_pickle(tmp_path: Path) -> None:
    """Honest labels: with the end record gone, the local headers still show a data.pkl that runs code."""
    data = torch_zip(payload(tmp_path / "never.marker"))
    path = tmp_path / "cut.bin"
    path.write_bytes(data[: data.rindex(b"PK\x01\x02")])  # directory and end record cut off
    assert tiecheck_verdict(path) == "TC401"
    assert not (tmp_path / "never.marker").exists()
