"""Content rules (TC202-TC205): what the stored values say, read as little as the question allows.

TC202 (duplicates), TC203 (constant tensors) and TC205 (a file ending in zeros) run on every scan through
the staged engine of :mod:`tiecheck.content`; TC204 (NaN/Inf) needs every byte and runs only with ``--deep``.
"""

from __future__ import annotations

import re
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator

from tiecheck._bytes import element_width
from tiecheck.checkpoint import FileFormat, TensorRecord
from tiecheck.content import ContentAnalysis, TensorContent
from tiecheck.findings import Finding, Severity
from tiecheck.rules.base import ScanContext, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.rules.quantization import BOOKKEEPING
from tiecheck.ties.known import general, knowledge
from tiecheck.ties.resolve import architecture_class

MAX_LISTED = 6
_LAYER = re.compile(r"^(?P<prefix>(?:[^.]+\.)*?)(?P<index>\d+)\.(?P<suffix>.+)$")
"""The first numeric path component is the layer index: ``model.layers.12.mlp.up_proj.weight``."""


def _analysis(ctx: ScanContext) -> ContentAnalysis:
    return ctx.content.analyse(ctx.tensors.values(), deep=ctx.deep)


def check_content(ctx: ScanContext) -> Iterator[Finding]:
    if not ctx.deep and not ctx.wants("TC202", "TC203", "TC205"):
        return  # `--ignore TC202,TC203,TC205`: a headers-only scan samples no tensor
    analysis = _analysis(ctx)
    yield from _duplicates(ctx, analysis)
    tails = list(_zero_tails(ctx, analysis))
    yield from _constants(ctx, analysis, named={name for tail in tails for name in tail.tensors})
    yield from tails
    if analysis.deep:
        yield from _nonfinite(analysis, ctx.tensors.values())


# --- TC202 -----------------------------------------------------------------------------------------


def _covered_by_ties(ctx: ScanContext, group: tuple[TensorRecord, ...]) -> tuple[TensorRecord, ...]:
    """Keep one member of each declared tie in the group: the tie rules (TC101/TC104) report the others."""
    names = {t.name for t in group}
    covered: set[str] = set()
    for tie in ctx.ties:
        present = [n for n in tie.members if n in names]
        covered.update(present[1:])
    return tuple(t for t in group if t.name not in covered)


def _buffers(ctx: ScanContext) -> frozenset[str]:
    """Persisted buffers and never-trained parameters (layer indices as ``*``) of the checkpoint's architecture,
    from the generated data: they repeat by construction (sinusoidal tables of encoder and decoder)."""
    config = ctx.checkpoint.config
    if config is None:
        return frozenset()
    found: set[str] = set()
    cls = architecture_class(config, set(ctx.tensors))
    classes = [cls] if cls is not None else []
    if config.model_type:
        classes.extend(knowledge().by_model_type(config.model_type))
    for known in classes:
        found |= known.buffers | known.frozen
    return frozenset(found)


def _same_parameter(group: tuple[TensorRecord, ...]) -> bool:
    """One parameter of several layers (``layers.*.mixer.A_log``): a deterministic initialisation."""
    return len({general(t.name) for t in group}) == 1 and len({t.name for t in group}) > 1


def _layer(name: str) -> tuple[str, int, str] | None:
    m = _LAYER.match(name)
    return (m["prefix"], int(m["index"]), m["suffix"]) if m else None


