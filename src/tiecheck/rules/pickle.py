"""Pickle rules (TC201, TC401-TC403): what a ``pytorch_model*.bin`` checkpoint means for its users."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from tiecheck.checkpoint import FileFormat, TensorRecord, WeightFile, view_reach
from tiecheck.findings import Finding, Severity
from tiecheck.loader import LFS_POINTER, SIDE_PICKLE_UNCHECKED
from tiecheck.rules.base import ScanContext, human_bytes
from tiecheck.rules.catalog import finding


def check_pickle(ctx: ScanContext) -> Iterator[Finding]:
    pickles = [f for f in ctx.checkpoint.files if f.format is FileFormat.PICKLE]
    if not pickles:
        return
    from tiecheck.formats.torch_pickle import UNSAFE  # the pickle reader is imported only where pickles are

    for file in pickles:
        problem = file.problem
        if problem is None:
            yield from _shared_storages(ctx, file)
        elif problem.rule == LFS_POINTER:
            continue  # TC011 names it
        elif problem.rule == UNSAFE:
            yield finding(
                "TC401",
                f"{file.name}: {problem.detail}. Do not load it outside a sandbox; tiecheck read no further. "
                "A checkpoint of weights only needs none of these imports.",
                files=[file.name],
            )
        else:
            where = f", tensor {problem.tensor!r}" if problem.tensor else ""
            yield finding(
                "TC403",
                f"{file.name} cannot be read as a PyTorch checkpoint{where}: {problem.detail}.",
                tensors=[problem.tensor] if problem.tensor else [],
                files=[file.name],
            )
    if pickles and len(pickles) == len(ctx.checkpoint.files):
        total = sum(f.size for f in pickles)
        readable = all(f.readable for f in pickles)
        expanded = [t for f in pickles for t in f.tensors if too_expanded(t)]
        how = (
            "Conversion to safetensors needs every file readable and safe first."
            if not readable
            else f"`tiecheck fix --to-safetensors` would write {expanded[0].name!r}, an expanded view, out in full "
            f"({human_bytes(expanded[0].nbytes)}), and refuses: save it with .contiguous() first if it is meant "
            "to be that large."
            if expanded
            else "`tiecheck fix --to-safetensors` converts them, without unpickling."
        )
        yield finding(
            "TC402",
            f"The weights are only available as pickle ({len(pickles)} file(s), {human_bytes(total)}): loading them "
            f"needs torch, and torch.load without weights_only=True runs whatever the pickle says. {how}",
            files=[f.name for f in pickles],
            fixable=readable and not expanded,
        )


#: An expanded view (stride 0: ``torch.zeros(1).expand(n)``) up to this size is converted in full, a
#: mask or position buffer; beyond it, safetensors (which stores no strides) would hold more than the
#: pickle did, without bound.
MAX_EXPANDED_BYTES = 1 << 20


def too_expanded(t: TensorRecord) -> bool:
    """Whether ``t`` is a view whose elements certainly overlap in their storage (fewer storage elements
    within reach than it has) and which would take more than :data:`MAX_EXPANDED_BYTES` written out."""
    if t.stride is None or t.nbytes <= MAX_EXPANDED_BYTES:
        return False
    return view_reach(t.shape, t.stride) < t.numel


def check_side_pickles(ctx: ScanContext) -> Iterator[Finding]:
    """Pickle-format files beside the weights (another format's copy, Trainer files): read for imports only."""
    for issue in ctx.checkpoint.issues:
        if issue.rule == "TC401":
            yield finding(
                "TC401",
                f"{issue.file}: {issue.detail}. The loader does not read it as weights, but anyone who loads it "
                "(torch.load, a Trainer resuming) runs that code: delete it or keep it out of the upload.",
                files=[issue.file],
            )
        elif issue.rule == SIDE_PICKLE_UNCHECKED:
            yield finding(
                "TC403",
                f"{issue.file}: its imports could not all be checked ({issue.detail}). The loader does not read it "
                "as weights, but anyone who loads it runs whatever lies past that point: treat it as unsafe, or "
                "delete it or keep it out of the upload.",
                files=[issue.file],
                severity=Severity.WARNING,
            )


def _shared_storages(ctx: ScanContext, file: WeightFile) -> Iterator[Finding]:
    groups: dict[str, list[TensorRecord]] = defaultdict(list)
    for tensor in file.tensors:
        if tensor.storage is not None:
            groups[tensor.storage].append(tensor)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        names = [t.name for t in members]
        first = members[0]
        identical = all(t.aliases(first) for t in members[1:])
        extra = sum(t.nbytes for t in members[1:])
        how = "are one tensor stored once" if identical else "are views of one storage (different offsets or shapes)"
        yield finding(
            "TC201",
            f"{_join(names)} share storage {key} in {file.name}: they {how}. safetensors cannot store shared "
            f"tensors, so a conversion {_conversion(ctx, names, identical, extra)}.",
            tensors=names,
            files=[file.name],
            bytes=extra,
        )


def _conversion(ctx: ScanContext, names: list[str], identical: bool, extra: int) -> str:
    if identical:
        for tie in ctx.ties:
            if tie.tied and tie.group.kept in names and set(names) <= set(tie.members):
                dropped = [n for n in names if n != tie.group.kept]
                return (
                    f"keeps {tie.group.kept} and drops {_join(dropped)}, which the loader restores from the tie "
                    f"({tie.basis})"
                )
        return (
            f"must keep one name and drop the others (the loader must tie them back), or store copies "
            f"(+{human_bytes(extra)})"
        )
    return f"must store each view as its own copy (+{human_bytes(extra)})"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
