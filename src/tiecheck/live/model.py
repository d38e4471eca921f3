"""``inspect_model``: the ties of a live ``torch.nn.Module``, found by identity and compared with its declarations.

A tie in memory is one tensor reachable under two names. It can be made at parameter level
(``lm_head.weight = embed_tokens.weight``) or at module level: OLMo registered its embedding module a
second time (``ff_out = wte``), so every parameter of that module has two names. Tools that compare
parameters pairwise by declared names did not see it. Here both levels are found by object identity,
then compared with what the model declares (``tie_word_embeddings``, ``_tied_weights_keys`` as a
transformers 4 list or a transformers 5 ``{target: source}`` dict), and the state dict the model would
save is run through :func:`~tiecheck.live.state_dict.scan_state_dict` to say what ``save_pretrained``
writes for it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tiecheck.findings import Finding
from tiecheck.live.state_dict import StateDictReport, scan_state_dict
from tiecheck.rules.catalog import finding


@dataclass(frozen=True)
class SharedParameter:
    """Parameter names that are one tensor in the live model."""

    names: tuple[str, ...]
    modules: tuple[str, ...] = ()
    """Module names registered as one object that make this group (empty: tied at parameter level)."""
    declared: bool = False
    """A declared tie (config and ``_tied_weights_keys``) covers every name of the group."""


@dataclass(frozen=True)
class ModelInspection:
    """The outcome of :func:`inspect_model`."""

    shared: tuple[SharedParameter, ...]
    shared_modules: tuple[tuple[str, ...], ...]
    """Modules registered under more than one name (outermost names only)."""
    declared: Mapping[str, str]
    """The ties the model declares and its config turns on, ``{target: source}`` by parameter name."""
    tie_word_embeddings: bool | None
    findings: tuple[Finding, ...]
    saved: StateDictReport
    """What saving ``model.state_dict()`` does (``save_file``, ``save_pretrained``), with its findings."""
    unwrapped: tuple[str, ...] = ()
    """Wrappers looked through, outermost first (``torch.compile``, ``DataParallel``, ``PEFT``): the model
    inspected is the one inside, under its own names, as its ``save_pretrained`` writes it."""


def _declared_patterns(model: Any) -> list[str]:
    """Tie targets as transformers' ``save_pretrained`` collects them: every submodule's declaration, prefixed."""
    keys: list[str] = []
    for prefix, module in model.named_modules():
        tied = getattr(module, "_tied_weights_keys", None) or ()
        for key in tied.keys() if isinstance(tied, Mapping) else tied:
            keys.append(f"{prefix}.{key}" if prefix else str(key))
    return keys


def _tie_flag(model: Any) -> bool | None:
    config = getattr(model, "config", None)
    value = getattr(config, "tie_word_embeddings", None)
    return value if isinstance(value, bool) else None


def _effective_ties(model: Any, names: Iterable[str], by_name: Mapping[str, object]) -> dict[str, str]:
    """``{target: source}`` the loader ties: transformers 5's own expansion, else the 4.x list under the flag."""
    expanded = getattr(model, "all_tied_weights_keys", None)
    if isinstance(expanded, Mapping):
        return {str(k): str(v) for k, v in expanded.items()}
    if not _tie_flag(model):
        return {}
    source = None
    get_input = getattr(model, "get_input_embeddings", None)
    embedding = get_input() if callable(get_input) else None
    weight = getattr(embedding, "weight", None)
    source = next((n for n, p in by_name.items() if p is weight), None) if weight is not None else None
    if source is None:
        return {}
    patterns = [re.compile(p) for p in _declared_patterns(model)]
    return {n: source for n in names if n != source and any(p.search(n) for p in patterns)}


def _module_groups(model: Any) -> list[tuple[str, ...]]:
    by_id: dict[int, list[str]] = defaultdict(list)
    for name, module in model.named_modules(remove_duplicate=False):
        if name and any(True for _ in module.parameters()):
            by_id[id(module)].append(name)
    groups = [tuple(sorted(names)) for names in by_id.values() if len(names) > 1]
    # A module registered twice makes its children registered twice too: keep the outermost names only.
    prefixes = {name for group in groups for name in group}
    return sorted(g for g in groups if not all(n.rpartition(".")[0] in prefixes for n in g))


_DATA_PARALLEL = ("DataParallel", "DistributedDataParallel")


def _unwrap(model: Any) -> tuple[Any, tuple[str, ...]]:
    """The model inside the wrappers that training code puts around it, and the wrappers' names.

    ``torch.compile`` and ``DataParallel``/``DistributedDataParallel`` only prefix every name
    (``_orig_mod.``, ``module.``); their ``save_pretrained`` (or the user's) saves the inner model.
    A PEFT model saves an adapter; its base model is what the ties belong to (see :func:`_peft_layers`).
    """
    layers: list[str] = []
    while True:
        inner = model.__dict__.get("_modules", {}).get("_orig_mod")
        if inner is not None:  # torch._dynamo's OptimizedModule
            layers.append("torch.compile")
        elif type(model).__name__ in _DATA_PARALLEL and model.__dict__.get("_modules", {}).get("module") is not None:
            inner = model.module
            layers.append(type(model).__name__)
        elif type(model).__module__.startswith("peft.") and callable(getattr(model, "get_base_model", None)):
            inner = model.get_base_model()
            layers.append("PEFT")
        if inner is None or inner is model:
            return model, tuple(layers)
        model = inner


