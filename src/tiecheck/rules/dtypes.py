"""Precision rules (TC301-TC302): are the weights stored the way the config says, and what loaders load."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from tiecheck.findings import Finding
from tiecheck.formats.dtypes import DTYPES, WIDE_FLOATS
from tiecheck.rules.base import ScanContext, human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.ties.loaders import dtype_cases, outcomes, with_loaders


def check_dtypes(ctx: ScanContext) -> Iterator[Finding]:
    floats = [t for t in ctx.tensors.values() if t.is_float]
    if not floats:
        return
    bytes_by_dtype: Counter[str] = Counter()
    count_by_dtype: Counter[str] = Counter()
    for tensor in floats:
        bytes_by_dtype[tensor.dtype] += tensor.nbytes
        count_by_dtype[tensor.dtype] += 1

    config = ctx.checkpoint.config
    declared = config.dtype if config else None
    architecture = config.architectures[0] if config is not None and config.architectures else None
    # which dtype each loader loads in: the finding is about what the load costs or loses
    loaders = outcomes(dtype_cases(config is not None and config.dtype_declared is not None), architecture)
    if config is not None and declared in WIDE_FLOATS and not config.quantized:
        wide = {d: b for d, b in bytes_by_dtype.items() if d in WIDE_FLOATS}
        dominant = max(wide, key=lambda d: wide[d]) if wide else None
        if dominant is not None and dominant != declared:
            stored = wide[dominant]
            as_declared = stored * DTYPES[declared].bits // DTYPES[dominant].bits
            share = stored / sum(bytes_by_dtype.values())
            if as_declared < stored:
                cost = (
                    f"{human_bytes(stored)} where {human_bytes(as_declared)} would do: downloads, disk and "
                    f"load memory are {stored / as_declared:.0f}x larger than needed"
                )
            else:
                cost = f"loaders upcast them to {config.dtype_declared}, so the declared precision was never there"
            names = sorted(t.name for t in floats if t.dtype == dominant)
            yield finding(
                "TC301",
                with_loaders(
                    f"config.json declares {config.dtype_declared} but {share:.0%} of the floating weights are stored "
                    f"as {dominant} ({cost}). Convert the weights to {config.dtype_declared}, or correct the config's "
                    "dtype.",
                    loaders,
                    compare=False,
                ),
                tensors=names,
                files=sorted({t.file for t in floats if t.dtype == dominant}),
                bytes=abs(stored - as_declared),
            )
    if len(count_by_dtype) > 1:
        parts = ", ".join(f"{count_by_dtype[d]} {d} ({human_bytes(bytes_by_dtype[d])})" for d in sorted(count_by_dtype))
        minority = min(bytes_by_dtype, key=lambda d: bytes_by_dtype[d])
        yield finding(
            "TC302",
            with_loaders(
                f"floating tensors are stored in {len(count_by_dtype)} dtypes: {parts}. Often intended (quantisation "
                "scales, float32 norms); otherwise a sign of a partial conversion.",
                loaders,
                compare=False,
            ),
            tensors=sorted(t.name for t in floats if t.dtype == minority),
        )
