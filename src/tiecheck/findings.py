"""Findings: what a scan reports, each tied to a rule of the catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    """How bad a finding is; ordered, so ``severity >= Severity.WARNING`` reads as it should."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


@dataclass(frozen=True)
class Finding:
    """One problem found: a stable rule code, a message naming the tensors and files, and what is at stake."""

    code: str
    name: str
    severity: Severity
    message: str
    tensors: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    bytes: int = 0
    """Bytes at stake: what a fix saves, or what is wrong."""
    fixable: bool = False
