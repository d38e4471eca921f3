"""Tie rules (TC101-TC106): does what is stored match what the loader will tie?"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

from tiecheck.checkpoint import ModelConfig, TensorRecord
from tiecheck.findings import Finding, Severity
from tiecheck.rules._partners import missing_partner
from tiecheck.rules._unseen import tied_pair_not_compared
from tiecheck.rules.base import ScanContext, fix_command, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.ties.known import CURRENT, LEGACY, ClassKnowledge, knowledge
from tiecheck.ties.loaders import Outcome, outcomes, tie_cases, with_loaders
from tiecheck.ties.resolve import ResolvedTie, architecture_class, legacy_flag, naming_confirmed
from tiecheck.ties.table import NAME_PATTERNS, has_lm_head, is_base_model


def check_ties(ctx: ScanContext) -> Iterator[Finding]:
    for tie in ctx.ties:
        for found in _check_tie(ctx, tie):
            yield _capped(found) if tie.guess else found
    yield from _missing_untied_head(ctx)
    config = ctx.checkpoint.config
    for found in missing_partner(ctx):
        yield _capped(found) if config is not None and config.custom_code else found


def _architecture(ctx: ScanContext) -> str | None:
    """The class loaders build (``architectures[0]``): vLLM and llama.cpp dispatch on it too."""
    config = ctx.checkpoint.config
    return config.architectures[0] if config is not None and config.architectures else None


def _loaders(ctx: ScanContext, tie: ResolvedTie, state: str) -> tuple[Outcome, ...]:
    """What each loader does with this tie in ``state`` (see :func:`tiecheck.ties.loaders.tie_cases`)."""
    tied = True if tie.group.always else tie.tied
    return outcomes(tie_cases(state, tied, tie.legacy_tied, outer=not tie.level), _architecture(ctx))


def _capped(found: Finding) -> Finding:
    """A finding from a guessed tie is never an error."""
    if found.severity < Severity.ERROR:
        return found
    return replace(found, severity=Severity.WARNING, message=found.message + " (The tie is a guess: see above.)")


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


def _key(ctx: ScanContext, tie: ResolvedTie) -> str:
    config = ctx.checkpoint.config
    if config is not None and (not tie.level or config.tie_key.startswith(tie.level + ".")):
        return config.tie_key
    return f"{tie.level}.tie_word_embeddings" if tie.level else "tie_word_embeddings"


def _why_tied(ctx: ScanContext, tie: ResolvedTie) -> str:
    config = ctx.checkpoint.config
    if tie.group.always:
        return f"the architecture always ties them ({tie.basis})"
    assert config is not None
    return f"{_key(ctx, tie)} is true ({config.tie_basis}; {tie.basis})"


def _tied(
    ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord | None, name: str, restored: TensorRecord | None
) -> Iterator[Finding]:
    if restored is None:
        if kept is not None and name == tie.group.head and tie.legacy_tied is False and not ctx.listed(name):
            yield _legacy_random_head(ctx, tie, kept, name)
        return
    if kept is None:
        if ctx.listed(tie.group.kept):
            return  # in a missing or broken shard: TC001/TC002 say so
        if tie.legacy_tied is not False and _legacy_ties(ctx, tie.group.kept, name):
            return  # transformers 4 ties it the other way round (FSMT): it restores the missing one too, as 5 does
        yield finding(
            "TC106",
            with_loaders(
                f"{name} is stored but {tie.group.kept}, which the tie pairs it with, is not: "
                f"{_why_tied(ctx, tie)}. transformers >= 5 ties symmetrically and restores {tie.group.kept} from "
                f"{name}; transformers {LEGACY} and other loaders do not. Store the tensor under {tie.group.kept} "
                "instead.",
                _loaders(ctx, tie, "embedding-absent"),
            ),
            tensors=[name, tie.group.kept],
            files=[restored.file],
            bytes=restored.nbytes,
        )
        return
    if kept.aliases(restored):
        return  # one storage of a pickle file: nothing is stored twice (TC201 names the pair)
    same = ctx.content.equal(kept, restored)
    if same is None:  # --content none: stored twice by name, dtype and shape; the bytes are not known
        yield tied_pair_not_compared(tie, kept, restored, _why_tied(ctx, tie))
        return
    if same:
        # the config class forces the tie (T5, UDOP) where config.json says untied: both loaders read it right
        forced = tie.forced
        yield finding(
            "TC101",
            with_loaders(
                f"{name} is stored although {_why_tied(ctx, tie)} and it is byte-identical to {tie.group.kept}: "
                f"{human_bytes(restored.nbytes)} of redundant weights. Loaders restore it from {tie.group.kept}; "
                f"{fix_command(ctx, '--drop-duplicates', restored.file)} removes it.",
                _loaders(ctx, tie, "head-identical"),
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
            f"{name} differs from {tie.group.kept}{_difference(kept, restored)}, although {_why_tied(ctx, tie)}: "
            f"transformers >= 5 sees they differ and keeps both; transformers {LEGACY} makes them one tensor "
            "whatever the config says and reads one of them for both."
        )
    else:
        what = (
            f"{_why_tied(ctx, tie)}, but {name} differs from {tie.group.kept}{_difference(kept, restored)}. "
            f"transformers < 5 overwrites {name} with {tie.group.kept} at load (the stored values are ignored); "
            "transformers >= 5 sees they differ and unties them. The two read the model differently: set "
            f"{_key(ctx, tie)} to false to keep both, or drop {name} to keep the tie."
        )
    yield finding(
        "TC102",
        with_loaders(what, _loaders(ctx, tie, "head-differs")),
        tensors=[name, tie.group.kept],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
        severity=Severity.INFO if tie.forced else None,
    )


def _legacy_random_head(ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord, name: str) -> Finding:
    config = ctx.checkpoint.config
    assert config is not None
    return finding(
        "TC103",
        with_loaders(
            f"{name} is not stored: transformers >= 5 restores it from {tie.group.kept} ({_why_tied(ctx, tie)}), "
            f"but transformers {LEGACY} does not tie it for this config and initialises it at random. Fine for "
            "transformers 5; for 4.x users set the flag 4.x reads (text_config.tie_word_embeddings) to true.",
            _loaders(ctx, tie, "head-absent"),
        ),
        tensors=[name, tie.group.kept],
        files=[kept.file],
        severity=Severity.INFO,
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
        if architecture_class(config, set(ctx.tensors)) is not None and not tie.guess:
            return  # _missing_untied_head reports it, from the class's own output embedding
        if any(_legacy_class_without(a, name) for a in heads):
            return  # a model type transformers 5 removed, whose 4.x class has no such head (OpenLlama)
        key = _key(ctx, tie)
        yield finding(
            "TC103",
            with_loaders(
                f"{key} is false ({config.tie_basis}) and {name} is not stored: {heads[0]} will "
                "initialise its output head at random and generate gibberish, with only a warning in the load log. "
                f"If the model was trained with a tied head, set {key} to true; otherwise restore "
                f"{name} from the source checkpoint ({tie.basis}).",
                _loaders(ctx, tie, "head-absent"),
            ),
            tensors=[name],
            files=[kept.file] if kept else [],
        )
    elif restored is not None and kept is not None and ctx.content.equal(kept, restored):
        yield _tieable(ctx, tie, kept, restored)
    elif restored is not None and kept is not None and _legacy_only(tie, name, kept, restored):
        yield _legacy_overwrites_head(ctx, tie, kept, restored)


def _legacy_only(tie: ResolvedTie, name: str, kept: TensorRecord, restored: TensorRecord) -> bool:
    """A head 4.x ties to a different stored embedding (a pickle's shared storage is one tensor: not that)."""
    return bool(tie.legacy_tied) and name == tie.group.head and not kept.aliases(restored)


def _legacy_overwrites_head(ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord, restored: TensorRecord) -> Finding:
    """Untied for transformers 5, tied for 4.x (another level's flag or default): 4.x discards the stored values."""
    config = ctx.checkpoint.config
    assert config is not None
    key = _key(ctx, tie)
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
            f"flag or default) and overwrites it with {kept.name}, which differs{_difference(kept, restored)}: the "
            f"two versions run different models. {advice}",
            _loaders(ctx, tie, "head-differs"),
        ),
        tensors=[restored.name, kept.name],
        files=[restored.file, kept.file],
        bytes=restored.nbytes,
        severity=Severity.INFO if explicit else None,
    )


