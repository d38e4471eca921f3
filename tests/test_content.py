"""The content engine and its rules: duplicates (TC202), constant tensors (TC203), NaN/Inf (TC204)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from typer.testing import CliRunner

from tiecheck import Finding, Report, scan
from tiecheck._bytes import constant_pattern, count_nonfinite
from tiecheck.cli import app
from tiecheck.cli.progress import RichProgress, progress_for
from tiecheck.content import SAMPLE, SAMPLES, ContentReader
from tiecheck.formats.safetensors import write_file
from tiecheck.io.source import LocalStore
from tiecheck.loader import load_checkpoint

BIG = (64, 1024)  # 128 KB in F16: larger than a fingerprint's samples
RNG = np.random.default_rng(0)


def rand(shape: tuple[int, ...] = BIG, dtype: str = "F16") -> tuple[str, tuple[int, ...], bytes]:
    np_dtype = {"F16": np.float16, "F32": np.float32}[dtype]
    return dtype, shape, RNG.standard_normal(shape).astype(np_dtype).tobytes()


def findings(report: Report) -> list[Finding]:
    """The findings, without TC010's note that these bare test files have no config.json."""
    return [f for f in report.findings if f.code != "TC010"]


def codes(report: Report) -> list[str]:
    return sorted(f.code for f in findings(report))


def write(folder: Path, tensors: dict[str, tuple[str, tuple[int, ...], bytes]]) -> Path:
    folder.mkdir(exist_ok=True)
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    return folder


# --- staged duplicate detection ------------------------------------------------------------------


def test_same_size_tensors_differing_in_last_byte_are_not_duplicates(tmp_path: Path) -> None:
    dtype, shape, data = rand()
    other = data[:-1] + bytes([data[-1] ^ 1])
    report = scan(write(tmp_path / "m", {"a": (dtype, shape, data), "b": (dtype, shape, other)}))
    assert "TC202" not in codes(report)
    # The last block is sampled, so the fingerprints differ and nothing is read in full.
    assert report.bytes_read == 2 * SAMPLES * SAMPLE


def test_fingerprint_collision_is_settled_by_the_full_hash(tmp_path: Path) -> None:
    dtype, shape, data = rand()
    middle = len(data) // 2 + 2 * SAMPLE + 1  # between two sampled blocks
    other = data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]
    report = scan(write(tmp_path / "m", {"a": (dtype, shape, data), "b": (dtype, shape, other)}))
    assert "TC202" not in codes(report)
    assert report.bytes_read == 2 * SAMPLES * SAMPLE + 2 * len(data)  # sampled, collided, read in full


def test_tensor_written_twice_under_two_names(tmp_path: Path) -> None:
    tensors = {"encoder.proj.weight": rand(), "decoder.proj.weight": rand(), "unique.weight": rand((32, 32))}
    tensors["decoder.proj.weight"] = tensors["encoder.proj.weight"]
    report = scan(write(tmp_path / "m", tensors))
    (f,) = [f for f in findings(report) if f.code == "TC202"]
    assert f.tensors == ("decoder.proj.weight", "encoder.proj.weight")
    assert f.bytes == 64 * 1024 * 2
    # Cost follows the duplicates: samples of the same-size pair plus one full read of each copy.
    assert report.bytes_read == 2 * SAMPLES * SAMPLE + 2 * 64 * 1024 * 2 + 32 * 32 * 2


def test_unique_tensors_cost_only_samples(tmp_path: Path) -> None:
    tensors = {f"layers.{i}.weight": rand((256, 1024)) for i in range(8)}
    report = scan(write(tmp_path / "m", tensors))
    assert codes(report) == []
    assert report.bytes_read == 8 * SAMPLES * SAMPLE
    assert report.bytes_read < 0.05 * report.summary.bytes


def test_declared_tie_and_duplicate_key_are_not_reported_again(fixtures_dir: Path) -> None:
    assert codes(scan(fixtures_dir / "gemma2-merge-duplicated-head")) == ["TC101"]
    assert codes(scan(fixtures_dir / "qwen2-tieable-head")) == ["TC104"]
    assert "TC202" not in codes(scan(fixtures_dir / "index-drift"))  # its TC005 copies are identical


