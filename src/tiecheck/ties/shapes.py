"""Which stored shapes follow which config.json values, per architecture class, from generated data.

``data/shapes-<version>.json`` is written by ``scripts/generate_shapes.py``: every registered class built on
the meta device, again with one config value changed, and the saved names and shapes compared; older on-disk
namings the loader accepts by a prefix change are kept as prefix pairs (``p``). Reading it needs
neither transformers nor torch; it is loaded on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cache, cached_property
from typing import Any

from tiecheck.ties import _records
from tiecheck.ties._records import Records
from tiecheck.ties.known import CURRENT

#: config.json keys (last segment) by what they count.
VOCAB_KEYS = frozenset({"vocab_size"})
EXPERT_KEYS = frozenset({"num_local_experts", "num_experts", "n_routed_experts"})


def key_kind(key: str) -> str:
    """``vocab``, ``experts`` or ``layers`` for a dotted count key; widths are recorded apart."""
    last = key.rsplit(".", 1)[-1]
    return "vocab" if last in VOCAB_KEYS else "experts" if last in EXPERT_KEYS else "layers"


@dataclass(frozen=True)
class Dim:
    name: str
    """The saved name, layer indices as ``*``."""
    dim: int
    key: str
    """The dotted config.json key it follows (``vocab_size``, ``text_config.vocab_size``...)."""
    offset: int
    """The dimension is ``config[key] + offset``."""


@dataclass(frozen=True)
class IndexList:
    prefix: str
    """What precedes the index in the saved names (``model.layers.``; outer indices as ``*``)."""
    key: str
    offset: int
    """The indices run from 0 to ``config[key] + offset - 1``."""

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Matches a stored name under this list; group 1 is the concrete prefix, group 2 the index."""
        body = r"\.".join(r"\d+" if part == "*" else re.escape(part) for part in self.prefix.split("."))
        return re.compile(rf"^({body})(\d+)\.")


@dataclass(frozen=True)
class ClassShapes:
    name: str
    model_type: str
    dims: tuple[Dim, ...]
    """Dimensions sized by a count: vocabulary rows, router rows, fused experts."""
    widths: tuple[Dim, ...]
    """Columns of the vocabulary-sized tensors that equal a width (``hidden_size``; offset 0)."""
    lists: tuple[IndexList, ...]
    """Layer and expert lists."""
    unexpected: tuple[str, ...] = ()
    """The class's ``_keys_to_ignore_on_load_unexpected``: stored names the loader drops without a word."""
    alias: ClassShapes | None = None
    """The same records in the in-memory naming, when ``save_pretrained`` writes other keys."""
    legacy: tuple[ClassShapes, ...] = ()
    """The same records in older on-disk namings the loader accepts by a prefix change (transformers 4.x's
    ``vision_model.encoder.layers.N`` for a ``CLIPVisionModel``, which 5.x saves as ``encoder.layers.N``)."""

    def variants(self) -> tuple[ClassShapes, ...]:
        return (self, *((self.alias,) if self.alias else ()), *self.legacy)


def _rewrite(pairs: tuple[tuple[str, str], ...], name: str) -> str:
    """``name`` in a legacy naming: the longest saved prefix of ``pairs`` it starts with replaced."""
    for saved, legacy in pairs:
        if name.startswith(saved):
            return legacy + name[len(saved) :]
    return name


def _renamed(shapes: ClassShapes, raw: list[list[str]]) -> ClassShapes:
    pairs = tuple(sorted(((s, g) for s, g in raw), key=lambda p: -len(p[0])))
    return replace(
        shapes,
        dims=tuple(replace(d, name=_rewrite(pairs, d.name)) for d in shapes.dims),
        widths=tuple(replace(d, name=_rewrite(pairs, d.name)) for d in shapes.widths),
        lists=tuple(replace(lst, prefix=_rewrite(pairs, lst.prefix)) for lst in shapes.lists),
        alias=None,
        legacy=(),
    )


def _class(name: str, raw: dict[str, Any], model_type: str, unexpected: tuple[str, ...]) -> ClassShapes:
    memory = raw.get("m")
    return ClassShapes(
        name=name,
        model_type=model_type,
        dims=tuple(Dim(n, d, k, o) for n, d, k, o in raw.get("d", ())),
        widths=tuple(Dim(n, d, k, 0) for n, d, k in raw.get("h", ())),
        lists=tuple(IndexList(p, k, o) for p, k, o in raw.get("l", ())),
        unexpected=unexpected,
        alias=_class(name, memory, model_type, unexpected) if memory else None,
    )


def _build(name: str, entry: dict[str, Any]) -> ClassShapes:
    shapes = _class(name, entry, entry.get("t", ""), tuple(entry.get("x", ())))
    legacy = tuple(_renamed(shapes, pairs) for pairs in entry.get("p", ()))
    return replace(shapes, legacy=legacy) if legacy else shapes


@cache
def shape_knowledge(version: str = CURRENT) -> Records[ClassShapes]:
    """Class name to its shape records, generated under transformers ``version`` (empty when not shipped);
    each class is built when first asked for, :meth:`~Records.named_by` finds a model type's classes."""
    raw = _records.load(f"shapes-{version}.json")
    return Records(raw["classes"] if raw is not None else {}, _build, "t")
