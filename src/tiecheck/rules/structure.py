"""Format and index rules (TC001-TC009): can a loader find and read every tensor?"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from tiecheck.checkpoint import Checkpoint, FileFormat
from tiecheck.findings import Finding
from tiecheck.loader import SIDE_PICKLE, SIDE_PICKLE_UNCHECKED
from tiecheck.rules.base import ScanContext, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.rules.incomplete import INCOMPLETE
from tiecheck.ties.resolve import architecture_class

#: Missing shards reported one finding each up to this many; beyond, one finding names the first ones.
MAX_MISSING_FINDINGS = 20


def check_files(ctx: ScanContext) -> Iterator[Finding]:
    for file in ctx.checkpoint.files:
        if file.problem is None or file.format is not FileFormat.SAFETENSORS or file.problem.rule in INCOMPLETE:
            continue  # an LFS pointer or a cut-off file has rules of its own (TC011, TC012)
        tensor = f", tensor {file.problem.tensor!r}" if file.problem.tensor else ""
        if file.problem.rule == "io":
            what = f"{file.name} cannot be read: {file.problem.detail}."
        else:
            what = f"{file.name} breaks the safetensors format [{file.problem.rule}{tensor}]: {file.problem.detail}."
        yield finding(
            "TC001",
            f"{what} Loaders refuse the whole file; re-export it from the source weights.",
            tensors=[file.problem.tensor] if file.problem.tensor else [],
            files=[file.name],
        )


def check_load_issues(ctx: ScanContext) -> Iterator[Finding]:
    for issue in ctx.checkpoint.issues:
        if issue.rule == "TC020" and issue.fixable is False:
            yield finding(
                "TC020",
                f"{issue.file}: {issue.detail}. Loaders ignore it; `tiecheck fix` refuses to run in this folder "
                "until it is gone: inspect it and delete it by hand.",
                files=[issue.file],
                fixable=False,
            )
        elif issue.rule == "TC020":
            yield finding(
                "TC020",
                f"{issue.file}: {issue.detail}. Loaders ignore these files; `tiecheck fix` shows and completes "
                "the interrupted fix (or removes its temp files).",
                files=[issue.file],
            )
        elif issue.rule == "TC008":
            yield finding(
                "TC008",
                f"{issue.file}: {issue.detail}. Loaders cannot map tensors to shards; regenerate the index.",
                files=[issue.file],
            )
        elif issue.rule == "TC009":
            yield finding(
                "TC009",
                f"{issue.file}: {issue.detail}. Loaders cannot build the model; ties and dtype were not checked.",
                files=[issue.file],
            )
    ckpt = ctx.checkpoint
    if ckpt.adapter_config is not None:
        yield finding(
            "TC010",
            f"A PEFT adapter ({ckpt.adapter_config}) without the base model's config.json: its tensors were checked "
            "on their own; the base model's ties, shapes and dtype were not checked.",
            files=[ckpt.adapter_config],
        )
    elif ckpt.config is None and ckpt.config_file is None and not _side_files_only(ckpt):
        yield finding(
            "TC010",
            "No config.json beside the weights: ties were guessed from tensor names and the dtype was not checked.",
        )


def _side_files_only(ckpt: Checkpoint) -> bool:
    """A folder of pickles beside no weights (``--recursive`` scans it for imports): no config is needed."""
    side = (SIDE_PICKLE, SIDE_PICKLE_UNCHECKED)
    return not ckpt.files and ckpt.index is None and all(i.rule in side for i in ckpt.issues)


def check_index(ctx: ScanContext) -> Iterator[Finding]:
    ckpt = ctx.checkpoint
    yield from _orphans(ctx)
    index = ckpt.index
    if index is None:
        return
    by_shard: dict[str, list[str]] = defaultdict(list)
    for tensor, shard in index.weight_map.items():
        by_shard[shard].append(tensor)

    missing = ckpt.missing_files
    if len(missing) > MAX_MISSING_FINDINGS:
        # One finding, not one per shard: a hostile index can name a million shards.
        shown = missing[:MAX_MISSING_FINDINGS]
        count = sum(len(by_shard[s]) for s in missing)
        yield finding(
            "TC002",
            f"{index.name} maps {count:,} tensor(s) to {len(missing):,} shards that do not exist "
            f"({', '.join(shown)} and {len(missing) - len(shown):,} more): loading fails. "
            "Restore the shards or regenerate the index.",
            tensors=sorted(n for s in shown for n in by_shard[s]),
            files=[index.name, *shown],
        )
        missing = ()
    for shard in missing:
        names = sorted(by_shard[shard])
        yield finding(
            "TC002",
            f"{index.name} maps {len(names)} tensor(s) to {shard}, which does not exist: loading fails. "
            "Restore the shard or regenerate the index.",
            tensors=names,
            files=[index.name, shard],
        )

    stored_in: dict[str, list[str]] = defaultdict(list)
    for record in ckpt.tensors:
        stored_in[record.name].append(record.file)
    for file in ckpt.files:
        if not file.readable:
            continue
        held = {t.name for t in file.tensors}
        absent = sorted(n for n in by_shard.get(file.name, ()) if n not in held)
        if absent:
            elsewhere = [f"{n} (stored in {', '.join(stored_in[n])})" for n in absent if stored_in.get(n)]
            hint = f" Found elsewhere: {'; '.join(elsewhere)}." if elsewhere else ""
            yield finding(
                "TC003",
                f"{index.name} maps {len(absent)} tensor(s) to {file.name}, which does not hold them: "
                f"loading fails with missing keys.{hint}",
                tensors=absent,
                files=[index.name, file.name],
            )
        unlisted = [t for t in file.tensors if t.name not in index.weight_map]
        if unlisted:
            yield finding(
                "TC004",
                f"{file.name} holds {len(unlisted)} tensor(s) that {index.name} does not list: loaders never read them "
                f"({human_bytes(sum(t.nbytes for t in unlisted))}). Add them to the index or drop them.",
                tensors=[t.name for t in unlisted],
                files=[file.name, index.name],
                bytes=sum(t.nbytes for t in unlisted),
            )

    if ckpt.missing_files or not all(f.readable for f in ckpt.files):
        return  # totals cannot be compared while shards are missing or unreadable
    # Tensors sharing a pickle storage are stored, and counted by savers, once.
    stored = ckpt.stored_once()
    stored_bytes = sum(t.nbytes for t in stored)
    stored_params = sum(t.numel for t in stored)
    # transformers writes total_parameters = model.num_parameters(): buffers (final_logits_bias,
    # position_ids) are stored but not counted, so only a claim above what is stored is wrong -- unless
    # the architecture has parameters save_pretrained never writes (Marian's sinusoidal positions).
    unsaved = _unsaved_parameters(ctx)
    too_many = (index.total_parameters or 0) > stored_params and not unsaved
    for key, declared, actual, wrong in (
        ("total_size", index.total_size, stored_bytes, index.total_size != stored_bytes),
        ("total_parameters", index.total_parameters, stored_params, too_many),
    ):
        if declared is not None and wrong:
            yield finding(
                "TC006",
                f"{index.name} says metadata.{key} = {declared:,} but the shards hold {actual:,}. "
                "Tools that size downloads or memory from the index get it wrong; regenerate the index.",
                files=[index.name],
                bytes=abs(declared - actual) if key == "total_size" else 0,
            )


def _unsaved_parameters(ctx: ScanContext) -> frozenset[str]:
    """Parameters the architecture's save_pretrained drops (counted in total_parameters, never stored)."""
    cls = architecture_class(ctx.checkpoint.config, set(ctx.tensors))
    return cls.dropped if cls is not None else frozenset()


