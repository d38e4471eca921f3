"""TC019 pruning-not-removed: weights stored as ``torch.nn.utils.prune``'s ``<name>_orig`` and ``<name>_mask``.

Pruning a module (``prune.l1_unstructured(layer.mlp.down_proj, "weight", 0.5)``) turns its parameter into a
computed attribute: the module keeps ``weight_orig`` (a parameter) and ``weight_mask`` (a buffer), and
``weight`` is their product, recomputed before each forward. Until ``prune.remove`` makes it a parameter again,
``state_dict`` and ``save_pretrained`` write the two parts and no ``weight``: transformers finds no ``weight``,
initialises it at random, and drops the parts as unexpected. No transformers module has a parameter so named,
and the rule only speaks where, with the parts put back together, the names are the architecture's (generated
shape data); an architecture it does not know is not judged.
"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.findings import Finding, Severity
from tiecheck.rules.base import ScanContext
from tiecheck.rules.catalog import finding
from tiecheck.rules.shapes import class_shapes

_ORIG, _MASK = "_orig", "_mask"
_LISTED = 3


def check_pruned(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    index = ctx.checkpoint.index
    names = set(ctx.tensors) | (set(index.weight_map) if index else set())
    if config is None or not ctx.wants("TC019"):
        return
    pruned = sorted(
        n.removesuffix(_ORIG) for n in names if n.endswith(_ORIG) and n.removesuffix(_ORIG) + _MASK in names
    )
    pruned = [n for n in pruned if n not in names]
    if not pruned:
        return
    parts = {n + suffix for n in pruned for suffix in (_ORIG, _MASK)}
    known = class_shapes(config, (names - parts) | set(pruned))
    if known is None:
        return  # not this architecture's names even put back together: no claim
    listed = ", ".join(pruned[:_LISTED]) + (" ..." if len(pruned) > _LISTED else "")
    message = (
        f"{len(pruned)} parameter(s) are stored as torch.nn.utils.prune's <name>_orig and <name>_mask, not under "
        f"their own name ({listed}): {known.name} reads {pruned[0]}, finds nothing, and initialises it at random "
        "(transformers 5: each is missing, its two parts unexpected). Call prune.remove(module, name) on every "
        "pruned module before saving, or store <name>_orig * <name>_mask under <name>."
    )
    yield finding(
        "TC019",
        message + (" (A guess: the repo brings its own modeling code.)" if config.custom_code else ""),
        files=sorted({t.file for t in ctx.tensors.values() if t.name in parts}),
        tensors=pruned[:_LISTED],
        severity=Severity.WARNING if config.custom_code else None,
    )
