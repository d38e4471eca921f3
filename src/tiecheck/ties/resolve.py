"""Decide which tie groups apply to a checkpoint, and whether its loader ties them."""

from __future__ import annotations

from dataclasses import dataclass

from tiecheck.checkpoint import Checkpoint
from tiecheck.ties.table import NAME_PATTERNS, TieGroup, lookup


@dataclass(frozen=True)
class ResolvedTie:
    group: TieGroup
    tied: bool | None
    """Whether a loader ties the group; None when neither config nor table says."""
    basis: str
    """Why tiecheck thinks these tensors belong together (table entry or name pattern)."""

    @property
    def members(self) -> tuple[str, ...]:
        return (self.group.kept, *self.group.restored)


def resolve_ties(checkpoint: Checkpoint, names: set[str] | None = None) -> tuple[ResolvedTie, ...]:
    if names is None:
        names = {t.name for t in checkpoint.tensors}
    config = checkpoint.config
    arch = lookup(config.model_type if config else None)
    if arch is not None:
        groups = arch.groups
        basis = f"tie table entry for model_type {config.model_type!r}" if config else ""
    else:
        groups = NAME_PATTERNS
        reason = (
            f"model_type {config.model_type!r} is not in the tie table"
            if config and config.model_type
            else "no model_type"
        )
        basis = f"name pattern ({reason})"

    chosen: dict[tuple[str, bool], TieGroup] = {}
    for group in groups:
        present = [n for n in group.restored if n in names]
        if group.kept not in names and not present:
            continue
        key = (group.kept, group.head is not None)
        previous = chosen.get(key)
        # Naming variants of the same head: prefer the variant whose head is actually stored.
        if previous is None or (present and not any(n in names for n in previous.restored)):
            chosen[key] = group

    # Several candidate embeddings for one head (name patterns, naming variants): the stored one wins.
    by_head: dict[str, TieGroup] = {}
    for group in chosen.values():
        if group.head is None:
            continue
        previous = by_head.get(group.head)
        if previous is None or (group.kept in names and previous.kept not in names):
            by_head[group.head] = group
    selected = [g for g in chosen.values() if g.head is None or by_head[g.head] is g]

    flag = config.tie_word_embeddings if config else None
    return tuple(ResolvedTie(g, True if g.always else flag, basis) for g in selected)