def _orphans(ctx: ScanContext) -> Iterator[Finding]:
    ckpt = ctx.checkpoint
    if ckpt.shadowed_by and ckpt.orphans:
        yield finding(
            "TC007",
            f"{ckpt.shadowed_by} sits beside {', '.join(ckpt.orphans)}: transformers loads {ckpt.shadowed_by} "
            "and never opens the index or its shards. Delete whichever copy of the weights is stale.",
            files=ckpt.orphans,
        )
        return
    index_name = ckpt.index.name if ckpt.index else "the index"
    for orphan in ckpt.orphans:
        yield finding(
            "TC007",
            f"{orphan} looks like a weight shard but {index_name} does not reference it: loaders ignore it. "
            "Delete it, or add its tensors to the index if they belong to the model.",
            files=[orphan],
        )


def check_duplicate_keys(ctx: ScanContext) -> Iterator[Finding]:
    copies: dict[str, list[str]] = defaultdict(list)
    for tensor in ctx.checkpoint.tensors:
        copies[tensor.name].append(tensor.file)
    for name, files in copies.items():
        if len(files) < 2:
            continue
        read = ctx.tensors[name]
        extra = [f for f in files if f != read.file]
        extra_bytes = read.nbytes * (len(files) - 1)
        others = [t for t in ctx.checkpoint.tensors if t.name == name and t.file != read.file]
        differing = [t.file for t in others if ctx.content.differs(read, t)]
        if differing:
            # The fix drops only identical copies: which one is right is the user's call.
            yield finding(
                "TC005",
                f"{name} is stored in {len(files)} files ({', '.join(files)}); loaders read the copy in {read.file}, "
                f"and the one in {', '.join(differing)} holds other values: one of them is stale. Decide which is "
                "right and delete the other (tiecheck fix will not choose).",
                tensors=[name],
                files=files,
                bytes=extra_bytes,
                fixable=False,
            )
            continue
        yield finding(
            "TC005",
            f"{name} is stored in {len(files)} files ({', '.join(files)}); loaders read the copy in {read.file} "
            f"and the other{'s are' if len(extra) > 1 else ' is'} dead weight ({human_bytes(extra_bytes)}).",
            tensors=[name],
            files=files,
            bytes=extra_bytes,
        )
