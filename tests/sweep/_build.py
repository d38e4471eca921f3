"""Build one architecture's tiny checkpoints (run as ``python _build.py MODEL_TYPE OUT_DIR``, one process each).

For each task class picked for the model type, saves tied and untied variants, single file and sharded, and
the damaged copies, and writes ``manifest.json`` last: what was saved and what a correct scan must say about
each copy. The expectations come from transformers' own objects (the module ``get_output_embeddings`` returns,
the tensors that share its storage after the class ties), never from tiecheck.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _tiny

#: Auto mappings whose classes carry a head, best first; the base model is used when none has the type.
HEAD_MAPPINGS = (
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_MASKED_LM_MAPPING_NAMES",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
    "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES",
    "MODEL_FOR_TEXT_RECOGNITION_MAPPING_NAMES",
    "MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES",
)
#: Pretraining classes mostly repeat a masked-LM head: used only when the type has no other head class.
FALLBACK_MAPPINGS = ("MODEL_FOR_PRETRAINING_MAPPING_NAMES", "MODEL_MAPPING_NAMES")
MAX_CLASSES = 3
MAX_PARAMETERS = 5_000_000


def task_classes(model_type: str) -> list[str]:
    from transformers.models.auto import modeling_auto

    names: list[str] = []
    for mapping in HEAD_MAPPINGS:
        name = getattr(modeling_auto, mapping, {}).get(model_type)
        if isinstance(name, str) and name not in names:
            names.append(name)
    for mapping in FALLBACK_MAPPINGS:
        name = getattr(modeling_auto, mapping, {}).get(model_type)
        if not names and isinstance(name, str):
            names.append(name)
    return names[:MAX_CLASSES]


def _set_tie(config: Any, value: bool, seen: set[int] | None = None) -> bool:
    """Set ``tie_word_embeddings`` at every config level that has it; True when any level has it."""
    seen = set() if seen is None else seen
    if id(config) in seen:
        return False
    seen.add(id(config))
    found = False
    if "tie_word_embeddings" in vars(config):
        _tiny._set(config, "tie_word_embeddings", value)
        found = True
    for sub in list(vars(config).values()):
        if _tiny._is_config(sub):
            found = _set_tie(sub, value, seen) or found
    return found


def _head_names(model: Any) -> tuple[str | None, list[str]]:
    """The output embedding's weight name and every parameter name sharing its storage (the tie group)."""
    try:
        out = model.get_output_embeddings()
    except Exception:  # noqa: BLE001  (any failure of a third-party model means: no head known)
        return None, []
    weight = getattr(out, "weight", None)
    if weight is None or not hasattr(weight, "data_ptr"):
        return None, []
    head = None
    for name, module in model.named_modules(remove_duplicate=False):
        if module is out:
            head = f"{name}.weight" if name else "weight"
            break
    ptr = weight.data_ptr()
    group = [n for n, p in model.named_parameters(remove_duplicate=False) if p.data_ptr() == ptr and p.numel()]
    return head, group


def _build(cls: Any, config: Any) -> Any:
    import torch

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(config)


def _count_on_meta(cls: Any, config: Any) -> int | None:
    """Parameters of the model built on the meta device (no memory, no init); None when that build fails."""
    import torch

    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            return sum(p.numel() for p in cls(config).parameters())
    except Exception:  # noqa: BLE001  (some inits need real tensors: the real build decides)
        return None


def _tiny_config(model_type: str, cls: Any) -> tuple[Any, Any, int]:
    """The strongest shrink under which the class builds and is small; raises with every strength's reason.

    A weaker shrink only grows the model, so once one builds too big the weaker ones are not tried; sizes are
    checked on the meta device first, so a model of a billion parameters is never materialised."""
    from transformers import AutoConfig

    reasons = []
    for strength in (2, 1, 0):
        config = AutoConfig.for_model(model_type)
        if getattr(getattr(config, "backbone_config", None), "model_type", None) == "timm_backbone":
            config = AutoConfig.for_model(model_type, use_timm_backbone=False)  # DETR family: no timm here
        _tiny.shrink(config, strength)
        n = _count_on_meta(cls, config)
        if n is not None and n > MAX_PARAMETERS:
            reasons.append(f"{n:,} parameters")
            break
        try:
            model = _build(cls, config)
        except Exception as exc:  # noqa: BLE001  (any build failure is a reason, recorded)
            text = str(exc).strip().splitlines()
            reasons.append(f"{type(exc).__name__}: {text[-1][:160] if text else ''}")
            continue
        n = sum(p.numel() for p in model.parameters())
        if n > MAX_PARAMETERS:
            reasons.append(f"{n:,} parameters")
            break
        return config, model, strength
    raise RuntimeError(" / ".join(dict.fromkeys(reasons)))


