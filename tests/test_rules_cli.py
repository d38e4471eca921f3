"""`tiecheck rules` and `tiecheck explain`: the catalogue and its long-form docs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tiecheck.cli import app
from tiecheck.findings import Severity
from tiecheck.rules.catalog import RULES, Rule
from tiecheck.rules.docs import DOCS, explain_markdown, explain_text

SECTIONS = ("What it detects", "Why it matters", "Example", "How `tiecheck fix` handles it")


def test_every_rule_has_docs() -> None:
    """Fails naming the rules whose long text is missing from tiecheck/rules/docs.py."""
    missing = sorted(set(RULES) - set(DOCS))
    assert not missing, f"add a RuleDoc to src/tiecheck/rules/docs.py for: {', '.join(missing)}"
    stale = sorted(set(DOCS) - set(RULES))
    assert not stale, f"docs for rules not in the catalogue: {', '.join(stale)}"
    for code, doc in DOCS.items():
        for field in (doc.detects, doc.why, doc.example, doc.fix):
            assert field.strip() and field.rstrip().endswith((".", ")")), (code, field)
        assert RULES[code].doc is doc


def test_rules_lists_every_rule() -> None:
    result = CliRunner().invoke(app, ["rules", "--format", "json"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [r["code"] for r in rows] == list(RULES)
    assert rows[0] == {
        "code": "TC001",
        "name": "invalid-safetensors",
        "severity": "error",
        "fixable": False,
        "summary": RULES["TC001"].summary,
        "explanation": explain_text(RULES["TC001"]),
    }
    table = CliRunner().invoke(app, ["rules"])
    assert table.exit_code == 0
    for code in RULES:
        assert code in table.stdout


@pytest.mark.parametrize("key", ["TC101", "tc101", "redundant-tied-tensor"])
def test_explain(key: str) -> None:
    result = CliRunner().invoke(app, ["explain", key])
    assert result.exit_code == 0
    text = result.stdout
    assert text.startswith("TC101 redundant-tied-tensor (warning, fixable)\n")
    positions = [text.index(f"\n{s}\n") for s in SECTIONS]
    assert positions == sorted(positions)
    assert "--drop-duplicates" in text
    assert text == explain_text(RULES["TC101"])


def test_explain_unknown_rule_is_exit_2() -> None:
    result = CliRunner().invoke(app, ["explain", "TC999"])
    assert result.exit_code == 2
    assert "unknown rule 'TC999'" in result.stderr


def test_explain_degrades_to_the_summary_for_a_rule_without_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = Rule("TC999", "future-rule", Severity.INFO, "A rule added without long text.", False)
    monkeypatch.setitem(RULES, "TC999", rule)
    assert rule.doc is None
    result = CliRunner().invoke(app, ["explain", "TC999"])
    assert result.exit_code == 0
    assert result.stdout == "TC999 future-rule (info)\n\nA rule added without long text.\n"
    assert explain_markdown(rule) == "**TC999 future-rule** (info)\n\nA rule added without long text.\n"
    for section in SECTIONS:
        assert section not in result.stdout
