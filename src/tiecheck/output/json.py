"""The JSON report: one document, stable keys, for machines.

Every scan prints the same top-level document (:func:`tiecheck.output.combined.multi_dict`), whatever
the number of targets: ``schema_version``, ``tiecheck_version``, ``reports`` (one per scanned
checkpoint, :func:`report_dict`) and ``errors`` (targets that could not be scanned). Its JSON Schema is
``schemas/tiecheck-report.schema.json``; a change to the shape that breaks a reader bumps
:data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from typing import Any

from tiecheck.findings import Finding
from tiecheck.scan import Report

#: Version of the JSON document's shape: bumped when a change could break a reader (a key removed or retyped).
SCHEMA_VERSION = 1


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "name": f.name,
        "severity": f.severity.label,
        "message": f.message,
        "tensors": list(f.tensors),
        "files": list(f.files),
        "bytes": f.bytes,
        "fixable": f.fixable,
    }


def report_dict(report: Report) -> dict[str, Any]:
    s = report.summary
    config = report.checkpoint.config
    document: dict[str, Any] = {
        "target": report.target,
        "summary": {
            "files": s.files,
            "tensors": s.tensors,
            "parameters": s.parameters,
            "unique_parameters": s.unique_parameters,
            "bytes": s.bytes,
            "redundant_bytes": s.redundant_bytes,
            "dtypes": dict(s.dtypes),
            "load_memory": dict(s.load_memory),
            "bytes_read": report.bytes_read,
        },
        "config": None
        if config is None
        else {
            "model_type": config.model_type,
            "architectures": list(config.architectures),
            "tie_word_embeddings": config.tie_word_embeddings,
            "tie_basis": config.tie_basis,
            "dtype": config.dtype_declared,
        },
        "ties": [
            {"kept": t.group.kept, "restored": list(t.group.restored), "tied": t.tied, "basis": t.basis}
            for t in report.ties
        ],
        "findings": [finding_dict(f) for f in report.findings],
    }
    if report.transferred is not None:
        document["transferred"] = {"requests": report.transferred.requests, "bytes": report.transferred.bytes}
    if report.contents is not None:
        document["tensors"] = tensor_dicts(report)
    return document


def tensor_dicts(report: Report) -> list[dict[str, Any]]:
    """Per-tensor content hashes (``--deep`` only): compare checkpoints without re-reading them."""
    assert report.contents is not None
    by_name = report.checkpoint.tensor_map()
    rows = []
    for name, content in report.contents.items():
        t = by_name[name]
        rows.append(
            {
                "name": name,
                "file": t.file,
                "dtype": t.dtype,
                "shape": list(t.shape),
                "hash": content.hash,
                "nan": content.nan,
                "inf": content.inf,
            }
        )
    return rows
