"""Shapes against the config (TC014-TC017): vocabulary rows, embedding widths, layer and expert counts.

What follows which config.json value comes from generated data (``tiecheck.ties.shapes``): every class
transformers registers, built with the value changed. A class the data does not know (custom code, an unknown
``model_type``) is checked by common names only, and those findings are warnings at most that say so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial

from tiecheck.checkpoint import ModelConfig, TensorRecord
from tiecheck.findings import Finding, Severity
from tiecheck.rules._numbering import (
    MAX_NAMED,
    Missing,
    Run,
    absent_runs,
    describe,
    is_tail,
    missing_names,
    next_to,
    runs_of,
)
from tiecheck.rules.base import ScanContext
from tiecheck.rules.catalog import finding
from tiecheck.ties.shapes import ClassShapes, Dim, IndexList, key_kind, shape_knowledge

CODES = ("TC014", "TC015", "TC016", "TC017")
_INDEX = re.compile(r"(?<=\.)\d+(?=\.)")
#: Tensors named at most this many times in a message.
_LISTED = 4
_GUESS = " (tiecheck does not know this architecture's names: this is a guess from common names.)"

_LOAD_FAILS = (
    "transformers' from_pretrained refuses to load it (size mismatch) unless ignore_mismatched_sizes=True, "
    "which initialises the mismatched tensors at random"
)


def check_shapes(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    if config is None or not ctx.wants(*CODES):
        return
    index = ctx.checkpoint.index
    listed = set(ctx.tensors) | (set(index.weight_map) if index else set())
    known = class_shapes(config, listed)
    if known is None:
        found: Iterable[Finding] = _guessed(ctx, config, listed)
    else:
        found = [*_dims(ctx, config, known), *_widths(ctx, config, known), *_lists(ctx, config, known, listed)]
        if config.custom_code:
            found = [
                _capped(f, "the repo brings its own modeling code; the names are transformers' own") for f in found
            ]
    yield from found


def _capped(found: Finding, why: str) -> Finding:
    severity = min(found.severity, Severity.WARNING)
    return replace(found, severity=severity, message=f"{found.message} (A guess: {why}.)")


def _general(name: str) -> str:
    return _INDEX.sub("*", name)


def _score(cls: ClassShapes, general: set[str]) -> int:
    named = sum(d.name in general for d in (*cls.dims, *cls.widths))
    return named + sum(any(g.startswith(lst.prefix + "*.") for g in general) for lst in cls.lists)


def class_shapes(config: ModelConfig, listed: set[str]) -> ClassShapes | None:
    """The records of the class transformers builds, in the naming the checkpoint uses; None if unknown."""
    data = shape_knowledge()
    candidates = [data[a] for a in config.architectures[:1] if a in data]
    if not candidates and config.model_type:
        candidates = [data[name] for name in data.named_by(config.model_type)]
    general = {_general(n) for n in listed}
    scored = [(_score(v, general), i, v) for i, c in enumerate(candidates) for v in c.variants()]
    best = max(scored, key=lambda s: (s[0], -s[1]), default=None)
    return best[2] if best is not None and best[0] > 0 else None


@dataclass(frozen=True)
class _Bad:
    name: str
    tensor: TensorRecord
    dim: Dim
    expected: int

    @property
    def size(self) -> int:
        return self.tensor.shape[self.dim.dim]


def _followers(ctx: ScanContext, dims: Iterable[Dim]) -> Iterator[tuple[str, TensorRecord, Dim]]:
    """The stored tensors each record sizes, that can be judged: packed quantised weights and ZeRO-3
    placeholders have other shapes by design (TC304, TC013)."""
    by_general: dict[str, list[str]] = {}
    for name in ctx.tensors:
        by_general.setdefault(_general(name), []).append(name)
    for dim in dims:
        for name in by_general.get(dim.name, ()):
            tensor = ctx.tensors[name]
            if len(tensor.shape) > dim.dim and tensor.is_float and tensor.numel:
                yield name, tensor, dim


def _mismatches(ctx: ScanContext, config: ModelConfig, dims: Iterable[Dim]) -> dict[str, list[_Bad]]:
    bad: dict[str, list[_Bad]] = {}
    for name, tensor, dim in _followers(ctx, dims):
        value = config.sizes.get(dim.key)
        if value is not None and tensor.shape[dim.dim] != value + dim.offset:
            bad.setdefault(dim.key, []).append(_Bad(name, tensor, dim, value + dim.offset))
    return bad


def _implied(ctx: ScanContext, known: ClassShapes, key: str) -> set[int]:
    """The values of ``key`` the stored tensors it sizes imply (more than one: they disagree)."""
    return {t.shape[d.dim] - d.offset for _, t, d in _followers(ctx, (d for d in known.dims if d.key == key))}


def _listing(bad: list[_Bad], what: str) -> str:
    parts = [f"{b.name} has {b.size} {what}" for b in bad[:_LISTED]]
    more = f" and {len(bad) - _LISTED} more" if len(bad) > _LISTED else ""
    return ", ".join(parts) + more


def _expected(bad: list[_Bad]) -> str:
    sizes = sorted({b.expected for b in bad})
    return " or ".join(map(str, sizes))


def _dims(ctx: ScanContext, config: ModelConfig, known: ClassShapes) -> Iterator[Finding]:
    for key, bad in sorted(_mismatches(ctx, config, known.dims).items()):
        kind = key_kind(key)
        value = config.sizes[key]
        stored = sorted(_implied(ctx, known, key))
        tensors = [b.name for b in bad]
        files = [b.tensor.file for b in bad]
        if kind == "vocab":
            what = "rows" if all(b.dim.dim == 0 for b in bad) else "entries"
            if len(stored) == 1:
                fix = (
                    f"If tokens were added and the embedding resized (resize_token_embeddings), set {key} to "
                    f"{stored[0]} in config.json; if the config is right, the weights come from another vocabulary "
                    "(a merge of models with different tokenizers): re-export them from a model of this vocabulary."
                )
            else:
                fix = (
                    "The stored tensors do not even agree with each other (one was resized, not the other): resize "
                    f"them all to one vocabulary and set {key} to it."
                )
            yield finding(
                "TC014",
                f"{_listing(bad, what)}, but {key} is {value} in config.json ({known.name} expects "
                f"{_expected(bad)}): {_LOAD_FAILS}. {fix}",
                tensors=tensors,
                files=files,
            )
        elif kind == "experts":
            yield finding(
                "TC017",
                f"{_listing(bad, 'rows')}, but {key} is {value} in config.json ({known.name} expects "
                f"{_expected(bad)}): the checkpoint holds another number of experts than the config. {_LOAD_FAILS}. "
                f"Set {key} to the number of experts stored ({', '.join(map(str, stored))}), or restore the "
                "missing experts.",
                tensors=tensors,
                files=files,
            )
        else:
            yield finding(
                "TC016",
                f"{_listing(bad, 'entries')}, but {key} is {value} in config.json ({known.name} expects "
                f"{_expected(bad)}): {_LOAD_FAILS}. Set {key} to match the stored layers.",
                tensors=tensors,
                files=files,
            )


def _widths(ctx: ScanContext, config: ModelConfig, known: ClassShapes) -> Iterator[Finding]:
    for key, bad in sorted(_mismatches(ctx, config, known.widths).items()):
        value = config.sizes[key]
        yield finding(
            "TC015",
            f"{_listing(bad, 'columns')}, but {key} is {value} in config.json: the embedding is "
            f"{'/'.join(sorted({str(b.size) for b in bad}))} wide and the model {value}. {_LOAD_FAILS}. "
            f"The config belongs to another model size: use the config.json these weights were saved with "
            f"({key} = {bad[0].size}), or weights of this size.",
            tensors=[b.name for b in bad],
            files=[b.tensor.file for b in bad],
        )


def _instances(lst: IndexList, listed: Iterable[str]) -> dict[str, dict[int, list[str]]]:
    """Concrete prefix (``model.layers.``) -> stored index -> the names under it."""
    pattern = lst.pattern
    result: dict[str, dict[int, list[str]]] = {}
    for name in listed:
        match = pattern.match(name)
        if match and len(match.group(2)) < 7:
            result.setdefault(match.group(1), {}).setdefault(int(match.group(2)), []).append(name)
    return result


def _extra_allowed(config: ModelConfig) -> int:
    """Layers stored beyond the count on purpose: multi-token-prediction heads (DeepSeek-V3, GLM-4.5...)."""
    return sum(v for k, v in config.sizes.items() if ("nextn" in k or "mtp" in k.lower()) and 0 < v < 16)


def _file_of(ctx: ScanContext, name: str) -> str | None:
    tensor = ctx.tensors.get(name)
    index = ctx.checkpoint.index
    return tensor.file if tensor else index.weight_map.get(name) if index else None


def _lists(ctx: ScanContext, config: ModelConfig, known: ClassShapes, listed: set[str]) -> Iterator[Finding]:
    ignored = [re.compile(p) for p in known.unexpected]
    for lst in _agreeing(config, known.lists):
        value = config.sizes.get(lst.key)
        if value is None or value + lst.offset < 0:
            continue
        expected = value + lst.offset
        experts = key_kind(lst.key) == "experts"
        allowed = 0 if experts else _extra_allowed(config)
        missing: dict[str, list[Run]] = {}
        extra: dict[str, list[Run]] = {}
        names: list[str] = []
        count = 0
        surplus: list[str] = []
        files: set[str] = set()
        for prefix, stored in sorted(_instances(lst, listed).items()):
            absent = absent_runs(expected, stored)
            # only what is stored: a name the index lists in a missing or broken shard is TC002/TC001's
            beyond = sorted(
                i for i, held in stored.items() if i >= expected + allowed and any(n in ctx.tensors for n in held)
            )
            beyond = [i for i in beyond if not all(any(p.search(n) for p in ignored) for n in stored[i])]
            if absent:
                missing[prefix] = absent
                would = missing_names(prefix, stored, absent)
                names += would.names[: MAX_NAMED - len(names)]
                count += would.count
                files.update(f for f in map(partial(_file_of, ctx), next_to(absent, stored)) if f)
            if beyond:
                extra[prefix] = runs_of(beyond)
                surplus += sorted(n for i in beyond for n in stored[i])
        if missing:
            found = _missing(config, known, lst, expected, missing, Missing(tuple(names), count))
            yield replace(found, files=tuple(sorted(files)))
        if extra:
            found = _extra(known, lst, value, expected, extra, surplus)
            yield replace(found, files=tuple(sorted({f for f in map(partial(_file_of, ctx), surplus) if f})))


def _agreeing(config: ModelConfig, lists: tuple[IndexList, ...]) -> list[IndexList]:
    """The index lists to check. Lists of config.json that change length together (Swin's ``depths`` and
    ``num_heads``) are all recorded as sizing the stages; one that is merely long enough still builds, so
    a prefix sized by list lengths is checked once, and only where all of them agree."""
    by_length: dict[str, list[IndexList]] = {}
    for lst in lists:
        if lst.key.startswith("len("):
            by_length.setdefault(lst.prefix, []).append(lst)
    checked = [lst for lst in lists if not lst.key.startswith("len(")]
    for group in by_length.values():
        counts = {config.sizes.get(lst.key) for lst in group}
        if len(counts) == 1 and None not in counts:
            checked.append(group[0])
    return checked


def _set_count(key: str, count: str) -> str:
    """How to change the count ``key`` names: an integer is set, a list (``len(depths)``) cut or extended."""
    if key.startswith("len("):
        return f"cut or extend {key[4:-1]} (and each list as long as it) to {count}"
    return f"set {key} to {count}"


def _where(found: dict[str, list[Run]]) -> str:
    parts = [f"{prefix}{{{describe(runs)}}}" for prefix, runs in list(found.items())[:_LISTED]]
    return ", ".join(parts) + (f" and {len(found) - _LISTED} more" if len(found) > _LISTED else "")


def _missing(
    config: ModelConfig,
    known: ClassShapes,
    lst: IndexList,
    expected: int,
    missing: dict[str, list[Run]],
    would: Missing,
) -> Finding:
    value = config.sizes[lst.key]
    tail = all(is_tail(runs, expected) for runs in missing.values())
    shape = "the last ones are missing" if tail else "a gap in the numbering"
    if key_kind(lst.key) == "experts":
        return finding(
            "TC017",
            f"{lst.key} is {value} in config.json, but experts {_where(missing)} are not stored ({shape}). "
            f"transformers 5 stacks each layer's experts into one tensor and refuses the load (size mismatch); a "
            f"loader that keeps experts apart initialises them at random. Restore the missing experts, or set "
            f"{lst.key} to the number stored if they were pruned on purpose (and renumber them from 0).",
            tensors=would.names,
        )
    return finding(
        "TC016",
        f"{lst.key} is {value} in config.json, but layers {_where(missing)} are not stored ({shape}): "
        f"{would.count} tensors of {known.name} are missing. transformers' from_pretrained loads the model "
        f'anyway and initialises them at random (the "newly initialized" warning): the model runs with random '
        f"layers. Restore the shard or tensors that held them; if layers were removed on purpose, renumber the "
        f"remaining ones from 0 and {_set_count(lst.key, 'their count')}.",
        tensors=would.names,
    )


def _extra(
    known: ClassShapes, lst: IndexList, value: int, expected: int, extra: dict[str, list[Run]], surplus: list[str]
) -> Finding:
    if key_kind(lst.key) == "experts":
        fused = known.alias is not None and any(key_kind(d.key) == "experts" for d in known.alias.dims)
        loader = (
            "transformers 5 stacks each layer's experts into one tensor and refuses the load (size mismatch)"
            if fused
            else "the loader ignores them (unexpected keys): their weights are silently dropped"
        )
        return finding(
            "TC017",
            f"experts {_where(extra)} are stored, but {lst.key} is {value} in config.json: {loader}. If they belong "
            f"to the model, set {lst.key} to the number stored.",
            tensors=surplus,
            severity=None if fused else Severity.WARNING,
        )
    return finding(
        "TC016",
        f"layers {_where(extra)} are stored, but {lst.key} is {value} in config.json ({known.name} builds "
        f"{expected}): transformers' from_pretrained ignores them (unexpected keys), so {len(surplus)} stored "
        f"tensors are silently dropped. If they belong to the model (layers added, depth up-scaling), "
        f"{_set_count(lst.key, 'the number stored')}; otherwise remove them.",
        tensors=surplus,
        severity=Severity.WARNING,
    )


# -- Pattern guesses: architectures the generated data does not know ---------------------------------------

_VOCAB_NAMES = re.compile(
    r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings|embed_in|lm_head|embed_out)\.weight$"
)
_LAYER_PREFIXES = ("model.layers.", "transformer.h.", "transformer.layers.", "gpt_neox.layers.", "layers.")
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers")


def _guessed(ctx: ScanContext, config: ModelConfig, listed: set[str]) -> Iterator[Finding]:
    sizes = config.sizes
    vocab = {sizes[k] for k in ("vocab_size", "text_config.vocab_size") if k in sizes}
    vocabish = {v for k, v in sizes.items() if "vocab" in k.lower()}
    if len(vocab) == 1:
        (value,) = vocab
        key = "vocab_size" if "vocab_size" in sizes else "text_config.vocab_size"
        bad = [
            t
            for n, t in sorted(ctx.tensors.items())
            if _VOCAB_NAMES.search(n) and len(t.shape) == 2 and t.is_float and t.shape[0] not in vocabish | {0}
        ]
        if bad:
            # some architectures keep rows beyond the vocabulary on purpose (Mllama's image tokens, Moshi's
            # padding token): without the class's data, more rows than the config is only information
            short = any(t.shape[0] < value for t in bad)
            yield finding(
                "TC014",
                f"{', '.join(f'{t.name} has {t.shape[0]} rows' for t in bad[:_LISTED])}, but {key} is {value} in "
                f"config.json: a vocabulary resized without updating the config, or weights merged from another "
                f"vocabulary. A loader that sizes the embedding from the config fails (size mismatch)"
                + (f"; token ids from {min(t.shape[0] for t in bad)} on have no row" if short else "")
                + f". Set {key} to the stored rows if tokens were added.{_GUESS}",
                tensors=[t.name for t in bad],
                files=[t.file for t in bad],
                severity=Severity.WARNING if short else Severity.INFO,
            )
    counts = {sizes[k] for k in _LAYER_KEYS if k in sizes} or {
        sizes[f"text_config.{k}"] for k in _LAYER_KEYS if f"text_config.{k}" in sizes
    }
    if len(counts) != 1:
        return
    (layers,) = counts
    for prefix in _LAYER_PREFIXES:
        stored = _instances(IndexList(prefix, "", 0), listed).get(prefix)
        if not stored:
            continue
        absent = absent_runs(layers, stored)
        if absent:
            would = missing_names(prefix, stored, absent)
            yield finding(
                "TC016",
                f"the config counts {layers} layers, but {prefix}{{{describe(absent)}}} are not stored: loaders "
                f"initialise missing layers at random. Restore them, or renumber the stored layers and set the "
                f"layer count to match.{_GUESS}",
                tensors=would.names,
                severity=Severity.WARNING,
            )
        beyond = sorted(
            i for i in stored if i >= layers + _extra_allowed(config) and any(n in ctx.tensors for n in stored[i])
        )
        if beyond:
            yield finding(
                "TC016",
                f"the config counts {layers} layers, but {prefix}{{{describe(runs_of(beyond))}}} are stored too: "
                f"loaders ignore them. Set the layer count to match if they belong to the model.{_GUESS}",
                tensors=sorted(n for i in beyond for n in stored[i]),
                severity=Severity.INFO,
            )
        return
