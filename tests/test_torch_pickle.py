"""Pickle checkpoints: read like a safety scanner, with the tensor table torch itself would load."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from conftest import sampled_bytes
from pickle_helpers import (
    floats,
    get,
    glob,
    integer,
    put,
    short_text,
    state_dict,
    tensor,
    text,
    write_torch_zip,
)
from tiecheck import scan
from tiecheck.checkpoint import FileFormat, TensorRecord
from tiecheck.content import ContentReader
from tiecheck.errors import FormatError
from tiecheck.formats.torch_pickle import (
    SAFE_GLOBALS,
    UNREADABLE,
    UNSAFE,
    UnsafePickleError,
    read_torch_file,
    walk_pickle,
)
from tiecheck.io.source import LocalFileSource, LocalStore
from tiecheck.loader import load_checkpoint, store_for

ST_DTYPE = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.uint16: "U16",
    torch.float8_e4m3fn: "F8_E4M3",
}

#: A freshly initialised model has all-ones norms: TC203 (info) is right there, and not what these tests are about.
FRESH_MODEL_INFO = {"TC203"}


# --- real checkpoints ------------------------------------------------------------------------------


def _tiny_llama(tied: bool) -> tuple[torch.nn.Module, object]:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=tied,
        dtype="float32",  # as save_pretrained writes it (a config without one is TC303)
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config), config


def _save_sharded(state: dict[str, torch.Tensor], folder: Path, max_shard_size: int) -> None:
    """What transformers < 5 ``save_pretrained(safe_serialization=False)`` wrote: .bin shards and an index."""
    from huggingface_hub import split_torch_state_dict_into_shards

    split = split_torch_state_dict_into_shards(
        state, filename_pattern="pytorch_model{suffix}.bin", max_shard_size=max_shard_size
    )
    assert split.is_sharded
    for filename, names in split.filename_to_tensors.items():
        torch.save({n: state[n] for n in names}, folder / filename)
    index = {"metadata": dict(split.metadata), "weight_map": split.tensor_to_filename}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index), encoding="utf-8")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Llamas saved with torch.save of state_dict(): tied and untied, single and sharded."""
    root = tmp_path_factory.mktemp("real")
    folders = {}
    for tied in (True, False):
        model, config = _tiny_llama(tied)
        state = model.state_dict()
        if tied:
            assert state["lm_head.weight"].data_ptr() == state["model.embed_tokens.weight"].data_ptr()
        name = "tied" if tied else "untied"
        single = root / name
        single.mkdir()
        torch.save(state, single / "pytorch_model.bin")
        config.save_pretrained(single)  # type: ignore[attr-defined]
        sharded = root / f"{name}-sharded"
        sharded.mkdir()
        _save_sharded(state, sharded, max_shard_size=8000)
        config.save_pretrained(sharded)  # type: ignore[attr-defined]
        folders[name] = single
        folders[f"{name}-sharded"] = sharded
    return folders


def _logical_bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _assert_same_table(folder: Path, names: list[str] | None = None, weights_only: bool = True) -> list[TensorRecord]:
    """tiecheck's table equals torch.load's, tensor by tensor: name, dtype, shape, stride, bytes, aliasing."""
    checkpoint = load_checkpoint(store_for(folder) if names is None else LocalStore(folder))
    files = [f.name for f in checkpoint.files] if names is None else names
    ours = {t.name: t for t in checkpoint.tensors if t.file in files}
    theirs: dict[str, tuple[str, torch.Tensor]] = {}
    for name in files:
        for key, value in torch.load(folder / name, weights_only=weights_only).items():
            theirs[key] = (name, value)
    assert set(ours) == set(theirs)
    with ContentReader(LocalStore(folder)) as content:
        for name, (file, value) in theirs.items():
            record = ours[name]
            assert record.file == file
            assert record.dtype == ST_DTYPE[value.dtype], name
            assert record.shape == tuple(value.shape), name
            assert record.stride == value.stride(), name
            assert record.storage_offset == value.storage_offset(), name
            assert record.contiguous == value.is_contiguous(), name
            assert b"".join(content.logical_chunks(record)) == _logical_bytes(value), name
        for a, (file_a, ta) in theirs.items():
            for b, (file_b, tb) in theirs.items():
                shares = file_a == file_b and ta.untyped_storage().data_ptr() == tb.untyped_storage().data_ptr()
                assert ours[a].same_storage(ours[b]) == shares, (a, b)
    return list(ours.values())


