"""tiecheck: find and fix tied-weight, index and precision problems in model checkpoints.

This module is the public Python API; every other module is internal.

.. include:: ../../docs/python-api.md
"""

from __future__ import annotations

__version__ = "0.1.0"

from tiecheck.checkpoint import Checkpoint, ModelConfig, ShardIndex, TensorRecord, WeightFile
from tiecheck.errors import TiecheckError
from tiecheck.findings import Finding, Severity
from tiecheck.scan import Report, Summary, scan, scan_store

#: Names served from :mod:`tiecheck.live` on first use, so ``import tiecheck`` stays light.
_LIVE = {
    "scan_state_dict": "tiecheck.live.state_dict",
    "StateDictReport": "tiecheck.live.state_dict",
    "inspect_model": "tiecheck.live.model",
    "ModelInspection": "tiecheck.live.model",
}


def __getattr__(name: str) -> object:
    module = _LIVE.get(name)
    if module is None:
        raise AttributeError(f"module 'tiecheck' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Checkpoint",
    "Finding",
    "ModelConfig",
    "ModelInspection",
    "Report",
    "Severity",
    "ShardIndex",
    "StateDictReport",
    "Summary",
    "TensorRecord",
    "TiecheckError",
    "WeightFile",
    "__version__",
    "inspect_model",
    "scan",
    "scan_state_dict",
    "scan_store",
]