def _stored_names(folder: Path) -> set[str]:
    from safetensors import safe_open

    names: set[str] = set()
    for f in folder.glob("*.safetensors"):
        with safe_open(str(f), "pt") as h:
            names.update(h.keys())
    return names


def _damage(src: Path, dst: Path, touch: str, change: Any) -> None:
    """Copy a save with the file holding tensor ``touch`` rewritten by ``change(dict)``, as a merge tool would:
    the index (sharded saves) follows the change, its totals included."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    index_path = dst / "model.safetensors.index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else None
    name = index["weight_map"][touch] if index else "model.safetensors"
    tensors = load_file(str(dst / name))
    before = {k: (v.numel(), v.numel() * v.element_size()) for k, v in tensors.items()}
    change(tensors)
    save_file(tensors, str(dst / name), metadata={"format": "pt"})
    if index:
        after = {k: (v.numel(), v.numel() * v.element_size()) for k, v in tensors.items()}
        for k in after.keys() - before.keys():
            index["weight_map"][k] = name
        for k in before.keys() - after.keys():
            del index["weight_map"][k]
        meta = index.setdefault("metadata", {})
        for i, key in enumerate(("total_parameters", "total_size")):
            if isinstance(meta.get(key), int):
                meta[key] += sum(v[i] for v in after.values()) - sum(v[i] for v in before.values())
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _save(model: Any, folder: Path, sharded: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if sharded:
            total = sum(p.numel() * p.element_size() for p in model.state_dict().values())
            model.save_pretrained(str(folder), max_shard_size=max(total // 3, 2048))
        else:
            model.save_pretrained(str(folder))


def _stored_as(folder: Path, tensor: Any) -> list[str]:
    """The names under which a single-file save holds ``tensor``'s values: transformers 5 saves some models
    under their legacy names (``language_model.model.embed_tokens.weight`` for ``model.language_model...``)."""
    import torch
    from safetensors.torch import load_file

    data = tensor.detach().cpu()
    return sorted(
        k
        for k, v in load_file(str(folder / "model.safetensors")).items()
        if v.shape == data.shape and v.dtype == data.dtype and torch.equal(v, data)
    )


def _save_variant(cls: Any, config: Any, out: Path, stem: str, entry: dict[str, Any], label: str) -> dict[str, Any]:
    """Save one variant single and sharded; return where its head and tied embedding are, by checkpoint name."""
    model = _build(cls, config)
    head, group = _head_names(model)
    for layout in ("single", "sharded"):
        _save(model, out / f"{stem}-{layout}", layout == "sharded")
        entry["checkpoints"].append({"path": f"{stem}-{layout}", "kind": "clean", "tie": label, "expect": None})
    info: dict[str, Any] = {"head": head, "group": group, "tied": len(group) > 1 and head in group}
    if head is not None:
        weight = model.get_output_embeddings().weight
        info["stored_as"] = _stored_as(out / f"{stem}-single", weight)
    info["stored"] = sorted(_stored_names(out / f"{stem}-single"))
    entry.setdefault("heads", {})[label] = info
    return info


def _add_head(head: str, source: str, change: bool) -> Any:
    def edit(t: dict[str, Any]) -> None:
        copy = t[source].clone()
        if change:
            flat = copy.view(-1)
            flat[0] = flat[0] + 1 if flat[0] != -1 else 2
        t[head] = copy

    return edit


def build_class(model_type: str, class_name: str, out: Path) -> dict[str, Any]:
    """Save the class tied and untied (or as configured, when the config has no flag), then damage the saves.

    The head's checkpoint name is where the untied save stores the output embedding's values, the embedding's
    where the tied save stores the shared ones: both read back from the files, so legacy renames are followed."""
    import transformers

    cls = getattr(transformers, class_name)
    config, _, strength = _tiny_config(model_type, cls)
    entry: dict[str, Any] = {"class": class_name, "strength": strength, "checkpoints": []}
    has_flag = _set_tie(config, True)
    infos: dict[str, dict[str, Any]] = {}
    for label, tie in [("tied", True), ("untied", False)] if has_flag else [("default", None)]:
        if tie is not None:
            _set_tie(config, tie)
        infos[label] = _save_variant(cls, config, out, f"{class_name}-{label}", entry, label)
    untied_keys = [i["stored_as"] for i in infos.values() if not i["tied"] and len(i.get("stored_as", [])) == 1]
    for label, info in infos.items():
        if info["head"] is None:
            continue
        damages: list[tuple[str, str, Any, dict[str, Any]]] = []
        keys = info["stored_as"]
        if info["tied"] and len(keys) == 1:
            head = untied_keys[0][0] if untied_keys else info["head"]
            source = keys[0]
            if head != source:
                damages.append(("duplicated-head", source, _add_head(head, source, False), {"code": "TC101"}))
                damages.append(("changed-head", source, _add_head(head, source, True), {"code": "TC102"}))
                damages[-2][3]["tensors"] = [head]
                damages[-1][3]["tensors"] = [head, source]
        elif not info["tied"] and label != "tied" and len(keys) == 1:
            head = keys[0]
            damages.append(
                ("missing-head", head, lambda t, head=head: t.pop(head), {"code": "TC103", "tensors": [head]})
            )
        for layout in ("single", "sharded"):
            for kind, touch, change, expect in damages:
                folder = out / f"{class_name}-{label}-{layout}-{kind}"
                _damage(out / f"{class_name}-{label}-{layout}", folder, touch, change)
                entry["checkpoints"].append({"path": folder.name, "kind": kind, "tie": label, "expect": expect})
    return entry


def _quiet() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def build_type(model_type: str, out: Path) -> None:
    """Build one model type's checkpoints into ``out`` and write its manifest (last)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    manifest: dict[str, Any] = {"model_type": model_type, "classes": [], "failed": {}}
    start = time.monotonic()
    names = task_classes(model_type)
    if not names:
        manifest["failed"]["-"] = "no model class registered for this config"
    for name in names:
        try:
            manifest["classes"].append(build_class(model_type, name, out))
        except Exception as exc:  # noqa: BLE001  (any build failure is a reason, recorded)
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            manifest["failed"][name] = last[:300]
    manifest["seconds"] = round(time.monotonic() - start, 2)
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / "manifest.json")


