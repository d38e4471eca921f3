"""What transformers' own loaders do with each architecture's ties, from the generated data files.

``data/transformers-<version>.json`` is written by ``scripts/generate_ties.py`` from the installed
transformers (every class of every auto mapping, built on the meta device). Reading it needs neither
transformers nor torch. The newest file is the reference (:data:`CURRENT`); the 4.x file says what
older loaders did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from tiecheck.ties import _records
from tiecheck.ties._records import Records

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
    """The config object whose ``tie_word_embeddings`` decides the tie: "" (outer), "text_config", ...; "*" (4.x data
    only): none, the tensors are shared whatever the flags say."""


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


@dataclass(frozen=True)
class Knowledge:
    version: str
    classes: Mapping[str, ClassKnowledge]
    model_types: Mapping[str, TypeKnowledge]
    failed: Mapping[str, str]
    types_index: Mapping[str, list[str]] | None = None
    """model_type -> the names of its classes, as the generator wrote it (None: find them by looking)."""

    def by_model_type(self, model_type: str) -> tuple[ClassKnowledge, ...]:
        if self.types_index is not None:
            return tuple(self.classes[name] for name in self.types_index.get(model_type, ()))
        if isinstance(self.classes, Records):
            return tuple(self.classes[name] for name in self.classes.named_by(model_type))
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


def _rename_rules(raw_classes: Mapping[str, Any]) -> list[tuple[str, str]]:
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
    """The data generated under transformers ``version``; empty when the package does not ship it.

    Each class and model type is turned into its record when first asked for: a scan asks about one or two.
    """
    raw = _records.load(f"transformers-{version}.json")
    if raw is None:
        if version == CURRENT:
            raise FileNotFoundError(_records.DATA / f"transformers-{version}.json")
        return Knowledge(version=version, classes={}, model_types={}, failed={})
    raw_classes: Mapping[str, Any] = raw["classes"]
    rules = cache(lambda: _rename_rules(raw_classes))

    def build(name: str, entry: dict[str, Any]) -> ClassKnowledge:
        made = _class(name, entry)
        if not made.built:  # only its plain _tied_weights_keys: give it the on-disk naming too
            made = _renamed(made, rules()) or made
        return made

    return Knowledge(
        version=raw["transformers"],
        classes=Records(raw_classes, build, "model_type"),
        model_types=Records(raw["model_types"], _type),
        failed=raw.get("failed", {}),
        types_index=raw.get("classes_by_model_type"),
    )


def removed(cls: ClassKnowledge) -> bool:
    """A class of a model type transformers 5 removed (Mega, Nezha, OpenLlama): known from the 4.x data alone,
    which is then the only loader's word on it."""
    return cls.name not in knowledge(CURRENT).classes


def version_of(cls: ClassKnowledge) -> str:
    """The transformers version whose data describes ``cls``."""
    return LEGACY if removed(cls) else CURRENT
