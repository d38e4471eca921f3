"""What transformers' own loaders do with each architecture's ties, from the generated data files.

``data/transformers-<version>.json`` is written by ``scripts/generate_ties.py`` from the installed
transformers (every class of every auto mapping, built on the meta device). Reading it needs neither
transformers nor torch. The newest file is the reference (:data:`CURRENT`); the 4.x file says what
older loaders did.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

CURRENT = "5.23.0"
LEGACY = "4.57.6"

_DIGITS = re.compile(r"(?<=\.)\d+(?=\.)")
_STATES = {None: 0, True: 1, False: 2}


def general(name: str) -> str:
    """A tensor name with its layer indices replaced by ``*``, as the data files record buffer names."""
    return _DIGITS.sub("*", name)


@dataclass(frozen=True)
class Tie:
    target: str
    """The name a loader restores (``lm_head.weight``)."""
    source: str
    """The name it restores it from, the one ``save_pretrained`` keeps (``model.embed_tokens.weight``)."""
    level: str
    """The config object whose ``tie_word_embeddings`` decides the tie: "" (outer), "text_config", ..."""


@dataclass(frozen=True)
class ClassKnowledge:
    name: str
    model_type: str
    ties: tuple[Tie, ...]
    output: str | None
    """The output embedding (``get_output_embeddings``) parameter, when the class has one."""
    input: str | None
    buffers: frozenset[str]
    """Persisted buffers, layer indices as ``*`` (see :func:`general`)."""
    dropped: frozenset[str]
    """Parameters ``save_pretrained`` does not write (``_keys_to_ignore_on_save``), indices as ``*``."""
    frozen: frozenset[str] = frozenset()
    """Parameters that are never trained (``requires_grad=False``: sinusoidal tables), indices as ``*``."""
    built: bool = True
    """False when the class could not be built from its default config: only its plain
    ``_tied_weights_keys`` is known (the first target taken as the head)."""
    alias: ClassKnowledge | None = None
    """The same class in its in-memory naming, when ``save_pretrained`` writes other keys (it reverts the
    loading conversions: ``language_model.model.*`` on disk is ``model.language_model.*`` in memory).
    Checkpoints in either naming load."""

    def variants(self) -> tuple[ClassKnowledge, ...]:
        return (self, self.alias) if self.alias else (self,)


@dataclass(frozen=True)
class TypeKnowledge:
    model_type: str
    config: str
    flags: dict[str, str]
    """Level -> effective flag for each (outer, text) combination, see :meth:`flag`."""
    text_level: str | None
    text_model_type: str | None

    def always(self, level: str) -> bool:
        """The config class sets the flag true whatever config.json says (T5 in transformers 5)."""
        table = self.flags.get(level, "")
        return bool(table) and set(table) == {"T"}

    def flag(self, level: str, outer: bool | None, text: bool | None) -> bool | None:
        """The flag at ``level`` after the config class's defaults, given what config.json says (None: absent)."""
        table = self.flags.get(level)
        if not table:
            return None
        index = 3 * _STATES[outer] + _STATES[text] if len(table) == 9 else _STATES[outer]
        value = table[index] if index < len(table) else "?"
        return True if value == "T" else False if value == "F" else None


class _Classes(Mapping[str, "ClassKnowledge"]):
    """The classes of a data file, each turned into a :class:`ClassKnowledge` when first asked for.

    A scan asks about one or two architectures of the 1,400-odd in the file: building them all took
    a sixth of a small scan's start-up.
    """

    def __init__(self, raw: dict[str, Any], rules: list[tuple[str, str]]) -> None:
        self._raw = raw
        self._rules = rules
        self._made: dict[str, ClassKnowledge] = {}
        self._by_type: dict[str, list[str]] | None = None

    def __getitem__(self, name: str) -> ClassKnowledge:
        made = self._made.get(name)
        if made is None:
            made = _class(name, self._raw[name])
            if not made.built:  # only its plain _tied_weights_keys: give it the on-disk naming too
                made = _renamed(made, self._rules) or made
            self._made[name] = made
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def names_of_type(self, model_type: str) -> list[str]:
        if self._by_type is None:
            index: dict[str, list[str]] = {}
            for name, entry in self._raw.items():
                index.setdefault(entry["model_type"], []).append(name)
            self._by_type = index
        return self._by_type.get(model_type, [])


