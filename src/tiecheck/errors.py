"""Exceptions that stop tiecheck from running, as opposed to findings about a checkpoint."""

from __future__ import annotations


class TiecheckError(Exception):
    """tiecheck cannot do what was asked (no such path, not a checkpoint...): exit code 2."""


class FormatError(ValueError):
    """A file breaks its format; ``rule`` names the broken rule and ``tensor`` the tensor, when there is one."""

    def __init__(self, rule: str, detail: str, tensor: str | None = None) -> None:
        self.rule = rule
        self.detail = detail
        self.tensor = tensor
        where = f" (tensor {tensor!r})" if tensor is not None else ""
        super().__init__(f"{rule}: {detail}{where}")
