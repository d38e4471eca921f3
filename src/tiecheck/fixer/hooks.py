"""What a running fix reports: progress for people, and named steps for whoever embeds it.

Production code passes no hooks: :data:`NO_HOOKS` does nothing. A test injects its own
(:class:`FixHooks`) to list the steps, or to stop the process at one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tiecheck.content import ProgressSink

#: Bytes per copy/hash step.
CHUNK = 8 << 20


class FixHooks(Protocol):
    def step(self, name: str) -> None:
        """Called at each named point of a fix (a staged file, a copied chunk, a journal step...)."""
        ...


class _NoHooks:
    def step(self, name: str) -> None:
        pass


NO_HOOKS: FixHooks = _NoHooks()


@dataclass(frozen=True)
class Run:
    """How one fix runs: its hooks, its progress bar and its copy chunk size."""

    hooks: FixHooks = NO_HOOKS
    progress: ProgressSink | None = None
    chunk: int = CHUNK

    def step(self, name: str) -> None:
        self.hooks.step(name)

    def begin(self, description: str, total: int) -> None:
        if self.progress is not None:
            self.progress.begin(description, total)

    def advance(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(nbytes)

    def end(self) -> None:
        if self.progress is not None:
            self.progress.end()
