"""The README tells the truth: its commands, its sample output, its JSON example, its links."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_the_two_quick_start_commands() -> None:
    assert "pip install . && tiecheck scan fixtures/gemma2-merge-duplicated-head" in README
    assert 'pip install -e ".[test]" && pytest' in README  # .ci/run runs it verbatim
    assert 'pip install -e ".[test]" && pytest' in (REPO / ".ci" / "run").read_text()


def test_users_first_order() -> None:
    headings = re.findall(r"^## (.+)$", README, re.MULTILINE)
    order = ["Install", "Quick start", "Scan", "Fix a checkpoint", "Use in CI", "Rules", "Development"]
    assert [h for h in headings if h in order] == order
    assert "## Performance" not in README and "| method |" not in README  # benchmarks live in docs/


def test_sample_output_is_what_scan_prints() -> None:
    block = README.split("```text\n", 1)[1].split("```", 1)[0]
    command, expected = block.split("\n", 1)
    assert command == "$ tiecheck scan fixtures/gemma2-merge-duplicated-head"
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "tiecheck", *command.split()[2:]], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert result.returncode == 1 and result.stdout == expected


def test_json_example_follows_the_schema() -> None:
    example = json.loads(README.split("```json\n", 1)[1].split("```", 1)[0])
    jsonschema.validate(example, json.loads((REPO / "schemas" / "tiecheck-report.schema.json").read_text()))


def test_no_tag_that_does_not_exist() -> None:
    tags = subprocess.run(["git", "-C", str(REPO), "tag"], capture_output=True, text=True).stdout.split()
    for ref in re.findall(r"tiecheck/tiecheck@(\S+)|rev: (\S+)", README):
        name = ref[0] or ref[1]
        assert name == "main" or name in tags, name
    assert "pip install tiecheck" not in README  # not on PyPI yet


def test_local_links_exist() -> None:
    for target in re.findall(r"\]\((?!https?:|#)([^)#]+)", README):
        assert (REPO / target).exists(), target
    for doc in (REPO / "docs").glob("*.md"):
        for target in re.findall(r"\]\((?!https?:|#)([^)#]+)", doc.read_text()):
            assert (doc.parent / target).exists(), (doc.name, target)


def test_every_checkpoint_rule_is_in_a_rules_table() -> None:
    """Each rule a scan of files can report has its row (code, name, severity) in the README's tables.

    The live-model rules (TC5xx) are documented in the Python API section, which names their codes.
    """
    from tiecheck.rules import RULES

    for code, rule in RULES.items():
        if code.startswith("TC5"):
            assert code[:4] in README, code
            continue
        row = f"| {code} | {rule.name} | {rule.severity.name.lower()} |"
        assert row in README, f"README rules table lacks: {row}"
