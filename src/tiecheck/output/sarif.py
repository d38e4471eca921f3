"""SARIF 2.1.0 for code-scanning tools (GitHub code scanning, GitLab, Azure DevOps).

One run, one ``rule`` per catalogue rule (its ``help`` is the ``tiecheck explain`` text). Artifact
URIs are relative to the folder named on the command line, through a ``uriBaseId`` per such folder
(``originalUriBaseIds`` gives its absolute location). ``partialFingerprints`` hash the rule, the
checkpoint's location as named, its files and tensors, never a message or a byte count, so a
finding keeps its identity across runs while sizes change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tiecheck import __version__
from tiecheck.findings import Finding, Severity
from tiecheck.output._escape import sarif as sarif_text
from tiecheck.rules.catalog import RULES, Rule
from tiecheck.rules.docs import explain_markdown, explain_text
from tiecheck.targets import MultiReport, Result

SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://github.com/tiecheck/tiecheck"
FINGERPRINT_KEY = "tiecheck/v1"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def rule_descriptor(rule: Rule) -> dict[str, Any]:
    doc = rule.doc
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": doc.detects if doc else rule.summary},
        "help": {"text": explain_text(rule), "markdown": explain_markdown(rule)},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {"tags": ["checkpoint", _family(rule.code)], "fixable": rule.fixable},
    }


def _family(code: str) -> str:
    return {"TC0": "structure", "TC1": "ties", "TC2": "content", "TC3": "precision", "TC4": "pickle"}.get(
        code[:3], "other"
    )


def stable_location(path: Path) -> str:
    """Where a checkpoint is, as stable across machines as it can be: relative to the working dir if inside it."""
    absolute = path.resolve()
    try:
        return absolute.relative_to(Path.cwd()).as_posix() or "."
    except ValueError:
        return absolute.as_posix()


def fingerprint(result: Result, finding: Finding, occurrence: int = 0) -> str:
    """The finding's identity; ``occurrence`` tells apart findings alike in rule, files and tensors (TC006 twice)."""
    parts = [finding.code, stable_location(result.target.folder), *finding.files, "\0", *finding.tensors]
    if occurrence:
        parts.append(f"\0{occurrence}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _base(folder: Path) -> Path:
    return folder.resolve()


def _uri(result: Result, name: str) -> str:
    folder = result.target.relative_folder
    return quote(f"{folder}/{name}" if folder else name, safe="/")  # a URI: "#", "?", " " in a name are escaped


def primary_files(result: Result, finding: Finding) -> tuple[str, ...]:
    """Files to point at, the one holding the finding's first tensor first.

    When that tensor is stored more than once (TC005), a copy loaders do not read comes first:
    that is the file to act on. A finding about the whole checkpoint points at config.json, or
    its first weight file.
    """
    ckpt = result.report.checkpoint
    if finding.files:
        first = finding.tensors[0] if finding.tensors else None
        holders = [t.file for t in ckpt.tensors if t.name == first and t.file in finding.files]
        read = ckpt.tensor_map().get(first) if first is not None else None
        if len(holders) > 1 and read is not None:
            holders = [f for f in holders if f != read.file] + [read.file]
        if holders:
            return (*holders, *(f for f in finding.files if f not in holders))
        return finding.files
    if ckpt.config_file is not None:
        return (ckpt.config_file,)
    if ckpt.files:
        return (ckpt.files[0].name,)
    return ()


def sarif_dict(multi: MultiReport) -> dict[str, Any]:
    rules = list(RULES.values())
    index = {rule.code: i for i, rule in enumerate(rules)}
    targets = [r.target for r in multi.results] + [f.target for f in multi.failures]
    folders = list(dict.fromkeys(_base(t.base_folder) for t in targets))
    bases = {base: "SCANROOT" if len(folders) == 1 else f"SCANROOT{i + 1}" for i, base in enumerate(folders)}

    results = []
    for result in multi.results:
        base_id = bases[_base(result.target.base_folder)]
        seen: dict[str, int] = {}
        for finding in result.report.findings:
            plain = fingerprint(result, finding)
            seen[plain] = seen.get(plain, -1) + 1
            entry: dict[str, Any] = {
                "ruleId": finding.code,
                "level": LEVELS[finding.severity],
                "message": {"text": sarif_text(finding.message)},
                "locations": [
                    {"physicalLocation": {"artifactLocation": {"uri": _uri(result, name), "uriBaseId": base_id}}}
                    for name in primary_files(result, finding)
                ],
                "partialFingerprints": {FINGERPRINT_KEY: fingerprint(result, finding, seen[plain])},
                "properties": {
                    "checkpoint": result.report.target,
                    "tensors": list(finding.tensors),
                    "bytes": finding.bytes,
                    "fixable": finding.fixable,
                },
            }
            if finding.code in index:
                entry["ruleIndex"] = index[finding.code]
            results.append(entry)

    invocation: dict[str, Any] = {"executionSuccessful": not multi.failures}
    if multi.failures:
        invocation["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": sarif_text(f.message)}, "descriptor": {"id": "could-not-scan"}}
            for f in multi.failures
        ]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tiecheck",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [rule_descriptor(rule) for rule in rules],
                    }
                },
                "originalUriBaseIds": {
                    base_id: {"uri": base.as_uri().rstrip("/") + "/"} for base, base_id in bases.items()
                },
                "invocations": [invocation],
                "results": results,
            }
        ],
    }


def render_sarif(multi: MultiReport) -> str:
    return json.dumps(sarif_dict(multi), indent=2)
