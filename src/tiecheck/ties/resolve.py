"""Decide which tie groups apply to a checkpoint, and whether its loader ties them.

The groups come from the generated knowledge of the architecture class (``architectures`` in
config.json, else the model_type's class that fits the stored names best); for a model type transformers 5
removed, from the 4.57 data, its last loader's. Name patterns are used only for model types neither version
knows, and for repos that bring their own modeling code (``auto_map``); such ties are marked as guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tiecheck.checkpoint import Checkpoint, ModelConfig
from tiecheck.ties.known import CURRENT, LEGACY, ClassKnowledge, Knowledge, Tie, knowledge, removed, version_of
from tiecheck.ties.table import NAME_PATTERNS, TieGroup


@dataclass(frozen=True)
class ResolvedTie:
    group: TieGroup
    tied: bool | None
    """Whether a loader ties the group; None when neither config nor table says."""
    basis: str
    """Why tiecheck thinks these tensors belong together (generated knowledge or name pattern)."""
    guess: bool = False
    """From a name pattern or for custom modeling code: findings say so and are never errors."""
    level: str = ""
    """The config level whose ``tie_word_embeddings`` decides the tie ("" outer, "text_config", ...)."""
    legacy_tied: bool | None = None
    """What transformers 4.x does with the group, when it differs from ``tied`` or is known."""
    forced: bool = False
    """transformers 5's config class ties the group although config.json, read as 4.x reads it, says untied
    (T5, UDOP): whatever is stored there, both loaders end up with what the saver meant; findings say so quietly."""
    removed: bool = False
    """The class is transformers 4.x's alone (5 removed its model type): ``tied`` is what 4.x does."""

    @property
    def members(self) -> tuple[str, ...]:
        return (self.group.kept, *self.group.restored)


def _score(cls: ClassKnowledge, names: set[str]) -> tuple[int, int, int]:
    members = {t.target for t in cls.ties} | {t.source for t in cls.ties}
    present = len(members & names)
    head = 1 if cls.output and cls.output in names else 0
    return present, head, -len(members - names)


def architecture_class(config: ModelConfig | None, names: set[str]) -> ClassKnowledge | None:
    """The generated knowledge of the class transformers builds for this checkpoint, if it knows it."""
    if config is None:
        return None
    known, candidates = _candidates(config, knowledge(CURRENT))
    if not candidates and not (config.model_type and config.model_type in knowledge(CURRENT).model_types):
        # a model type transformers 5 removed: transformers 4.x is the loader that knows it
        known, candidates = _candidates(config, knowledge(LEGACY))
    if not candidates:
        return None
    # the on-disk naming wins a draw (variants() lists it first; max keeps the first maximum)
    best = max(candidates, key=lambda c: (*_score(c, names), "" if known else c.name))
    if _score(best, names)[:2] != (0, 0) or (best.input and best.input in names):
        return best
    for candidate in candidates:  # a model nested under another prefix (a text model inside a wrapper)
        prefixed = _under_prefix(candidate, names)
        if prefixed is not None:
            return prefixed
    return best


def _candidates(config: ModelConfig, data: Knowledge) -> tuple[ClassKnowledge | None, tuple[ClassKnowledge, ...]]:
    """The class config.json names (and its namings), else every class of its model_type."""
    known = next((data.classes[arch] for arch in config.architectures if arch in data.classes), None)
    if known is not None:
        return known, known.variants()
    if config.model_type:
        return None, tuple(v for c in data.by_model_type(config.model_type) for v in c.variants())
    return None, ()


def _under_prefix(cls: ClassKnowledge, names: set[str]) -> ClassKnowledge | None:
    anchors = [a for a in (cls.input, *(t.source for t in cls.ties)) if a]
    for anchor in anchors:
        for name in names:
            if name.endswith("." + anchor):
                prefix = name[: -len(anchor)]
                return _prefixed(cls, prefix)
    return None


def _prefixed(cls: ClassKnowledge, prefix: str) -> ClassKnowledge:
    return replace(
        cls,
        ties=tuple(Tie(prefix + t.target, prefix + t.source, t.level) for t in cls.ties),
        output=prefix + cls.output if cls.output else None,
        input=prefix + cls.input if cls.input else None,
        buffers=frozenset(prefix + b for b in cls.buffers) | cls.buffers,
        frozen=frozenset(prefix + b for b in cls.frozen) | cls.frozen,
        dropped=frozenset(prefix + b for b in cls.dropped) | cls.dropped,
        alias=None,
    )


def naming_confirmed(cls: ClassKnowledge, names: set[str]) -> bool:
    """The checkpoint uses the class's names: its input embedding or a tie member is stored."""
    return bool((cls.input and cls.input in names) or any(t.source in names or t.target in names for t in cls.ties))