@pytest.mark.transformers
@pytest.mark.parametrize("name", ["tied", "untied", "tied-sharded", "untied-sharded"])
def test_table_matches_torch_load(real: dict[str, Path], name: str) -> None:
    records = _assert_same_table(real[name])
    assert len(records) == 21


@pytest.mark.transformers
def test_tied_bin_is_shared_storage_not_redundant(real: dict[str, Path]) -> None:
    for name in ("tied", "tied-sharded"):
        report = scan(real[name])
        codes = {f.code for f in report.findings} - FRESH_MODEL_INFO
        assert codes == {"TC201", "TC402"}, (name, report.findings)
        assert next(f for f in report.findings if f.code == "TC402").fixable
        (shared,) = [f for f in report.findings if f.code == "TC201"]
        assert set(shared.tensors) == {"lm_head.weight", "model.embed_tokens.weight"}
        assert "keeps model.embed_tokens.weight and drops lm_head.weight" in shared.message
        assert report.bytes_read == sampled_bytes(report)  # fingerprints only: the alias needs no read
        assert report.summary.redundant_bytes == 0
        # The embedding is stored once: the summary counts it once.
        assert report.summary.parameters == report.summary.unique_parameters == 6736 - 64 * 16


@pytest.mark.transformers
def test_untied_bin_reports_only_the_format(real: dict[str, Path]) -> None:
    for name in ("untied", "untied-sharded"):
        report = scan(real[name])
        assert {f.code for f in report.findings} - FRESH_MODEL_INFO == {"TC402"}, (name, report.findings)


