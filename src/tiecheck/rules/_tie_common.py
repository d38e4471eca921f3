"""What the tie rules share: the class loaders build, each loader's outcome, how a message names the flag."""

from __future__ import annotations

from dataclasses import replace

from tiecheck.checkpoint import TensorRecord
from tiecheck.findings import Finding, Severity
from tiecheck.rules.base import ScanContext
from tiecheck.ties.loaders import Outcome, outcomes, tie_cases
from tiecheck.ties.resolve import ResolvedTie


def architecture(ctx: ScanContext) -> str | None:
    """The class loaders build (``architectures[0]``): vLLM and llama.cpp dispatch on it too."""
    config = ctx.checkpoint.config
    return config.architectures[0] if config is not None and config.architectures else None


def loaders_for(ctx: ScanContext, tie: ResolvedTie, state: str) -> tuple[Outcome, ...]:
    """What each loader does with this tie in ``state`` (see :func:`tiecheck.ties.loaders.tie_cases`)."""
    tied = True if tie.group.always else tie.tied
    return outcomes(tie_cases(state, tied, tie.legacy_tied, outer=not tie.level), architecture(ctx))


def capped(found: Finding) -> Finding:
    """A finding from a guessed tie is never an error."""
    if found.severity < Severity.ERROR:
        return found
    return replace(found, severity=Severity.WARNING, message=found.message + " (The tie is a guess: see above.)")


def flag_key(ctx: ScanContext, tie: ResolvedTie) -> str:
    config = ctx.checkpoint.config
    if config is not None and (not tie.level or config.tie_key.startswith(tie.level + ".")):
        return config.tie_key
    return f"{tie.level}.tie_word_embeddings" if tie.level else "tie_word_embeddings"


def why_tied(ctx: ScanContext, tie: ResolvedTie) -> str:
    config = ctx.checkpoint.config
    if tie.group.always:
        return f"the architecture always ties them ({tie.basis})"
    assert config is not None
    return f"{flag_key(ctx, tie)} is true ({config.tie_basis}; {tie.basis})"


def difference(kept: TensorRecord, restored: TensorRecord) -> str:
    if kept.dtype != restored.dtype or kept.shape != restored.shape:
        return f" ({restored.dtype}{list(restored.shape)} vs {kept.dtype}{list(kept.shape)})"
    return " in its stored values"
