"""The rich console of stdout reports (tables, colours): imported when a report is drawn with rich."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.segment import Segment

from tiecheck.cli._base import output_width, to_devnull

#: Spaces (and the style codes between them) at the end of a line: rich pads cells and blocks with them.
_TRAILING = re.compile(r"(?:[ ]|\x1b\[[0-9;]*m)+$", re.MULTILINE)
_STYLE_CODE = re.compile(r"\x1b\[[0-9;]*m")


class StdoutConsole(Console):
    """The console of stdout reports: no trailing padding, one width rule, and a reader that closes the pipe
    early ends the output, not the command."""

    def __init__(self, **kwargs: Any) -> None:
        if "width" not in kwargs and "file" not in kwargs:
            kwargs["width"] = output_width()
        super().__init__(**kwargs)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        rendered = super()._render_buffer(buffer)
        return _TRAILING.sub(lambda m: "".join(_STYLE_CODE.findall(m[0])), rendered)

    def on_broken_pipe(self) -> None:
        to_devnull()
        self.quiet = True
