"""Reviewed expected failures of the architecture sweep: model type -> why tiecheck is still wrong about it.

Each entry is an xfail with its reason in the sweep test (not strict: a fix shows as XPASS, then the entry goes).
Keep it short and explicit; an entry is a known false alarm or miss, not a way to silence a new one.
"""

from __future__ import annotations

EXPECTED_FAILURES: dict[str, str] = {}
