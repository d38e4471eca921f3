"""Parsers for the checkpoint's JSON companions: the shard index and ``config.json``.

Both raise :class:`FormatError` with a one-line reason; the loader turns that into a finding.
"""

from __future__ import annotations

import json
import math
import posixpath
from types import MappingProxyType
from typing import Any

from tiecheck.checkpoint import ModelConfig, ShardIndex
from tiecheck.errors import FormatError
from tiecheck.formats.dtypes import from_torch_name
from tiecheck.ties.flags import FLAG_KEYS, architectures_of, resolve_flag


def _load_object(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise FormatError("json", f"not valid JSON ({exc})") from None
    except RecursionError:  # thousands of nested brackets: the decoder recurses once per level
        raise FormatError("json", "not valid JSON (nested too deeply)") from None
    if not isinstance(document, dict):
        raise FormatError("json", "not a JSON object")
    return document


def _optional_count(metadata: dict[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)  # Python's json reads NaN and Infinity
        or value < 0
        or value != int(value)
    ):
        raise FormatError("metadata", f"metadata.{key} is {value!r}, not a non-negative integer")
    return int(value)


def parse_index(text: str, name: str) -> ShardIndex:
    document = _load_object(text)
    weight_map = document.get("weight_map")
    if not isinstance(weight_map, dict):
        raise FormatError("weight_map", "no 'weight_map' object")
    names: dict[str, str] = {}
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise FormatError("weight_map", f"weight_map[{tensor!r}] is {shard!r}, not a file name")
        normal = posixpath.normpath(shard)
        if posixpath.isabs(shard) or normal.startswith("..") or "\\" in shard:
            raise FormatError("weight_map", f"weight_map[{tensor!r}] = {shard!r} points outside the checkpoint folder")
        names[tensor] = _same_file(shard)
    metadata = document.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise FormatError("metadata", "'metadata' is not an object")
    return ShardIndex(
        name=name,
        weight_map=MappingProxyType(names),
        total_size=_optional_count(metadata, "total_size"),
        total_parameters=_optional_count(metadata, "total_parameters"),
    )


def _same_file(shard: str) -> str:
    """The name loaders open for ``shard``: they join it to the folder, where ``./x`` and ``a//x`` are ``x``
    and ``a/x``. (``..`` is kept: ``a/../x`` needs ``a`` to exist; so is a trailing ``/`` or ``/.``, which
    no file can be opened through.)"""
    if shard.endswith(("/", "/.")) or shard == ".":
        return shard
    return "/".join(p for p in shard.split("/") if p not in ("", "."))


def parse_config(text: str) -> ModelConfig:
    document = _load_object(text)
    text_config = document.get("text_config")
    if text_config is not None and not isinstance(text_config, dict):
        raise FormatError("text_config", "'text_config' is not an object")
    text_config = text_config or {}

    model_type = document.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise FormatError("model_type", f"'model_type' is {model_type!r}, not a string")
    architectures = document.get("architectures") or []
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise FormatError("architectures", "'architectures' is not a list of strings")
    architectures = architectures_of(document, text_config)

    flag = resolve_flag(document, text_config, model_type, architectures)
    declared = document.get("dtype", document.get("torch_dtype"))
    if declared is None:
        declared = text_config.get("dtype", text_config.get("torch_dtype"))
    if declared is not None and not isinstance(declared, str):
        raise FormatError("dtype", f"'dtype' is {declared!r}, not a string")
    return ModelConfig(
        model_type=model_type,
        architectures=tuple(architectures),
        tie_word_embeddings=flag.value,
        tie_basis=flag.basis,
        tie_key=flag.key,
        dtype=from_torch_name(declared) if declared else None,
        dtype_declared=declared,
        quantized=any(k in block for block in (document, text_config) for k in _QUANT_KEYS),
        quant_method=_quant_method(document, text_config),
        custom_code=bool(document.get("auto_map")),
        tie_levels=MappingProxyType(dict(flag.levels)),
        legacy_tie_levels=MappingProxyType(dict(flag.legacy_levels)),
        sizes=MappingProxyType(_sizes(document)),
        written_tie_levels=frozenset(_flag_levels(document)),
        token_ids=frozenset(_token_ids(document)),
        composite=all(isinstance(document.get(k), dict) for k in ("encoder", "decoder")),
    )


def _token_ids(document: dict[str, Any], depth: int = 4) -> set[int]:
    """Every integer (or integer in a list) under a key that names a token, nested objects included."""
    found: set[int] = set()
    for key, value in document.items():
        if isinstance(value, dict):
            if depth > 1:
                found |= _token_ids(value, depth - 1)
            continue
        if "token" not in key.lower():
            continue
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, int) and not isinstance(item, bool):
                found.add(item)
    return found


def _flag_levels(document: dict[str, Any], prefix: str = "", depth: int = 3) -> set[str]:
    """The (dotted) levels at which the document writes ``tie_word_embeddings`` or ``weight_tying``."""
    found = {prefix.rstrip(".")} if any(k in document for k in FLAG_KEYS) else set()
    for key, value in document.items():
        if isinstance(value, dict) and depth > 1:
            found |= _flag_levels(value, f"{prefix}{key}.", depth - 1)
    return found


def _sizes(document: dict[str, Any], prefix: str = "", depth: int = 3) -> dict[str, int]:
    """The integers of a config document by dotted key (booleans are not sizes), nested objects included, and
    the length of each list as ``len(key)``."""
    result: dict[str, int] = {}
    for key, value in document.items():
        if isinstance(value, int) and not isinstance(value, bool):
            result[prefix + key] = value
        elif isinstance(value, list):
            result[f"len({prefix}{key})"] = len(value)  # a per-stage list counts stages (Swin's depths)
        elif isinstance(value, dict) and depth > 1:
            result.update(_sizes(value, f"{prefix}{key}.", depth - 1))
    return result


#: Where quantisers describe their format (compressed-tensors wrote ``compression_config`` before 0.8).
_QUANT_KEYS = ("quantization_config", "compression_config")


def _quant_method(document: dict[str, Any], text_config: dict[str, Any]) -> str | None:
    """``quant_method`` (lower case) of the config's quantisation block; ``"unknown"`` when it names none.

    A serialisation other than the method's own (GPTQ or AWQ saved in Marlin layout) is named with it,
    ``gptq:marlin``, so that rules expecting the standard tensor names leave it alone.
    """
    block = next((b[k] for b in (document, text_config) for k in _QUANT_KEYS if b.get(k) is not None), None)
    if block is None:
        return None
    if not isinstance(block, dict):
        return "unknown"
    if "compression_config" in document and "quantization_config" not in document:
        return "compressed-tensors"
    method = block.get("quant_method")
    if not isinstance(method, str):
        return "unknown"
    layout = block.get("checkpoint_format") or block.get("version")
    marlin = block.get("is_marlin_format") is True or (isinstance(layout, str) and "marlin" in layout.lower())
    return f"{method.lower()}:marlin" if marlin else method.lower()