def _tieable(ctx: ScanContext, tie: ResolvedTie, kept: TensorRecord, restored: TensorRecord) -> Finding:
    config = ctx.checkpoint.config
    flag = f"{config.tie_key} is false" if config and config.tie_word_embeddings is False else "nothing declares a tie"
    found = _loaders(ctx, tie, "head-identical")
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
        key = next((_key(ctx, t) for t in head_ties), "tie_word_embeddings")
        why = f"{key} is false ({config.tie_basis}), so {cls.name} does not restore it from {declared.source}"
        advice = f"If the model was trained with a tied head, set {key} to true; otherwise restore"
    else:
        why = f"{cls.name} declares no tie for it (transformers {_version()}), so nothing restores it"
        advice = "Restore"
    legacy = _legacy_head(config, cls, declared, next((t.legacy_tied for t in head_ties), None))
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
                _architecture(ctx),
            ),
        ),
        tensors=[cls.output],
    )
    yield _capped(found) if config.custom_code else found


def _legacy_ties(ctx: ScanContext, target: str, source: str) -> bool:
    """Whether transformers 4's class for this checkpoint restores ``target`` from ``source``."""
    architecture = _architecture(ctx)
    old = knowledge(LEGACY).classes.get(architecture) if architecture else None
    return old is not None and any(t.target == target and t.source == source for t in old.ties)


def _legacy_class_without(architecture: str, name: str) -> bool:
    """transformers 4's class ``architecture`` exists (gone from 5) and its output embedding is not ``name``:
    OpenLlama computes its logits from the input embedding (``shared_input_output_embedding``), no head."""
    if architecture in knowledge(CURRENT).classes:
        return False
    old = knowledge(LEGACY).classes.get(architecture)
    return old is not None and old.built and old.output != name


def _version() -> str:
    return CURRENT


def _legacy_head(config: ModelConfig, cls: ClassKnowledge, declared: object, legacy: bool | None) -> bool | None:
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
