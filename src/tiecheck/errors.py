"""Exceptions that stop tiecheck from doing what was asked, as opposed to findings about a checkpoint.

Every one of them is a :class:`TiecheckError` (the command line prints its one-line message and exits
with code 2), so ``except tiecheck.TiecheckError`` catches them all; the subclasses say what went wrong::

    TiecheckError
    ├── TargetNotFound          the path does not exist, or is not a valid hf://ORG/NAME id
    ├── UnreadableCheckpoint    the path exists but is not a checkpoint tiecheck can read
    ├── RemoteError             the Hugging Face Hub said no, or could not be reached
    │   ├── RepoNotFound            no such repository (or private without access)
    │   ├── RevisionNotFound        no such branch, tag or commit
    │   ├── AccessDenied            gated, or a token is needed (401/403)
    │   ├── RateLimited             429; ``retry_after`` seconds, when the Hub says
    │   ├── NetworkError            no answer, or an unexpected one
    │   ├── NotCached               offline, and the repo is not in the local cache
    │   └── ChangedDuringScan       a file changed while it was being read
    ├── FixRefused              fix would lose or corrupt something: nothing was touched
    ├── VerificationFailed      the staged fix did not verify: it was discarded, nothing was touched
    └── CheckpointRejected      the Trainer callback found findings at its ``fail_on`` severity

Operating-system errors while reading or writing files (permissions, a full disk) are not wrapped: they
reach the caller as :class:`OSError`, naming the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiecheck.findings import Finding, Severity
    from tiecheck.scan import Report


class TiecheckError(Exception):
    """tiecheck cannot do what was asked; the message is one line naming the target and the problem.

    The base of every exception below. On the command line it is exit code 2.
    """

    changed_before: str | None = None
    """What tiecheck had already changed when this was raised (a recovered interrupted fix), for people;
    None when it changed nothing."""


class TargetNotFound(TiecheckError):
    """The target does not exist: no such file or folder, or text that is not a valid ``hf://ORG/NAME[@REV]``."""


class UnreadableCheckpoint(TiecheckError):
    """The target exists but is not a checkpoint tiecheck can read (no weight files, a wrong file type...)."""


class RemoteError(TiecheckError):
    """The Hugging Face Hub refused a request or could not be reached; ``target`` names the repo (or file)."""

    def __init__(self, message: str, target: str = "") -> None:
        super().__init__(message)
        self.target = target


class RepoNotFound(RemoteError):
    """The repository does not exist, or it is private and the token (if any) gives no access."""


class RevisionNotFound(RemoteError):
    """The repository exists, but not the branch, tag or commit asked for."""


class AccessDenied(RemoteError):
    """The Hub wants credentials: a gated repository (``gated`` is True) or a 401/403 answer."""

    def __init__(self, message: str, target: str = "", *, gated: bool = False) -> None:
        super().__init__(message, target)
        self.gated = gated


class RateLimited(RemoteError):
    """The Hub answered 429; ``retry_after`` is its ``Retry-After`` in seconds, or None when it gave none."""

    def __init__(self, message: str, target: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message, target)
        self.retry_after = retry_after


class NetworkError(RemoteError):
    """No answer from the Hub (DNS, connection, timeout), or an answer that breaks the protocol."""


class NotCached(RemoteError):
    """Offline (``HF_HUB_OFFLINE`` or ``offline=True``), and the repo is not in the local Hugging Face cache."""


class ChangedDuringScan(RemoteError):
    """A remote file changed (another ETag, size or range) while tiecheck was reading it: scan again."""


class FixRefused(TiecheckError):
    """The fix would lose or corrupt something, or cannot run safely here: nothing was touched.

    ``findings`` holds the findings that block the fix (fix those by hand first); it is empty when the
    refusal is about the folder or the options (read-only, a cache snapshot, a pickle without
    ``to_safetensors``...).
    """

    def __init__(self, message: str, findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


class VerificationFailed(TiecheckError):
    """The staged fix did not match the plan when re-read: it was discarded, and nothing was changed."""


class CheckpointRejected(TiecheckError):
    """A checkpoint has findings at or above a chosen severity (raised by the Trainer callback).

    ``report`` is the scan that rejected it.
    """

    def __init__(self, report: Report, fail_on: Severity) -> None:
        worst = [f for f in report.findings if f.severity >= fail_on]
        listed = "; ".join(f"{f.code} {f.message}" for f in worst[:3])
        more = f" (and {len(worst) - 3} more)" if len(worst) > 3 else ""
        super().__init__(f"{report.target}: {len(worst)} finding(s) at {fail_on.label} or worse: {listed}{more}")
        self.report = report


class FormatError(ValueError):
    """A file breaks its format; ``rule`` names the broken rule and ``tensor`` the tensor, when there is one.

    Internal: the loader turns it into a finding, it does not reach API callers.
    """

    def __init__(self, rule: str, detail: str, tensor: str | None = None) -> None:
        self.rule = rule
        self.detail = detail
        self.tensor = tensor
        where = f" (tensor {tensor!r})" if tensor is not None else ""
        super().__init__(f"{rule}: {detail}{where}")


__all__ = [
    "AccessDenied",
    "ChangedDuringScan",
    "CheckpointRejected",
    "FixRefused",
    "FormatError",
    "NetworkError",
    "NotCached",
    "RateLimited",
    "RemoteError",
    "RepoNotFound",
    "RevisionNotFound",
    "TargetNotFound",
    "TiecheckError",
    "UnreadableCheckpoint",
    "VerificationFailed",
]
