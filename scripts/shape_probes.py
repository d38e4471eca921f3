"""Two probes of ``generate_shapes.py`` that read transformers' own code rather than a list of names.

- :func:`legacy_prefixes`: the older on-disk namings the loader accepts by a prefix change
  (``PrefixChange`` entries of ``transformers/conversion_mapping.py``: transformers 4.x saved a
  ``CLIPVisionModel`` as ``vision_model.encoder.layers.N...``, 5.x strips ``vision_model.`` on load). Each is
  recorded as ``[saved prefix, legacy prefix]`` pairs, kept only when the loader's own renaming takes every
  legacy name back to the slot the saved name fills.
- :func:`count_keys`: config.json integers beyond the usual layer-count names that size an index list
  (Moonshine's ``encoder_num_hidden_layers``, Speech2Text's ``num_conv_layers``): each changed in the
  config.json document, the config rebuilt from it, and the model built again. A key is kept only where the
  list follows it exactly, the loaded config holds the value config.json gives, and no other integer of the
  same level moves the list.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

#: A count key is looked for among integers at most this large (counts of a default config are small).
MAX_COUNT = 64
#: At most this many prefix changes per class are combined (2**n legacy namings).
MAX_PREFIX_CHANGES = 3

Lists = dict[str, dict[str, int]]
"""naming -> index-list prefix -> length."""


# -- Legacy prefixes ---------------------------------------------------------------------------------------


def _heads(saved: str, legacy: str) -> tuple[str, str]:
    """The differing leading parts of two names that end alike (on dot boundaries)."""
    a, b = saved.split("."), legacy.split(".")
    common = 0
    while common < min(len(a), len(b)) and a[-1 - common] == b[-1 - common]:
        common += 1
    head_a, head_b = a[: len(a) - common], b[: len(b) - common]
    return ".".join(head_a) + ("." if head_a else ""), ".".join(head_b) + ("." if head_b else "")


def rewrite(pairs: list[list[str]], name: str) -> str:
    """``name`` in the legacy naming ``pairs`` describes: the longest matching saved prefix replaced."""
    for saved, legacy in sorted(pairs, key=lambda p: -len(p[0])):
        if name.startswith(saved):
            return legacy + name[len(saved) :]
    return name


def legacy_prefixes(model: Any, saved: Callable[[str], str]) -> list[list[list[str]]]:
    """Every legacy naming the loader accepts for ``model`` through its prefix changes, as prefix pairs."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import (
        PrefixChange,
        WeightConverter,
        WeightRenaming,
        apply_converters,
        apply_renamings,
        rename_source_key,
    )

    try:
        convs = get_model_conversion_mapping(model, add_legacy=False)
        loading = get_model_conversion_mapping(model)
    except Exception:  # noqa: BLE001 - a class whose mapping cannot be built has no legacy naming
        return []
    changes = [c for c in convs if isinstance(c, PrefixChange)]
    if not changes or len(changes) > MAX_PREFIX_CHANGES:
        return []
    state = model.state_dict()
    keys = sorted(state)
    load_renamings = [c for c in loading if isinstance(c, WeightRenaming)]
    load_converters = [c for c in loading if isinstance(c, WeightConverter)]

    def loads_to(name: str) -> str:
        return rename_source_key(name, load_renamings, load_converters, model.base_model_prefix, state)[0]

    found: list[list[list[str]]] = []
    for size in range(1, len(changes) + 1):
        for chosen in itertools.combinations(changes, size):
            kept = [c for c in convs if not isinstance(c, PrefixChange) or any(c is x for x in chosen)]
            reverse = [c.reverse_transform() for c in kept[::-1]]
            renamings = [c for c in reverse if isinstance(c, WeightRenaming)]
            converters = [c for c in reverse if isinstance(c, WeightConverter)]
            pairs: set[tuple[str, str]] = set()
            names: list[tuple[str, str]] = []
            for key in keys:
                renamed, pattern = apply_converters(key, converters)
                legacy = apply_renamings(renamed if pattern else key, renamings)
                names.append((saved(key), legacy))
                if legacy != saved(key):
                    pairs.add(_heads(saved(key), legacy))
            record = sorted(map(list, pairs))
            if not record or record in found or any(any(c.isdigit() for c in p) for pair in record for p in pair):
                continue
            # the pairs must describe every name, and the loader must take each legacy name where the saved goes
            if all(rewrite(record, s) == g for s, g in names) and all(loads_to(g) == loads_to(s) for s, g in names):
                found.append(record)
    return found


# -- Count keys --------------------------------------------------------------------------------------------


def _level(document: dict[str, Any], path: str) -> dict[str, Any]:
    for part in filter(None, path.split(".")):
        document = document[part]
    return document


