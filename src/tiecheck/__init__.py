"""tiecheck: find and fix tied-weight, index and precision problems in model checkpoints."""

from __future__ import annotations

__version__ = "0.1.0"

from tiecheck.checkpoint import Checkpoint, ModelConfig, ShardIndex, TensorRecord, WeightFile
from tiecheck.errors import TiecheckError
from tiecheck.findings import Finding, Severity
from tiecheck.scan import Report, Summary, scan, scan_store

__all__ = [
    "Checkpoint",
    "Finding",
    "ModelConfig",
    "Report",
    "Severity",
    "ShardIndex",
    "Summary",
    "TensorRecord",
    "TiecheckError",
    "WeightFile",
    "__version__",
    "scan",
    "scan_store",
]
