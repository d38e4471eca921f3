"""The generated data files: one entry per line, read whole, parsed and typed one entry at a time.

A scan asks about one or two architectures of the 1,400-odd each file describes. Parsing the four files
whole (1.5 MB of JSON) and building every record took over a third of a small scan's run time, so the
generators write each section's entries on lines of their own (:func:`dump`), and :func:`load` parses an
entry only when it is asked for. The files stay plain JSON: ``json.load`` reads them, and a file laid out
otherwise (reformatted by hand, say) is read whole, the same answers a little slower.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

T = TypeVar("T")

DATA = Path(__file__).parent / "data"
_decode = json.JSONDecoder().raw_decode
#: The first key of a file :func:`dump` wrote: JSON laid out otherwise (``indent=0`` looks much the same)
#: is read whole.
LAYOUT_KEY = "layout"
LAYOUT = "one entry per line: tiecheck/ties/_records.py"
_MARK = f"{json.dumps(LAYOUT_KEY)}: {json.dumps(LAYOUT)}"


def dump(document: Mapping[str, Any], out: IO[str]) -> None:
    """Write ``document`` as JSON with each top-level key on a line, and each entry of a top-level object
    (a section: ``classes``, ``model_types``...) on a line of its own, keys sorted; the first key,
    :data:`LAYOUT_KEY`, says the file is laid out so."""
    if LAYOUT_KEY in document:
        raise ValueError(f"{LAYOUT_KEY!r} is the layout's own key")
    items = [(LAYOUT_KEY, LAYOUT), *sorted(document.items())]
    out.write("{\n")
    for i, (key, value) in enumerate(items):
        end = ",\n" if i < len(items) - 1 else "\n"
        if isinstance(value, Mapping) and value:
            out.write(f"{json.dumps(key)}: {{\n")
            names = sorted(value)
            for j, name in enumerate(names):
                entry = json.dumps(value[name], separators=(",", ":"), sort_keys=True)
                out.write(f"{json.dumps(name)}: {entry}{',' if j < len(names) - 1 else ''}\n")
            out.write("}" + end)
        else:
            out.write(f"{json.dumps(key)}: {json.dumps(value, separators=(',', ':'), sort_keys=True)}{end}")
    out.write("}\n")


class Section(Mapping[str, Any]):
    """One section of a data file, ``text[start:stop]`` (its entry lines): entry name -> its parsed JSON value.

    An entry is found by its line (``"name": `` at a line's start) and parsed when first asked for; the index of
    all names is built only when the section is iterated, or asked for a name its line search did not find
    (written with other escapes).
    """

    def __init__(self, text: str, start: int, stop: int) -> None:
        self._text = text
        self._start = start
        self._stop = stop
        self._parsed: dict[str, Any] = {}
        self._spans: dict[str, tuple[int, int]] | None = None

    def _span(self, name: str) -> tuple[int, int] | None:
        if self._spans is None:
            key = f"{json.dumps(name)}: "
            at = self._start if self._text.startswith(key, self._start) else self._text.find("\n" + key, self._start)
            if self._start <= at < self._stop:
                begin = at + len(key) + (at != self._start)
                end = self._text.index("\n", begin)
                return begin, end - (self._text[end - 1] == ",")
        return self.spans().get(name)

    def spans(self) -> dict[str, tuple[int, int]]:
        """Every entry's name and where its value is in the text."""
        if self._spans is None:
            spans: dict[str, tuple[int, int]] = {}
            at = self._start
            while at < self._stop:
                end = self._text.index("\n", at)
                key, colon = _decode(self._text, at)
                spans[key] = (colon + 2, end - (self._text[end - 1] == ","))
                at = end + 1
            self._spans = spans
        return self._spans

    def __getitem__(self, name: str) -> Any:
        try:
            return self._parsed[name]
        except KeyError:
            span = self._span(name)
            if span is None:
                raise
            value = self._parsed[name] = json.loads(self._text[span[0] : span[1]])
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.spans())

    def __len__(self) -> int:
        return len(self.spans())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._parsed or self._span(name) is not None)


def _lazy(text: str) -> dict[str, Any] | None:
    """The document with its sections as :class:`Section`; None if ``text`` is not laid out by :func:`dump`.

    Only the top-level lines are read here: a section runs from its ``"name": {`` line to the next line that
    starts with ``}`` (every entry line starts with its quoted name).
    """
    if not text.startswith("{\n" + _MARK) or not text.endswith("\n}\n"):
        return None
    document: dict[str, Any] = {}
    at, last = 2, len(text) - 2
    comma = True
    try:
        while at < last:
            end = text.index("\n", at)
            key, colon = _decode(text, at)
            if not comma or text[at] != '"' or text[colon : colon + 2] != ": ":
                return None
            if text[colon + 2 : end] == "{":
                close = text.index("\n}", end)
                document[key] = Section(text, end + 1, close + 1)
                end = text.index("\n", close + 1)
                if text[close + 2 : end] not in ("", ","):
                    return None
            else:
                document[key] = json.loads(text[colon + 2 : end - (text[end - 1] == ",")])
            comma = text[end - 1] == ","  # every item but the last is followed by one
            at = end + 1
    except ValueError:  # no closing line, a key that is not a string, a value that is not JSON
        return None
    return document if at == last and not comma else None


def load(name: str) -> dict[str, Any] | None:
    """The data file ``data/<name>`` (sections parsed entry by entry); None when the package does not ship it."""
    try:
        text = (DATA / name).read_text("utf-8")
    except FileNotFoundError:
        return None
    document = _lazy(text)
    return document if document is not None else dict(json.loads(text))


class Records(Mapping[str, T], Generic[T]):
    """A section's entries turned into typed records by ``build(name, raw)`` when first asked for, with an
    index by one field of the raw entries (``model_type``), built on first use of :meth:`named_by`."""

    def __init__(self, raw: Mapping[str, Any], build: Callable[[str, Any], T], field: str = "") -> None:
        self._raw = raw
        self._build = build
        self._field = field
        self._made: dict[str, T] = {}
        self._index: dict[str, list[str]] | None = None

    def __getitem__(self, name: str) -> T:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = self._build(name, self._raw[name])
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def named_by(self, value: str) -> list[str]:
        """The names whose raw entry has ``value`` in the indexed field (this parses every entry once)."""
        if self._index is None:
            index: dict[str, list[str]] = {}
            for name in self._raw:
                index.setdefault(self._raw[name][self._field], []).append(name)
            self._index = index
        return self._index.get(value, [])
