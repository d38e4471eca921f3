"""TC018 wrapped-names: tensor names carry a training wrapper's prefix or inner name, which loaders do not strip.

``DistributedDataParallel`` / ``DataParallel`` register the model as ``module``, ``torch.compile`` as
``_orig_mod``: a state dict taken from the wrapper instead of the model names every parameter
``module.model.layers.0...``. transformers strips a model's own ``base_model_prefix`` (``model.``) when loading,
not these: it matches none of the names, reports every parameter missing and every tensor unexpected, and
initialises the whole model at random. A submodule wrapped on its own (each decoder layer under torch.compile)
puts the wrapper's name inside the names instead, and ``save_pretrained`` writes them so. Which names the
architecture expects comes from the generated shape data (:mod:`tiecheck.ties.shapes`); an architecture it does
not know is not judged.
"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.findings import Finding, Severity
from tiecheck.rules.base import ScanContext
from tiecheck.rules.catalog import finding
from tiecheck.rules.shapes import class_shapes

#: Wrapper prefixes and who adds them, longest first (a compiled model inside DDP carries both).
WRAPPERS = (
    ("module._orig_mod.", "DistributedDataParallel around torch.compile"),
    ("_orig_mod.module.", "torch.compile around DistributedDataParallel"),
    ("base_model.model.", "PEFT's PeftModel"),
    ("module.", "DistributedDataParallel or DataParallel"),
    ("_orig_mod.", "torch.compile"),
)
_UNWRAP = {
    "base_model.model.": "Save the adapter with the PeftModel's save_pretrained, or merge_and_unload() and save the "
    "merged model: stripping the prefix is not enough, the adapter's own tensors and names stay",
}
_STRIP = "Save the unwrapped model (model.module / model._orig_mod), or strip {prefix!r} from the names"
#: What PEFT's save_pretrained writes: adapter weights, named as PeftModel names them, read by PEFT alone.
_ADAPTER_WEIGHTS = ("adapter_model.",)
#: Wrapper names inside the names: one submodule wrapped on its own. transformers has no module so named, and
#: ``save_pretrained`` writes them as they are (each decoder layer under torch.compile: ``model.layers.0._orig_mod.``).
INNER = (
    ("_orig_mod.", "torch.compile of a submodule"),
    ("_checkpoint_wrapped_module.", "activation checkpointing's checkpoint_wrapper"),
    ("_fsdp_wrapped_module.", "FSDP (names taken past its state-dict hooks)"),
    ("base_layer.", "PEFT's LoRA layer (the adapter injected, not merged)"),
)
_STRIP_INNER = "Save the model with the wrapper removed, or strip {segment!r} from the names"
_INNER_ADVICE = {
    "base_layer.": "Merge the adapter first (merge_and_unload()) and save the merged model, or save the adapter "
    "alone with the PeftModel's save_pretrained: stripping the name would drop the adapter's update",
}
_LISTED = 3


def check_wrapped_names(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    index = ctx.checkpoint.index
    names = set(ctx.tensors) | (set(index.weight_map) if index else set())
    if config is None or not names or not ctx.wants("TC018"):
        return
    if all(t.file.startswith(_ADAPTER_WEIGHTS) for t in ctx.tensors.values()):
        return  # a PEFT adapter (a base model's config.json beside it): PEFT reads base_model.model. names
    wrapped = next(((p, w) for p, w in WRAPPERS if all(n.startswith(p) for n in names)), None)
    if wrapped is None:
        yield from _inner_wrappers(ctx, names)
        return
    prefix, wrapper = wrapped
    if class_shapes(config, names) is not None:
        return  # the architecture's own names start so: nothing is wrapped
    known = class_shapes(config, {n[len(prefix) :] for n in names})
    if known is None:
        return  # not names this architecture is known to use, even without the prefix: no claim
    listed = ", ".join(sorted(names)[:_LISTED]) + (" ..." if len(names) > _LISTED else "")
    message = (
        f"Every tensor name starts with {prefix!r}, the prefix {wrapper} adds ({listed}): {known.name} names its "
        f"parameters without it, so loaders match none of the {len(names)} tensors and initialise the whole model at "
        "random (transformers 5: every parameter missing, every tensor unexpected). "
        f"{_UNWRAP.get(prefix, _STRIP.format(prefix=prefix))}."
    )
    severity = None
    if config.custom_code:
        message += " (A guess: the repo brings its own modeling code; the names are transformers' own.)"
        severity = Severity.WARNING
    yield finding(
        "TC018",
        message,
        files=sorted({t.file for t in ctx.tensors.values()}),
        tensors=sorted(names)[:_LISTED],
        severity=severity,
    )


def _inner_wrappers(ctx: ScanContext, names: set[str]) -> Iterator[Finding]:
    """Names with a wrapper's segment inside them: loaders match none of those and start them at random."""
    config = ctx.checkpoint.config
    assert config is not None
    for segment, wrapper in INNER:
        hit = sorted(n for n in names if n.startswith(segment) or f".{segment}" in n)
        if not hit:
            continue
        stripped = {n.replace(f".{segment}", ".").removeprefix(segment) for n in names}
        known = class_shapes(config, stripped)
        if known is None:
            continue  # not this architecture's names even without the segment: no claim
        listed = ", ".join(hit[:_LISTED]) + (" ..." if len(hit) > _LISTED else "")
        message = (
            f"{len(hit)} of the {len(names)} tensor names contain {segment!r}, the name {wrapper} inserts "
            f"({listed}): {known.name} has no module so named, so loaders match none of them and initialise "
            f"those parameters at random (transformers 5: each is missing, and its stored name unexpected). "
            f"{_INNER_ADVICE.get(segment, _STRIP_INNER.format(segment=segment))}."
        )
        yield finding(
            "TC018",
            message + (" (A guess: the repo brings its own modeling code.)" if config.custom_code else ""),
            files=sorted({t.file for t in ctx.tensors.values() if t.name in hit}),
            tensors=hit[:_LISTED],
            severity=Severity.WARNING if config.custom_code else None,
        )
        return