def test_equal_is_exact_even_when_fingerprints_collide(tmp_path: Path) -> None:
    dtype, shape, data = rand()
    middle = len(data) // 2 + 2 * SAMPLE + 1
    other = data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]
    folder = write(tmp_path / "m", {"a": (dtype, shape, data), "b": (dtype, shape, other), "c": (dtype, shape, data)})
    store = LocalStore(folder)
    tensors = load_checkpoint(store).tensor_map()
    with ContentReader(store) as reader:
        assert not reader.equal(tensors["a"], tensors["b"])
        assert reader.equal(tensors["a"], tensors["c"])
        assert reader.equal(tensors["c"], tensors["a"])  # cached: no second read
        assert reader.bytes_read == 3 * SAMPLES * SAMPLE + 4 * len(data)


def test_repeated_layers_are_summarised(tmp_path: Path) -> None:
    tensors: dict[str, tuple[str, tuple[int, ...], bytes]] = {"model.embed_tokens.weight": rand((256, 64))}
    for i in range(6):
        tensors[f"model.layers.{i}.self_attn.q_proj.weight"] = rand((64, 64))
        tensors[f"model.layers.{i}.mlp.up_proj.weight"] = rand((128, 64))
        tensors[f"model.layers.{i}.input_layernorm.weight"] = ("F16", (64,), np.ones(64, np.float16).tobytes())
    for i in (4, 5):  # a passthrough merge: layers 4-5 are layers 2-3 again
        for part in ("self_attn.q_proj.weight", "mlp.up_proj.weight"):
            tensors[f"model.layers.{i}.{part}"] = tensors[f"model.layers.{i - 2}.{part}"]
    report = scan(write(tmp_path / "m", tensors))
    (dup,) = [f for f in findings(report) if f.code == "TC202"]
    assert "layers 4\u20135 repeat layers 2\u20133" in dup.message
    assert dup.tensors == tuple(sorted(f"model.layers.{i}.{p}" for i in (4, 5) for p in tensors_parts()))
    (const,) = [f for f in findings(report) if f.code == "TC203"]
    assert len(const.tensors) == 6 and "1.0" in const.message  # the all-ones norms, grouped once


def tensors_parts() -> tuple[str, ...]:
    return ("input_layernorm.weight", "mlp.up_proj.weight", "self_attn.q_proj.weight")


# --- constant tensors ----------------------------------------------------------------------------


def test_constant_patterns() -> None:
    assert constant_pattern(np.zeros(10, np.float32).tobytes(), "F32") == bytes(4)
    signed_zeros = np.array([0.0, -0.0, 0.0, -0.0], np.float32).tobytes()
    assert constant_pattern(signed_zeros, "F32") == bytes(4)  # +0 and -0 are both zero
    assert constant_pattern(np.array([1.0, 1.0], np.float16).tobytes(), "F16") == np.float16(1).tobytes()
    assert constant_pattern(np.array([1.0, -1.0], np.float32).tobytes(), "F32") is None
    assert constant_pattern(np.array([0, 0, 1], np.int64).tobytes(), "I64") is None
    assert constant_pattern(b"\x00\x00\x00\x80", "I16") is None  # -0 is only a float idea


def test_all_zero_matrix_is_found_without_deep(tmp_path: Path) -> None:
    zeros = ("F16", BIG, bytes(64 * 1024 * 2))
    report = scan(write(tmp_path / "m", {"a.weight": rand(), "b.weight": zeros}))
    (f,) = findings(report)
    assert f.code == "TC203" and f.tensors == ("b.weight",)
    assert "every element is 0.0" in f.message and "broken save or merge" in f.message
    # Its samples looked constant, so it (and only it) was read in full to confirm.
    assert report.bytes_read == 2 * SAMPLES * SAMPLE + 64 * 1024 * 2


