"""The tokens a tokenizer saved beside the weights adds to its vocabulary, and their ids.

``tokenizer.add_tokens`` / ``add_special_tokens`` give new tokens the next free ids; unless
``model.resize_token_embeddings(len(tokenizer))`` follows, the model's embedding has no row for
them. The ids are read from what the three tokenizer formats save:

- ``tokenizer.json`` (the tokenizers library; every fast tokenizer): its top-level ``added_tokens``
  list. The library writes that key before ``model``, whose vocabulary is the file's bulk (tens of
  megabytes for large vocabularies), so only the beginning of the file is read and parsed, key by key,
  until ``added_tokens`` is found;
- ``tokenizer_config.json`` (transformers 4.34 to 4.x): ``added_tokens_decoder``, id to token;
- ``added_tokens.json`` (slow tokenizers): token to id.

A file that is malformed, too large, or says nothing usable contributes nothing: tokenizers are not
what tiecheck checks for well-formedness, and a guess must not become a finding.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from tiecheck.checkpoint import AddedToken
from tiecheck.io.source import CheckpointStore

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
ADDED_TOKENS_JSON = "added_tokens.json"
TOKENIZER_FILES = (TOKENIZER_JSON, TOKENIZER_CONFIG, ADDED_TOKENS_JSON)

#: Bytes of tokenizer.json read first (its added tokens come before the vocabulary), and the most read of any
#: tokenizer file: a larger one is not a plausible place for added tokens, and is left alone.
_FIRST_READ = 256 << 10
MAX_READ = 16 << 20
#: Ids beyond this are not token ids (the largest vocabularies have about 2**18 entries).
_MAX_ID = 1 << 31


class _Truncated(Exception):
    """The bytes read so far end inside the value being parsed."""


def read_added_tokens(store: CheckpointStore, names: Iterable[str]) -> tuple[AddedToken, ...]:
    """Every added token the folder's tokenizer files declare, by id (the first file naming an id wins)."""
    present = set(names)
    found: dict[int, AddedToken] = {}
    for name in TOKENIZER_FILES:
        if name not in present:
            continue
        for token_id, content in _tokens(store, name):
            found.setdefault(token_id, AddedToken(token_id, content, name))
    return tuple(found[i] for i in sorted(found))


def _tokens(store: CheckpointStore, name: str) -> Iterator[tuple[int, str]]:
    try:
        source = store.open(name)
    except OSError:
        return
    try:
        size = source.size
        if name == TOKENIZER_JSON:
            value = _top_level_value(source, size, "added_tokens")
            entries = value if isinstance(value, list) else []
            pairs: Iterable[tuple[object, object]] = (
                (e.get("id"), e.get("content")) for e in entries if isinstance(e, dict)
            )
        else:
            if size > MAX_READ:
                return
            document = _loads(bytes(source.read(0, size)))
            if not isinstance(document, dict):
                return
            if name == TOKENIZER_CONFIG:
                decoder = document.get("added_tokens_decoder")
                items = decoder.items() if isinstance(decoder, dict) else ()
                pairs = ((_int_key(k), v.get("content") if isinstance(v, dict) else None) for k, v in items)
            else:
                pairs = ((v, k) for k, v in document.items())
        for token_id, content in pairs:
            if isinstance(token_id, int) and not isinstance(token_id, bool) and 0 <= token_id < _MAX_ID:
                yield token_id, content if isinstance(content, str) else ""
    except (OSError, RecursionError):
        return
    finally:
        source.close()


def _int_key(key: str) -> int | None:
    return int(key) if key.isascii() and key.isdigit() and len(key) < 12 else None


def _loads(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8", errors="replace"))
    except ValueError:
        return None


def _top_level_value(source: Any, size: int, key: str, first: int = _FIRST_READ) -> object:
    """The value of ``key`` in the JSON object ``source`` holds, reading no more of it than needed; None if absent.

    Reads a first window and parses the object's members one by one; a window that ends inside a
    member is widened (fourfold, up to :data:`MAX_READ`). A member that does not parse at the end of
    the file, or in the largest window, ends the search.
    """
    window = min(size, first)
    while True:
        text = bytes(source.read(0, window)).decode("utf-8", errors="replace")
        try:
            return _member(text, key, complete=window >= size)
        except _Truncated:
            if window >= min(size, MAX_READ):
                return None
            window = min(size, MAX_READ, window * 4)


_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def _member(text: str, key: str, complete: bool) -> object:
    def skip(i: int) -> int:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i >= len(text):
            raise _Truncated
        return i

    def value(i: int) -> tuple[object, int]:
        try:
            found, end = _DECODER.raw_decode(text, i)
        except ValueError as exc:
            if complete:
                raise ValueError("malformed") from exc
            raise _Truncated from exc
        if end >= len(text) and not complete:
            raise _Truncated  # a number cut by the window's end parses too: 1 of 10
        return found, end

    try:
        i = skip(0)
        if text[i] != "{":
            return None
        i += 1
        while True:
            i = skip(i)
            if text[i] == "}":
                return None
            name, i = value(i)
            i = skip(i)
            if not isinstance(name, str) or text[i] != ":":
                return None
            found, i = value(skip(i + 1))
            if name == key:
                return found
            i = skip(i)
            if text[i] != ",":
                return None  # the end of the object, or not JSON
            i += 1
    except _Truncated:
        if complete:
            return None
        raise
    except (ValueError, RecursionError):
        return None
