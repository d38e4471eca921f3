"""Tie rules (TC101-TC106): does what is stored match what the loader will tie?"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.checkpoint import TensorRecord
from tiecheck.findings import Finding
from tiecheck.rules.base import ScanContext, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.ties.resolve import ResolvedTie
from tiecheck.ties.table import NAME_PATTERNS, has_lm_head, is_base_model, lookup


def check_ties(ctx: ScanContext) -> Iterator[Finding]:
    for tie in ctx.ties:
        kept = ctx.tensors.get(tie.group.kept)
        for name in tie.group.restored:
            restored = ctx.tensors.get(name)
            if tie.tied:
                yield from _tied(ctx, tie, kept, name, restored)
            elif tie.tied is False:
                yield from _untied(ctx, tie, kept, name, restored)
            elif kept and restored and ctx.content.equal(kept, restored):
                yield _tieable(ctx, tie, kept, restored)


def _why_tied(ctx: ScanContext, tie: ResolvedTie) -> str:
    config = ctx.checkpoint.config
    if tie.group.always:
        return f"the architecture always ties them ({tie.basis})"
    assert config is not None
    return f"{config.tie_key} is true ({config.tie_basis}; {tie.basis})"


def _tied(
    ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord | None, name: str, restored: TensorRecord | None
) -> Iterator[Finding]:
    if restored is None:
        return
    if kept is None:
        if ctx.listed(tie.group.kept):
            return  # in a missing or broken shard: TC001/TC002 say so
        yield finding(
            "TC106",
            f"{name} is stored but {tie.group.kept}, which the tie pairs it with, is not: "
            f"{_why_tied(ctx, tie)}. transformers >= 5 ties symmetrically and restores {tie.group.kept} from "
            f"{name}; older versions and other loaders initialise {tie.group.kept} at random. "
            f"Store the tensor under {tie.group.kept} instead.",
            tensors=[name, tie.group.kept],
            files=[restored.file],
            bytes=restored.nbytes,
        )
        return
    if kept.aliases(restored):
        return  # one storage of a pickle file: nothing is stored twice (TC201 names the pair)
    if ctx.content.equal(kept, restored):
        yield finding(
            "TC101",
            f"{name} is stored although {_why_tied(ctx, tie)} and it is byte-identical to {tie.group.kept}: "
            f"{human_bytes(restored.nbytes)} of redundant weights. Loaders restore it from {tie.group.kept}; "
            "`tiecheck fix --drop-duplicates` removes it.",
            tensors=[name, tie.group.kept],
            files=[restored.file, kept.file],
            bytes=restored.nbytes,
        )
        return
    yield finding(
        "TC102",
        f"{_why_tied(ctx, tie)}, but {name} differs from {tie.group.kept}{_difference(kept, restored)}. "
        f"transformers < 5 overwrites {name} with {tie.group.kept} at load (the stored values are ignored); "
        f"transformers >= 5 sees they differ and unties them. The two read the model differently: set "
        f"{ctx.checkpoint.config.tie_key if ctx.checkpoint.config else 'tie_word_embeddings'} to false to keep "
        f"both, or drop {name} to keep the tie.",
        tensors=[name, tie.group.kept],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
    )


def _difference(kept: TensorRecord, restored: TensorRecord) -> str:
    if kept.dtype != restored.dtype or kept.shape != restored.shape:
        return f" ({restored.dtype}{list(restored.shape)} vs {kept.dtype}{list(kept.shape)})"
    return " in its stored values"


def _untied(
    ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord | None, name: str, restored: TensorRecord | None
) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    assert config is not None
    heads = [a for a in config.architectures if has_lm_head(a)]
    if restored is None and name == tie.group.head and heads and not ctx.listed(name):
        yield finding(
            "TC103",
            f"{config.tie_key} is false ({config.tie_basis}) and {name} is not stored: {heads[0]} will "
            "initialise its output head at random and generate gibberish, with only a warning in the load log. "
            f"If the model was trained with a tied head, set {config.tie_key} to true; otherwise restore "
            f"{name} from the source checkpoint.",
            tensors=[name],
            files=[kept.file] if kept else [],
        )
    elif restored is not None and kept is not None and ctx.content.equal(kept, restored):
        yield _tieable(ctx, tie, kept, restored)


def _tieable(ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord, restored: TensorRecord) -> Finding:
    config = ctx.checkpoint.config
    flag = f"{config.tie_key} is false" if config and config.tie_word_embeddings is False else "nothing declares a tie"
    if kept.aliases(restored):
        return finding(
            "TC104",
            f"{restored.name} and {kept.name} share one storage in {kept.file} (the model was tied when saved) "
            f"but {flag}: loaders build two independent copies ({human_bytes(restored.nbytes)} of load memory) "
            f"and a fine-tune drifts them apart ({tie.basis}). `tiecheck fix --tie-head` sets the flag.",
            tensors=[restored.name, kept.name],
            files=[kept.file],
            bytes=restored.nbytes,
        )
    return finding(
        "TC104",
        f"{restored.name} is byte-identical to {kept.name} but {flag}: tying them would save "
        f"{human_bytes(restored.nbytes)} ({tie.basis}). `tiecheck fix --tie-head` drops the copy and sets the flag.",
        tensors=[restored.name, kept.name],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
    )


def check_base_model(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    if config is None or not config.architectures or not is_base_model(config.architectures[0]):
        return
    if any(t.group.head and t.group.head in ctx.tensors for t in ctx.ties):
        return
    arch = config.architectures[0]
    prefix_note = ""
    known = lookup(config.model_type)
    for group in known.groups if known else NAME_PATTERNS:
        if "." in group.kept and group.kept not in ctx.tensors:
            prefix, short = group.kept.split(".", 1)
            if short in ctx.tensors:
                prefix_note = f" Its keys lack the '{prefix}.' prefix a task model expects."
                break
    yield finding(
        "TC105",
        f"architectures names {arch}, a backbone without an output head.{prefix_note} That is right for embedding "
        "and feature-extraction models; loaded as a causal LM it gets a randomly initialised head (or the "
        "embedding, when tie_word_embeddings is true).",
    )
