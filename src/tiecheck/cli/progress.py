"""The progress bar of scans that read tensor data: rich, on stderr, only for a terminal."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from tiecheck.output._escape import terminal

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


class RichProgress:
    """A :class:`tiecheck.content.ProgressSink` drawing one transient bar per reading stage."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self._task: TaskID | None = None
        self._lock = threading.Lock()

    def begin(self, description: str, total: int) -> None:
        with self._lock:
            if self._task is None:
                self._progress.start()
            else:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(terminal(description), total=total)  # may name a tensor

    def advance(self, nbytes: int) -> None:
        task = self._task
        if task is not None:
            self._progress.advance(task, nbytes)

    def end(self) -> None:
        with self._lock:
            if self._task is not None:
                self._progress.remove_task(self._task)
                self._task = None
                self._progress.stop()


def progress_for(quiet: bool) -> RichProgress | None:
    """A bar unless ``--quiet`` or stderr is not a terminal (CI logs, pipes)."""
    if quiet or not sys.stderr.isatty():
        return None
    return RichProgress()
