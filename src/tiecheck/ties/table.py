"""Which tensors each architecture ties, as data.

Each :class:`TieGroup` names the tensor a saver keeps (``kept``) and the tensors a loader
restores from it (``restored``). ``always`` marks ties that hold whatever
``tie_word_embeddings`` says (T5's encoder/decoder embeddings share ``shared``).
Naming variants of one architecture (old and new prefixes) are listed as extra groups; only
groups whose names occur in the checkpoint apply.

Checked against transformers 5.23 ``_tied_weights_keys`` and the keys its ``save_pretrained``
writes with ``tie_word_embeddings`` true and false (see tests/test_transformers_roundtrip.py).
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


@dataclass(frozen=True)
class ArchitectureTies:
    model_types: tuple[str, ...]
    default_tied: bool
    groups: tuple[TieGroup, ...]


def _lm(embedding: str, head: str = "lm_head.weight") -> TieGroup:
    return TieGroup(kept=embedding, restored=(head,), head=head)


_DECODER_ONLY = (_lm("model.embed_tokens.weight"),)

TABLE: tuple[ArchitectureTies, ...] = (
    ArchitectureTies(("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "phi", "phi3"), False, _DECODER_ONLY),
    ArchitectureTies(("gemma", "gemma2", "gemma3_text"), True, _DECODER_ONLY),
    ArchitectureTies(
        ("gemma3",),
        True,
        (
            _lm("model.language_model.embed_tokens.weight"),
            _lm("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"),
            _lm("model.embed_tokens.weight"),
        ),
    ),
    ArchitectureTies(("gpt2",), True, (_lm("transformer.wte.weight"),)),
    ArchitectureTies(
        ("gpt_neox",),
        False,
        (_lm("gpt_neox.embed_in.weight", "embed_out.weight"), _lm("gpt_neox.embed_in.weight")),
    ),
    ArchitectureTies(("opt",), True, (_lm("model.decoder.embed_tokens.weight"),)),
    ArchitectureTies(("bloom", "falcon"), True, (_lm("transformer.word_embeddings.weight"),)),
    ArchitectureTies(
        ("t5", "mt5", "umt5"),
        True,
        (
            TieGroup("shared.weight", ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"), always=True),
            _lm("shared.weight"),
        ),
    ),
    ArchitectureTies(
        ("bart", "mbart"),
        True,
        (
            _lm("model.shared.weight"),
            TieGroup("model.shared.weight", ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")),
        ),
    ),
    ArchitectureTies(
        ("bert",),
        True,
        (
            _lm("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"),
            TieGroup("cls.predictions.bias", ("cls.predictions.decoder.bias",)),
        ),
    ),
    ArchitectureTies(
        ("roberta", "xlm-roberta"),
        True,
        (
            _lm("roberta.embeddings.word_embeddings.weight", "lm_head.decoder.weight"),
            TieGroup("lm_head.bias", ("lm_head.decoder.bias",)),
        ),
    ),
    ArchitectureTies(("hf_olmo",), True, (_lm("model.transformer.wte.weight", "model.transformer.ff_out.weight"),)),
)

#: For architectures not in the table: common embedding/head name pairs, reported as a guess.
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
)

_BY_MODEL_TYPE = {model_type: arch for arch in TABLE for model_type in arch.model_types}

#: Class-name endings of models that carry a language-modelling head.
HEAD_SUFFIXES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "ForMaskedLM", "WithLMHead")


def lookup(model_type: str | None) -> ArchitectureTies | None:
    return _BY_MODEL_TYPE.get(model_type) if model_type else None


def default_tie(model_type: str) -> bool | None:
    arch = lookup(model_type)
    return arch.default_tied if arch else None


def has_lm_head(architecture: str) -> bool:
    return architecture.endswith(HEAD_SUFFIXES)


def is_base_model(architecture: str) -> bool:
    """``LlamaModel``, ``BertModel``: a backbone with no task head."""
    return architecture.endswith("Model") and not architecture.endswith(("LMHeadModel", "PreTrainedModel"))
