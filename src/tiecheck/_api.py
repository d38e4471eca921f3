"""The public ``fix()``: plan, dry run or apply, as data; no printing, no prompting.

Consent is a callback, not a second call. A plan describes the folder as one scan saw it; applying it
later, from another call, would apply it to a folder that may have changed in between (another fix,
a sync, a user) and would scan everything twice. ``fix(..., confirm=...)`` shows the caller the plan
it is about to apply while the folder is locked against other fixes, and applies exactly that plan
when the callback says yes. ``dry_run=True`` returns the plan and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tiecheck.errors import FixRefused

if TYPE_CHECKING:
    from tiecheck.content import ProgressSink
    from tiecheck.findings import Finding
    from tiecheck.fixer import Action, FixOutcome, KeptNote, Pending, Plan
    from tiecheck.scan import Report

FixMode = Literal["dry-run", "output", "in-place"]


@dataclass(frozen=True)
class FixPlan:
    """Every change a fix makes, decided before anything is written.

    ``actions`` lists them (drop a tensor, rewrite a shard or the index, edit the config...) with the
    bytes each saves and the finding codes it resolves; ``kept`` lists tensors or files that look
    redundant but stay, and why.
    """

    target: str
    """The checkpoint folder the plan is for."""
    actions: tuple[Action, ...]
    kept: tuple[KeptNote, ...]

    @property
    def bytes_saved(self) -> int:
        """Bytes the fixed checkpoint no longer stores."""
        return sum(a.bytes_saved for a in self.actions)

    @property
    def empty(self) -> bool:
        """Nothing to fix."""
        return not self.actions

    @classmethod
    def _of(cls, plan: Plan) -> FixPlan:
        return cls(plan.location, plan.actions, plan.kept)

    def to_dict(self) -> dict[str, Any]:
        """The ``plan`` object of ``tiecheck fix -f json``."""
        return {
            "bytes_saved": self.bytes_saved,
            "actions": [
                {
                    "kind": a.kind.value,
                    "file": a.file,
                    "tensor": a.tensor,
                    "new_name": a.new_name,
                    "bytes_saved": a.bytes_saved,
                    "reason": a.reason,
                    "codes": list(a.codes),
                }
                for a in self.actions
            ],
            "kept": [{"subject": k.subject, "code": k.code, "reason": k.reason} for k in self.kept],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"


@dataclass(frozen=True)
class FixVerification:
    """How an applied fix was proven: the staged files were re-read and hashed before they replaced anything."""

    tensors_hashed: int
    bytes_hashed: int
    files_linked: int
    """Unchanged files hard-linked under a new name: same inode, nothing to hash."""
    dropped_checked: int
    """Dropped tensors checked to be restorable from an identical partner."""
    resolved: tuple[Finding, ...]
    """Findings of the scan before the fix that the fixed checkpoint no longer has."""


@dataclass(frozen=True)
class FixRecovery:
    """What finishing an interrupted fix did before this one ran (a folder left mid-way by a crash)."""

    rolled_forward: bool
    """A journal was found and the interrupted fix was completed."""
    steps_redone: int
    removed_temps: tuple[str, ...]
    """Temporary files of the interrupted fix that were deleted."""

    @property
    def happened(self) -> bool:
        """Anything was done."""
        return self.rolled_forward or bool(self.removed_temps)

    def describe(self) -> str:
        """One line for people."""
        parts = []
        if self.rolled_forward:
            parts.append(f"completed an interrupted fix ({self.steps_redone} step(s) redone)")
        if self.removed_temps:
            parts.append(f"removed {len(self.removed_temps)} temporary file(s) left by an interrupted fix")
        return "; ".join(parts)


@dataclass(frozen=True)
class PendingRecovery:
    """What an interrupted fix left in the folder, which the next in-place fix completes first."""

    steps: tuple[tuple[str, ...], ...] | None
    """The journal's steps (``("replace", temp, name)`` or ``("delete", name)``), None without a journal."""
    temps: tuple[str, ...]
    """Temporary files of the interrupted fix."""
    lines: tuple[str, ...]
    """One line per change the recovery makes, for people."""

    @property
    def any(self) -> bool:
        """There is something to recover."""
        return self.steps is not None or bool(self.temps)

    @classmethod
    def _of(cls, pending: Pending) -> PendingRecovery:
        steps = None if pending.steps is None else tuple(tuple(s) for s in pending.steps)
        return cls(steps, tuple(pending.temps), tuple(pending.describe()))


