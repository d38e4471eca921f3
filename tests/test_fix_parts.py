"""The fix's parts on their own: the JSON key editor, the streaming writer, and `tiecheck diff`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tiecheck.cli import app
from tiecheck.compare import Status, diff
from tiecheck.errors import FormatError
from tiecheck.fixer import writer
from tiecheck.fixer.hooks import Run
from tiecheck.fixer.jsonedit import set_value
from tiecheck.formats.safetensors import read_header, write_file
from tiecheck.io.source import LocalFileSource

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
documents = st.dictionaries(st.text(max_size=8), values, max_size=6)


@given(
    documents, st.sampled_from([None, 2, 4]), st.sampled_from(["tie_word_embeddings", "a", "zzz", ""]), st.booleans()
)
def test_set_value_changes_only_that_key(document: dict[str, Any], indent: int | None, key: str, value: bool) -> None:
    text = json.dumps(document, indent=indent)
    edited = set_value(text, key, value)
    expected = dict(document)
    expected[key] = value
    result = json.loads(edited)
    assert result == expected
    assert [k for k in result if k != key] == [k for k in document if k != key], "key order kept"
    if key in document:
        assert edited == json.dumps({**document, key: value}, indent=indent), "only the value's text changed"


def test_set_value_nested_keeps_formatting() -> None:
    text = '{\n  "a": 1e-06,\n  "text_config": {\n    "b": 0.10,\n    "tie_word_embeddings": false\n  }\n}\n'
    assert set_value(text, "text_config.tie_word_embeddings", True) == text.replace("false", "true")
    added = set_value('{\n  "a": 1,\n  "z": 2\n}\n', "tie_word_embeddings", True)
    assert added == '{\n  "a": 1,\n  "tie_word_embeddings": true,\n  "z": 2\n}\n', "sorted keys stay sorted"
    with pytest.raises(FormatError):
        set_value("[1, 2]", "a", True)


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_writer_streams_exact_bytes(
    tmp_path: Path, gen: Any, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    run = Run(chunk=1000)
    tensors = gen.llama_like(head=True)
    source = tmp_path / "source.safetensors"
    write_file(source, tensors, {"format": "pt"})
    with LocalFileSource(source) as src:
        records = [t for t in read_header(src, "source.safetensors").tensors if t.name != "lm_head.weight"]
    if not kernel_copy:
        monkeypatch.setattr(writer, "_copy_file_range", None)
    fd = os.open(source, os.O_RDONLY)
    try:
        written = writer.write_shard(tmp_path / "out.safetensors", records, {"format": "pt"}, lambda _: fd, run)
    finally:
        os.close(fd)
    expected = tmp_path / "expected.safetensors"
    write_file(expected, {n: t for n, t in tensors.items() if n != "lm_head.weight"}, {"format": "pt"})
    assert (tmp_path / "out.safetensors").read_bytes() == expected.read_bytes()
    assert written.size == expected.stat().st_size and set(written.digests) == {r.name for r in records}
    with pytest.raises(FileExistsError):
        writer.write_shard(tmp_path / "out.safetensors", records, None, lambda _: fd, run)


def test_diff_reports_every_kind_of_change(tmp_path: Path, gen: Any) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    tensors = gen.llama_like()
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    write_file(a / "model.safetensors", tensors)
    config = gen.config("gemma2", "Gemma2ForCausalLM")
    gen.write_json(a / "config.json", config)
    changed = {n: t for n, t in tensors.items() if n != "lm_head.weight"}
    changed["model.norm.weight"] = gen.values("other", (8,))
    changed["model.layers.0.input_layernorm.weight"] = gen.values("ln", (8,), "F32")
    del changed["model.layers.1.mlp.up_proj.weight"]
    changed["extra.weight"] = gen.values("extra", (2,))
    write_file(b / "model.safetensors", changed)
    gen.write_json(b / "config.json", config)

    result = diff(a, b)
    status = {t.name: t.status for t in result.tensors if t.status is not Status.SAME}
    assert status == {
        "lm_head.weight": Status.RESTORABLE,
        "model.norm.weight": Status.CHANGED,
        "model.layers.0.input_layernorm.weight": Status.CHANGED,
        "model.layers.1.mlp.up_proj.weight": Status.REMOVED,
        "extra.weight": Status.ADDED,
    }
    assert not result.lossless
    out = CliRunner().invoke(app, ["diff", str(a), str(b)])
    assert out.exit_code == 1 and "restorable" in out.stdout
    # One line per tensor: its status, a gap, its whole name (greppable: `awk '{print $2}'` gives the names).
    lines = {line.split()[1]: line.split()[0] for line in out.stdout.splitlines() if line.split()[1:2] != []}
    assert all(lines.get(name) == s.value for name, s in status.items()), out.stdout

    # Untied config: the same missing head is lost, not restorable.
    shutil.copy(b / "model.safetensors", b / "model.safetensors.bak")
    gen.write_json(b / "config.json", gen.config("llama", "LlamaForCausalLM", tie_word_embeddings=False))
    assert {t.name: t.status for t in diff(a, b).tensors}["lm_head.weight"] is Status.REMOVED
    assert CliRunner().invoke(app, ["diff", str(a), str(tmp_path / "nowhere")]).exit_code == 2


@pytest.mark.parametrize("where", [None, 0, 1500, 2999])
def test_content_compare_through_reused_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: int | None
) -> None:
    from tiecheck import _reading, content
    from tiecheck.checkpoint import TensorRecord
    from tiecheck.io.source import LocalStore

    monkeypatch.setattr(_reading, "CHUNK", 1000)
    data = bytes(range(256)) * 12
    other = bytearray(data)
    if where is not None:
        other[where] ^= 1
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(b"xx" + bytes(other))
    a = TensorRecord("a", "U8", (3000,), "a", 0, 3000)
    b = TensorRecord("b", "U8", (3000,), "b", 2, 3002)
    with content.ContentReader(LocalStore(tmp_path)) as reader:
        assert reader.equal(a, b) is (where is None)
        assert reader.equal(a, a)
