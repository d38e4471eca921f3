"""Which ``tie_word_embeddings`` governs, and what it is, as transformers' config classes compute it.

config.json may hold the flag at the outer level, in ``text_config`` (or another text level), both,
or neither. The config class then applies its own defaults and back-compat rules (``LlavaConfig``
copies a true ``text_config`` flag to the outer level, for instance); the generated data records the
outcome for every combination, so this module needs no transformers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiecheck.errors import FormatError
from tiecheck.ties.known import CURRENT, LEGACY, ClassKnowledge, Knowledge, knowledge

FLAG_KEYS = ("tie_word_embeddings", "weight_tying")


@dataclass(frozen=True)
class TieFlag:
    value: bool | None
    basis: str
    key: str
    levels: Mapping[str, bool]
    legacy_levels: Mapping[str, bool]


def _explicit(holder: Mapping[str, Any], prefix: str) -> tuple[bool | None, str | None]:
    for key in FLAG_KEYS:
        if key in holder:
            value = holder[key]
            if not isinstance(value, bool):
                raise FormatError(key, f"'{prefix}{key}' is {value!r}, not true or false")
            return value, key
    return None, None


def _sub(document: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    holder: Any = document
    for part in path.split(".") if path else ():
        holder = holder.get(part) if isinstance(holder, dict) else None
    return holder if isinstance(holder, dict) else None


def governing_class(architectures: Sequence[str], data: Knowledge) -> ClassKnowledge | None:
    return next((data.classes[name] for name in architectures if name in data.classes), None)


def architectures_of(document: Mapping[str, Any], text_config: Mapping[str, Any]) -> list[str]:
    """The classes config.json names: ``architectures``, or, where only ``text_config`` carries it (transformers
    4.57 saves Qwen2-VL so), the text config's when it names a class of the outer model_type (a text model's own
    class there, LlamaForCausalLM in a LLaVA config, is not the class that loads the checkpoint)."""
    outer = document.get("architectures")
    if outer:
        return list(outer)
    inner = text_config.get("architectures")
    if not isinstance(inner, list) or not inner or not all(isinstance(a, str) for a in inner):
        return []
    data = knowledge(CURRENT)
    model_type = document.get("model_type")
    known = [data.classes.get(name) for name in inner]
    return list(inner) if all(c is not None and c.model_type == model_type for c in known) else []


def _levels(document: Mapping[str, Any], model_type: str, data: Knowledge) -> dict[str, bool]:
    """Effective flag per level, as the config class of ``model_type`` computes it from ``document``."""
    known = data.model_types.get(model_type)
    if known is None:
        return {}
    outer, _ = _explicit(document, "")
    text: bool | None = None
    if known.text_level:
        holder = _sub(document, known.text_level) or {}
        text, _ = _explicit(holder, known.text_level + ".")
        sub_type = holder.get("model_type")
        if text is None and isinstance(sub_type, str) and sub_type != known.text_model_type:
            # another text model than the class default: its own config class supplies the default
            sub_known = data.model_types.get(sub_type)
            text = sub_known.flag("", None, None) if sub_known else None
    levels: dict[str, bool] = {}
    for level in known.flags:
        value = known.flag(level, outer, text)
        if value is not None:
            levels[level] = value
    return levels


def _level_value(document: Mapping[str, Any], level: str, levels: Mapping[str, bool], data: Knowledge) -> bool | None:
    if level in levels:
        return levels[level]
    holder = _sub(document, level)
    if holder is None:
        return None
    value, _ = _explicit(holder, level + ".")
    if value is not None:
        return value
    sub_type = holder.get("model_type")
    sub_known = data.model_types.get(sub_type) if isinstance(sub_type, str) else None
    return sub_known.flag("", None, None) if sub_known else None


def resolve_flag(
    document: Mapping[str, Any], text_config: Mapping[str, Any], model_type: str | None, architectures: Sequence[str]
) -> TieFlag:
    data = knowledge(CURRENT)
    outer, outer_key = _explicit(document, "")
    text, text_key = _explicit(text_config, "text_config.")
    named = governing_class(architectures, data)
    if (not isinstance(model_type, str) or model_type not in data.model_types) and named is not None:
        # The class config.json names reads it with its own config class whatever model_type says (transformers
        # 4.57 wrote 'lfm2-vl' where 5.x registers 'lfm2_vl'; from_pretrained of the class warns and loads).
        model_type = named.model_type
    legacy = knowledge(LEGACY)
    gone = isinstance(model_type, str) and model_type not in data.model_types and model_type in legacy.model_types
    if named is None and gone:
        # a model type transformers 5 removed (Mega, Nezha): its last loader's config class decides
        data, named = legacy, governing_class(architectures, legacy)
    if not isinstance(model_type, str) or model_type not in data.model_types:
        # transformers does not know this model_type: only an explicit flag says anything
        if outer is not None and outer_key:
            return TieFlag(outer, f"{outer_key} in config.json", outer_key, {"": outer}, {})
        if text is not None and text_key:
            return TieFlag(text, f"text_config.{text_key} in text_config", f"text_config.{text_key}", {}, {})
        return TieFlag(None, "no tie_word_embeddings in config.json and no known default", FLAG_KEYS[0], {}, {})

    levels = _levels(document, model_type, data)
    legacy_levels = _levels(document, model_type, legacy)
    cls = named
    level = ""
    if cls is not None:
        head = [t for t in cls.ties if t.target == cls.output] or list(cls.ties)
        if head:
            level = head[0].level
    value = _level_value(document, level, levels, data)
    if level and level not in levels and value is not None:
        levels[level] = value
    if value is None:
        return TieFlag(None, f"model_type {model_type!r} declares no tie flag", FLAG_KEYS[0], levels, legacy_levels)

    prefix = f"{level}." if level else ""
    holder = _sub(document, level) or {}
    here, here_key = _explicit(holder, prefix)
    config_name = data.model_types[model_type].config
    if here is not None and here_key:
        where = level if level else "config.json"
        return TieFlag(value, f"{prefix}{here_key} in {where}", prefix + here_key, levels, legacy_levels)
    # not set where it governs: a default, or copied from another level by the config class
    for other, other_value, other_key in (("text_config", text, text_key), ("", outer, outer_key)):
        if other != level and other_value is value and other_key:
            other_prefix = f"{other}." if other else ""
            return TieFlag(
                value,
                f"{other_prefix}{other_key}, which {config_name} applies to the {level if level else 'outer'} "
                f"config (transformers {data.version})",
                other_prefix + other_key,
                levels,
                legacy_levels,
            )
    return TieFlag(
        value,
        f"default for model_type {model_type!r} ({config_name}, transformers {data.version})",
        prefix + FLAG_KEYS[0],
        levels,
        legacy_levels,
    )
