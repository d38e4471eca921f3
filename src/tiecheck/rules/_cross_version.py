"""Tie findings where transformers 4.x and 5.x read the same checkpoint differently (TC103, TC108).

transformers 4.x read another level's flag or default for some classes, tied heads 5.x declares no tie for,
or tied whatever the flag said; the generated 4.57 data says which (``data/transformers-4.57.6.json``).
"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.checkpoint import ModelConfig, TensorRecord
from tiecheck.findings import Finding, Severity
from tiecheck.rules._tie_common import architecture, difference, flag_key, loaders_for, why_tied
from tiecheck.rules.base import ScanContext
from tiecheck.rules.catalog import finding
from tiecheck.ties.known import CURRENT, LEGACY, ClassKnowledge, knowledge, removed
from tiecheck.ties.loaders import with_loaders
from tiecheck.ties.resolve import ResolvedTie, architecture_class, legacy_flag
from tiecheck.ties.table import TieGroup


def legacy_random_head(ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord, name: str) -> Finding:
    config = ctx.checkpoint.config
    assert config is not None
    return finding(
        "TC103",
        with_loaders(
            f"{name} is not stored: transformers >= 5 restores it from {tie.group.kept} ({why_tied(ctx, tie)}), "
            f"but transformers {LEGACY} does not tie it for this config and initialises it at random. Fine for "
            "transformers 5; for 4.x users set the flag 4.x reads (text_config.tie_word_embeddings) to true.",
            loaders_for(ctx, tie, "head-absent"),
        ),
        tensors=[name, tie.group.kept],
        files=[kept.file],
        severity=Severity.INFO,
    )


def legacy_only(tie: ResolvedTie, name: str, kept: TensorRecord, restored: TensorRecord) -> bool:
    """A head 4.x ties to a different stored embedding (a pickle's shared storage is one tensor: not that)."""
    return bool(tie.legacy_tied) and name == tie.group.head and not kept.aliases(restored)


def legacy_overwrites_head(ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord, restored: TensorRecord) -> Finding:
    """Untied for transformers 5, tied for 4.x (another level's flag or default): 4.x discards the stored values."""
    config = ctx.checkpoint.config
    assert config is not None
    key = flag_key(ctx, tie)
    # set where transformers 5 reads it (as its save_pretrained writes it): the author's intent, 4.x misreads it
    explicit = config.tie_basis.startswith(f"{config.tie_key} in ")
    if explicit:
        advice = (
            "Fine for transformers 5; for 4.x users also set the flag 4.x reads "
            "(text_config.tie_word_embeddings) to false."
        )
    else:
        advice = f"Write {key}: false explicitly (and text_config's, if the config has one) so every version keeps it."
    return finding(
        "TC108",
        with_loaders(
            f"{key} is {'false' if explicit else 'not set'} ({config.tie_basis}), so transformers >= 5 keeps "
            f"{restored.name} as stored; transformers {LEGACY} ties it for this config (it reads another level's "
            f"flag or default) and overwrites it with {kept.name}, which differs{difference(kept, restored)}: the "
            f"two versions run different models. {advice}",
            loaders_for(ctx, tie, "head-differs"),
        ),
        tensors=[restored.name, kept.name],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
        severity=Severity.INFO if explicit else None,
    )


def legacy_ties(ctx: ScanContext, target: str, source: str) -> bool:
    """Whether transformers 4's class for this checkpoint restores ``target`` from ``source``."""
    named = architecture(ctx)
    old = knowledge(LEGACY).classes.get(named) if named else None
    return old is not None and any(t.target == target and t.source == source for t in old.ties)


def legacy_head(config: ModelConfig, cls: ClassKnowledge, declared: object, legacy: bool | None) -> bool | None:
    """Whether transformers 4 ties the head: as the tie says, or, where 5.x declares none, as 4.x's class did."""
    if declared is not None:
        return legacy
    old = knowledge(LEGACY).classes.get(cls.name)
    if old is None:
        return None
    tie = next((t for t in old.ties if t.target == old.output), None)
    if tie is None:
        return False
    return legacy_flag(config, tie)


def head_tied_by_legacy_only(ctx: ScanContext) -> Iterator[Finding]:
    """The head is stored and differs from the embedding; transformers 5's class declares no tie for it, 4.x's ties
    it for this config (BigBird-Pegasus, LUKE, Reformer, Qwen2-Audio): 4.x overwrites it, 5.x loads it as stored."""
    config = ctx.checkpoint.config
    cls = architecture_class(config, set(ctx.tensors))
    if config is None or cls is None or cls.output is None or removed(cls) or cls.name not in config.architectures:
        return
    if not cls.built or config.custom_code:
        return  # what 5.x ties is only partly known (its class attribute alone, or the repo's own code)
    restored = ctx.tensors.get(cls.output)
    if restored is None or any(cls.output in t.members for t in ctx.ties):
        return  # not stored, or a tie transformers 5 declares judges it
    old = knowledge(LEGACY).classes.get(cls.name)
    tie = next((t for t in old.ties if t.target == cls.output), None) if old is not None else None
    kept = ctx.tensors.get(tie.source) if tie is not None else None
    if tie is None or kept is None or not legacy_flag(config, tie) or kept.aliases(restored):
        return
    if ctx.content.equal(kept, restored) is not False:
        return  # the same values whichever a loader reads (or not known: nothing to claim)
    level = "" if tie.level == "*" else tie.level
    group = TieGroup(kept=tie.source, restored=(cls.output,), head=cls.output)
    basis = f"{cls.name}._tied_weights_keys, transformers {LEGACY}"
    resolved = ResolvedTie(group, False, basis, level=level, legacy_tied=True)
    key = f"{level}.tie_word_embeddings" if level else "tie_word_embeddings"
    # the flag 4.x reads is written in config.json, as transformers 5's save_pretrained writes it: a 5.x save
    explicit = level in config.written_tie_levels
    if tie.level == "*":
        why, advice = "whatever config.json says", f"No config makes transformers {LEGACY} load the stored head."
    else:
        why = f"as {key} is {'true in config.json' if explicit else f'not set and {LEGACY} takes it as true'}"
        advice = f"For 4.x users write {key}: false, which transformers 5 does not read for this head."
        if any(t.tied and t.level == level for t in ctx.ties):
            advice = ""  # the same flag ties something else in transformers 5: no advice that unties it
    yield finding(
        "TC108",
        with_loaders(
            f"{cls.name} declares no tie for {cls.output} in transformers {CURRENT}, which keeps it as stored; "
            f"transformers {LEGACY}'s class ties it to {kept.name} {why} and overwrites it, although it "
            f"differs{difference(kept, restored)}: the two versions run different models. {advice}".rstrip(),
            loaders_for(ctx, resolved, "head-differs"),
        ),
        tensors=[restored.name, kept.name],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
        severity=Severity.INFO if explicit else None,
    )
