"""Edit one key of a JSON document in its text, leaving every other byte as it was.

A round trip through ``json.loads``/``json.dumps`` would reformat numbers (``1e-06``), change
indentation and escapes; a config edit must show up in a diff as the one line it changes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tiecheck.errors import FormatError

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_LITERALS = ("true", "false", "null")


@dataclass(frozen=True)
class _Member:
    key: str
    key_start: int
    value_start: int
    value_end: int


@dataclass(frozen=True)
class _Object:
    start: int
    """Offset of ``{``."""
    end: int
    """Offset just past ``}``."""
    members: tuple[_Member, ...]


def _ws(text: str, i: int) -> int:
    match = _WS.match(text, i)
    assert match is not None
    return match.end()


def _value_end(text: str, i: int) -> int:
    if i >= len(text):
        raise FormatError("json", "unexpected end of document")
    char = text[i]
    if char == "{":
        return _parse_object(text, i).end
    if char == "[":
        i = _ws(text, i + 1)
        if text.startswith("]", i):
            return i + 1
        while True:
            i = _ws(text, _value_end(text, i))
            if text.startswith("]", i):
                return i + 1
            if not text.startswith(",", i):
                raise FormatError("json", f"expected ',' or ']' at offset {i}")
            i = _ws(text, i + 1)
    if char == '"':
        _, end = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        return int(end)
    for literal in _LITERALS:
        if text.startswith(literal, i):
            return i + len(literal)
    match = _NUMBER.match(text, i)
    if match is None or match.end() == i:
        raise FormatError("json", f"unexpected character {char!r} at offset {i}")
    return match.end()


def _parse_object(text: str, start: int) -> _Object:
    members: list[_Member] = []
    i = _ws(text, start + 1)
    if text.startswith("}", i):
        return _Object(start, i + 1, ())
    while True:
        if not text.startswith('"', i):
            raise FormatError("json", f"expected a key at offset {i}")
        key, after = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        colon = _ws(text, after)
        if not text.startswith(":", colon):
            raise FormatError("json", f"expected ':' at offset {colon}")
        value_start = _ws(text, colon + 1)
        value_end = _value_end(text, value_start)
        members.append(_Member(key, i, value_start, value_end))
        i = _ws(text, value_end)
        if text.startswith("}", i):
            return _Object(start, i + 1, tuple(members))
        if not text.startswith(",", i):
            raise FormatError("json", f"expected ',' or '}}' at offset {i}")
        i = _ws(text, i + 1)


def _find_object(text: str, path: tuple[str, ...]) -> _Object:
    i = _ws(text, 0)
    if not text.startswith("{", i):
        raise FormatError("json", "not a JSON object")
    obj = _parse_object(text, i)
    for key in path:
        member = next((m for m in obj.members if m.key == key), None)
        if member is None or not text.startswith("{", member.value_start):
            raise FormatError("json", f"no object at key {key!r}")
        obj = _parse_object(text, member.value_start)
    return obj


def set_value(text: str, dotted_key: str, value: bool | int | str | None) -> str:
    """``text`` with ``dotted_key`` (``"text_config.tie_word_embeddings"``) set to ``value``.

    An existing key is changed in place. A new key goes where it keeps sorted keys sorted
    (transformers writes configs with sorted keys), else first, with the indentation of its
    neighbours.
    """
    *parents, key = dotted_key.split(".")
    obj = _find_object(text, tuple(parents))
    encoded = json.dumps(value)
    # The last occurrence wins in json.loads, so that is the one to change.
    existing = [m for m in obj.members if m.key == key]
    if existing:
        member = existing[-1]
        return text[: member.value_start] + encoded + text[member.value_end :]
    entry = f"{json.dumps(key)}: {encoded}"
    if not obj.members:
        return text[: obj.start + 1] + entry + text[obj.end - 1 :]
    keys = [m.key for m in obj.members]
    ordered = keys == sorted(keys)
    later = next((m for m in obj.members if m.key > key), None) if ordered else obj.members[0]
    if later is not None:
        index = obj.members.index(later)
        before = obj.start + 1 if index == 0 else _after_comma(text, obj.members[index - 1].value_end)
        gap = text[before : later.key_start]
        return text[: later.key_start] + entry + "," + gap + text[later.key_start :]
    last = obj.members[-1]
    previous_end = obj.start + 1 if len(obj.members) == 1 else _after_comma(text, obj.members[-2].value_end)
    gap = text[previous_end : last.key_start]
    return text[: last.value_end] + "," + gap + entry + text[last.value_end :]


def _after_comma(text: str, value_end: int) -> int:
    return text.index(",", value_end) + 1
