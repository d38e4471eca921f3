"""A ``transformers.Trainer`` callback that scans every checkpoint the trainer saves.

    from tiecheck.integrations.transformers import TiecheckCallback

    trainer = Trainer(..., callbacks=[TiecheckCallback(fail_on="error")])
    trainer.train()
    trainer.save_model("out")
    trainer.callback_handler.callbacks[-1].check("out")  # or keep a reference to the callback

Findings go to the ``tiecheck`` logger. With ``fail_on`` set, a checkpoint with a finding of that
severity or worse stops the run with :class:`CheckpointRejected` (the checkpoint stays on disk for a look).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tiecheck.errors import CheckpointRejected
from tiecheck.findings import Severity
from tiecheck.scan import Report, scan

logger = logging.getLogger("tiecheck")

#: The folder name transformers gives each checkpoint (``transformers.trainer_utils.PREFIX_CHECKPOINT_DIR``).
_CHECKPOINT_PREFIX = "checkpoint"


class TiecheckCallback(TrainerCallback):
    """Scan each saved checkpoint; log its findings; optionally fail the run.

    ``fail_on``: ``"error"``, ``"warning"``, ``"info"`` or None (log only). ``deep``: read every tensor
    (NaN/Inf checks) instead of only what the tie and duplicate questions need.
    """

    def __init__(self, fail_on: str | None = "error", *, deep: bool = False) -> None:
        self.fail_on = Severity.parse(fail_on) if fail_on else None
        self.deep = deep
        self.reports: list[Report] = []
        """Every report so far, in order."""

    def check(self, path: str | Path) -> Report:
        """Scan one saved folder (a checkpoint, or the output of ``trainer.save_model``), log, and maybe raise."""
        report = scan(path, deep=self.deep)
        self.reports.append(report)
        for f in report.findings:
            level = {Severity.ERROR: logging.ERROR, Severity.WARNING: logging.WARNING}.get(f.severity, logging.INFO)
            logger.log(level, "%s: %s %s %s", report.target, f.code, f.severity.label, f.message)
        if not report.findings:
            logger.info("%s: no problems found", report.target)
        if self.fail_on is not None and report.failed(self.fail_on):
            raise CheckpointRejected(report, self.fail_on)
        return report

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not getattr(state, "is_world_process_zero", True):
            return  # one process checks what the main process wrote
        folder = Path(args.output_dir) / f"{_CHECKPOINT_PREFIX}-{state.global_step}"
        if folder.is_dir():
            self.check(folder)