@dataclass(frozen=True)
class Knowledge:
    version: str
    classes: Mapping[str, ClassKnowledge]
    model_types: dict[str, TypeKnowledge]
    failed: dict[str, str]

    def by_model_type(self, model_type: str) -> tuple[ClassKnowledge, ...]:
        if isinstance(self.classes, _Classes):  # read from a data file: an index, no class built needlessly
            return tuple(self.classes[name] for name in self.classes.names_of_type(model_type))
        return tuple(c for c in self.classes.values() if c.model_type == model_type)


def _class(name: str, raw: dict[str, Any]) -> ClassKnowledge:
    module = raw.get("module_names")
    return ClassKnowledge(
        name=name,
        model_type=raw["model_type"],
        ties=tuple(Tie(t, s, level) for t, s, level in raw.get("ties", ())),
        output=raw.get("output"),
        input=raw.get("input"),
        buffers=frozenset(raw.get("buffers", ())),
        dropped=frozenset(raw.get("dropped", ())),
        frozen=frozenset(raw.get("frozen", ())),
        built=not raw.get("unbuilt", False),
        alias=_class(name, {"model_type": raw["model_type"], **module}) if module else None,
    )


def _type(model_type: str, raw: dict[str, Any]) -> TypeKnowledge:
    return TypeKnowledge(
        model_type=model_type,
        config=raw.get("config", ""),
        flags=dict(raw.get("flags", {})),
        text_level=raw.get("text_level"),
        text_model_type=raw.get("text_model_type"),
    )


def _rename_rules(raw_classes: dict[str, Any]) -> list[tuple[str, str]]:
    """Prefix renamings ``save_pretrained`` applies (in-memory -> on-disk), learnt from the built classes.

    ``model.language_model.`` -> ``language_model.model.``, ``lm_head.`` -> ``language_model.lm_head.``...
    Used to give classes that could not be built their on-disk naming too. Read from the raw entries
    (disk ties beside ``module_names`` ties), so no class needs building to learn them.
    """
    counts: dict[tuple[str, str], int] = {}
    for entry in raw_classes.values():
        module = entry.get("module_names")
        if not module:
            continue
        for (dt, ds, _), (mt, ms, _) in zip(entry.get("ties", ()), module.get("ties", ()), strict=False):
            for a, b in ((mt, dt), (ms, ds)):
                pa, pb = a.split("."), b.split(".")
                while pa and pb and pa[-1] == pb[-1]:
                    pa.pop()
                    pb.pop()
                rule = ("".join(p + "." for p in pa), "".join(p + "." for p in pb))
                if rule[0] != rule[1]:
                    counts[rule] = counts.get(rule, 0) + 1
    return sorted((r for r, n in counts.items() if n >= 3), key=lambda r: (-len(r[0]), r))


def _renamed(cls: ClassKnowledge, rules: list[tuple[str, str]]) -> ClassKnowledge | None:
    def rename(name: str) -> str:
        for old, new in rules:
            if name.startswith(old):
                return new + name[len(old) :]
        return name

    ties = tuple(Tie(rename(t.target), rename(t.source), t.level) for t in cls.ties)
    if ties == cls.ties:
        return None
    output = rename(cls.output) if cls.output else None
    return replace(cls, ties=ties, output=output, input=rename(cls.input) if cls.input else None, alias=cls)


@cache
def knowledge(version: str = CURRENT) -> Knowledge:
    """The data generated under transformers ``version``; empty when the package does not ship it."""
    path = resources.files("tiecheck.ties").joinpath("data").joinpath(f"transformers-{version}.json")
    if version != CURRENT and not path.is_file():
        return Knowledge(version=version, classes={}, model_types={}, failed={})
    text = path.read_text("utf-8")
    raw = json.loads(text)
    return Knowledge(
        version=raw["transformers"],
        classes=_Classes(raw["classes"], _rename_rules(raw["classes"])),
        model_types={mt: _type(mt, entry) for mt, entry in raw["model_types"].items()},
        failed=dict(raw.get("failed", {})),
    )
