"""What every check receives, and how checks are collected."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tiecheck.checkpoint import Checkpoint, FileFormat, TensorRecord
from tiecheck.content import ContentReader
from tiecheck.findings import Finding
from tiecheck.ties.resolve import ResolvedTie


@dataclass(frozen=True)
class ScanContext:
    checkpoint: Checkpoint
    tensors: dict[str, TensorRecord]
    """Name to the copy a loader reads."""
    ties: tuple[ResolvedTie, ...]
    content: ContentReader
    deep: bool = False
    """Read every tensor once (hashes, NaN/Inf); otherwise content rules read only what they need."""
    rules: frozenset[str] | None = None
    """The rule codes that will be reported (None: all). Checks whose every rule is off need not read."""

    def wants(self, *codes: str) -> bool:
        return self.rules is None or any(code in self.rules for code in codes)

    def listed(self, name: str) -> bool:
        """Stored, or at least listed by the index (in a shard that is missing or unreadable)."""
        index = self.checkpoint.index
        return name in self.tensors or (index is not None and name in index.weight_map)


Check = Callable[[ScanContext], Iterable[Finding]]


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def fix_command(ctx: ScanContext, flag: str, *files: str) -> str:
    """The ``tiecheck fix`` command that repairs a finding in ``files``: a pickle is only rewritten by
    converting it, which the user asks for with ``--to-safetensors``."""
    pickle = any((f := ctx.checkpoint.file(name)) is not None and f.format is FileFormat.PICKLE for name in files)
    return f"`tiecheck fix {flag}{' --to-safetensors' if pickle else ''}`"
