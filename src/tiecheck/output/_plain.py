"""The human report as plain text, laid out without rich, for a stdout that shows no colour (a pipe, a CI
log, a pre-commit hook's output): the bytes rich writes there, without rich's import (a quarter of a small
scan's start-up).

It lays out only what it can lay out as rich does: printable one-cell characters (ASCII, and the few
others tiecheck's own messages use) and a summary table no wider than the page. For anything else (a name
in another script, a page too narrow for the summary, ``--statistics``) :func:`plain_report` returns None
and rich draws the report. The tests render generated reports both ways and compare them.
"""

from __future__ import annotations

import re

from tiecheck.output._text import (
    CLEAN,
    finding_blocks,
    heading,
    one_line_summary_parts,
    summary_rows,
    summary_title,
    totals_line,
)
from tiecheck.scan import Report
from tiecheck.targets import MultiReport

#: A word and the whitespace around it; a line breaks only before a word.
_WORD = re.compile(r"\s*\S+\s*")
#: Cells left of the findings' details.
INDENT = 2
#: Characters besides ASCII that tiecheck's own messages use, each one cell wide (a test asks rich).
ONE_CELL = frozenset("\u00b7")


def _simple(text: str) -> bool:
    """One line of characters each one cell wide and laid out alone: printable (no controls, which rich
    drops or keeps by its own rules) and ASCII or :data:`ONE_CELL` (no wide, combining or invisible ones)."""
    return text.isprintable() and (text.isascii() or all(c.isascii() or c in ONE_CELL for c in text))


class _NotPlain(Exception):
    """Something rich would lay out in a way this module does not: let rich draw the report."""


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` cells (trailing spaces aside), broken as rich breaks them.

    Each line of ``text`` is filled word by word; a word that does not fit starts a new line; one longer
    than a whole line is cut into pieces ``width`` long, the last of which the line goes on from. The
    spaces after a word stay with it (trailing spaces are dropped from the output anyway).
    """
    lines: list[str] = []
    for line in text.split("\n"):
        if not _simple(line):
            raise _NotPlain
        breaks: list[int] = []
        used = 0
        for match in _WORD.finditer(line):
            start, word = match.start(), match.group()
            length = len(word.rstrip())
            if width - used >= length:
                used += len(word)
            elif length > width:
                pieces = [word[i : i + width] for i in range(0, len(word), width)]
                for piece in pieces:
                    if start:
                        breaks.append(start)
                    start += len(piece)
                used = len(pieces[-1])
            elif used and start:
                breaks.append(start)
                used = len(word)
        lines += [line[a:b] for a, b in zip([0, *breaks], [*breaks, len(line)], strict=True)]
    return lines


def _summary(report: Report, width: int) -> list[str]:
    rows = summary_rows(report)
    labels = max(len(label) for label, _ in rows)
    values = max(len(value) for _, value in rows)
    table = labels + values + 4  # a cell of padding at each side of each column
    if table > width or not all(_simple(label + value) for label, value in rows):
        raise _NotPlain  # rich would shrink the columns and wrap cells: leave that to rich
    lines = wrap(summary_title(report), table)
    return lines + [f" {label.ljust(labels)}  {value}" for label, value in rows]


def _findings(report: Report, width: int) -> list[str]:
    if not report.findings:
        return wrap(CLEAN, width)
    lines: list[str] = []
    for severity, blocks in finding_blocks(report.findings):
        if lines:
            lines.append("")
        lines += wrap(heading(severity, len(blocks)), width)
        for b in blocks:
            lines += wrap(f"{b.code} {b.name}{b.size}{'  [fixable]' if b.fixable else ''}", width)
            details = "\n".join((b.message, *b.names))
            lines += [" " * INDENT + line for line in wrap(details, max(1, width - INDENT))]
    return lines


def _target(report: Report, width: int, *, compact: bool, quiet: bool) -> list[str]:
    if quiet:
        if not report.findings:
            return []
        header = wrap(one_line_summary_parts(report)[0], width) if compact else []
        return header + _findings(report, width)
    if compact:
        target, size = one_line_summary_parts(report)
        header = wrap(f"tiecheck scan: {target}{size}", width)
    else:
        header = _summary(report, width)
    return [*header, "", *_findings(report, width)]


def plain_report(multi: MultiReport, width: int, *, quiet: bool = False) -> str | None:
    """The table report of ``multi`` as rich would print it on a page ``width`` cells wide without colour
    (trailing spaces dropped, as tiecheck's console drops them); None where only rich can lay it out."""
    if width < INDENT + 1:
        return None
    try:
        lines: list[str] = []
        shown = False
        for result in multi.results:
            if quiet and not result.report.findings:
                continue
            if shown:
                lines.append("")
            lines += _target(result.report, width, compact=multi.several, quiet=quiet)
            shown = True
        if multi.several and not quiet:
            lines += ["", *wrap(totals_line(multi), width)]
    except _NotPlain:
        return None
    return "".join(line.rstrip(" ") + "\n" for line in lines)