def _write_failure(out: Path, model_type: str, reason: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"model_type": model_type, "classes": [], "failed": {"-": reason}, "seconds": None}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def build_many(root: Path, model_types: list[str], workers: int, timeout: float) -> None:
    """Build every type into ``root/<type>``: torch and transformers are imported once, then each type is built in
    a forked child of its own, ``workers`` at a time, so a crash or a hang (killed after ``timeout`` seconds)
    costs only that type, recorded as a build failure."""
    import multiprocessing

    _quiet()
    import transformers.models.auto.modeling_auto  # noqa: F401  (imported once, before forking)

    try:
        from transformers import conversion_mapping
    except ImportError:  # transformers 4 (the sweep also runs there): no loading conversions to warm up
        pass
    else:
        conversion_mapping.get_checkpoint_conversion_mapping("llama")  # builds (1-2 s) and caches the rename table
    import tempfile

    with tempfile.TemporaryDirectory() as warm:
        # The first model imported and saved pulls in most of transformers (~2 s of CPU); once here, not per child.
        build_type("llama", Path(warm) / "llama")

    ctx = multiprocessing.get_context("fork")
    pending = list(model_types)
    running: dict[str, tuple[Any, float]] = {}
    while pending or running:
        while pending and len(running) < workers:
            model_type = pending.pop(0)
            proc = ctx.Process(target=build_type, args=(model_type, root / model_type), daemon=True)
            proc.start()
            running[model_type] = (proc, time.monotonic())
        time.sleep(0.05)
        for model_type, (proc, started) in list(running.items()):
            if proc.is_alive() and time.monotonic() - started < timeout:
                continue
            if proc.is_alive():
                proc.kill()
                proc.join()
                _write_failure(root / model_type, model_type, f"build timed out after {timeout:.0f} s")
            elif not (root / model_type / "manifest.json").exists():
                _write_failure(root / model_type, model_type, f"build process died (exit code {proc.exitcode})")
            del running[model_type]


if __name__ == "__main__":
    # python _build.py ROOT WORKERS TIMEOUT TYPE...
    build_many(Path(sys.argv[1]), sys.argv[4:], int(sys.argv[2]), float(sys.argv[3]))
