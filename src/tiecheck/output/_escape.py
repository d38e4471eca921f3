"""Making strings from a checkpoint inert in each report format.

Tensor names, file names, config values and the messages that quote them come from files an
uploader wrote. Rendered raw they become a channel for that uploader: Markdown links, images,
HTML and @-mentions in a pull-request comment, GitHub workflow commands (``::error``,
``::add-mask``) in a CI log, terminal escape sequences that rewrite what a reviewer sees, SARIF
embedded links. Each helper here keeps the text readable and makes it only text.
"""

from __future__ import annotations

import re

#: C0 and C1 controls, DEL, and the invisible or reordering formatting characters (zero-width,
#: bidirectional overrides and isolates) that make text display differently from what it is.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
#: ASCII punctuation that starts Markdown mid-line in GitHub-flavoured Markdown: links and images,
#: emphasis, code, HTML and entities, mentions and e-mail autolinks, math, strikethrough, table pipes.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>!|~$&@])")
#: URL and www. autolinks need no punctuation above: break their scheme separator and prefix.
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(:)(?=//)|(?<![a-z0-9])(www)(\.)")


def visible(text: str) -> str:
    """Control and invisible characters as ``\\xNN``/``\\uNNNN`` escapes: one visible line, no terminal codes."""
    return _HIDDEN.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


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
