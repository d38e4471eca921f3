"""TC021 tokenizer-beyond-embedding: the tokenizer saved beside the weights adds tokens the embedding has no row for.

Adding tokens to a tokenizer (chat markers, a padding token, domain words) gives them the next free ids.
Unless ``model.resize_token_embeddings(len(tokenizer))`` follows, the input embedding keeps its rows:
both the checkpoint and the tokenizer load without a word, and the first text that contains one of the
tokens fails inside the embedding lookup (``IndexError: index out of range in self``; on CUDA a
device-side assert that names nothing). The rows are read from the embedding the loader's own class
declares as its input (generated tie data), never guessed. Left alone, so no claim is made where the
model may not send every id through that table:

- ids that config.json names under a token key (``image_token_id``...): PaliGemma, Gemma 3 and others
  replace such a placeholder before the lookup when it lies beyond the vocabulary;
- an input embedding module with stored tensors of its own besides ``weight`` (Idefics' decoupled
  embedding keeps added tokens in a second table);
- encoder and decoder of their own (``EncoderDecoderModel``...): the tokenizer may be either half's;
- the repo's own modeling code, and architectures transformers does not know.
"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.checkpoint import AddedToken, ModelConfig, TensorRecord
from tiecheck.findings import Finding
from tiecheck.rules.base import ScanContext
from tiecheck.rules.catalog import finding
from tiecheck.ties.resolve import architecture_class

_LISTED = 3
_SHOWN_CHARS = 40


def check_tokenizer_rows(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    added = ctx.checkpoint.added_tokens
    if config is None or not added or not ctx.wants("TC021"):
        return
    embedding = _input_embedding(ctx, config)
    if embedding is None:
        return
    rows = embedding.shape[0]
    beyond = [t for t in added if t.id >= rows and t.id not in config.token_ids]
    if not beyond:
        return
    files = sorted({t.file for t in beyond})
    listed = ", ".join(_shown(t) for t in beyond[:_LISTED]) + (" ..." if len(beyond) > _LISTED else "")
    yield finding(
        "TC021",
        f"{len(beyond)} token(s) the tokenizer adds have ids beyond the {rows:,} rows of {embedding.name} "
        f"({listed}; {', '.join(files)}): the model has no embedding for them. transformers 4 and 5 load both "
        "without a warning, and the first input containing one fails in the embedding lookup (IndexError: index "
        "out of range; on CUDA a device-side assert). Call model.resize_token_embeddings(len(tokenizer)) before "
        "saving (and train the new rows), or save the tokenizer without these tokens.",
        files=[*files, embedding.file],
        tensors=[embedding.name],
    )


def _input_embedding(ctx: ScanContext, config: ModelConfig) -> TensorRecord | None:
    """The stored input embedding, when the loader's class declares it and every token id goes through it."""
    if config.custom_code or config.composite:
        return None
    cls = architecture_class(config, set(ctx.tensors))
    if cls is None or cls.input is None:
        return None
    embedding = ctx.tensors.get(cls.input)
    if embedding is None or len(embedding.shape) != 2 or not embedding.is_float:
        return None
    module = cls.input.rpartition(".")[0] + "."
    if any(name.startswith(module) and name != cls.input for name in ctx.tensors):
        return None  # not a plain lookup table (a second table, a scale...)
    return embedding


def _shown(token: AddedToken) -> str:
    content = token.content if len(token.content) <= _SHOWN_CHARS else token.content[:_SHOWN_CHARS] + "..."
    return f"{content!r} = {token.id}"
