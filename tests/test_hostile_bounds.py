"""Bounded work on hostile pickles: each ends as a named TC403 within 5 CPU seconds, in bounded memory.

Each input is scanned in a fresh subprocess (a C-level crash such as a recursive hash must fail the
test, not kill pytest), which reports the finding, the scan's own time and its peak memory.
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from pickle_helpers import glob, int_tuple, integer, state_dict, tensor, text, write_torch_zip

SRC = Path(__file__).resolve().parents[1] / "src"
SECONDS = 5.0
#: Peak resident memory of the whole scanning process (Python and imports included).
MEGABYTES = 400

PROBE = r"""
import json, sys, time
from tiecheck import scan
# CPU seconds, not wall time: the bound is on the work a hostile file can cause, and a loaded CI
# machine must not fail it (a wall-clock 5.6 s was seen with other jobs on both cores).
start = time.process_time()
report = scan(sys.argv[1])
elapsed = time.process_time() - start
# VmHWM belongs to this process's memory map; ru_maxrss would carry the parent's peak across exec.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
print(json.dumps({"codes": [f.code for f in report.findings], "messages": [f.message for f in report.findings],
                  "seconds": elapsed, "megabytes": peak}))
"""


def scan_in_child(path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout)
    return result


def zip_bomb(path: Path, unit: bytes, total: int) -> Path:
    """A torch-style zip whose deflated data.pkl inflates to ``total`` bytes of ``unit`` repeated."""
    head = b"\x80\x02("
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = bytearray(compressor.compress(head))
    crc = zlib.crc32(head)
    chunk = unit * ((1 << 20) // len(unit))
    written = len(head)
    while written < total:
        body += compressor.compress(chunk)
        crc = zlib.crc32(chunk, crc)
        written += len(chunk)
    body += compressor.compress(b"l.") + compressor.flush()
    crc = zlib.crc32(b"l.", crc)
    size = written + 2
    name = b"archive/data.pkl"
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), size, len(name), 0) + name
    fields = (b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(body), size, len(name), 0, 0, 0, 0, 0, 0)
    central = struct.pack("<4s6H3I5H2I", *fields) + name
    start = len(local) + len(body)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 1, 1, len(central), start, 0)
    path.write_bytes(local + body + central + end)
    return path


def nested_key(depth: int) -> bytes:
    """``{((((),),),)...: 1}``: hashing the key recurses in C once per level."""
    return b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."


def big_int_offset(bits: int) -> bytes:
    raw = (1 << bits).to_bytes(bits // 8 + 1, "little")
    body = tensor("0", 1, (1,)).replace(
        integer(0) + int_tuple((1,)), b"\x8b" + struct.pack("<I", len(raw)) + raw + int_tuple((1,)), 1
    )
    return state_dict({"w": body})


def huge_rank(dims: int) -> bytes:
    shape = pickle.MARK + b"".join(integer(2**30) for _ in range(dims)) + pickle.TUPLE
    body = tensor("0", 1, (1,)).replace(int_tuple((1,)), shape, 2)
    return state_dict({"w": body})


CASES: dict[str, Callable[[Path], Path]] = {
    "nested-key-900k": lambda d: write_torch_zip(d / "pytorch_model.bin", nested_key(900_000)),  # within the budget
    "int-20000-bits": lambda d: write_torch_zip(d / "pytorch_model.bin", big_int_offset(20_000), {"0": b"\0" * 4}),
    "rank-200000": lambda d: write_torch_zip(d / "pytorch_model.bin", huge_rank(200_000), {"0": b"\0" * 4}),
    "zip-bomb-255MB-trivial-opcodes": lambda d: zip_bomb(d / "pytorch_model.bin", b"N0", 255 << 20),
    "zip-bomb-60MB-empty-lists": lambda d: zip_bomb(d / "pytorch_model.bin", b"]", 60 << 20),
    "bare-20MB-empty-lists": lambda d: _write(d / "pytorch_model.bin", b"\x80\x02(" + b"]" * (20 << 20) + b"l."),
    "legacy-100MB-pickle": lambda d: _write(
        d / "pytorch_model.bin", pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"\x80\x02" + _huge_bytes(100 << 20)
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _huge_bytes(n: int) -> bytes:
    return b"\x8e" + struct.pack("<Q", n) + b"\0" * n + b"."


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_pickle_ends_as_tc403_in_seconds(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    CASES[name](folder)
    result = scan_in_child(folder)
    assert "TC403" in result["codes"], result["messages"]  # type: ignore[operator]
    assert result["seconds"] < SECONDS, result  # type: ignore[operator]
    assert result["megabytes"] < MEGABYTES, result  # type: ignore[operator]


def test_an_unsafe_import_before_the_budget_is_still_tc401(tmp_path: Path) -> None:
    """The budget stops the walk, not what was already seen: an import found first stays TC401."""
    data = b"\x80\x02" + glob("os", "system") + text("true") + b"\x85R0(" + b"]" * 3_000_000 + b"l."
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    write_torch_zip(tmp_path / "pytorch_model.bin", data)
    assert "TC401" in scan_in_child(tmp_path)["codes"]  # type: ignore[operator]


def _safetensors(path: Path, header: dict[str, object], data: bytes) -> Path:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_a_shape_of_200000_huge_dimensions_is_tc001_in_seconds(tmp_path: Path) -> None:
    shape = [2**40] * 200_000
    _safetensors(
        tmp_path / "model.safetensors", {"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 4]}}, b"\0" * 4
    )
    result = scan_in_child(tmp_path)
    assert "TC001" in result["codes"], result["messages"]  # type: ignore[operator]
    assert result["seconds"] < SECONDS, result  # type: ignore[operator]


def test_an_index_of_a_million_missing_shards_is_one_finding_in_seconds(tmp_path: Path) -> None:
    _safetensors(
        tmp_path / "model-00001-of-99999.safetensors",
        {"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
        b"\0" * 4,
    )
    weight_map = {"w": "model-00001-of-99999.safetensors"}
    weight_map.update({f"t{i}": f"model-{i:07d}-of-99999.safetensors" for i in range(2, 1_000_001)})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    result = scan_in_child(tmp_path)
    assert result["codes"].count("TC002") == 1, result["messages"]  # type: ignore[union-attr]
    assert result["seconds"] < 3 * SECONDS, result  # parsing a 50 MB index is most of it  # type: ignore[operator]


@pytest.mark.parametrize("count", [10**6, 10**18])
@pytest.mark.parametrize("model", [("llama", "LlamaForCausalLM"), ("custom", "CustomForCausalLM")])
def test_a_huge_layer_count_in_config_json_is_one_tc016_in_seconds(
    tmp_path: Path, model: tuple[str, str], count: int
) -> None:
    """config.json is input: a layer count of 10**18 costs what the stored layers cost. Known classes
    (generated shape data) and unknown ones (the guess from common names) both report the runs missing."""
    from tiecheck import testing

    testing.write_sharded(tmp_path, [testing.llama_like(head=True)])
    testing.write_json(tmp_path / "config.json", testing.config(*model, num_hidden_layers=count))
    result = scan_in_child(tmp_path)
    assert result["codes"].count("TC016") == 1, result["messages"]  # type: ignore[union-attr]
    assert any(f"layers.{{2-{count - 1}}}" in m for m in result["messages"]), result  # type: ignore[union-attr]
    assert result["seconds"] < SECONDS, result  # type: ignore[operator]
    assert result["megabytes"] < MEGABYTES, result  # type: ignore[operator]
