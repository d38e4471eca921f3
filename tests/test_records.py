"""The generated data files' layout (one entry per line) and their lazy reader, against ``json``."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiecheck.ties import _records
from tiecheck.ties._records import DATA, LAYOUT, LAYOUT_KEY, Records, Section, dump

_KEYS = st.text(min_size=0, max_size=12)  # any text: quotes, backslashes, newlines, non-ASCII, ": {"
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=12
)
_DOCUMENTS = st.dictionaries(
    _KEYS.filter(lambda k: k != LAYOUT_KEY), _VALUES | st.dictionaries(_KEYS, _VALUES, max_size=8), max_size=6
)


def _plain(value: Any) -> Any:
    """A loaded document with its sections turned into dicts, every entry read through the section."""
    if isinstance(value, Section):
        return {name: _plain(value[name]) for name in value}
    return value


def _load_text(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    (tmp_path / "file.json").write_text(text, encoding="utf-8")
    monkeypatch.setattr(_records, "DATA", tmp_path)
    return _records.load("file.json")


@settings(max_examples=300, deadline=None)
@given(document=_DOCUMENTS)
def test_dump_is_json_and_load_reads_every_entry_back(document: dict[str, Any]) -> None:
    out = io.StringIO()
    dump(document, out)
    text = out.getvalue()
    assert json.loads(text) == {LAYOUT_KEY: LAYOUT, **document}
    lazy = _records._lazy(text)
    assert lazy is not None
    assert {k: _plain(v) for k, v in lazy.items()} == {LAYOUT_KEY: LAYOUT, **document}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            section = _records._lazy(text)[key]  # type: ignore[index]  # fresh: found line by line, no index
            for name, entry in value.items():
                assert name in section and section[name] == entry
            assert "\x00absent" not in section
            with pytest.raises(KeyError):
                section["\x00absent"]


@settings(max_examples=200, deadline=None)
@given(document=_DOCUMENTS, data=st.data())
def test_any_other_layout_is_read_whole(document: dict[str, Any], data: st.DataObject) -> None:
    """Hand-formatted or damaged layouts give the same answers (read whole) or are not taken as this layout."""
    text = json.dumps(document, indent=data.draw(st.sampled_from([None, 0, 1, 2])))
    lazy = _records._lazy(text + "\n")
    if lazy is not None:  # only a layout that happens to be this one
        assert {k: _plain(v) for k, v in lazy.items()} == document


def test_a_damaged_layout_is_not_taken_for_the_layout() -> None:
    mark = f'{{\n"{LAYOUT_KEY}": "{LAYOUT}",\n'
    assert _records._lazy(mark + '"a": {\n"x": 1\n}\n') is None  # the document is not closed
    assert _records._lazy(mark + '"a": {\n"x": 1,\n"y": 2\n}\n') is None  # nor the section
    assert _records._lazy(mark + "1: 2\n}\n") is None
    assert _records._lazy('{\n"a": {\n"x": 1\n}\n}\n') is None  # no mark: json.dumps(indent=0) looks like this


def test_a_file_laid_out_otherwise_is_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = {"classes": {"A": {"model_type": "a"}, "B": {"model_type": "b"}}, "transformers": "9"}
    loaded = _load_text(json.dumps(document, indent=2), tmp_path, monkeypatch)
    assert loaded == document
    assert _records.load("absent.json") is None


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.json")))
def test_the_shipped_files_read_lazily_as_json_reads_them(name: str) -> None:
    whole = json.loads((DATA / name).read_text("utf-8"))
    lazy = _records.load(name)
    assert lazy is not None
    assert {k: _plain(v) for k, v in lazy.items()} == whole
    if name != "loaders.json":  # written by the generators: laid out for lazy reading
        assert any(isinstance(v, Section) for v in lazy.values()), f"{name}: regenerate it with _records.dump"


def test_records_build_each_entry_once_and_only_when_asked() -> None:
    built: list[str] = []

    def build(name: str, raw: Mapping[str, Any]) -> str:
        built.append(name)
        return f"{name}:{raw['t']}"

    records = Records({"A": {"t": "x"}, "B": {"t": "y"}, "C": {"t": "x"}}, build, "t")
    assert built == [] and len(records) == 3 and "B" in records and "D" not in records
    assert records["A"] == "A:x" and records["A"] == "A:x" and built == ["A"]
    assert records.named_by("x") == ["A", "C"] and records.named_by("z") == [] and built == ["A"]
