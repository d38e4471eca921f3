"""Generate tiecheck's shape knowledge from the installed transformers: which stored shapes follow config.json.

For every model class the auto mappings register (the classes ``generate_ties.py`` describes), builds the class
on the meta device from its default config, then again with one config value changed at the level where it lives
(the outer config, ``text_config``, ``decoder``...), twice per value (two different changes, so that only exact,
linear dependencies are recorded), and compares the saved parameter names and shapes:

- ``d``: ``[name, dim, key, offset]``: dimension ``dim`` of ``name`` is ``config[key] + offset`` (``key`` a
  vocabulary size: ``vocab_size``, ``text_config.vocab_size``..., or an expert count: a router's rows);
- ``h``: ``[name, dim, key]``: dimension ``dim`` of a vocabulary-sized tensor equals ``config[key]`` (a width:
  ``hidden_size``, GPT-2's ``n_embd``...);
- ``l``: ``[prefix, key, offset]``: the indices stored under ``prefix`` (``model.layers.``; outer indices as
  ``*``) run from 0 to ``config[key] + offset - 1`` (a layer count or an expert count);
- ``x``: the class's ``_keys_to_ignore_on_load_unexpected`` (names the loader drops without a word);
- ``p``: older on-disk namings the loader still accepts by a prefix change (transformers 4.x's
  ``vision_model.encoder.layers.N`` for 5.x's ``encoder.layers.N``), each a list of ``[saved prefix, legacy
  prefix]`` pairs read from transformers' conversion mapping (``shape_probes.legacy_prefixes``).

Layer counts are the usual keys (``LAYERS``) and any other integer of config.json that an index list follows
(``shape_probes.count_keys``: Moonshine's ``encoder_num_hidden_layers``, Speech2Text's ``num_conv_layers``).

Keys are spelled as in config.json (``attribute_map`` resolved: GPT-2's ``n_layer``), dotted by level. Names are
the keys ``save_pretrained`` writes (it reverts the loading conversions: fused experts are saved one per index);
``m`` holds the same records in the in-memory naming when it differs. Layer counts are cut to at most four
before building (lists indexed by layer cut with them), which keeps the run to a few minutes.

Usage: ``python scripts/generate_shapes.py OUT.json`` (``--only NAME,...`` for a subset).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import transformers
from generate_ties import registered, resolve_class, saved_namer
from shape_probes import count_keys, legacy_prefixes
from transformers.models.auto import configuration_auto

from tiecheck.ties._records import dump

_INDEX = re.compile(r"(?<=\.)\d+(?=\.)")
VOCAB = ("vocab_size",)
HIDDEN = ("hidden_size",)
LAYERS = ("num_hidden_layers", "encoder_layers", "decoder_layers", "num_layers", "num_decoder_layers")
EXPERTS = ("num_local_experts", "num_experts", "n_routed_experts")
MAX_LAYERS = 4


def _general(name: str) -> str:
    return _INDEX.sub("*", name)


def _is_config(value: Any) -> bool:
    return isinstance(value, transformers.PretrainedConfig)


def levels(config: Any) -> list[tuple[str, Any]]:
    """Every config object inside ``config`` with its dotted path ("" for the outer one)."""
    result, seen, stack = [], set(), [("", config)]
    while stack:
        path, cfg = stack.pop(0)
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        result.append((path, cfg))
        for key, value in sorted(vars(cfg).items()):
            if _is_config(value):
                stack.append((f"{path}.{key}" if path else key, value))
    return result


def json_key(cfg: Any, name: str) -> str | None:
    """The key config.json spells ``name`` with at this level (``attribute_map``), when it holds an int there."""
    real = getattr(cfg, "attribute_map", {}).get(name, name)
    value = vars(cfg).get(real)
    return real if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _set_count(cfg: Any, key: str, new: int) -> None:
    """Change a count and every list attribute of that level indexed by it (``layer_types``...)."""
    old = vars(cfg)[key]
    for attr, value in list(vars(cfg).items()):
        if attr != key and isinstance(value, list) and len(value) == old and old > 0:
            vars(cfg)[attr] = value[:new] if new <= old else value + [value[-1]] * (new - old)
    vars(cfg)[key] = new


def cut_layers(config: Any) -> None:
    for _, cfg in levels(config):
        for name in LAYERS:
            key = json_key(cfg, name)
            if key and vars(cfg)[key] > MAX_LAYERS:
                _set_count(cfg, key, MAX_LAYERS)


def view(model: Any, naming: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
    """Saved names (generalised) -> shape, and index-list prefixes (generalised) -> length."""
    shapes: dict[str, tuple[int, ...]] = {}
    lists: dict[str, int] = {}
    state = set(model.state_dict().keys())
    # one module listed twice (Deformable DETR's shared box heads) is saved once: it makes no list
    once = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        if name not in state:
            continue
        saved = naming(name)
        if name not in once:
            if saved.find(".*.") < 0:
                shapes.setdefault(_general(saved), tuple(int(d) for d in tensor.shape))
            continue
        star = saved.find(".*.")
        if star >= 0:  # a fused tensor saved one per index: its first dimension is the list's length
            prefix = _general(saved[: star + 1])
            lists[prefix] = max(lists.get(prefix, 0), int(tensor.shape[0]) if tensor.dim() else 0)
            continue
        shapes.setdefault(_general(saved), tuple(int(d) for d in tensor.shape))
        for match in _INDEX.finditer(saved):
            prefix = _general(saved[: match.start()])
            lists[prefix] = max(lists.get(prefix, 0), int(match.group()) + 1)
    return shapes, lists


def build(cls: type, config: Any) -> Any:
    with torch.device("meta"):
        return cls(config)


def describe(cls: type, base: Any) -> dict[str, Any]:
    cut = copy.deepcopy(base)
    cut_layers(cut)
    try:
        model = build(cls, cut)
        base = cut
    except Exception:  # noqa: BLE001 - some architectures need their full depth (out_indices...): build it
        model = build(cls, base)
    namings = {"saved": saved_namer(model), "memory": lambda key: key}
    views = {n: view(model, f) for n, f in namings.items()}
    records: dict[str, dict[str, list[list[Any]]]] = {n: {"d": [], "h": [], "l": []} for n in namings}
    kinds = ((VOCAB, "d", (5, 8)), (HIDDEN, "h", (2, 3)), (LAYERS, "l", (1, 2)), (EXPERTS, "l", (1, 2)))
    for path, _ in levels(base):
        for names, kind, deltas in kinds:
            for key in dict.fromkeys(json_key(dict(levels(base))[path], n) for n in names):
                if key is not None:
                    _perturbed(cls, base, path, key, kind, deltas, namings, views, records)
    _other_counts(cls, base, namings, views, records)
    entry: dict[str, Any] = {k: sorted(map(list, {tuple(r) for r in v})) for k, v in records["saved"].items() if v}
    memory = {k: sorted(map(list, {tuple(r) for r in v})) for k, v in records["memory"].items() if v}
    if memory != entry:
        entry["m"] = memory
    legacy = legacy_prefixes(model, namings["saved"])
    if legacy:
        entry["p"] = legacy
    ignored = getattr(cls, "_keys_to_ignore_on_load_unexpected", None) or []
    if ignored:
        entry["x"] = sorted(ignored)
    return entry


def _other_counts(
    cls: type,
    base: Any,
    namings: dict[str, Any],
    views: dict[str, Any],
    records: dict[str, dict[str, list[list[Any]]]],
) -> None:
    """Index lists sized by a config.json integer other than the usual names (``shape_probes.count_keys``)."""
    if not any(lists for _, lists in views.values()):
        return
    base_lists = {n: v[1] for n, v in views.items()}
    known = {r[0] for n in namings for r in records[n]["l"]}

    def lists_of(config: Any) -> dict[str, dict[str, int]]:
        model = build(cls, config)
        return {n: view(model, f)[1] for n, f in namings.items()}

    # the usual layer keys are tried again here for lists not recorded yet (ConvNeXt's num_stages: a change of
    # the attribute alone does not build, one of config.json does); vocabulary, widths and experts are not counts
    names = (*VOCAB, *HIDDEN, *EXPERTS)
    for path, cfg in levels(base):
        skip = {k for k in (json_key(cfg, n) for n in names) if k} | set(names)
        for naming, prefix, key, offset in count_keys(base, path, skip, known, lists_of, base_lists):
            records[naming]["l"].append([prefix, key, offset])


def _perturbed(
    cls: type,
    base: Any,
    path: str,
    key: str,
    kind: str,
    deltas: tuple[int, int],
    namings: dict[str, Any],
    views: dict[str, Any],
    records: dict[str, dict[str, list[list[Any]]]],
) -> None:
    holder = dict(levels(base))[path]
    value = vars(holder)[key]
    full = f"{path}.{key}" if path else key
    results = []
    for delta in deltas:
        config = copy.deepcopy(base)
        cfg = dict(levels(config))[path]
        new = value * delta if kind == "h" else value + delta
        try:
            if kind == "l":
                _set_count(cfg, key, new)
            else:
                vars(cfg)[key] = new
            model = build(cls, config)
        except Exception:  # noqa: BLE001 - a change the architecture rejects teaches nothing
            return
        results.append((new, {n: view(model, f) for n, f in namings.items()}))
    # an expert count also sizes dimensions: the router's rows, fused experts
    dims = "d" if kind == "d" or key in EXPERTS else kind
    for naming in namings:
        shapes, lists = views[naming]
        out = records[naming]
        if kind == "l":
            for prefix, count in lists.items():
                if all(r[naming][1].get(prefix) == count + (new - value) for new, r in results):
                    out["l"].append([prefix, full, count - value])
        for tensor, shape in shapes.items():
            for dim, size in enumerate(shape):
                changed = [r[naming][0].get(tensor) for _, r in results]
                if not all(c is not None and len(c) == len(shape) for c in changed):
                    continue
                if dims == "d" and all(
                    c[dim] == size + new - value for (new, _), c in zip(results, changed, strict=True)
                ):
                    out["d"].append([tensor, dim, full, size - value])
                if (
                    dims == "h"
                    and size == value
                    and all(c[dim] == new for (new, _), c in zip(results, changed, strict=True))
                ):
                    out["h"].append([tensor, dim, full])
    _drop_dependent_offsets(cls, base, path, full, namings, views, records)


def _dim(shapes: dict[str, tuple[int, ...]], record: list[Any]) -> int | None:
    shape = shapes.get(record[0])
    return shape[record[1]] if shape is not None and len(shape) > record[1] else None


def _drop_dependent_offsets(
    cls: type,
    base: Any,
    path: str,
    full: str,
    namings: dict[str, Any],
    views: dict[str, Any],
    records: dict[str, dict[str, list[list[Any]]]],
) -> None:
    """An offset that another value of the same level moves (Molmo2's ``additional_vocab_size``) is no constant:
    such records are dropped (a record is kept only where it holds for every config)."""
    suspects = [(n, k, r) for n in namings for k in ("d", "l") for r in records[n][k] if r[2] == full and r[-1]]
    if not suspects:
        return
    holder = dict(levels(base))[path]
    key = full.rsplit(".", 1)[-1]
    dropped: set[int] = set()
    for attr, value in sorted(vars(holder).items()):
        if attr == key or not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            continue
        config = copy.deepcopy(base)
        vars(dict(levels(config))[path])[attr] = value + 1
        try:
            model = build(cls, config)
        except Exception:  # noqa: BLE001 - a change the architecture rejects teaches nothing
            continue
        seen = {n: view(model, f) for n, f in namings.items()}
        for naming, kind, record in suspects:
            shapes, lists = seen[naming]
            old_shapes, old_lists = views[naming]
            if kind == "d" and _dim(shapes, record) != _dim(old_shapes, record):
                dropped.add(id(record))
            if kind == "l" and lists.get(record[0]) != old_lists.get(record[0]):
                dropped.add(id(record))
    for naming in namings:
        for kind in ("d", "l"):
            records[naming][kind] = [r for r in records[naming][kind] if id(r) not in dropped]


def _keep_hidden(entry: dict[str, Any]) -> None:
    """Widths are recorded for vocabulary-sized tensors only (the embedding and head columns)."""
    for block in (entry, entry.get("m", {})):
        vocab = {r[0] for r in block.get("d", ()) if r[2].rsplit(".", 1)[-1] in VOCAB}
        block["h"] = [r for r in block.get("h", ()) if r[0] in vocab]
        if not block["h"]:
            del block["h"]
    if "m" in entry and entry["m"] == {k: v for k, v in entry.items() if k in "dhl"}:
        del entry["m"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    classes: dict[str, Any] = {}
    failed: dict[str, str] = {}
    start = time.monotonic()
    for name, model_type in sorted(registered().items()):
        try:
            cls, model_type = resolve_class(name, model_type)
            if only and name not in only and model_type not in only:
                continue
            config_cls = configuration_auto.CONFIG_MAPPING[model_type]
            try:
                entry = describe(cls, config_cls())
            except ImportError:  # DETR family: the default backbone is timm's
                entry = describe(cls, config_cls(use_timm_backbone=False, use_pretrained_backbone=False))
            except ValueError as exc:  # time-series models have no default prediction length
                if "prediction_length" not in str(exc):
                    raise
                entry = describe(cls, config_cls(prediction_length=8))
            _keep_hidden(entry)
            classes[name] = {"t": model_type, **entry}
        except Exception as exc:  # noqa: BLE001 - recorded as failed
            failed[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
            print(f"failed: {name}: {failed[name]}", file=sys.stderr)
    document = {
        "transformers": transformers.__version__,
        "generator": "scripts/generate_shapes.py",
        "classes": classes,
        "failed": failed,
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        dump(document, fh)  # one entry per line: read one at a time (tiecheck/ties/_records.py)
    spent = time.monotonic() - start
    print(f"{len(classes)} classes, {len(failed)} failed, {spent:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
