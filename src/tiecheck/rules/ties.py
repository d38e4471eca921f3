"""Tie rules (TC101-TC106): does what is stored match what the loader will tie?"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.checkpoint import TensorRecord
from tiecheck.findings import Finding, Severity
from tiecheck.rules._cross_version import (
    head_tied_by_legacy_only,
    legacy_head,
    legacy_only,
    legacy_overwrites_head,
    legacy_random_head,
    legacy_ties,
)
from tiecheck.rules._partners import missing_partner
from tiecheck.rules._tie_common import architecture, capped, difference, flag_key, loaders_for, why_tied
from tiecheck.rules._unseen import tied_pair_not_compared
from tiecheck.rules.base import ScanContext, fix_command, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.ties.known import CURRENT, LEGACY, ClassKnowledge, knowledge, version_of
from tiecheck.ties.loaders import outcomes, tie_cases, with_loaders
from tiecheck.ties.resolve import ResolvedTie, architecture_class, naming_confirmed
from tiecheck.ties.table import NAME_PATTERNS, has_lm_head, is_base_model


def check_ties(ctx: ScanContext) -> Iterator[Finding]:
    for tie in ctx.ties:
        for found in _check_tie(ctx, tie):
            yield capped(found) if tie.guess else found
    yield from _missing_untied_head(ctx)
    yield from head_tied_by_legacy_only(ctx)
    config = ctx.checkpoint.config
    for found in missing_partner(ctx):
        yield capped(found) if config is not None and config.custom_code else found


def _check_tie(ctx: ScanContext, tie: ResolvedTie) -> Iterator[Finding]:
    kept = ctx.tensors.get(tie.group.kept)
    for name in tie.group.restored:
        restored = ctx.tensors.get(name)
        if tie.tied:
            yield from _tied(ctx, tie, kept, name, restored)
        elif tie.tied is False:
            yield from _untied(ctx, tie, kept, name, restored)
        elif kept and restored and ctx.content.equal(kept, restored):
            yield _tieable(ctx, tie, kept, restored)


def _tied(
    ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord | None, name: str, restored: TensorRecord | None
) -> Iterator[Finding]:
    if restored is None:
        if kept is not None and name == tie.group.head and tie.legacy_tied is False and not ctx.listed(name):
            yield legacy_random_head(ctx, tie, kept, name)
        return
    if kept is None:
        if ctx.listed(tie.group.kept):
            return  # in a missing or broken shard: TC001/TC002 say so
        if tie.legacy_tied is not False and legacy_ties(ctx, tie.group.kept, name):
            return  # transformers 4 ties it the other way round (FSMT): it restores the missing one too, as 5 does
        who = (
            f"transformers {LEGACY}, the last version with this model type, does not restore it from {name}: it "
            "starts at random"
            if tie.removed
            else f"transformers >= 5 ties symmetrically and restores {tie.group.kept} from {name}; transformers "
            f"{LEGACY} and other loaders do not"
        )
        yield finding(
            "TC106",
            with_loaders(
                f"{name} is stored but {tie.group.kept}, which the tie pairs it with, is not: "
                f"{why_tied(ctx, tie)}. {who}. Store the tensor under {tie.group.kept} instead.",
                loaders_for(ctx, tie, "embedding-absent"),
            ),
            tensors=[name, tie.group.kept],
            files=[restored.file],
            bytes=restored.nbytes,
            severity=Severity.ERROR if tie.removed else None,  # its only loader leaves it random
        )
        return
    if kept.aliases(restored):
        return  # one storage of a pickle file: nothing is stored twice (TC201 names the pair)
    same = ctx.content.equal(kept, restored)
    if same is None:  # --content none: stored twice by name, dtype and shape; the bytes are not known
        yield tied_pair_not_compared(tie, kept, restored, why_tied(ctx, tie))
        return
    if same:
        # the config class forces the tie (T5, UDOP) where config.json says untied: both loaders read it right
        forced = tie.forced
        yield finding(
            "TC101",
            with_loaders(
                f"{name} is stored although {why_tied(ctx, tie)} and it is byte-identical to {tie.group.kept}: "
                f"{human_bytes(restored.nbytes)} of redundant weights. Loaders restore it from {tie.group.kept}; "
                f"{fix_command(ctx, '--drop-duplicates', restored.file)} removes it.",
                loaders_for(ctx, tie, "head-identical"),
                identical=True,
            ),
            tensors=[name, tie.group.kept],
            files=[restored.file, kept.file],
            bytes=restored.nbytes,
            severity=Severity.INFO if forced else None,
        )
        return
    if tie.group.always and tie.legacy_tied is not True:
        return  # the config class forces the flag (T5 in 5.x), 5.x keeps both as they differ, 4.x did not tie
    if tie.forced:
        # 5.x keeps both as they differ; 4.x shares them whatever the flags (T5's embeddings) and reads one for
        # both. Only a save that bypassed the config class stores them differing: information, not an alarm.
        what = (
            f"{name} differs from {tie.group.kept}{difference(kept, restored)}, although {why_tied(ctx, tie)}: "
            f"transformers >= 5 sees they differ and keeps both; transformers {LEGACY} makes them one tensor "
            "whatever the config says and reads one of them for both."
        )
    elif tie.removed:
        what = (
            f"{why_tied(ctx, tie)}, but {name} differs from {tie.group.kept}{difference(kept, restored)}. "
            f"transformers {LEGACY}, the last version with this model type, overwrites {name} with "
            f"{tie.group.kept} at load: the stored values are ignored. Set {flag_key(ctx, tie)} to false to keep both, "
            f"or drop {name} to keep the tie."
        )
    else:
        what = (
            f"{why_tied(ctx, tie)}, but {name} differs from {tie.group.kept}{difference(kept, restored)}. "
            f"transformers < 5 overwrites {name} with {tie.group.kept} at load (the stored values are ignored); "
            "transformers >= 5 sees they differ and unties them. The two read the model differently: set "
            f"{flag_key(ctx, tie)} to false to keep both, or drop {name} to keep the tie."
        )
    yield finding(
        "TC102",
        with_loaders(what, loaders_for(ctx, tie, "head-differs")),
        tensors=[name, tie.group.kept],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
        # one loader, which ignores the stored values: nothing disagrees, but what was stored is not what runs
        severity=Severity.INFO if tie.forced else Severity.WARNING if tie.removed else None,
    )


def _untied(
    ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord | None, name: str, restored: TensorRecord | None
) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    assert config is not None
    heads = [a for a in config.architectures if has_lm_head(a)]
    if restored is None and name == tie.group.head and heads and not ctx.listed(name):
        if architecture_class(config, set(ctx.tensors)) is not None and not tie.guess:
            return  # _missing_untied_head reports it, from the class's own output embedding
        key = flag_key(ctx, tie)
        yield finding(
            "TC103",
            with_loaders(
                f"{key} is false ({config.tie_basis}) and {name} is not stored: {heads[0]} will "
                "initialise its output head at random and generate gibberish, with only a warning in the load log. "
                f"If the model was trained with a tied head, set {key} to true; otherwise restore "
                f"{name} from the source checkpoint ({tie.basis}).",
                loaders_for(ctx, tie, "head-absent"),
            ),
            tensors=[name],
            files=[kept.file] if kept else [],
        )
    elif restored is not None and kept is not None and ctx.content.equal(kept, restored):
        yield _tieable(ctx, tie, kept, restored)
    elif restored is not None and kept is not None and legacy_only(tie, name, kept, restored):
        yield legacy_overwrites_head(ctx, tie, kept, restored)


def _tieable(ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord, restored: TensorRecord) -> Finding:
    config = ctx.checkpoint.config
    flag = f"{config.tie_key} is false" if config and config.tie_word_embeddings is False else "nothing declares a tie"
    found = loaders_for(ctx, tie, "head-identical")
    # The fix declares the tie in config.json: without one (a bare state dict, an adapter) it has nowhere to.
    fixable = config is not None and ctx.checkpoint.config_file is not None
    command = fix_command(ctx, "--tie-head", kept.file, restored.file)
    if kept.aliases(restored):
        action = f"{command} sets the flag." if fixable else "A config.json that ties them would load them as one."
        return finding(
            "TC104",
            with_loaders(
                f"{restored.name} and {kept.name} share one storage in {kept.file} (the model was tied when saved) "
                f"but {flag}: loaders build two independent copies ({human_bytes(restored.nbytes)} of load memory) "
                f"and a fine-tune drifts them apart ({tie.basis}). {action}",
                found,
                identical=True,
            ),
            tensors=[restored.name, kept.name],
            files=[kept.file],
            bytes=restored.nbytes,
            fixable=fixable,
        )
    action = (
        f"{command} drops the copy and sets the flag."
        if fixable
        else "With no config.json to declare the tie in, tiecheck cannot drop the copy."
    )
    return finding(
        "TC104",
        with_loaders(
            f"{restored.name} is byte-identical to {kept.name} but {flag}: tying them would save "
            f"{human_bytes(restored.nbytes)} ({tie.basis}). {action}",
            found,
            identical=True,
        ),
        tensors=[restored.name, kept.name],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
        fixable=fixable,
    )


def _missing_untied_head(ctx: ScanContext) -> Iterator[Finding]:
    """The class's output embedding is not stored and no tie restores it: it starts random."""
    config = ctx.checkpoint.config
    cls = architecture_class(config, set(ctx.tensors))
    if config is None or cls is None or cls.output is None or ctx.listed(cls.output):
        return
    if cls.name not in config.architectures or cls.output in cls.dropped:
        return  # the class was inferred from the model_type, or the saver never writes the head
    if not naming_confirmed(cls, set(ctx.tensors)):
        return  # stored under names the class does not use: the head's name cannot be judged
    head_ties = [t for t in ctx.ties if t.group.head == cls.output]
    if any(t.tied and ctx.listed(t.group.kept) for t in head_ties):
        return  # restored from the embedding
    if any(t.tied and t.group.kept == cls.output and any(ctx.listed(r) for r in t.group.restored) for t in ctx.ties):
        return  # the head is the tie's source, stored under a name tied to it: TC106 judges that layout
    declared = next((t for t in cls.ties if t.target == cls.output), None)
    if declared is not None:
        key = next((flag_key(ctx, t) for t in head_ties), "tie_word_embeddings")
        why = f"{key} is false ({config.tie_basis}), so {cls.name} does not restore it from {declared.source}"
        advice = f"If the model was trained with a tied head, set {key} to true; otherwise restore"
    else:
        why = f"{cls.name} declares no tie for it (transformers {version_of(cls)}), so nothing restores it"
        advice = "Restore"
    legacy = legacy_head(config, cls, declared, next((t.legacy_tied for t in head_ties), None))
    was = (
        f" transformers {LEGACY} tied it for this config (it reads another level's flag or default, or ties "
        "this class whatever the flag), so the checkpoint loaded correctly there."
        if legacy
        else ""
    )
    found = finding(
        "TC103",
        with_loaders(
            f"{cls.output}, the output head of {cls.name}, is not stored and {why}: the loader initialises it at "
            "random and the model generates gibberish, with only a warning in the load log. "
            f"{advice} {cls.output} from the source checkpoint.{was}",
            outcomes(
                tie_cases("head-absent", False, legacy, outer=_outer(head_ties)),
                architecture(ctx),
            ),
        ),
        tensors=[cls.output],
    )
    yield capped(found) if config.custom_code else found