@dataclass(frozen=True)
class FixResult:
    """The outcome of :func:`fix`: the scan before, the plan, and (when applied) the verified result."""

    target: str
    """The checkpoint folder."""
    mode: FixMode
    """``"dry-run"``, ``"output"`` (a fixed copy was written to ``destination``) or ``"in-place"``."""
    plan: FixPlan
    before: Report
    """The scan the plan was built from."""
    after: Report | None
    """The scan of the fixed checkpoint; None when nothing was applied (dry run, empty plan, declined)."""
    destination: Path | None
    """Where the fixed checkpoint is: the folder itself, or ``output``; None when nothing was applied."""
    verification: FixVerification | None
    declined: bool = False
    """``confirm`` (or ``confirm_recovery``) said no: nothing was changed."""
    recovery: FixRecovery | None = None
    """An interrupted fix was completed first (in place only)."""
    pending: PendingRecovery | None = None
    """Dry run and ``output``: an interrupted fix left the folder mid-way; the next in-place fix completes it."""

    @property
    def applied(self) -> bool:
        """The fix was written and verified."""
        return self.after is not None

    @property
    def remaining(self) -> tuple[Finding, ...]:
        """The findings the checkpoint has now: after the fix when it was applied, else before."""
        return self.after.findings if self.after is not None else self.before.findings

    @property
    def pending_recovery(self) -> bool:
        """An interrupted fix is waiting to be completed by the next in-place fix."""
        return self.pending is not None and self.pending.any

    def to_dict(self) -> dict[str, Any]:
        """The document ``tiecheck fix -f json`` prints."""
        from tiecheck.output.json import finding_dict

        recovery, v = self.recovery, self.verification
        return {
            "target": self.target,
            "mode": self.mode,
            "recovery": None
            if recovery is None
            else {
                "rolled_forward": recovery.rolled_forward,
                "steps_redone": recovery.steps_redone,
                "removed_temps": list(recovery.removed_temps),
            },
            "pending_recovery": self.pending_recovery,
            "pending_steps": [list(s) for s in self.pending.steps or ()] if self.pending else [],
            "declined": self.declined,
            "plan": self.plan.to_dict(),
            "applied": self.applied,
            "destination": str(self.destination) if self.destination is not None else None,
            "verification": None
            if v is None
            else {
                "tensors_hashed": v.tensors_hashed,
                "bytes_hashed": v.bytes_hashed,
                "files_linked": v.files_linked,
                "dropped_checked": v.dropped_checked,
                "resolved": [finding_dict(f) for f in v.resolved],
            },
            "findings_before": [finding_dict(f) for f in self.before.findings],
            "findings_after": [finding_dict(f) for f in self.after.findings] if self.after is not None else None,
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as the JSON text the command line prints."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def _of(cls, outcome: FixOutcome, mode: FixMode) -> FixResult:
        applied, recovery = outcome.applied, outcome.recovery
        verification = None
        if applied is not None:
            v = applied.verification
            verification = FixVerification(
                v.tensors_hashed, v.bytes_hashed, v.files_linked, v.dropped_checked, v.resolved
            )
        return cls(
            target=str(outcome.root),
            mode=mode,
            plan=FixPlan._of(outcome.plan),
            before=outcome.before,
            after=applied.final if applied is not None else None,
            destination=applied.destination if applied is not None else None,
            verification=verification,
            declined=outcome.declined,
            recovery=recovery,
            pending=None if outcome.pending is None else PendingRecovery._of(outcome.pending),
        )


def fix(
    path: str | Path,
    *,
    drop_duplicates: bool = False,
    tie_head: bool = False,
    to_safetensors: bool = False,
    output: str | Path | None = None,
    dry_run: bool = False,
    confirm: Callable[[FixPlan], bool] | None = None,
    confirm_recovery: Callable[[PendingRecovery], bool] | None = None,
    progress: ProgressSink | None = None,
) -> FixResult:
    """Fix the checkpoint at ``path`` (a folder, or a weight file or index inside it): the same plan and the
    same staged, verified, journaled write as ``tiecheck fix``, without printing or prompting.

    Index and metadata repairs always apply; ``drop_duplicates`` drops redundant tied copies (TC101) that
    loaders restore, ``tie_head`` drops a head identical to the embedding and declares the tie (TC104),
    ``to_safetensors`` converts pickle weights to safetensors without unpickling them.

    ``dry_run``: plan only, change nothing. ``output``: write the fixed checkpoint to this new (or empty)
    folder and leave ``path`` as it is. Otherwise the folder is fixed in place: ``confirm`` is called with
    the plan just before it is applied (return False to change nothing; None applies), and
    ``confirm_recovery`` before an interrupted earlier fix is completed (None completes it). ``progress``:
    an object with ``begin(description, total)``, ``advance(nbytes)`` and ``end()`` methods.

    Raises :class:`~tiecheck.errors.TargetNotFound` or :class:`~tiecheck.errors.UnreadableCheckpoint`
    for a bad path, :class:`~tiecheck.errors.FixRefused` when the fix would lose something or cannot run
    safely (its ``findings`` name the blocking findings), and :class:`~tiecheck.errors.VerificationFailed`
    when the staged result did not verify; in all three cases nothing was changed. A Hub repo
    (``hf://...``) is refused: fix works on a local copy.
    """
    if str(path).startswith("hf:/"):
        from tiecheck.targets import hub_repo

        repo = hub_repo(path)
        raise FixRefused(
            f"{repo}: fix rewrites files, so it works on a local copy: download it (`hf download ORG/NAME "
            "--local-dir DIR`), run `tiecheck fix DIR`, then upload the result (`hf upload ORG/NAME DIR`)"
        )
    from tiecheck.fixer import Options, run_fix

    outcome = run_fix(
        path,
        Options(drop_duplicates=drop_duplicates, tie_head=tie_head, to_safetensors=to_safetensors),
        output=None if output is None else Path(output),
        dry_run=dry_run,
        confirm=None if confirm is None else (lambda plan: confirm(FixPlan._of(plan))),
        confirm_recovery=None
        if confirm_recovery is None
        else (lambda pending: confirm_recovery(PendingRecovery._of(pending))),
        progress=progress,
    )
    mode: FixMode = "dry-run" if dry_run else ("output" if output is not None else "in-place")
    return FixResult._of(outcome, mode)
