"""Rules for weights that never fully arrived (TC011-TC013): LFS pointers, cut-off files, empty tensors.

These are the breakages users meet most after a clone, a download or a distributed save, and the ones a
format error sends the wrong way ("re-export the model") when the bytes were simply never fetched or
never gathered.
"""

from __future__ import annotations

from collections.abc import Iterator

from tiecheck.findings import Finding, Severity
from tiecheck.formats.safetensors import TRUNCATED
from tiecheck.loader import LFS_POINTER
from tiecheck.rules.base import ScanContext, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.ties.loaders import dtype_cases, outcomes, with_loaders

#: Problems these rules report; the format rules (TC001, TC403) leave them alone.
INCOMPLETE = frozenset({LFS_POINTER, TRUNCATED})

#: Empty tensors named at most this many times in a message.
_LISTED = 5


def check_incomplete_files(ctx: ScanContext) -> Iterator[Finding]:
    pointers = [f for f in ctx.checkpoint.files if f.problem is not None and f.problem.rule == LFS_POINTER]
    if pointers:
        listed = "; ".join(f"{f.name}: {f.problem.detail}" for f in pointers if f.problem is not None)
        yield finding(
            "TC011",
            f"{len(pointers)} weight file(s) are Git LFS pointers, not weights ({listed}). The repo was cloned "
            "without Git LFS: run `git lfs install && git lfs pull` in the clone, or download the files again "
            "(`hf download`).",
            files=[f.name for f in pointers],
        )
    for file in ctx.checkpoint.files:
        if file.problem is not None and file.problem.rule == TRUNCATED:
            yield finding(
                "TC012",
                f"{file.name} is cut short: {file.problem.detail}. An interrupted download or upload; its header "
                "is intact, so download (or upload) this file again rather than re-exporting the model.",
                files=[file.name],
            )


def check_empty_tensors(ctx: ScanContext) -> Iterator[Finding]:
    empty = sorted(t.name for t in ctx.tensors.values() if t.numel == 0 and t.shape)
    if not empty:
        return
    share = len(empty) / len(ctx.tensors)
    names = ", ".join(empty[:_LISTED]) + (f" and {len(empty) - _LISTED} more" if len(empty) > _LISTED else "")
    if share >= 0.5:
        yield finding(
            "TC013",
            f"{len(empty)} of {len(ctx.tensors)} tensors hold no elements ({names}): the signature of a DeepSpeed "
            "ZeRO-3 save whose parameters were not gathered first. Loaders fail on the shape mismatch or "
            "initialise them at random. Save again with the weights gathered: `zero_to_fp32.py` on the checkpoint, "
            "or `stage3_gather_16bit_weights_on_model_save: true` (Trainer/accelerate do this on `save_model`).",
            tensors=empty,
            files=sorted({ctx.tensors[n].file for n in empty}),
        )
    else:  # a config can ask for a zero size (no register tokens, a tiny test config): information only
        yield finding(
            "TC013",
            f"{len(empty)} of {len(ctx.tensors)} tensors hold no elements ({names}). Normal when the config sets "
            "that size to 0 (no register tokens, a tiny test model); if not, the save lost them.",
            tensors=empty,
            files=sorted({ctx.tensors[n].file for n in empty}),
            severity=Severity.INFO,
        )


def check_missing_dtype(ctx: ScanContext) -> Iterator[Finding]:
    config = ctx.checkpoint.config
    if config is None or config.dtype_declared is not None:
        return
    floats = [t for t in ctx.checkpoint.tensors if t.is_float]
    if not floats:
        return
    first = min(floats, key=lambda t: (t.file, t.start)).dtype
    stored = sum(t.nbytes for t in floats)
    as_f32 = sum(t.numel * 4 for t in floats)
    cost = f" ({human_bytes(as_f32)} instead of {human_bytes(stored)})" if as_f32 > stored else ""
    architecture = config.architectures[0] if config.architectures else None
    yield finding(
        "TC303",
        with_loaders(
            f"config.json declares no dtype, so loaders guess: transformers 5 loads the weights as stored ({first}, "
            f"from the first floating tensor); transformers 4 loads float32 unless given dtype='auto'{cost}. Add "
            f'"dtype": "{_torch_name(first)}" to config.json.',
            outcomes(dtype_cases(declared=False), architecture),
            compare=False,
        ),
        files=[ctx.checkpoint.config_file] if ctx.checkpoint.config_file else [],
    )


def _torch_name(dtype: str) -> str:
    from tiecheck.formats.dtypes import DTYPES

    return DTYPES[dtype].torch_name or dtype