def _peft_layers(model: Any) -> dict[str, str]:
    """``{module name: attribute}`` of the PEFT layers inside a base model, and where each keeps the original.

    A tuned layer (LoRA and the other tuners) keeps the original module as ``base_layer``, a
    ``modules_to_save`` wrapper as ``original_module``; everything else in them is the adapter's.
    """
    layers: dict[str, str] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if not type(module).__module__.startswith("peft."):
            continue
        for attribute in ("base_layer", "original_module"):
            if module.__dict__.get("_modules", {}).get(attribute) is not None:
                layers[name] = attribute
                break
    return layers


def _base_name(name: str, layers: Mapping[str, str]) -> str | None:
    """``name`` as the model without its PEFT layers has it; None for an adapter's own tensor."""
    parts = name.split(".")
    kept: list[str] = []
    i = 0
    while i < len(parts):
        kept.append(parts[i])
        i += 1
        attribute = layers.get(".".join(parts[:i]))
        if attribute is not None and i < len(parts):
            if parts[i] != attribute:
                return None
            i += 1  # the original module stands where its wrapper stood
    return ".".join(kept)


def _without_adapters(items: Iterable[tuple[str, Any]], layers: Mapping[str, str]) -> list[tuple[str, Any]]:
    if not layers:
        return list(items)
    return [(base, value) for name, value in items if (base := _base_name(name, layers)) is not None]


def inspect_model(model: Any) -> ModelInspection:
    """Tie groups of a live model (a ``torch.nn.Module``, transformers or not), checked against its declarations.

    Reads parameters by identity and the model's own ``config`` and ``_tied_weights_keys``; copies nothing
    but the comparisons of :func:`scan_state_dict` on the model's state dict. A model wrapped by
    ``torch.compile``, ``DataParallel``/``DistributedDataParallel`` or PEFT is inspected inside its
    wrappers, under the names its own ``save_pretrained`` writes (:attr:`ModelInspection.unwrapped`).
    """
    model, unwrapped = _unwrap(model)
    peft = _peft_layers(model)
    named = _without_adapters(model.named_parameters(remove_duplicate=False), peft)
    by_name = dict(named)
    by_id: dict[int, list[str]] = defaultdict(list)
    for name, parameter in named:
        by_id[id(parameter)].append(name)
    declared = _effective_ties(model, by_name, by_name)
    modules = _module_groups(model)
    module_names = {name: group for group in modules for name in group}

    shared: list[SharedParameter] = []
    findings: list[Finding] = []
    for names in sorted(tuple(sorted(n)) for n in by_id.values() if len(n) > 1):
        through = sorted({module_names[p] for n in names for p in _prefixes(n) if p in module_names})
        covered = all(n in declared or any(declared.get(m) == n for m in names) for n in names)
        shared.append(SharedParameter(names, tuple(m for g in through for m in g), covered))
        if not covered:
            findings.append(
                finding(
                    "TC505",
                    f"{', '.join(names)} are one parameter, but no tie the model declares (with "
                    f"tie_word_embeddings {_json(_tie_flag(model))}) covers them: loaders rebuild them untied.",
                    tensors=list(names),
                )
            )
    for group in modules:
        findings.append(
            finding(
                "TC506",
                f"One module is registered as {' and '.join(group)}: its parameters are tied through the module. "
                "save_pretrained and loaders see two names; tie the parameter and declare it instead.",
                tensors=list(group),
            )
        )
    for target, source in sorted(declared.items()):
        if target in by_name and source in by_name and by_name[target] is not by_name[source]:
            findings.append(
                finding(
                    "TC504",
                    f"The model ties {target} to {source}, but they are separate tensors: save_pretrained writes "
                    f"both and loaders replace {target} with {source}. Call model.tie_weights() if they should be one.",
                    tensors=[target, source],
                )
            )
    config = getattr(model, "config", None)
    saved = scan_state_dict(
        dict(_without_adapters(model.state_dict().items(), peft)),
        config if hasattr(config, "to_dict") else None,
        tied_keys=_declared_patterns(model),
    )
    # What saving does with the tie: the refusals and lost heads of save_pretrained are this model's problems too,
    # as are names no loader reads (a layer wrapped by torch.compile on its own saves as layers.0._orig_mod., a
    # pruned weight as weight_orig and weight_mask).
    findings.extend(f for f in saved.findings if f.code in ("TC502", "TC503", "TC018", "TC019"))
    return ModelInspection(
        shared=tuple(shared),
        shared_modules=tuple(modules),
        declared=MappingProxyType(declared),
        tie_word_embeddings=_tie_flag(model),
        findings=tuple(findings),
        saved=saved,
        unwrapped=unwrapped,
    )


def _prefixes(name: str) -> Iterable[str]:
    parts = name.split(".")
    return (".".join(parts[:i]) for i in range(1, len(parts)))


def _json(value: bool | None) -> str:
    return "unset" if value is None else str(value).lower()
