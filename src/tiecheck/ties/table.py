"""Tie groups, and the name patterns used only for model types transformers does not know.

Each :class:`TieGroup` names the tensor a saver keeps (``kept``) and the tensors a loader
restores from it (``restored``). ``always`` marks ties that hold whatever
``tie_word_embeddings`` says (T5's config class forces the flag in transformers 5).
Known architectures take their groups from the generated data (:mod:`tiecheck.ties.known`);
tests/test_ties_generated.py shows it reproduces the hand-written table this module used to hold.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TieGroup:
    kept: str
    restored: tuple[str, ...]
    head: str | None = None
    """The member that is the output head (missing it untied means a random head)."""
    always: bool = False


def _lm(embedding: str, head: str = "lm_head.weight") -> TieGroup:
    return TieGroup(kept=embedding, restored=(head,), head=head)


#: For model types transformers does not know (custom code): common embedding/head name pairs, a guess.
NAME_PATTERNS: tuple[TieGroup, ...] = (
    _lm("model.embed_tokens.weight"),
    _lm("model.language_model.embed_tokens.weight"),
    _lm("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"),
    _lm("transformer.wte.weight"),
    _lm("transformer.word_embeddings.weight"),
    _lm("model.decoder.embed_tokens.weight"),
    _lm("model.shared.weight"),
    _lm("gpt_neox.embed_in.weight", "embed_out.weight"),
    _lm("tok_embeddings.weight", "output.weight"),
    _lm("transformer.embedding.word_embeddings.weight", "transformer.output_layer.weight"),
    _lm("model.transformer.wte.weight", "model.transformer.ff_out.weight"),
)

#: Class-name endings of models that carry a language-modelling head.
HEAD_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForMaskedLM", "WithLMHead")


def has_lm_head(architecture: str) -> bool:
    return architecture.endswith(HEAD_SUFFIXES)


def is_base_model(architecture: str) -> bool:
    """``LlamaModel``, ``BertModel``: a backbone with no task head."""
    return architecture.endswith("Model") and not architecture.endswith(("LMHeadModel", "PreTrainedModel"))