def test_nearly_constant_tensor_is_not_constant(tmp_path: Path) -> None:
    data = bytearray(64 * 1024 * 2)
    data[len(data) // 2 + 2 * SAMPLE] = 1  # one element differs, between sampled blocks
    report = scan(write(tmp_path / "m", {"w": ("F16", BIG, bytes(data))}), deep=True)
    assert codes(report) == []


# --- non-finite values ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_nan_and_inf_with_deep(tmp_path: Path, dtype: torch.dtype) -> None:
    bad = torch.randn(300, 200).to(dtype)
    bad[7, 3] = float("nan")
    bad[100, 100] = float("inf")
    bad[299, 199] = float("-inf")
    good = torch.randn(300, 200).to(dtype)
    save_file({"bad.weight": bad, "good.weight": good}, str(tmp_path / "model.safetensors"))
    assert "TC204" not in codes(scan(tmp_path))  # only --deep reads every byte
    report = scan(tmp_path, deep=True)
    (f,) = findings(report)
    assert f.code == "TC204" and f.tensors == ("bad.weight",)
    assert "1 NaN and 2 Inf" in f.message
    assert report.contents is not None and report.contents["bad.weight"].nan == 1


@pytest.mark.parametrize("special", [float("nan"), -float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_a_single_special_value_is_found(dtype: torch.dtype, special: float) -> None:
    values = torch.randn(10_000).to(dtype)
    values[4321] = special
    raw = values.view(torch.uint8).numpy().tobytes()
    name = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64"}[dtype]
    expected = (1, 0) if special != special else (0, 1)
    assert count_nonfinite(raw, name) == expected


def test_count_nonfinite_decodes_raw_bits() -> None:
    values = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 65504.0, -0.0])
    for dtype, name in ((torch.bfloat16, "BF16"), (torch.float16, "F16"), (torch.float32, "F32")):
        raw = values.to(dtype).view(torch.uint8).numpy().tobytes()
        assert count_nonfinite(raw, name) == (1, 2), name
    e4m3 = torch.tensor([1.0, 448.0, float("nan")]).to(torch.float8_e4m3fn).view(torch.uint8).numpy().tobytes()
    assert count_nonfinite(e4m3, "F8_E4M3") == (1, 0)
    assert count_nonfinite(b"\x01\x02", "I8") is None


# --- deep output, CLI, progress --------------------------------------------------------------------


def test_deep_json_lists_every_tensor_hash(fixtures_dir: Path) -> None:
    runner = CliRunner()
    plain = json.loads(runner.invoke(app, ["scan", str(fixtures_dir / "clean-llama-sharded"), "-f", "json"]).stdout)
    assert "tensors" not in plain["reports"][0]
    result = runner.invoke(app, ["scan", str(fixtures_dir / "clean-llama-sharded"), "-f", "json", "--deep", "-q"])
    assert result.exit_code == 0, result.output
    (deep,) = json.loads(result.stdout)["reports"]
    assert len(deep["tensors"]) == deep["summary"]["tensors"]
    assert all(t["hash"].startswith("xxh3_128:") and len(t["hash"]) == 9 + 32 for t in deep["tensors"])
    assert deep["summary"]["bytes_read"] == deep["summary"]["bytes"]  # every tensor exactly once


def test_deep_hash_is_the_hash_of_the_bytes(tmp_path: Path) -> None:
    import xxhash

    a = rand()
    report = scan(write(tmp_path / "m", {"a": a}), deep=True)
    assert report.contents is not None
    assert report.contents["a"].hash == "xxh3_128:" + xxhash.xxh3_128(a[2]).hexdigest()


def test_progress_only_on_a_terminal() -> None:
    assert progress_for(quiet=True) is None
    assert progress_for(quiet=False) is None  # pytest captures stderr: not a terminal


def test_progress_bar_draws_on_stderr(tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    out = StringIO()
    bar = RichProgress(Console(file=out, force_terminal=True, width=100))
    report = scan(write(tmp_path / "m", {"a": rand(), "b": rand()}), deep=True, progress=bar)
    assert report.bytes_read > 0
    assert "reading every tensor" in out.getvalue()


@pytest.mark.parametrize("name", ["gemma2-merge-duplicated-head", "gemma-tie-mismatch", "qwen2-tieable-head"])
def test_deep_reads_every_tensor_exactly_once_and_agrees(fixtures_dir: Path, name: str) -> None:
    plain, deep = scan(fixtures_dir / name), scan(fixtures_dir / name, deep=True)
    assert codes(deep) == codes(plain)
    # The tie pair is compared byte for byte in the same pass that hashes it: no second read.
    assert deep.bytes_read == deep.summary.bytes


def test_signed_zeros_across_chunks_are_one_constant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tiecheck._reading

    monkeypatch.setattr(tiecheck._reading, "CHUNK", 64 * 1024)  # several chunks: -0 in the first, +0 after
    data = np.zeros(BIG, np.float16)
    data.reshape(-1)[: 32 * 1024] = -0.0
    report = scan(write(tmp_path / "m", {"w": ("F16", BIG, data.tobytes())}), deep=True)
    (f,) = findings(report)
    assert f.code == "TC203" and "every element is 0.0" in f.message
    assert constant_pattern(np.full(4, -0.0, np.float32).tobytes(), "F32") == bytes(4)


# --- properties of the raw-bit decoders ----------------------------------------------------------

_AS_FLOAT = {"F16": np.float16, "F32": np.float32, "F64": np.float64}


def _reference(raw: bytes, dtype: str) -> tuple[int, int]:
    if dtype == "BF16":
        values = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        values = np.frombuffer(raw, _AS_FLOAT[dtype])
    return int(np.isnan(values).sum()), int(np.isinf(values).sum())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["BF16", "F16", "F32", "F64"]), st.binary(min_size=0, max_size=256), st.integers(1, 40))