def _duplicates(ctx: ScanContext, analysis: ContentAnalysis) -> Iterator[Finding]:
    groups = []
    buffers = _buffers(ctx)
    for group in analysis.groups:
        content = analysis.content(group[0])
        if content is not None and content.constant is not None:
            continue  # trivial duplicates (all-ones norms, all-zero biases): TC203 groups them
        kept = _covered_by_ties(ctx, group)
        # buffers (relative_position_index, causal masks), frozen tables and quantisers' codebooks and
        # shapes repeat by construction
        kept = tuple(t for t in kept if general(t.name) not in buffers and not BOOKKEEPING.search(t.name))
        if len(kept) > 1:
            groups.append(kept)
    explained, repeats = _layer_repeats(ctx, groups)
    for (prefix, dst, src), redundant in repeats:
        names = [t.name for t in redundant]
        yield finding(
            "TC202",
            f"{_span(dst)} repeat{'s' if len(dst) == 1 else ''} {_span(src)} of {prefix}* byte for byte "
            f"({len(names)} tensors, {human_bytes(sum(t.nbytes for t in redundant))}). A passthrough merge "
            "(frankenmerge) does this on purpose; otherwise a saver or merge wrote the same layer twice.",
            tensors=names,
            files=sorted({t.file for t in redundant}),
            bytes=sum(t.nbytes for t in redundant),
        )
    remaining = [r for g in groups if len(r := tuple(t for t in g if t.name not in explained)) > 1]
    fresh = [g for g in remaining if _same_parameter(g)]
    ones = _initial_norms(ctx, analysis)
    if remaining and (fresh or len(ones) >= 2):
        # a freshly initialised model: deterministic initialisations repeat (within and across layers)
        yield _untrained(fresh, [g for g in remaining if not _same_parameter(g)], ones)
        return
    adapter = ctx.checkpoint.adapter_config
    for rest in remaining:
        extra = sum(t.nbytes for t in rest[1:])
        listed = ", ".join(t.name for t in rest[:MAX_LISTED]) + (" ..." if len(rest) > MAX_LISTED else "")
        found = f"{len(rest)} tensors are byte-identical ({rest[0].dtype}{list(rest[0].shape)}, " + (
            f"{human_bytes(rest[0].nbytes)} each): {listed}."
        )
        if adapter is not None:
            # The ties are the base model's, declared in a config that is not here: PEFT saves every module of
            # modules_to_save on its own (ensure_weight_tying=True too), so a tied embedding and head come twice.
            message = (
                f"{found} In a PEFT adapter ({adapter}) PEFT saves each module of modules_to_save on its own, "
                "also an embedding and a head the base model ties; whether loaders tie them again is the base "
                f"model's config's (and LoraConfig's ensure_weight_tying) to say. {human_bytes(extra)} stored twice."
            )
            severity: Severity | None = Severity.INFO
        else:
            message = (
                f"{found} No tie declares them; a loader keeps {len(rest)} separate copies ({human_bytes(extra)} "
                "redundant). Usually a saver that wrote one tensor under several names, or a merge that copied weights."
            )
            severity = None  # the rule's
        yield finding(
            "TC202",
            message,
            tensors=[t.name for t in rest],
            files=sorted({t.file for t in rest}),
            bytes=extra,
            severity=severity,
        )


_ONE = (b"\x00\x00\x80\x3f", b"\x80\x3f", b"\x00\x3c")
"""1.0 in F32, BF16 and F16."""


def _initial_norms(ctx: ScanContext, analysis: ContentAnalysis) -> list[TensorRecord]:
    """Vectors whose every element is 1.0: norm weights as initialised, a sign of an untrained model."""
    result = []
    for tensor in ctx.tensors.values():
        content = analysis.content(tensor) if len(tensor.shape) == 1 else None
        if content is not None and content.constant in _ONE:
            result.append(tensor)
    return result


