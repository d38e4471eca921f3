"""Making strings from a checkpoint inert in each report format.

Tensor names, file names, config values and the messages that quote them come from files an
uploader wrote. Rendered raw they become a channel for that uploader: Markdown links, images,
HTML and @-mentions in a pull-request comment, GitHub workflow commands (``::error``,
``::add-mask``) in a CI log, terminal escape sequences that rewrite what a reviewer sees, SARIF
embedded links. Each helper here keeps the text readable and makes it only text.
"""

from __future__ import annotations

import re
import unicodedata

#: Characters that display as nothing, or move other text, by Unicode category: controls (C0, C1,
#: DEL), formatting characters (zero-width, bidirectional overrides and isolates, the Arabic letter
#: mark, the Mongolian vowel separator, tag characters, the soft hyphen), line and paragraph separators
#: (which end a line where the report has none), surrogates, private-use and unassigned code points.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
#: Letters and marks that render blank (Hangul fillers, the combining grapheme joiner).
_BLANK = frozenset("\u034f\u115f\u1160\u3164\uffa0")
#: What may be hidden: ASCII controls and DEL, and every non-ASCII character (checked by category).
_SUSPECT = re.compile("[\x00-\x1f\x7f-\U0010ffff]")

#: ASCII punctuation that starts Markdown mid-line in GitHub-flavoured Markdown: links and images,
#: emphasis, code, HTML and entities, mentions and e-mail autolinks, math, strikethrough, table pipes.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>!|~$&@])")
#: URL and www. autolinks need no punctuation above: break their scheme separator and prefix.
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(:)(?=//)|(?<![a-z0-9])(www)(\.)")


def visible(text: str) -> str:
    """Control and invisible characters as ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN`` escapes: one visible line,
    no terminal codes, nothing that displays as other text than it is."""
    if text.isascii() and text.isprintable():
        return text
    return _SUSPECT.sub(_escape_hidden, text)


def _escape_hidden(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code >= 0xA0 and char not in _BLANK and unicodedata.category(char) not in _HIDDEN_CATEGORIES:
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def terminal(text: str) -> str:
    """For a terminal or CI log: visible, and no ``::`` that a wrapped line could start a workflow command with."""
    return visible(text).replace("::", ":\\:")


def markdown(text: str) -> str:
    """For Markdown prose: every meaningful punctuation character backslash-escaped."""
    escaped = _MARKDOWN.sub(r"\\\1", visible(text))
    return _AUTOLINK.sub(lambda m: "\\:" if m.group(1) else m.group(2) + "\\.", escaped)


def sarif(text: str) -> str:
    """For a SARIF message: visible, with the brackets of embedded links escaped (SARIF 3.11.6)."""
    return visible(text).replace("[", "\\[").replace("]", "\\]")