def test_nonfinite_counts_match_numpy(dtype: str, raw: bytes, every: int) -> None:
    width = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}[dtype]
    raw = raw[: len(raw) - len(raw) % width]
    # bias towards specials: set the exponent bits of every n-th element (often none, or only one)
    data = bytearray(raw)
    exponent = {"BF16": 0x7F80, "F16": 0x7C00, "F32": 0x7F80_0000, "F64": 0x7FF0 << 48}[dtype]
    for i in range(width * (every // 2), len(data), every * width):
        element = int.from_bytes(data[i : i + width], "little") | exponent
        data[i : i + width] = element.to_bytes(width, "little")
    assert count_nonfinite(bytes(data), dtype) == _reference(bytes(data), dtype)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["F16", "F32"]), st.lists(st.sampled_from([0.0, -0.0, 1.0, 2.5]), min_size=2, max_size=64))
def test_constant_pattern_matches_values(dtype: str, values: list[float]) -> None:
    array = np.array(values, _AS_FLOAT[dtype])
    pattern = constant_pattern(array.tobytes(), dtype)
    numerically_constant = bool((array == array[0]).all())  # -0.0 == 0.0 numerically
    assert (pattern is not None) == numerically_constant
    if pattern is not None:
        assert np.frombuffer(pattern, _AS_FLOAT[dtype])[0] == array[0]


def test_a_scan_without_full_reads_does_not_import_numpy(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = write(tmp_path / "m", {f"layers.{i}.weight": rand((256, 1024)) for i in range(3)})
    code = "import sys, tiecheck; r = tiecheck.scan(sys.argv[1]); print(r.bytes_read, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(3 * SAMPLES * SAMPLE), "False"]  # start-up stays light


def test_nan_in_many_tensors_is_one_finding(tmp_path: Path) -> None:
    """A merge that broke every layer: one TC204 naming them all, not one finding per tensor."""
    tensors = {f"model.layers.{i}.mlp.weight": torch.randn(8, 8) for i in range(40)}
    for t in tensors.values():
        t[0, :] = float("nan")
    tensors["good.weight"] = torch.randn(8, 8)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (f,) = [f for f in findings(scan(tmp_path, deep=True)) if f.code == "TC204"]
    assert f.code == "TC204" and len(f.tensors) == 40 and "good.weight" not in f.tensors
    assert f.message.startswith("40 floating tensors hold NaN or Inf: model.layers.0.mlp.weight (F32[8, 8]: 8 NaN")
    assert "and 34 more" in f.message
