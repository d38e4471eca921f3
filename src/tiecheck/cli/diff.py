"""``tiecheck diff A B``: what B lost, gained or changed compared with A, tensor by tensor."""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

from tiecheck.cli.app import EXIT_FINDINGS, EXIT_OK, StdoutConsole, app, closed_pipe_ok, fail
from tiecheck.errors import TiecheckError
from tiecheck.output._escape import terminal

if TYPE_CHECKING:
    from rich.console import Console

    from tiecheck.compare import Diff


class DiffFormat(str, Enum):
    """What ``diff`` renders: a table for people, JSON for machines (no rule findings: no SARIF and the like)."""

    table = "table"
    json = "json"


class DiffContent(str, Enum):
    """How much of each tensor ``diff`` reads (see :mod:`tiecheck.compare`)."""

    full = "full"
    sample = "sample"
    header = "header"


@app.command("diff")
def diff_command(
    a: Annotated[
        str,
        typer.Argument(help="The checkpoint before (folder, .safetensors file or hf://ORG/NAME[@REV]).", metavar="A"),
    ],
    b: Annotated[str, typer.Argument(help="The checkpoint after.", metavar="B")],
    output_format: Annotated[DiffFormat, typer.Option("--format", "-f", help="Report format.")] = DiffFormat.table,
    content: Annotated[
        DiffContent | None,
        typer.Option(
            "--content",
            help="Compare tensors by full hashes, by sampled fingerprints or by header only "
            "[default: full; sample when a side is a Hub repo].",
            show_default=False,
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Read Hub repos from the local Hugging Face cache only.")
    ] = False,
) -> None:
    """Compare two checkpoints by name and content hash. Exit 1 when B lost, added or changed a tensor."""
    from tiecheck import diff

    try:
        result = diff(a, b, content=None if content is None else content.value, offline=offline or None)
    except TiecheckError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or a}: {exc.strerror.lower() if exc.strerror else exc}")
    with closed_pipe_ok():
        if output_format is DiffFormat.json:
            sys.stdout.write(result.to_json())
        else:
            render_diff(result, StdoutConsole())
    raise typer.Exit(EXIT_OK if result.lossless else EXIT_FINDINGS)


def diff_dict(result: Diff) -> dict[str, object]:
    """The JSON document of ``diff -f json`` (kept for callers of the former helper: :meth:`Diff.to_dict`)."""
    return result.to_dict()


def render_diff(result: Diff, console: Console) -> None:
    from rich.padding import Padding
    from rich.text import Text

    from tiecheck.compare import Status
    from tiecheck.rules.base import human_bytes

    counts = ", ".join(f"{result.count(s)} {s.value}" for s in Status)
    if result.content == "full":
        read = f"{human_bytes(result.bytes_hashed)} hashed"
    elif result.content == "sample":
        read = f"{human_bytes(result.bytes_hashed)} read: compared by sampled fingerprints, --content full hashes all"
    else:
        read = "headers only: dtypes and shapes compared, no tensor bytes read"
    if result.transferred is not None:
        read += f"; {result.transferred.requests} request(s), {human_bytes(result.transferred.bytes)} transferred"
    # Targets, tensor names and details come from the checkpoints: shown inert, never as markup.
    console.print(f"{terminal(result.a)} -> {terminal(result.b)}: {counts} ({read})", markup=False, highlight=False)
    # One line per tensor (status, then the whole name), the detail indented under it: a name is never split,
    # whatever the terminal's width, and the lines stay greppable.
    width = max(len(label) for label in (*(s.value for s in Status), "unread")) + 2  # a gap after the longest
    for t in (t for t in result.tensors if t.status is not Status.SAME):
        label = (f"{t.status.value:<{width}}", "bold")
        console.print(Text.assemble(label, terminal(t.name)), overflow="ignore", crop=False)
        if t.detail:
            console.print(Padding(Text(terminal(t.detail)), (0, 0, 0, width), expand=False))
    for line in result.unread:
        console.print(Text.assemble((f"{'unread':<{width}}", "bold"), terminal(line)), overflow="ignore", crop=False)
    if result.unread:
        verdict = "not every tensor could be compared: files unread"
    else:
        verdict = "nothing lost" if result.lossless else "the checkpoints differ"
    console.print(f"{verdict}.", highlight=False)
