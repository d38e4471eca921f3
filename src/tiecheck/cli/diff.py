"""``tiecheck diff A B``: what B lost, gained or changed compared with A, tensor by tensor."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.padding import Padding
from rich.text import Text

from tiecheck.cli.app import EXIT_FINDINGS, EXIT_OK, StdoutConsole, app, closed_pipe_ok, fail
from tiecheck.compare import DiffResult, Status, diff
from tiecheck.errors import TiecheckError
from tiecheck.rules.base import human_bytes


class DiffFormat(str, Enum):
    """What ``diff`` renders: a table for people, JSON for machines (no rule findings: no SARIF and the like)."""

    table = "table"
    json = "json"


@app.command("diff")
def diff_command(
    a: Annotated[Path, typer.Argument(help="The checkpoint before (folder or .safetensors file).", metavar="A")],
    b: Annotated[Path, typer.Argument(help="The checkpoint after.", metavar="B")],
    output_format: Annotated[DiffFormat, typer.Option("--format", "-f", help="Report format.")] = DiffFormat.table,
) -> None:
    """Compare two checkpoints by name and content hash. Exit 1 when B lost, added or changed a tensor."""
    try:
        result = diff(a, b)
    except TiecheckError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or a}: {exc.strerror.lower() if exc.strerror else exc}")
    with closed_pipe_ok():
        if output_format is DiffFormat.json:
            sys.stdout.write(json.dumps(diff_dict(result), indent=2) + "\n")
        else:
            render_diff(result, StdoutConsole())
    raise typer.Exit(EXIT_OK if result.lossless else EXIT_FINDINGS)


def diff_dict(result: DiffResult) -> dict[str, object]:
    return {
        "a": result.a,
        "b": result.b,
        "lossless": result.lossless,
        "counts": {s.value: result.count(s) for s in Status},
        "bytes_hashed": result.bytes_hashed,
        "tensors": [
            {"name": t.name, "status": t.status.value, "detail": t.detail}
            for t in result.tensors
            if t.status is not Status.SAME
        ],
    }


def render_diff(result: DiffResult, console: Console) -> None:
    counts = ", ".join(f"{result.count(s)} {s.value}" for s in Status)
    console.print(f"{result.a} -> {result.b}: {counts} ({human_bytes(result.bytes_hashed)} hashed)", highlight=False)
    # One line per tensor (status, then the whole name), the detail indented under it: a name is never split,
    # whatever the terminal's width, and the lines stay greppable.
    for t in (t for t in result.tensors if t.status is not Status.SAME):
        console.print(Text.assemble((f"{t.status.value:<10}", "bold"), t.name), overflow="ignore", crop=False)
        if t.detail:
            console.print(Padding(Text(t.detail), (0, 0, 0, 10), expand=False))
    verdict = "nothing lost" if result.lossless else "the checkpoints differ"
    console.print(f"{verdict}.", highlight=False)
