"""tiecheck: find and fix tied-weight, index and precision problems in model checkpoints.

This module is the public Python API; every other module is internal.

.. include:: ../../docs/python-api.md
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from tiecheck.errors import (
    AccessDenied,
    ChangedDuringScan,
    CheckpointRejected,
    FixRefused,
    NetworkError,
    NotCached,
    RateLimited,
    RemoteError,
    RepoNotFound,
    RevisionNotFound,
    TargetNotFound,
    TiecheckError,
    UnreadableCheckpoint,
    VerificationFailed,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tiecheck._api import FixPlan, FixRecovery, FixResult, FixVerification, PendingRecovery, fix
    from tiecheck.checkpoint import Checkpoint, ModelConfig, ShardIndex, TensorRecord, WeightFile
    from tiecheck.compare import Diff, TensorDiff, diff
    from tiecheck.compare import Status as DiffStatus
    from tiecheck.findings import Finding, Severity
    from tiecheck.live.model import ModelInspection, inspect_model
    from tiecheck.live.state_dict import StateDictReport, scan_state_dict
    from tiecheck.scan import Report, Summary, scan, scan_store

#: Every other public name and the module that defines it (and under which name), imported on first use
#: (PEP 562): ``import tiecheck`` stays light, and a command that needs none of them never loads them.
_LAZY: dict[str, tuple[str, str]] = {
    **{name: ("tiecheck.checkpoint", name) for name in ("Checkpoint", "ModelConfig", "ShardIndex", "TensorRecord")},
    "WeightFile": ("tiecheck.checkpoint", "WeightFile"),
    "Finding": ("tiecheck.findings", "Finding"),
    "Severity": ("tiecheck.findings", "Severity"),
    **{name: ("tiecheck.scan", name) for name in ("Report", "Summary", "scan", "scan_store")},
    **{
        name: ("tiecheck._api", name)
        for name in ("FixPlan", "FixRecovery", "FixResult", "FixVerification", "PendingRecovery", "fix")
    },
    "Diff": ("tiecheck.compare", "Diff"),
    "DiffStatus": ("tiecheck.compare", "Status"),
    "TensorDiff": ("tiecheck.compare", "TensorDiff"),
    "diff": ("tiecheck.compare", "diff"),
    "scan_state_dict": ("tiecheck.live.state_dict", "scan_state_dict"),
    "StateDictReport": ("tiecheck.live.state_dict", "StateDictReport"),
    "inspect_model": ("tiecheck.live.model", "inspect_model"),
    "ModelInspection": ("tiecheck.live.model", "ModelInspection"),
}


def __getattr__(name: str) -> object:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'tiecheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The package's module type: the function :func:`scan` keeps its name when the submodule
    ``tiecheck.scan`` is imported (Python binds each imported submodule on its package, which would
    otherwise replace the function by the module)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = [
    "AccessDenied",
    "ChangedDuringScan",
    "Checkpoint",
    "CheckpointRejected",
    "Diff",
    "DiffStatus",
    "Finding",
    "FixPlan",
    "FixRecovery",
    "FixRefused",
    "FixResult",
    "FixVerification",
    "ModelConfig",
    "ModelInspection",
    "NetworkError",
    "NotCached",
    "PendingRecovery",
    "RateLimited",
    "RemoteError",
    "RepoNotFound",
    "Report",
    "RevisionNotFound",
    "Severity",
    "ShardIndex",
    "StateDictReport",
    "Summary",
    "TargetNotFound",
    "TensorDiff",
    "TensorRecord",
    "TiecheckError",
    "UnreadableCheckpoint",
    "VerificationFailed",
    "WeightFile",
    "__version__",
    "diff",
    "fix",
    "inspect_model",
    "scan",
    "scan_state_dict",
    "scan_store",
]