@pytest.mark.transformers
def test_alias_under_untied_config_is_tieable_not_redundant(real: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(real["tied"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["tie_word_embeddings"] = False
    (folder / "config.json").write_text(json.dumps(config))
    report = scan(folder)
    codes = {f.code for f in report.findings} - FRESH_MODEL_INFO
    assert codes == {"TC104", "TC201", "TC402"}
    (tieable,) = [f for f in report.findings if f.code == "TC104"]
    assert "share one storage" in tieable.message
    assert "`tiecheck fix --tie-head --to-safetensors`" in tieable.message  # a pickle is fixed by converting it
    assert report.bytes_read == sampled_bytes(report)


@pytest.mark.transformers
def test_scan_reads_no_tensor_data(real: dict[str, Path]) -> None:
    """Every read the loader makes falls outside every tensor's bytes: the pickle and zip directory only."""
    reads: list[tuple[str, int, int]] = []

    class Recording(LocalStore):
        def open(self, name: str) -> LocalFileSource:
            source = LocalFileSource(self.root / name)
            inner = source.read

            def read(offset: int, length: int) -> bytes | memoryview:
                data = inner(offset, length)
                reads.append((name, offset, len(data)))
                return data

            source.read = read  # type: ignore[method-assign]
            return source

    for name in ("untied", "tied-sharded"):
        reads.clear()
        checkpoint = load_checkpoint(Recording(real[name]))
        assert reads
        for file, offset, length in reads:
            for t in checkpoint.tensors:
                if t.file == file and t.nbytes:
                    assert offset + length <= t.start or offset >= t.end, (file, offset, length, t.name)


@pytest.mark.transformers
def test_bin_index_rules_apply(real: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(real["untied-sharded"], folder)
    shards = sorted(p.name for p in folder.glob("pytorch_model-*.bin"))
    shutil.copy(folder / shards[0], folder / "pytorch_model-00001-of-00009.bin")
    index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
    index["metadata"]["total_size"] += 4
    index["weight_map"]["model.norm.weight"] = "pytorch_model-00009-of-00009.bin"
    del index["weight_map"]["model.layers.0.input_layernorm.weight"]
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    report = scan(folder)
    codes = {f.code for f in report.findings} - FRESH_MODEL_INFO
    assert {"TC002", "TC004", "TC007", "TC402"} <= codes
    assert "TC006" not in codes  # not compared while a shard is missing
    # Totals are compared once every shard is there; a tied index counts the shared storage once.
    tied = tmp_path / "tied"
    shutil.copytree(real["tied-sharded"], tied)
    assert "TC006" not in {f.code for f in scan(tied).findings} - FRESH_MODEL_INFO
    index = json.loads((tied / "pytorch_model.bin.index.json").read_text())
    index["metadata"]["total_size"] += 4
    (tied / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert "TC006" in {f.code for f in scan(tied).findings} - FRESH_MODEL_INFO


@pytest.mark.transformers
def test_safetensors_take_precedence_and_single_files_are_accepted(real: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "both"
    shutil.copytree(real["untied"], folder)
    from safetensors.torch import save_file

    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    save_file(state, folder / "model.safetensors")
    assert [f.name for f in load_checkpoint(store_for(folder)).files] == ["model.safetensors"]
    # A .bin passed directly is read, with the config beside it.
    report = scan(folder / "pytorch_model.bin")
    assert [f.format for f in report.checkpoint.files] == [FileFormat.PICKLE]
    assert report.checkpoint.config is not None
    pt = tmp_path / "weights.pt"
    shutil.copy(folder / "pytorch_model.bin", pt)
    assert {f.code for f in scan(pt).findings} - FRESH_MODEL_INFO == {"TC402", "TC010"}


# --- state dict shapes, protocols, views -----------------------------------------------------------


def _mixed_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    base = torch.randn(6, 4)
    return {
        "transposed": base.t(),
        "row": base[2],  # a view at an offset into the same storage
        "base": base,
        "half": torch.randn(3, 5).half(),
        "bf16": torch.randn(7).bfloat16(),
        "steps": torch.tensor(7),  # 0-dim
        "empty": torch.zeros(0, 3),
        "ids": torch.arange(5),
        "mask": torch.tensor([True, False]),
        "f8": torch.randn(4).to(torch.float8_e4m3fn),  # written with _rebuild_tensor_v3
        "u16": torch.arange(3).to(torch.uint16),
        "param": torch.nn.Parameter(torch.randn(2, 2)),  # written with _rebuild_parameter
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_views_dtypes_and_protocols_match_torch(tmp_path: Path, protocol: int) -> None:
    torch.save(_mixed_state(), tmp_path / "mixed.bin", pickle_protocol=protocol)
    # torch's weights_only unpickler only speaks protocol 2; the file is ours, so a full load is fine.
    records = {r.name: r for r in _assert_same_table(tmp_path, ["mixed.bin"], weights_only=protocol == 2)}
    assert not records["transposed"].contiguous
    assert records["row"].storage_offset == 8
    assert records["row"].same_storage(records["base"]) and not records["row"].aliases(records["base"])


def test_strided_tensors_compare_by_element(tmp_path: Path) -> None:
    base = torch.randn(5, 3)
    torch.save({"t": base.t(), "copy": base.t().contiguous(), "other": base.t().contiguous() + 1}, tmp_path / "x.bin")
    checkpoint = load_checkpoint(store_for(tmp_path / "x.bin"))
    by = {t.name: t for t in checkpoint.tensors}
    with ContentReader(LocalStore(tmp_path)) as content:
        assert content.equal(by["t"], by["copy"])
        assert content.equal(by["copy"], by["t"])
        assert not content.equal(by["t"], by["other"])


@pytest.mark.parametrize("wrapper", [None, "state_dict", "model", "ordered"])
def test_state_dict_shapes(tmp_path: Path, wrapper: str | None) -> None:
    state = {"a.weight": torch.randn(2, 2), "a.bias": torch.randn(2)}
    payload: object = state
    if wrapper == "ordered":
        payload = OrderedDict(state)
    elif wrapper is not None:
        payload = {wrapper: state, "epoch": 3, "optimizer": {"lr": 0.1}}
    torch.save(payload, tmp_path / "ckpt.pt")
    with LocalFileSource(tmp_path / "ckpt.pt") as source:
        result = read_torch_file(source, "ckpt.pt")
    assert [t.name for t in result.tensors] == ["a.weight", "a.bias"]
    assert result.metadata.get("state_dict_key") == (wrapper if wrapper in ("state_dict", "model") else None)
    assert result.metadata["archive_root"] == "ckpt"
    assert result.metadata["byteorder"] == "little"


def test_hand_written_state_dict_loads_in_torch(tmp_path: Path) -> None:
    """The opcode builders used below write what torch.save writes: torch loads them the same way."""
    data = floats(1, 2, 3, 4, 5, 6)
    path = write_torch_zip(
        tmp_path / "hand.bin",
        state_dict({"w": tensor("0", 6, (2, 3)), "v": tensor("0", 6, (2,), offset=4)}),
        {"0": data},
        root="anything",
    )
    loaded = torch.load(path, weights_only=True)
    assert loaded["w"].tolist() == [[1, 2, 3], [4, 5, 6]]
    with LocalFileSource(path) as source:
        result = read_torch_file(source, "hand.bin")
    w, v = result.tensors
    assert (w.shape, v.shape, v.storage_offset) == ((2, 3), (2,), 4)
    assert path.read_bytes()[v.start : v.end] == floats(5, 6)


# --- unsafe pickles --------------------------------------------------------------------------------


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _scan_one(path: Path) -> tuple[set[str], list[str]]:
    report = scan(path)
    return {f.code for f in report.findings} - FRESH_MODEL_INFO, [f.message for f in report.findings]


def test_reduce_to_os_system_is_reported_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "pytorch_model.bin"
    torch.save({"w": torch.zeros(2), "evil": Evil(marker)}, path)
    report = scan(path)
    codes, messages = {f.code for f in report.findings} - FRESH_MODEL_INFO, [f.message for f in report.findings]
    assert "TC401" in codes and "TC402" in codes
    assert not next(f for f in report.findings if f.code == "TC402").fixable  # never convert an unsafe file
    assert any("posix.system" in m or "os.system" in m for m in messages)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # torch refuses it too
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the control: this is what a careless loader does
    assert marker.exists()


def _hostile_streams(marker: Path) -> dict[str, tuple[bytes, str]]:
    command = f"touch {marker}"
    return {
        # GLOBAL memoised, popped, and fetched back with BINGET much later.
        "memo-get": (
            b"\x80\x02"
            + glob("posix", "system")
            + put(7)
            + pickle.POP
            + pickle.EMPTY_DICT
            + put(0)
            + text("x")
            + get(7)
            + text(command)
            + pickle.TUPLE1
            + pickle.REDUCE
            + pickle.SETITEM
            + pickle.STOP,
            "posix.system",
        ),
        # Protocol 4: module and name strings memoised early, reassembled by STACK_GLOBAL.
        "stack-global": (
            b"\x80\x04"
            + short_text("os")
            + pickle.MEMOIZE
            + short_text("system")
            + pickle.MEMOIZE
            + pickle.POP
            + pickle.POP
            + pickle.EMPTY_DICT
            + pickle.MEMOIZE
            + short_text("x")
            + pickle.BINGET
            + b"\x00"
            + pickle.BINGET
            + b"\x01"
            + pickle.STACK_GLOBAL
            + short_text(command)
            + pickle.TUPLE1
            + pickle.REDUCE
            + pickle.SETITEM
            + pickle.STOP,
            "os.system",
        ),
        # Protocol 2 names are fixed up like pickle does: __builtin__.eval is builtins.eval.
        "py2-builtin": (
            b"\x80\x02"
            + pickle.EMPTY_DICT
            + text("x")
            + glob("__builtin__", "eval")
            + text(f"__import__('os').system({command!r})")
            + pickle.TUPLE1
            + pickle.REDUCE
            + pickle.SETITEM
            + pickle.STOP,
            "builtins.eval",
        ),
    }


@pytest.mark.parametrize("kind", ["memo-get", "stack-global", "py2-builtin"])
@pytest.mark.parametrize("container", ["zip", "bare"])
def test_hand_written_hostile_pickles(tmp_path: Path, kind: str, container: str) -> None:
    marker = tmp_path / "pwned"
    stream, expected = _hostile_streams(marker)[kind]
    path = tmp_path / "pytorch_model.bin"
    if container == "zip":
        write_torch_zip(path, stream)
    else:
        path.write_bytes(stream)
    with LocalFileSource(path) as source, pytest.raises(UnsafePickleError) as caught:
        read_torch_file(source, path.name)
    assert caught.value.globals == (expected,)
    codes, messages = _scan_one(path)
    assert "TC401" in codes
    assert any(expected in m for m in messages)
    assert not marker.exists()
    pickle.loads(stream)  # the control: unpickling the same bytes does run the command
    assert marker.exists()


def test_stack_global_after_the_walk_is_lost_is_unsafe() -> None:
    stream = (
        b"\x80\x04"
        + pickle.EMPTY_DICT
        + integer(1)
        + pickle.APPEND  # appending to a dict: the symbolic machine gives up here
        + short_text("os")
        + short_text("system")
        + pickle.STACK_GLOBAL
        + pickle.STOP
    )
    walk = walk_pickle(stream)
    assert walk.broken is not None
    assert walk.unsafe == ("<unresolved STACK_GLOBAL>",)


def test_allowlist_mirrors_torch() -> None:
    from torch._weights_only_unpickler import _get_allowed_globals

    assert set(_get_allowed_globals()) == SAFE_GLOBALS


# --- unreadable files ------------------------------------------------------------------------------


def _problem(path: Path) -> FormatError:
    with LocalFileSource(path) as source, pytest.raises(FormatError) as caught:
        read_torch_file(source, path.name)
    assert caught.value.rule == UNREADABLE
    assert "\n" not in caught.value.detail
    return caught.value


@pytest.fixture
def good_bin(tmp_path: Path) -> Path:
    path = tmp_path / "good.bin"
    torch.save({"a": torch.randn(64, 8), "b": torch.randn(8)}, path)
    return path


@pytest.mark.parametrize("keep", [0, 1, 10, 100, 0.5, -22, -1])
def test_truncated(tmp_path: Path, good_bin: Path, keep: float) -> None:
    data = good_bin.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data) if keep < 0 else keep
    path = tmp_path / "cut.bin"
    path.write_bytes(data[:cut])
    error = _problem(path)
    assert any(word in error.detail for word in ("empty", "truncated", "not a PyTorch", "corrupt")), error.detail


def test_corrupted_pickle_fails_its_checksum(tmp_path: Path, good_bin: Path) -> None:
    data = bytearray(good_bin.read_bytes())
    with zipfile.ZipFile(good_bin) as archive:
        info = archive.getinfo("good/data.pkl")
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_length + extra_length + 20] ^= 0xFF
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(data))
    assert "good/data.pkl" in _problem(path).detail


def test_record_of_the_wrong_size(tmp_path: Path) -> None:
    pkl = state_dict({"w": tensor("0", 6, (2, 3))})
    error = _problem(write_torch_zip(tmp_path / "short.bin", pkl, {"0": floats(1, 2, 3)}))
    assert "12 bytes" in error.detail and "24" in error.detail and error.tensor == "w"


def test_compressed_record(tmp_path: Path) -> None:
    pkl = state_dict({"w": tensor("0", 2, (2,))})
    error = _problem(write_torch_zip(tmp_path / "z.bin", pkl, {"0": floats(1, 2)}, compress=zipfile.ZIP_DEFLATED))
    assert "compressed" in error.detail


def test_missing_record(tmp_path: Path) -> None:
    pkl = state_dict({"w": tensor("7", 2, (2,))})
    assert "data/7 is missing" in _problem(write_torch_zip(tmp_path / "m.bin", pkl, {})).detail


@pytest.mark.parametrize(
    ("shape", "stride", "offset"),
    [((2, 3), (3, 1), 1), ((4,), (2,), 0), ((3,), (1,), 5)],
)
def test_tensor_extent_must_fit_its_storage(
    tmp_path: Path, shape: tuple[int, ...], stride: tuple[int, ...], offset: int
) -> None:
    pkl = state_dict({"w": tensor("0", 6, shape, stride, offset)})
    error = _problem(write_torch_zip(tmp_path / "x.bin", pkl, {"0": floats(*range(6))}))
    assert "past its 24-byte storage" in error.detail


def test_inconsistent_storage_declarations(tmp_path: Path) -> None:
    pkl = state_dict({"a": tensor("0", 6, (6,)), "b": tensor("0", 3, (3,))})
    assert "declared twice" in _problem(write_torch_zip(tmp_path / "x.bin", pkl, {"0": floats(*range(6))})).detail


@pytest.mark.transformers
def test_legacy_format_matches_torch(real: dict[str, Path], tmp_path: Path) -> None:
    """torch < 1.6 wrote five pickles then raw storages; still common on the Hub, so it is read too."""
    state = torch.load(real["tied"] / "pytorch_model.bin", weights_only=True)
    legacy = tmp_path / "tied"
    legacy.mkdir()
    torch.save(state, legacy / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    shutil.copy(real["tied"] / "config.json", legacy)
    _assert_same_table(legacy)
    report = scan(legacy)
    assert {f.code for f in report.findings} - FRESH_MODEL_INFO == {"TC201", "TC402"}
    assert report.checkpoint.files[0].metadata["format"] == "torch-legacy"
    # torch cannot load its own legacy files holding float8/uint16 (UntypedStorage has no dtype): leave those out.
    mixed = {k: v for k, v in _mixed_state().items() if k not in ("f8", "u16")}
    torch.save(mixed, tmp_path / "mixed.bin", _use_new_zipfile_serialization=False)
    _assert_same_table(tmp_path, ["mixed.bin"])


@pytest.mark.parametrize("keep", [20, 200, 0.5, -1])
def test_truncated_legacy(tmp_path: Path, keep: float) -> None:
    full = tmp_path / "full.bin"
    torch.save({"a": torch.randn(64, 8), "b": torch.randn(8)}, full, _use_new_zipfile_serialization=False)
    data = full.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "cut.bin"
    path.write_bytes(data[:cut])
    assert "legacy non-zip torch format" in _problem(path).detail


def test_unsupported_formats_are_named(tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.bin"
    torch.save({"a": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    tar = tmp_path / "old.bin"
    with tarfile.open(tar, "w") as archive:
        archive.add(legacy, arcname="pickle")
    assert "legacy tar format" in _problem(tar).detail
    bare = tmp_path / "bare.bin"
    bare.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=2))
    assert "bare pickle" in _problem(bare).detail


def test_legacy_format_with_hostile_payload_is_unsafe(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.bin"
    torch.save({"a": torch.zeros(2), "evil": Evil(marker)}, path, _use_new_zipfile_serialization=False)
    with LocalFileSource(path) as source, pytest.raises(UnsafePickleError) as caught:
        read_torch_file(source, path.name)
    assert caught.value.rule == UNSAFE
    assert not marker.exists()


def test_torchscript_is_reported_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    assert "TorchScript" in _problem(path).detail


def test_big_endian_is_refused(tmp_path: Path) -> None:
    pkl = state_dict({"w": tensor("0", 1, (1,))})
    path = tmp_path / "be.bin"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pkl)
        archive.writestr("archive/byteorder", "big")
        archive.writestr("archive/data/0", floats(1))
    assert "byte order" in _problem(path).detail


def test_unreadable_shard_is_a_finding_and_the_rest_is_scanned(real: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(real["untied-sharded"], folder)
    shard = sorted(folder.glob("pytorch_model-*.bin"))[-1]
    shard.write_bytes(shard.read_bytes()[:-100])
    report = scan(folder)
    (broken,) = [f for f in report.findings if f.code == "TC403"]
    assert broken.files == (shard.name,)
    assert report.checkpoint.files[0].readable


def test_cli_reports_broken_files_without_a_traceback(tmp_path: Path, good_bin: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(good_bin.read_bytes()[:-50])
    result = subprocess.run(
        [sys.executable, "-m", "tiecheck", "scan", str(folder), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    codes = [f["code"] for f in json.loads(result.stdout)["reports"][0]["findings"]]
    assert codes[0] == "TC403"


def test_bin_shards_without_an_index(tmp_path: Path) -> None:
    for i in (1, 2):
        torch.save({f"w{i}": torch.zeros(2)}, tmp_path / f"pytorch_model-0000{i}-of-00002.bin")
    report = scan(tmp_path)
    assert {f.code for f in report.findings} - FRESH_MODEL_INFO == {"TC008", "TC010", "TC402"}
    assert len(report.checkpoint.files) == 2


@pytest.mark.transformers
def test_tie_and_dtype_rules_read_bin_tensors(real: dict[str, Path], tmp_path: Path) -> None:
    """A head saved as a separate copy is redundant (TC101) or mismatched (TC102), as in safetensors."""
    state = torch.load(real["tied"] / "pytorch_model.bin", weights_only=True)
    config = json.loads((real["tied"] / "config.json").read_text())
    for name, head, code in (
        ("copy", state["model.embed_tokens.weight"].clone(), "TC101"),
        ("tuned", state["model.embed_tokens.weight"] + 1, "TC102"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        torch.save({**state, "lm_head.weight": head}, folder / "pytorch_model.bin")
        (folder / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16"}))
        report = scan(folder)
        codes = {f.code for f in report.findings} - FRESH_MODEL_INFO
        assert code in codes and "TC201" not in codes, report.findings
        assert "TC301" in codes  # float32 weights, bfloat16 declared
        # the content fingerprints and the two heads, nothing else
        assert sampled_bytes(report) <= report.bytes_read <= sampled_bytes(report) + 2 * 64 * 16 * 4


def test_the_fix_a_pickle_finding_names_is_the_one_that_fixes_it(real: dict[str, Path], tmp_path: Path) -> None:
    """A pickle is only rewritten by converting it: the command in the message carries --to-safetensors, and runs."""
    from tiecheck.fixer import Options, run_fix

    state = torch.load(real["tied"] / "pytorch_model.bin", weights_only=True)
    config = json.loads((real["tied"] / "config.json").read_text())
    folder = tmp_path / "copy"
    folder.mkdir()
    torch.save({**state, "lm_head.weight": state["model.embed_tokens.weight"].clone()}, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config))
    findings = {f.code: f for f in scan(folder).findings}
    assert "`tiecheck fix --drop-duplicates --to-safetensors` removes it" in findings["TC101"].message
    assert "`tiecheck fix --to-safetensors` converts them" in findings["TC402"].message
    run_fix(folder, Options(drop_duplicates=True, to_safetensors=True))
    assert not {"TC101", "TC402"} & {f.code for f in scan(folder).findings}