def _outer(ties: list[ResolvedTie]) -> bool:
    return all(not t.level for t in ties)


def check_base_model(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    if config is None or not config.architectures or not is_base_model(config.architectures[0]):
        return
    if any(t.group.head and t.group.head in ctx.tensors for t in ctx.ties):
        return
    arch = config.architectures[0]
    prefix_note = ""
    candidates = [c.input for c in _task_classes(config.model_type) if c.input] or [g.kept for g in NAME_PATTERNS]
    for kept in candidates:
        if "." in kept and kept not in ctx.tensors:
            prefix, short = kept.split(".", 1)
            if short in ctx.tensors:
                prefix_note = f" Its keys lack the '{prefix}.' prefix a task model expects."
                break
    evidence = ctx.checkpoint.generation_evidence
    generators = [c.name for c in _task_classes(config.model_type) if c.name.endswith(("ForCausalLM", "LMHeadModel"))]
    if evidence and generators:
        yield _backbone_meant_as_generator(ctx, arch, generators[0], evidence, prefix_note)
        return
    yield finding(
        "TC105",
        f"architectures names {arch}, a backbone without an output head.{prefix_note} That is right for embedding "
        "and feature-extraction models; loaded as a causal LM it gets a randomly initialised head (or the "
        "embedding, when tie_word_embeddings is true).",
    )


def _backbone_meant_as_generator(
    ctx: ScanContext, arch: str, task: str, evidence: tuple[str, ...], prefix_note: str
) -> Finding:
    """A backbone saved where a text generator was meant: what the causal-LM loader does with it."""
    config = ctx.checkpoint.config
    assert config is not None
    signs = ", ".join(evidence)
    if config.tie_word_embeddings:
        return finding(
            "TC105",
            f"architectures names {arch}, a backbone without an output head, but the folder says it generates text "
            f"({signs}).{prefix_note} Loaded as {task} (AutoModelForCausalLM) the head is tied to the embedding "
            f"(tie_word_embeddings is true), so generation works; saving the {task} itself would say so.",
        )
    return finding(
        "TC105",
        f"architectures names {arch}, a backbone without an output head, but the folder says it generates text "
        f"({signs}).{prefix_note} Loaded as {task} (AutoModelForCausalLM), tie_word_embeddings is "
        f"{'false' if config.tie_word_embeddings is False else 'unset'}: the head is initialised at random and the "
        f"model generates gibberish, with only a warning in the load log. Save the {task} (not AutoModel), or, if "
        "the model was trained with a tied head, set tie_word_embeddings to true.",
        severity=Severity.WARNING,
    )


def _task_classes(model_type: str | None) -> tuple[ClassKnowledge, ...]:
    if not model_type:
        return ()
    return tuple(c for c in knowledge(CURRENT).by_model_type(model_type) if c.output)
