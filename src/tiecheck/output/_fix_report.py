"""The human report of ``tiecheck fix`` (the plan, a pending recovery, the outcome) as lines of text.

Laid out here, not by rich: each action is one item (its kind, then what it acts on, then why, indented
under it), wrapped to the page, so the same lines print in a pipe or a CI log (as they are, without
importing rich) and on a terminal (through rich, only for colour). Every string that comes from the
checkpoint (file and tensor names, the folder, the reasons that quote them) is made inert here, once,
with :func:`tiecheck.output._escape.terminal`: no terminal escape, no rich markup, no line that starts a
CI workflow command.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tiecheck.output._escape import terminal
from tiecheck.rules.base import human_bytes

if TYPE_CHECKING:
    from tiecheck._api import FixPlan, FixResult

Segment = tuple[str, str]
"""Text and its style name for a terminal (``""``: none)."""
Line = tuple[Segment, ...]

#: Below this many cells for an item's text beside its kind, the text goes under the kind instead.
_MIN_TEXT = 24
_INDENT = 2


def cells(text: str) -> int:
    """Columns ``text`` takes on a terminal: wide East Asian characters two, combining marks none."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _head(word: str, room: int) -> str:
    """The longest start of ``word`` at most ``room`` cells wide, and never empty (the loop must advance)."""
    used = 0
    for i, c in enumerate(word):
        used += cells(c)
        if used > room:
            return word[: max(1, i)]
    return word


def fill(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` cells, the first starting with ``first`` and
    the others with ``rest``; a word longer than its line is cut. Line breaks in ``text`` are kept."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = first if not lines else rest
        used, empty = cells(line), True
        for word in paragraph.split():
            w = cells(word)
            if not empty and used + 1 + w <= width:
                line, used = f"{line} {word}", used + 1 + w
                continue
            if not empty:
                lines.append(line)
                line, used = rest, cells(rest)
            while len(word) > 1 and w > width - used:
                piece = _head(word, max(1, width - used))
                lines.append(line + piece)
                line, used = rest, cells(rest)
                word = word[len(piece) :]
                w = cells(word)
            line, used, empty = line + word, used + w, False
        lines.append(line)
    return [line.rstrip(" ") for line in lines]


def _plain(lines: Iterable[str]) -> list[Line]:
    return [((line, ""),) for line in lines]


def plan_lines(plan: FixPlan, width: int) -> list[Line]:
    """The plan: one item per action (kind, subject and bytes saved, then why), then what is kept and why."""
    out: list[Line] = []
    if plan.empty:
        out += _plain(fill("Nothing to fix.", width))
    else:
        title = f"Plan: {len(plan.actions)} action(s), saves {human_bytes(plan.bytes_saved)}"
        out += _plain(fill(title, width))
        kinds = max(len(a.kind.value) for a in plan.actions)
        beside = width - _INDENT - kinds - 2 >= _MIN_TEXT
        hang = " " * (_INDENT + kinds + 2 if beside else 2 * _INDENT)
        for a in plan.actions:
            subject = f"{a.tensor} in {a.file}" if a.tensor else a.file
            if a.new_name:
                subject += f" -> {a.new_name}"
            if a.bytes_saved:
                subject += f" ({human_bytes(a.bytes_saved)})"
            kind = a.kind.value
            if beside:
                head = " " * _INDENT + kind.ljust(kinds + 2)
                text = fill(terminal(subject), width, head, hang)
                out.append(((" " * _INDENT, ""), (kind, "bold"), (text[0][_INDENT + len(kind) :], "")))
                out += _plain(text[1:])
            else:
                out.append(((" " * _INDENT, ""), (kind, "bold")))
                out += _plain(fill(terminal(subject), width, hang, hang))
            out += _plain(fill(terminal(a.reason), width, hang, hang))
    for note in plan.kept:
        text = fill(terminal(f"{note.subject}: {note.reason}"), width, " " * (len(note.code) + 1), " " * _INDENT)
        out.append(((note.code, "dim"), (text[0][len(note.code) :], "")))
        out += _plain(text[1:])
    return out


def pending_lines(intro: str, lines: Sequence[str], width: int) -> list[Line]:
    """What recovering an interrupted fix does (or would do), a change per line."""
    out = fill(intro, width)
    for line in lines:
        out += fill(terminal(line), width, " " * _INDENT, " " * (2 * _INDENT))
    return _plain(out)


def outcome_lines(result: FixResult, width: int, plan_shown: bool) -> list[Line]:
    """After the fix: a recovery done or pending, the plan (unless shown before asking), what was verified."""
    out: list[Line] = []
    if result.recovery is not None and result.recovery.happened:
        out += _plain(fill(f"Recovered: {result.recovery.describe()}.", width))
    if result.pending is not None and result.pending.any:
        out += pending_lines("An interrupted fix is pending; the next in-place run would:", result.pending.lines, width)
    if not plan_shown:
        out += plan_lines(result.plan, width)
    if result.mode == "dry-run" and not result.plan.empty:
        out += _plain(fill("Dry run: nothing was changed.", width))
    v = result.verification
    if result.after is None or v is None:
        return out
    fixed = (
        f"Fixed {terminal(str(result.destination))}: saved {human_bytes(result.plan.bytes_saved)}. Verified: "
        f"{v.tensors_hashed} tensor(s) re-read and hashed ({human_bytes(v.bytes_hashed)}), {v.files_linked} "
        f"shard(s) renamed by link, {v.dropped_checked} dropped tensor(s) restorable from an identical partner."
    )
    resolved = ", ".join(sorted({f.code for f in v.resolved})) or "none"
    remaining = ", ".join(sorted({f.code for f in result.after.findings})) or "none"
    out += _plain(fill(fixed, width))
    out += _plain(fill(f"Re-scan: resolved {resolved}; remaining {remaining}; no new finding.", width))
    return out


def text_of(lines: Iterable[Line]) -> str:
    """The lines as plain text, one per line, without styles."""
    return "".join("".join(text for text, _ in line) + "\n" for line in lines)