def _untrained(
    fresh: list[tuple[TensorRecord, ...]], others: list[tuple[TensorRecord, ...]], ones: list[TensorRecord]
) -> Finding:
    """One info finding for a freshly initialised checkpoint, with its evidence."""
    evidence = []
    if fresh:
        examples = "; ".join(f"{general(g[0].name)} in {len(g)} layers" for g in fresh[:MAX_LISTED])
        more = f" and {len(fresh) - MAX_LISTED} more" if len(fresh) > MAX_LISTED else ""
        evidence.append(
            f"parameters are byte-identical across layers, as a deterministic initialisation leaves them "
            f"({examples}{more})"
        )
    if ones:
        evidence.append(f"{len(ones)} norm weight vectors are all ones, their initial value")
    other = ""
    if others:
        listed = "; ".join(" = ".join(t.name for t in g[:3]) for g in others[:3])
        other = f" {len(others)} byte-identical group(s) read as part of the same initialisation: {listed}."
    groups = (*fresh, *others)
    return finding(
        "TC202",
        f"This checkpoint looks freshly initialised (untrained): {'; '.join(evidence)}.{other} That is normal "
        "for tiny random test models; training would have moved these tensors apart.",
        tensors=[t.name for g in groups for t in g],
        files=sorted({t.file for g in groups for t in g}),
        severity=Severity.INFO,
    )


def _layer_repeats(
    ctx: ScanContext, groups: list[tuple[TensorRecord, ...]]
) -> tuple[set[str], list[tuple[tuple[str, list[int], list[int]], list[TensorRecord]]]]:
    """Whole layers that repeat earlier layers, as runs: ("model.layers.", [12..15], [8..11]) -> copies."""
    layers: dict[tuple[str, int], set[str]] = defaultdict(set)
    for name in ctx.tensors:
        where = _layer(name)
        if where:
            layers[(where[0], where[1])].add(where[2])
    # (prefix, dst, src) -> suffixes of dst that equal the same suffix of src
    pairs: dict[tuple[str, int, int], dict[str, TensorRecord]] = defaultdict(dict)
    for group in groups:
        parsed = [(t, _layer(t.name)) for t in group]
        for t, p in parsed:
            if p is None:
                continue
            sources = [q[1] for _, q in parsed if q and q[0] == p[0] and q[2] == p[2] and q[1] < p[1]]
            if sources:
                pairs[(p[0], p[1], min(sources))][p[2]] = t
    # Constant members (all-ones norms of a fresh model) are identical across every layer: they complete a
    # repeat that the non-constant tensors establish, but never establish one on their own.
    analysis = ctx.content.analyse(ctx.tensors.values(), deep=ctx.deep)
    full: dict[tuple[str, int], int] = {}
    copies: dict[tuple[str, int], list[TensorRecord]] = {}
    for (prefix, dst, src), matched in sorted(pairs.items()):
        if (prefix, dst) in full:
            continue
        missing = layers[(prefix, dst)] - set(matched)
        extra: list[TensorRecord] = []
        for suffix in sorted(missing):
            a = ctx.tensors.get(f"{prefix}{dst}.{suffix}")
            b = ctx.tensors.get(f"{prefix}{src}.{suffix}")
            ca = analysis.content(a) if a else None
            cb = analysis.content(b) if b else None
            if a is None or b is None or not _same_constant(a, b, ca, cb):
                break
            extra.append(a)
        else:
            full[(prefix, dst)] = src
            copies[(prefix, dst)] = sorted([*matched.values(), *extra], key=lambda t: t.name)
    runs: list[tuple[tuple[str, list[int], list[int]], list[TensorRecord]]] = []
    for prefix, dst in sorted(full):
        src = full[(prefix, dst)]
        if runs and runs[-1][0][0] == prefix and runs[-1][0][1][-1] == dst - 1 and runs[-1][0][2][-1] == src - 1:
            runs[-1][0][1].append(dst)
            runs[-1][0][2].append(src)
            runs[-1][1].extend(copies[(prefix, dst)])
        else:
            runs.append(((prefix, [dst], [src]), list(copies[(prefix, dst)])))
    explained = {t.name for _, ts in runs for t in ts}
    return explained, runs


def _same_constant(a: TensorRecord, b: TensorRecord, ca: TensorContent | None, cb: TensorContent | None) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and ca is not None
        and cb is not None
        and ca.constant is not None
        and ca.hash == cb.hash
    )


def _span(indices: list[int]) -> str:
    if len(indices) == 1:
        return f"layer {indices[0]}"
    return f"layers {indices[0]}\u2013{indices[-1]}"