def _from_json(base: Any, path: str, changes: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The config loaded from ``base``'s config.json document with ``changes`` at level ``path``."""
    document = base.to_dict()
    _level(document, path).update(changes)
    config = type(base).from_dict(copy.deepcopy(document))
    return config, _level(config.to_dict(), path)


def _coupled(level: dict[str, Any], key: str, new: int) -> dict[str, Any]:
    """``key`` set to ``new`` with every list of that level as long as its old value cut or extended."""
    old = level[key]
    changes: dict[str, Any] = {key: new}
    for attr, value in level.items():
        if attr != key and isinstance(value, list | tuple) and len(value) == old and old > 0:
            value = list(value)
            changes[attr] = value[:new] if new <= old else value + [value[-1]] * (new - old)
    return changes


def _ints(level: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in level.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0)


def count_keys(
    base: Any,
    path: str,
    skip: set[str],
    known: set[str],
    lists_of: Callable[[Any], Lists],
    base_lists: Lists,
) -> list[tuple[str, str, str, int]]:
    """``(naming, prefix, dotted key, offset)`` for each index list a config.json integer of level ``path``
    sizes, other than ``skip`` keys and lists already recorded (``known`` prefixes)."""
    try:
        level = _level(base.to_dict(), path)
        if lists_of(_from_json(base, path, {})[0]) != base_lists:
            return []  # the config does not survive its own config.json: nothing to learn this way
    except Exception:  # noqa: BLE001 - a config that cannot round-trip teaches nothing
        return []
    found: list[tuple[str, str, str, int]] = []
    for key in _ints(level):
        value = level[key]
        if key in skip or value > MAX_COUNT:
            continue
        seen: list[tuple[int, Lists]] = []
        for delta in (1, 2):
            new = value + delta
            try:
                config, loaded = _from_json(base, path, {key: new})
                lists = lists_of(config)
            except Exception:  # noqa: BLE001 - the config ties the key to lists of its level (validation)
                try:
                    config, loaded = _from_json(base, path, _coupled(level, key, new))
                    lists = lists_of(config)
                except Exception:  # noqa: BLE001 - a change the architecture rejects teaches nothing
                    break
            if loaded.get(key) != new:
                break  # the loaded config does not hold what config.json says: the key is no authority
            seen.append((delta, lists))
        if len(seen) < 2:
            continue
        full = f"{path}.{key}" if path else key
        _follow(found, base_lists, known, seen, full, value)
    for key in _lists(level):
        # Lists of one length change together (Swin's depths and num_heads), so each is recorded; the rules
        # speak only where all of a list's records agree (a longer num_heads than depths still builds).
        value = len(level[key])
        seen = []
        for delta in (1, 2):
            try:
                config, loaded = _from_json(base, path, _longer(level, key, value + delta))
                lists = lists_of(config)
            except Exception:  # noqa: BLE001 - a change the architecture rejects teaches nothing
                break
            if not isinstance(loaded.get(key), list) or len(loaded[key]) != value + delta:
                break
            seen.append((delta, lists))
        if len(seen) == 2:
            _follow(found, base_lists, known, seen, f"len({path}.{key})" if path else f"len({key})", value)
    return _independent(base, path, found, lists_of, base_lists) if found else []


def _follow(
    found: list[tuple[str, str, str, int]],
    base_lists: Lists,
    known: set[str],
    seen: list[tuple[int, Lists]],
    key: str,
    value: int,
) -> None:
    """Record each index list that grew exactly as ``key`` did, in every probe."""
    for naming, prefixes in base_lists.items():
        for prefix, count in prefixes.items():
            if prefix not in known and all(r[naming].get(prefix) == count + d for d, r in seen):
                found.append((naming, prefix, key, count - value))


def _lists(level: dict[str, Any]) -> list[str]:
    """Keys whose value is a list of numbers or strings: a per-stage setting whose length may count stages
    (Swin's ``depths``)."""
    return sorted(
        k
        for k, v in level.items()
        if isinstance(v, list) and 0 < len(v) <= MAX_COUNT and all(isinstance(i, int | float | str) for i in v)
    )


def _longer(level: dict[str, Any], key: str, new: int) -> dict[str, Any]:
    """``key``'s list extended to ``new`` entries (its last repeated), with every list of that length alike."""
    old = len(level[key])
    return {
        attr: list(value) + [value[-1]] * (new - old)
        for attr, value in level.items()
        if isinstance(value, list) and len(value) == old
    }


def _independent(
    base: Any, path: str, found: list[tuple[str, str, str, int]], lists_of: Callable[[Any], Lists], base_lists: Lists
) -> list[tuple[str, str, str, int]]:
    """The records whose list no other integer of the level moves (a product, a sum, a second count)."""
    level = _level(base.to_dict(), path)
    dropped: set[int] = set()
    for attr in _ints(level):
        suspects = [i for i, r in enumerate(found) if r[2].rsplit(".", 1)[-1] != attr and i not in dropped]
        if not suspects:
            continue
        try:
            lists = lists_of(_from_json(base, path, {attr: level[attr] + 1})[0])
        except Exception:  # noqa: BLE001 - a change the architecture rejects teaches nothing
            continue
        for i in suspects:
            naming, prefix = found[i][0], found[i][1]
            if lists[naming].get(prefix) != base_lists[naming].get(prefix):
                dropped.add(i)
    return [r for i, r in enumerate(found) if i not in dropped]
