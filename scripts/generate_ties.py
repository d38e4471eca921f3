"""Generate tiecheck's tie knowledge from the installed transformers (4.x or 5.x).

Walks every model class the auto mappings register (base models included), builds each on the meta
device from its default config, and records what its loader and saver do with tied weights:

- ``ties``: ``[target, source, level]`` as ``from_pretrained`` ties them. transformers 5: the
  ``_tied_weights_keys`` ``{target: source}`` mapping of every ``PreTrainedModel`` submodule, expanded
  against the real parameter names exactly as ``get_expanded_tied_weights_keys`` does (regex keys
  included), but without the flag check; ``level`` is the path of the config object whose
  ``tie_word_embeddings`` decides it ("" for the outer config, "text_config", ...). transformers 4:
  the parameters that share one ``Parameter`` when every tie flag is true, source = the name
  ``save_pretrained`` keeps; level = ``get_text_config(decoder=True)``, or ``*`` when they are shared
  with every flag false too (4.x ties them whatever the config says).
- ``output`` / ``input``: the output-embedding (head) and input-embedding parameter names.
- ``buffers``: persisted buffer names, with layer indices replaced by ``*``.
- ``dropped``: parameter names ``save_pretrained`` does not write (``_keys_to_ignore_on_save``).
- per model_type ``flags``: the effective tie flag at each config level for every combination of the
  flag being true/false/absent at the outer level and at the text level (``from_dict`` runs the
  config class's own defaults and back-compat logic), 9 characters ``T``/``F``, index
  ``3 * outer + text`` with 0 = absent, 1 = true, 2 = false.

Usage: ``python scripts/generate_ties.py OUT.json`` (``--only NAME,...`` for a subset).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
import warnings
from itertools import cycle
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # tiecheck's package imports nothing heavy

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import PreTrainedModel  # noqa: E402
from transformers.models.auto import configuration_auto, modeling_auto  # noqa: E402

from tiecheck.ties._records import dump  # noqa: E402

V5 = int(transformers.__version__.split(".")[0]) >= 5
_DIGITS = re.compile(r"(?<=\.)\d+(?=\.)")
_COMMON = re.compile(r"^[A-Za-z0-9_\.]+(weight)|(bias)$")
TEXT_LEVELS = ("text_config", "decoder", "generator", "text_encoder", "language_config", "llm_config")


def general(name: str) -> str:
    return _DIGITS.sub("*", name)


def registered() -> dict[str, str]:
    """class name -> model_type, over every auto mapping."""
    result: dict[str, str] = {}
    for attr in sorted(dir(modeling_auto)):
        if not (attr.startswith("MODEL_") and attr.endswith("_MAPPING_NAMES")):
            continue
        mapping = getattr(modeling_auto, attr)
        if not isinstance(mapping, dict):
            continue
        for model_type, names in mapping.items():
            for name in (names,) if isinstance(names, str) else names:
                result.setdefault(name, model_type)
    return result


def config_path(outer: Any, target: Any) -> str | None:
    """The attribute path of ``target`` inside ``outer`` ("" for outer itself), identity first."""
    if target is outer:
        return ""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", outer)]
    while stack:
        prefix, cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        for key, value in sorted(vars(cfg).items()):
            if isinstance(value, transformers.PretrainedConfig):
                path = f"{prefix}{key}"
                if value is target:
                    return path
                stack.append((path + ".", value))
    return None


def expand(mapping: dict[str, str], names: set[str]) -> dict[str, str]:
    """``get_expanded_tied_weights_keys`` of transformers 5, minus the flag check."""
    if all(_COMMON.match(k) for k in mapping.keys() | mapping.values()):
        return dict(mapping)
    expanded: dict[str, str] = {}
    for target, source in mapping.items():
        sources = sorted(n for n in names if re.search("^" + source, n))
        targets = sorted(n for n in names if re.search("^" + target, n))
        if not sources or not targets or len(targets) % len(sources):
            raise ValueError(f"cannot expand {target!r}: {source!r}")
        for t, s in zip(targets, cycle(sources), strict=False):
            expanded[t] = expanded.get(s, s) if s in expanded else s
    return expanded


def ties_v5(model: Any) -> list[list[str]]:
    result: dict[str, list[str]] = {}  # a submodule's mapping overrides its parent's, as post_init merges them
    for prefix, sub in model.named_modules(remove_duplicate=False):
        if not isinstance(sub, PreTrainedModel):
            continue
        mapping = getattr(sub, "_tied_weights_keys", None)  # per instance: some __init__ set it from the config
        if not mapping or not isinstance(mapping, dict):
            continue
        names = {k for k, _ in sub.named_parameters(remove_duplicate=False)}
        names |= {k for k, _ in sub.named_buffers(remove_duplicate=False)}
        level = config_path(model.config, sub.config)
        for target, source in expand(mapping, names).items():
            p = f"{prefix}." if prefix else ""
            result[p + target] = [p + target, p + source, level if level is not None else "?"]
    return list(result.values())


def ties_v4(model: Any) -> list[list[str]]:
    by_id: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(name)
    from transformers import modeling_utils

    # Every submodule's declaration, prefixed, as save_pretrained collects them.
    collect = getattr(modeling_utils, "_get_tied_weight_keys", None)
    patterns = collect(model) if collect else (getattr(model, "_tied_weights_keys", None) or [])
    text = model.config.get_text_config(decoder=True)
    # get_text_config(decoder=True) of a flat encoder-decoder config is a trimmed copy of the outer one
    level = config_path(model.config, text) or ""
    result = []
    for names in by_id.values():
        if len(names) < 2:
            continue
        names = sorted(names)
        # save_pretrained (4.x) walks the sorted names and deletes each declared one while another is left:
        # when every name is declared (Moshi lists both), the last one is what it writes.
        deleted: list[str] = []
        for n in names:
            if any(re.search(p, n) for p in patterns) and len(deleted) + 1 < len(names):
                deleted.append(n)
        kept = next(n for n in names if n not in deleted)
        result.extend([n, kept, level if level is not None else "?"] for n in names if n != kept)
    return result


def saved_namer(model: Any) -> Any:
    """The key ``save_pretrained`` writes for a module parameter name (it reverts the loading conversions)."""
    if V5:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import (
            PrefixChange,
            WeightConverter,
            WeightRenaming,
            apply_converters,
            apply_renamings,
        )

        try:
            convs = [
                c for c in get_model_conversion_mapping(model, add_legacy=False) if not isinstance(c, PrefixChange)
            ]
            reverse = [c.reverse_transform() for c in convs[::-1]]
        except Exception:  # noqa: BLE001 - any class may fail to build; it is recorded
            return lambda key: key
        renamings = [c for c in reverse if isinstance(c, WeightRenaming)]
        converters = [c for c in reverse if isinstance(c, WeightConverter)]

        def saved5(key: str) -> str:
            renamed, pattern = apply_converters(key, converters)
            return apply_renamings(renamed if pattern else key, renamings)

        return saved5
    from transformers.modeling_utils import VLMS

    mapping = getattr(model, "_checkpoint_conversion_mapping", None) or {}
    if not mapping or not any(v in c.__name__.lower() for c in type(model).__mro__[:-1] for v in VLMS):
        return lambda key: key
    reverse_mapping = {v: k for k, v in mapping.items()}

    def saved4(key: str) -> str:
        for pattern, replacement in reverse_mapping.items():
            replacement = re.sub(r"\(.*\)", "", replacement.lstrip("^"))
            key, n = re.subn(pattern, replacement, key)
            if n:
                break
        return key

    return saved4


def module_param(model: Any, getter: str) -> str | None:
    try:
        module = getattr(model, getter)()
    except Exception:  # noqa: BLE001 - any class may fail to build; it is recorded
        return None
    if module is None:
        return None
    for name, candidate in model.named_modules(remove_duplicate=False):
        if candidate is module:
            return f"{name}.weight" if name else "weight"
    return None


def force_tie_flags(config: Any, tied: bool) -> None:
    """Every tie flag of ``config`` and its sub-configs set to ``tied``, and at most two layers (4.x builds
    meta models slowly)."""
    stack, seen = [config], set()
    while stack:
        cfg = stack.pop()
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        if hasattr(cfg, "tie_word_embeddings"):
            cfg.tie_word_embeddings = tied
        if isinstance(getattr(cfg, "num_hidden_layers", None), int) and cfg.num_hidden_layers > 2:
            cfg.num_hidden_layers = 2
        stack.extend(v for v in vars(cfg).values() if isinstance(v, transformers.PretrainedConfig))


def describe(cls: type, config_cls: type) -> dict[str, Any]:
    try:
        return describe_with(cls, config_cls())
    except ImportError:
        # DETR family: the default backbone is timm's; the same model with transformers' own backbone
        return describe_with(cls, config_cls(use_timm_backbone=False, use_pretrained_backbone=False))
    except ValueError as exc:
        if "prediction_length" not in str(exc):
            raise
        return describe_with(cls, config_cls(prediction_length=8))  # time-series models have no default


def undescribed(cls: type) -> dict[str, Any] | None:
    """A class that cannot be built from its default config: its plain ``_tied_weights_keys`` alone."""
    mapping = getattr(cls, "_tied_weights_keys", None)
    if not V5 or not isinstance(mapping, dict) or not mapping:
        return None
    if not all(_COMMON.match(k) for k in mapping.keys() | mapping.values()):
        return None
    return {"ties": [[t, s, ""] for t, s in mapping.items()], "output": next(iter(mapping)), "unbuilt": True}


def describe_with(cls: type, config: Any) -> dict[str, Any]:
    untied = None
    if not V5:  # transformers 4: the ties are read off a model built with every flag true
        untied = copy.deepcopy(config)
        force_tie_flags(config, True)
    with torch.device("meta"):
        model = cls(config)
    saved = saved_namer(model)
    ties = ties_v5(model) if V5 else ties_v4(model)
    if untied is not None:
        # ... and again with every flag false: what is still shared then (a head's bias, shared in __init__ or
        # by a module's _tie_weights) 4.x ties whatever the flags say, level "*".
        force_tie_flags(untied, False)
        with torch.device("meta"):
            always = {(t, s) for t, s, _ in ties_v4(cls(untied))}
        ties = [[t, s, "*" if (t, s) in always else level] for t, s, level in ties]
    entry: dict[str, Any] = {"ties": [[saved(t), saved(s), level] for t, s, level in ties]}
    renamed = sorted({general(k) for k, _ in model.named_parameters(remove_duplicate=False) if saved(k) != k})
    if renamed:
        entry["renamed"] = len(renamed)
    out, inp = module_param(model, "get_output_embeddings"), module_param(model, "get_input_embeddings")
    if out:
        entry["output"] = saved(out)
    if inp:
        entry["input"] = saved(inp)
    # Checkpoints in the in-memory naming load as well (the conversions map old names, and pass new ones)
    if any(saved(n) != n for tie in ties for n in tie[:2]) or (out and saved(out) != out):
        entry["module_names"] = {"ties": ties, **({"output": out} if out else {}), **({"input": inp} if inp else {})}
    state = set(model.state_dict().keys())
    params = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    buffers = sorted({general(saved(k)) for k, _ in model.named_buffers(remove_duplicate=False) if k in state})
    if buffers:
        entry["buffers"] = buffers
    frozen = sorted({general(saved(k)) for k, p in model.named_parameters() if not p.requires_grad and k in state})
    if frozen:
        entry["frozen"] = frozen  # never trained: sinusoidal tables and the like, identical by construction
    ignore = getattr(model, "_keys_to_ignore_on_save", None) or ()
    dropped = sorted({general(saved(k)) for k in params if k in ignore})
    if dropped:
        entry["dropped"] = dropped
    return entry


def flags(config_cls: type) -> dict[str, Any]:
    """Effective tie flag per level for every combination of outer/text flags (see module doc)."""
    try:
        base = config_cls()
    except Exception as exc:  # noqa: BLE001 - recorded as failed
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}
    sub = next((k for k in TEXT_LEVELS if isinstance(getattr(base, k, None), transformers.PretrainedConfig)), None)
    levels = [""] + ([sub] if sub else [])
    table: dict[str, list[str]] = {level: [] for level in levels}
    for outer in (None, True, False):
        for text in (None, True, False) if sub else (None,):
            data: dict[str, Any] = {}
            if outer is not None:
                data["tie_word_embeddings"] = outer
            if sub and text is not None:
                data[sub] = {**getattr(base, sub).to_dict(), "tie_word_embeddings": text}
            try:
                cfg = config_cls.from_dict(data)
            except Exception:  # noqa: BLE001 - any class may fail to build; it is recorded
                for level in levels:
                    table[level].append("?")
                continue
            for level in levels:
                holder = getattr(cfg, level) if level else cfg
                value = getattr(holder, "tie_word_embeddings", None)
                table[level].append("T" if value is True else "F" if value is False or value is None else "?")
    result: dict[str, Any] = {"flags": {level: "".join(v) for level, v in table.items()}}
    if sub:
        result["text_level"] = sub
        text_type = getattr(getattr(base, sub), "model_type", None)
        if text_type:
            result["text_model_type"] = text_type
    return result


def resolve_class(name: str, model_type: str) -> tuple[type, str]:
    """The registered class ``name`` and the model type to build it from: its own config class's, when the
    auto mappings register it under another type's name."""
    cls = getattr(transformers, name)
    own = getattr(getattr(cls, "config_class", None), "model_type", None)
    return cls, own if own in configuration_auto.CONFIG_MAPPING else model_type


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    classes = registered()
    model_types: dict[str, Any] = {}
    described: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for name, model_type in sorted(classes.items()):
        try:
            cls, model_type = resolve_class(name, model_type)
            if only and name not in only and model_type not in only:
                continue
            config_cls = configuration_auto.CONFIG_MAPPING[model_type]
            if model_type not in model_types:
                model_types[model_type] = {"config": config_cls.__name__, **flags(config_cls)}
            start = time.monotonic()
            described[name] = {"model_type": model_type, **describe(cls, config_cls)}
            spent = time.monotonic() - start
            if spent > 5:
                print(f"slow: {name} {spent:.1f}s", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - recorded as failed
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            partial = undescribed(getattr(transformers, name, type))
            if partial is not None and model_type in configuration_auto.CONFIG_MAPPING:
                described[name] = {"model_type": model_type, **partial}
            print(f"failed: {name}: {failed[name]}", file=sys.stderr)
    by_type: dict[str, list[str]] = {}
    for name, entry in sorted(described.items()):
        by_type.setdefault(entry["model_type"], []).append(name)
    document = {
        "transformers": transformers.__version__,
        "generator": "scripts/generate_ties.py",
        "model_types": model_types,
        "classes": described,
        "classes_by_model_type": by_type,  # so a reader finds a type's classes without parsing every class
        "failed": failed,
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        dump(document, fh)  # one entry per line: read one at a time (tiecheck/ties/_records.py)
    print(f"{len(described)} classes, {len(model_types)} model types, {len(failed)} failed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