def _groups(cls: ClassKnowledge) -> list[tuple[TieGroup, str]]:
    """The class's ties as groups: the head on its own, other targets of one source together."""
    result: list[tuple[TieGroup, str]] = []
    shared: dict[tuple[str, str], list[str]] = {}
    types = knowledge(CURRENT).model_types
    always = types[cls.model_type].always if cls.model_type in types else (lambda level: False)
    for tie in cls.ties:
        if tie.target == cls.output:
            group = TieGroup(kept=tie.source, restored=(tie.target,), head=tie.target, always=always(tie.level))
            result.append((group, tie.level))
        else:
            shared.setdefault((tie.source, tie.level), []).append(tie.target)
    for (source, level), targets in shared.items():
        result.append((TieGroup(kept=source, restored=tuple(sorted(targets)), always=always(level)), level))
    return result


def _legacy_tied(config: ModelConfig, cls: ClassKnowledge, group: TieGroup) -> bool | None:
    """Whether transformers 4.x ties the group: the same pair in either direction, else matched by role (the head)
    or by the restored name's tail."""
    legacy = knowledge(LEGACY).classes.get(cls.name)
    if legacy is None:
        return None
    members = {group.kept, *group.restored}
    tie = next((t for t in legacy.ties if t.target in members and t.source in members), None) or next(
        (
            t
            for t in legacy.ties
            if (group.head is not None and t.target == legacy.output)
            or (group.head is None and any(r.endswith(t.target) or t.target.endswith(r) for r in group.restored))
        ),
        None,
    )
    return False if tie is None else legacy_flag(config, tie)


def legacy_flag(config: ModelConfig, tie: Tie) -> bool | None:
    """Whether transformers 4.x makes this tie of its class for ``config``."""
    if tie.level == "*":
        return True  # shared whatever the flags say (a head's bias tied in __init__)
    return config.legacy_tie_levels.get(tie.level, config.tie_word_embeddings)


def resolve_ties(checkpoint: Checkpoint, names: set[str] | None = None) -> tuple[ResolvedTie, ...]:
    if names is None:
        names = {t.name for t in checkpoint.tensors}
    config = checkpoint.config
    cls = architecture_class(config, names)
    if cls is not None and config is not None:
        custom = config.custom_code
        gone = removed(cls)
        basis = f"{cls.name}._tied_weights_keys, transformers {version_of(cls)}"
        if gone:
            basis += f" (transformers {knowledge(CURRENT).version} no longer has model_type {cls.model_type!r})"
        if not cls.built:
            basis += " (the class attribute alone: it cannot be built from its default config)"
        if custom:
            basis += "; the repo ships its own modeling code (auto_map), so this is a guess"
        resolved = []
        for group, level in _groups(cls):
            if group.kept not in names and not any(n in names for n in group.restored):
                continue
            if gone and level == "*" and group.head is not None:
                # shared in __init__ whatever the flags, but 4.x's loader re-ties a missing head only when the
                # flag says so (GPTSan: an untied save loses its head); non-head sharing is re-tied at load
                level = ""
            if gone:  # transformers 4.x is the only loader that knows the class: what it does is all there is
                tied = legacy = legacy_flag(config, Tie(group.head or "", group.kept, level))
            else:
                tied = config.tie_levels.get(level, config.tie_word_embeddings)
                legacy = _legacy_tied(config, cls, group)
            forced = group.always and config.legacy_tie_levels.get(level, config.tie_word_embeddings) is False
            resolved.append(
                ResolvedTie(
                    group, tied, basis, guess=custom, level=level, legacy_tied=legacy, forced=forced, removed=gone
                )
            )
        return tuple(resolved)
    return _by_patterns(config, names)


def _by_patterns(config: ModelConfig | None, names: set[str]) -> tuple[ResolvedTie, ...]:
    reason = (
        f"model_type {config.model_type!r} is unknown to transformers {knowledge(CURRENT).version} and {LEGACY}"
        if config and config.model_type
        else "no model_type"
    )
    basis = f"name pattern, a guess ({reason})"
    chosen: dict[str, TieGroup] = {}
    for group in NAME_PATTERNS:
        present = [n for n in group.restored if n in names]
        if group.kept not in names and not present:
            continue
        assert group.head is not None
        previous = chosen.get(group.head)
        # Several candidate embeddings for one head: the stored one wins.
        if previous is None or (group.kept in names and previous.kept not in names):
            chosen[group.head] = group
    flag = config.tie_word_embeddings if config else None
    return tuple(ResolvedTie(g, flag, basis, guess=True) for g in chosen.values())
