"""Shape damage for the sweep, derived from the cached clean saves (run as ``python _shape_damage.py ROOT TYPE...``).

For the first class of each built model type, from its clean single-file save:

- ``vocab-config``: config.json's vocabulary size raised by 8 at the level where it lives (a config edited to
  another vocabulary); expected TC014 naming every stored tensor transformers sizes by it;
- ``missing-last-layer``: the tensors of the last layer of the list the layer count sizes removed; expected
  TC016 naming one of them.

What follows which value comes from transformers itself: the class is built again on the meta device from the
saved config with the value changed, and the state-dict shapes and names compared (a class whose saved names
differ from its module names is skipped). Written to ``ROOT/TYPE/shapes.json``, keyed by this file's digest, so
the (slow) builds of ``_build.py`` stay cached when only this stage changes. Imports nothing from tiecheck.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
LEVELS = ("", "text_config", "decoder", "language_config", "llm_config", "text_encoder", "generator")


def manifest_path(folder: Path) -> Path:
    return folder / "shapes.json"


def current(folder: Path) -> bool:
    path = manifest_path(folder)
    return path.exists() and json.loads(path.read_text()).get("digest") == DIGEST


def _level(config: Any, path: str) -> Any:
    return getattr(config, path, None) if path else config


def _state(cls: Any, config: Any) -> dict[str, tuple[int, ...]]:
    import torch

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = cls(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _stored(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        return {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}  # noqa: SIM118


def _set_count(cfg: Any, key: str, new: int) -> None:
    old = vars(cfg)[key]
    for attr, value in list(vars(cfg).items()):
        if attr != key and isinstance(value, list) and len(value) == old and old > 0:
            vars(cfg)[attr] = value + [value[-1]] * (new - old)
    vars(cfg)[key] = new


def _vocab_damage(cls: Any, config: Any, src: Path, out: Path, stored: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    document = json.loads((src / "config.json").read_text())
    base = _state(cls, config)
    for path in LEVELS:
        block = document.get(path) if path else document
        holder = _level(config, path)
        if not isinstance(block, dict) or not isinstance(block.get("vocab_size"), int) or holder is None:
            continue
        changed = copy.deepcopy(config)
        vars(_level(changed, path))["vocab_size"] = block["vocab_size"] + 8
        try:
            after = _state(cls, changed)
        except Exception:  # noqa: BLE001  (a change the class rejects: no damage of this kind)
            continue
        # a tensor the tiny config sizes to nothing cannot be judged (MobileBERT's dense: vocab - hidden = 0)
        followers = sorted(
            k for k, s in base.items() if after.get(k) != s and k in stored and stored[k] == s and 0 not in s
        )
        if not followers:
            continue
        dst = out / f"{src.name}-vocab-config"
        shutil.copytree(src, dst)
        block["vocab_size"] += 8
        (dst / "config.json").write_text(json.dumps(document, indent=2))
        return {"path": dst.name, "kind": "vocab-config", "expect": {"code": "TC014", "tensors": followers}}
    return {}


def _layer_damage(cls: Any, config: Any, src: Path, out: Path, stored: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    import _build

    base = _state(cls, config)
    for path in LEVELS:
        holder = _level(config, path)
        if holder is None:
            continue
        key = getattr(holder, "attribute_map", {}).get("num_hidden_layers", "num_hidden_layers")
        count = vars(holder).get(key)
        if not isinstance(count, int) or isinstance(count, bool) or count < 2:
            continue
        changed = copy.deepcopy(config)
        _set_count(_level(changed, path), key, count + 1)
        try:
            after = _state(cls, changed)
        except Exception:  # noqa: BLE001
            continue
        new = [k for k in after if k not in base]
        prefixes = sorted({m.group(1) for k in new for m in [re.match(rf"^(.*?\.){count}\.", k)] if m})
        # the list with the most tensors per index: the transformer layers, not a conv stack sized alike
        prefixes.sort(key=lambda p: -sum(k.startswith(f"{p}{count - 1}.") for k in stored))
        for prefix in prefixes:
            last = sorted(k for k in stored if k.startswith(f"{prefix}{count - 1}."))
            if not any(k in base for k in last):  # the saved names are not the module names: not judged here
                continue
            others = [
                {k[len(f"{prefix}{i}.") :] for k in stored if k.startswith(f"{prefix}{i}.")} for i in range(count - 1)
            ]
            common = [k for k in last if k in base and all(k[len(f"{prefix}{count - 1}.") :] in o for o in others)]
            if not common:
                continue
            dst = out / f"{src.name}-missing-last-layer"
            _build._damage(src, dst, last[0], lambda t, drop=last: [t.pop(k) for k in drop])
            return {"path": dst.name, "kind": "missing-last-layer", "expect": {"code": "TC016", "tensors": common[:1]}}
    return {}


def damage_type(root: Path, model_type: str) -> None:
    import transformers
    from transformers import AutoConfig

    folder = root / model_type
    manifest = json.loads((folder / "manifest.json").read_text())
    result: dict[str, Any] = {"digest": DIGEST, "classes": [], "failed": {}}
    shapes = folder / "shapes"
    if shapes.exists():
        shutil.rmtree(shapes)
    for entry in manifest["classes"][:1]:
        name = entry["class"]
        clean = [c["path"] for c in entry["checkpoints"] if c["expect"] is None and c["path"].endswith("-single")]
        if not clean:
            continue
        src = folder / clean[-1]  # untied when there is one: the head is stored too
        try:
            cls = getattr(transformers, name)
            config = AutoConfig.from_pretrained(str(src))
            stored = _stored(src)
            shapes.mkdir(exist_ok=True)
            checkpoints = [
                d
                for d in (
                    _vocab_damage(cls, config, src, shapes, stored),
                    _layer_damage(cls, config, src, shapes, stored),
                )
                if d
            ]
            for c in checkpoints:
                c["path"] = f"shapes/{c['path']}"
            result["classes"].append({"class": name, "checkpoints": checkpoints})
        except Exception as exc:  # noqa: BLE001  (recorded; the clean saves are judged all the same)
            result["failed"][name] = traceback.format_exception_only(type(exc), exc)[-1].strip()[:300]
    manifest_path(folder).write_text(json.dumps(result, indent=1))


def damage_many(root: Path, model_types: list[str]) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for model_type in model_types:
        if (root / model_type / "manifest.json").exists() and not current(root / model_type):
            try:
                damage_type(root, model_type)
            except Exception as exc:  # noqa: BLE001
                failed = {"-": traceback.format_exception_only(type(exc), exc)[-1].strip()[:300]}
                manifest_path(root / model_type).write_text(
                    json.dumps({"digest": DIGEST, "classes": [], "failed": failed})
                )


if __name__ == "__main__":
    # python _shape_damage.py ROOT TYPE...
    damage_many(Path(sys.argv[1]), sys.argv[2:])