# --- TC203 -----------------------------------------------------------------------------------------


def element_value(dtype: str, pattern: bytes) -> str:
    """A constant element, readable: ``0.0``, ``1.0``, ``nan``, ``7``; hex for dtypes not decoded here."""
    if dtype == "BF16":
        (value,) = struct.unpack("<f", b"\x00\x00" + pattern)
    elif dtype in ("F16", "F32", "F64"):
        (value,) = struct.unpack({"F16": "<e", "F32": "<f", "F64": "<d"}[dtype], pattern)
    elif dtype == "BOOL":
        return str(pattern != b"\x00")
    elif dtype[0] in "IU":
        return str(int.from_bytes(pattern, "little", signed=dtype[0] == "I"))
    else:
        return "0x" + pattern[::-1].hex()
    return repr(value)


#: PEFT's LoRA up-projection (``...q_proj.lora_B.weight``, ``lora_B.default.weight``), initialised to zero.
_LORA_B = re.compile(r"(^|\.)lora_B(\.|$)")


def _constants(ctx: ScanContext, analysis: ContentAnalysis, named: set[str]) -> Iterator[Finding]:
    """Constant tensors grouped by value; those a zero-filled tail (TC205) already names are left to it."""
    by_value: dict[tuple[str, bytes], list[TensorRecord]] = defaultdict(list)
    for tensor in ctx.tensors.values():
        if tensor.name in named or BOOKKEEPING.search(tensor.name):
            continue  # named by TC205, or a quantiser's zero points and shapes (constant by construction)
        content = analysis.content(tensor)
        if content is not None and content.constant is not None:
            by_value[(tensor.dtype, content.constant)].append(tensor)
    for (dtype, pattern), tensors in sorted(by_value.items()):
        tensors.sort(key=lambda t: t.name)
        value = element_value(dtype, pattern)
        matrices = sum(1 for t in tensors if len(t.shape) >= 2)
        if value in ("0.0", "-0.0", "0") and matrices and all(_LORA_B.search(t.name) for t in tensors):
            why = (
                "LoRA B matrices start at zero and training moves them: all zero, the adapter changes nothing "
                "(saved before training, or its updates were lost)."
            )
        elif value in ("0.0", "-0.0", "0") and matrices:
            why = "All-zero weight matrices are a common sign of a broken save or merge."
        elif value == "1.0" and not matrices:
            why = "All-ones norm weights are the initial values: an untrained (freshly initialised) model?"
        else:
            why = "Check that this is intended."
        listed = ", ".join(t.name for t in tensors[:MAX_LISTED]) + (" ..." if len(tensors) > MAX_LISTED else "")
        same_shape = len(tensors) > 1 and len({t.shape for t in tensors}) == 1
        identical = " (byte-identical to each other)" if same_shape else ""
        yield finding(
            "TC203",
            f"{len(tensors)} {dtype} tensor{'s are' if len(tensors) > 1 else ' is'} constant: every element is "
            f"{value}{identical}: {listed}. {why}",
            tensors=[t.name for t in tensors],
            files=sorted({t.file for t in tensors}),
            bytes=sum(t.nbytes for t in tensors),
        )


# --- TC205 -----------------------------------------------------------------------------------------

ZERO_TAIL_MIN_RUN = 4096
"""Zeros inside the tensor the data stops in: at least this many bytes (and a full row) to count as a cut."""


def _is_zero(content: TensorContent | None) -> bool:
    return content is not None and content.constant is not None and not any(content.constant)


def _looks_like_data(block: bytes) -> bool:
    """Weights, not a mostly-zero tensor: most bytes of the block before the zeros are not zero."""
    return len(block) > 0 and block.count(0) <= len(block) // 2


