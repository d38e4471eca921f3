"""Findings about a pair whose bytes were not read (``--content none``): what is known, and no more.

A tied pair stored twice is still worth saying (the head sits beside the embedding with its dtype and
shape); whether the two are copies (TC101) or differ (TC102) is left open, so the finding never claims
either, is a warning at most, is not marked fixable, and says how to find out.
"""

from __future__ import annotations

from tiecheck.checkpoint import TensorRecord
from tiecheck.findings import Finding, Severity
from tiecheck.rules.base import human_bytes
from tiecheck.rules.catalog import finding
from tiecheck.ties.resolve import ResolvedTie

NOT_COMPARED = "bytes not compared (--content none)"


def tied_pair_not_compared(tie: ResolvedTie, kept: TensorRecord, restored: TensorRecord, why: str) -> Finding:
    """TC101 for ``restored`` stored beside ``kept`` although ``why`` (the tie), its bytes unread."""
    forced = tie.forced  # both loaders read it right either way (see TC101)
    return finding(
        "TC101",
        f"{restored.name} is stored although {why}, with the dtype and shape of {kept.name}; {NOT_COMPARED}. "
        f"If the two are identical, that is {human_bytes(restored.nbytes)} of redundant weights that loaders "
        f"restore from {kept.name}; if they differ, transformers < 5 and >= 5 read the model differently (TC102). "
        "`--content sample` or `--content full` tells which.",
        tensors=[restored.name, kept.name],
        files=[restored.file, kept.file],
        severity=Severity.INFO if forced else Severity.WARNING,
        fixable=False,
    )
