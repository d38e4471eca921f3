"""GitLab Code Quality (a subset of the Code Climate JSON): findings in the merge-request widget.

Paths are relative to the working directory (the project root in a GitLab job); fingerprints are
the SARIF ones, so a finding keeps its identity across pipelines.
"""

from __future__ import annotations

import json
from typing import Any

from tiecheck.findings import Severity
from tiecheck.output._escape import visible
from tiecheck.output.sarif import fingerprint, primary_files, stable_location
from tiecheck.targets import MultiReport

SEVERITIES = {Severity.ERROR: "critical", Severity.WARNING: "minor", Severity.INFO: "info"}


def gitlab_issues(multi: MultiReport) -> list[dict[str, Any]]:
    issues = []
    for result in multi.results:
        folder = stable_location(result.target.folder)
        seen: dict[str, int] = {}
        for f in result.report.findings:
            plain = fingerprint(result, f)
            seen[plain] = seen.get(plain, -1) + 1
            files = primary_files(result, f)
            path = files[0] if files else "."
            issues.append(
                {
                    "description": f"{f.code} {f.name}: {visible(f.message)}",
                    "check_name": f.code,
                    "fingerprint": fingerprint(result, f, seen[plain]),
                    "severity": SEVERITIES[f.severity],
                    "location": {"path": path if folder == "." else f"{folder}/{path}", "lines": {"begin": 1}},
                }
            )
    return issues


def render_gitlab(multi: MultiReport) -> str:
    return json.dumps(gitlab_issues(multi), indent=2) + "\n"
