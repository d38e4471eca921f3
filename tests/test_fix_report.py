"""The fix's human report is laid out by tiecheck itself (:mod:`tiecheck.output._fix_report`): lines that fit the
page, no word lost, the same lines whether rich draws them (a terminal) or not (a pipe)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from tiecheck._api import FixPlan
from tiecheck.fixer.model import Action, ActionKind, KeptNote
from tiecheck.output._fix_report import cells, fill, plan_lines, text_of

#: Words of printable characters, some two cells wide (CJK), some with combining marks.
WORD = st.text(st.sampled_from("abcXYZ09._-:[]/\u00e9\u65e5\u672c\u0301"), min_size=1, max_size=30)
TEXT = st.lists(st.lists(WORD, max_size=12).map(" ".join), min_size=1, max_size=3).map("\n".join)
PREFIX = st.sampled_from(["", " ", "  ", "    drop-tensor  "])


@given(TEXT, st.integers(1, 120), PREFIX, PREFIX)
def test_fill_fits_the_page_and_keeps_every_character(text: str, extra: int, first: str, rest: str) -> None:
    width = max(cells(first), cells(rest)) + 2 + extra  # room for a two-cell character after either prefix
    lines = fill(text, width, first, rest)
    assert all(cells(line) <= width for line in lines)
    assert lines[0].startswith(first.rstrip(" ")) and all(line.startswith(rest.rstrip(" ")) for line in lines[1:])
    body = [lines[0][len(first) :], *(line[len(rest) :] for line in lines[1:])]
    assert "".join(body).replace(" ", "") == text.replace(" ", "").replace("\n", "")
    assert len(lines) >= text.count("\n") + 1


@given(st.lists(WORD, min_size=1, max_size=20).map(" ".join), st.integers(10, 80))
def test_fill_breaks_only_between_words_when_they_fit(text: str, width: int) -> None:
    """A word no longer than the line is never cut."""
    lines = fill(text, width)
    pieces = [w for line in lines for w in line.split(" ") if w]
    fitting = [w for w in text.split(" ") if cells(w) <= width]
    assert all(w in pieces for w in fitting)


def _plan(name: str) -> FixPlan:
    return FixPlan(
        "ck",
        (
            Action(ActionKind.DROP_TENSOR, name, "tied to embed and byte-identical", "lm_head.weight", 512),
            Action(ActionKind.REWRITE_SHARD, name, "rewritten without the dropped tensors"),
        ),
        (KeptNote("lm_head.bias", "TC102", "kept: differs from embed.bias"),),
    )


def test_a_plan_item_keeps_its_text_beside_its_kind_or_under_it_on_a_narrow_page() -> None:
    wide = text_of(plan_lines(_plan("model-00002-of-00002.safetensors"), 100)).splitlines()
    assert wide[1] == "  drop-tensor    lm_head.weight in model-00002-of-00002.safetensors (512 B)"
    assert wide[2] == "                 tied to embed and byte-identical"
    assert wide[-1] == "TC102 lm_head.bias: kept: differs from embed.bias"
    narrow = text_of(plan_lines(_plan("model-00002-of-00002.safetensors"), 30)).splitlines()
    assert narrow[1] == "  drop-tensor" and narrow[2].startswith("    lm_head.weight")
    assert all(cells(line) <= 30 for line in narrow)


@given(st.lists(WORD, min_size=1, max_size=4).map(" ".join), st.integers(20, 120))
def test_rich_prints_the_lines_as_they_are(name: str, width: int) -> None:
    """On a terminal the lines go through rich for colour only: the text is the same, line for line."""
    lines = plan_lines(_plan(name), width)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, legacy_windows=False)
    for line in lines:
        console.print(Text.assemble(*line), no_wrap=True, overflow="ignore", crop=False)
    assert [x.rstrip(" ") for x in buffer.getvalue().splitlines()] == text_of(lines).splitlines()