def _zero_tails(ctx: ScanContext, analysis: ContentAnalysis) -> Iterator[Finding]:
    """A safetensors file whose data stops part-way through a tensor: zeros from there to the end.

    That is what a download or copy leaves when it stopped after allocating the file at its full size
    (parallel downloaders pre-allocate; a full disk or a killed save leaves the rest unwritten or sparse).
    What tells a cut from zeros a model holds on purpose is where the zeros start: a transfer stops at
    an arbitrary byte, so the tensor it stops in has data first and then zeros, from a point that is
    not a row boundary, for at least a row, after bytes that look like data (mostly non-zero, as
    weights are; a nearly all-zero tensor with one value in it is not a cut). Zero-initialised
    parameters (an untrained model's position embeddings) start at their tensor's first byte, and
    zeroed padding rows at a row boundary: neither is reported here (TC203 lists constant tensors).
    A file whose last non-zero tensor does not end in a zero byte costs no read beyond the samples.
    """
    for file in ctx.checkpoint.files:
        if file.format is not FileFormat.SAFETENSORS or not file.readable or not file.tensors:
            continue
        ordered = sorted((t for t in file.tensors if t.nbytes), key=lambda t: t.start)
        tail: list[TensorRecord] = []
        for tensor in reversed(ordered):
            if not _is_zero(analysis.content(tensor)):
                break
            tail.append(tensor)
        tail.reverse()
        if len(tail) == len(ordered):
            continue  # zeros from the first tensor on: no sign of where a transfer stopped
        cut = ordered[len(ordered) - len(tail) - 1]
        if len(cut.shape) < 2 or not cut.contiguous or cut.shape[0] == 0:
            continue
        row = cut.nbytes // cut.shape[0]
        width = element_width(cut.dtype) or 1
        partial, before = ctx.content.trailing_zeros(cut)
        partial -= partial % width  # the zeros start at an element boundary
        if partial < max(row, ZERO_TAIL_MIN_RUN) or partial % row == 0 or not _looks_like_data(before):
            continue
        zero = partial + sum(t.nbytes for t in tail)
        data = sum(t.nbytes for t in ordered)
        yield finding(
            "TC205",
            f"{file.name} stops part-way through {cut.name}: every byte from offset {cut.end - partial} to the "
            f"end of the file is zero, {human_bytes(zero)} ({100 * zero / data:.0f}% of its tensor data, "
            f"{len(tail) + 1} tensor(s)). That is what an interrupted download or copy leaves when the file was "
            "allocated at full size first: download this file again (`hf download ... --force-download`) and "
            "check its sha256 against the source's.",
            tensors=[cut.name, *(t.name for t in tail)],
            files=[file.name],
            bytes=zero,
        )


# --- TC204 -----------------------------------------------------------------------------------------


def _nonfinite(analysis: ContentAnalysis, tensors: Iterable[TensorRecord]) -> Iterator[Finding]:
    """One finding for every tensor holding NaN/Inf (like TC203): a broken merge must not flood the report."""
    bad = [
        (t, c)
        for t in sorted(tensors, key=lambda t: t.name)
        if (c := analysis.content(t)) is not None and (c.nan or c.inf)
    ]
    if not bad:
        return
    listed = ", ".join(
        f"{t.name} ({t.dtype}{list(t.shape)}: {_nonfinite_counts(c)} of {t.numel:,} elements)"
        for t, c in bad[:MAX_LISTED]
    ) + (f" and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else "")
    many = len(bad) > 1
    yield finding(
        "TC204",
        f"{len(bad)} floating tensor{'s hold' if many else ' holds'} NaN or Inf: {listed}. Any forward pass "
        f"through {'them' if many else 'it'} yields NaN. Re-export the weights from a healthy source.",
        tensors=[t.name for t, _ in bad],
        files=sorted({t.file for t, _ in bad}),
        bytes=sum(t.nbytes for t, _ in bad),
    )


def _nonfinite_counts(content: TensorContent) -> str:
    return " and ".join(f"{n:,} {kind}" for n, kind in ((content.nan, "NaN"), (content.inf, "Inf")) if n)
