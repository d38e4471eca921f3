"""``tiecheck fix``: plan, then apply (in place or to --output), verified; ``--dry-run`` only plans.

Exit codes: 0 fixed (or nothing to fix) and no error-level finding remains; 1 the prompt was
declined, or error-level findings remain that fix cannot repair (like ``ruff --fix``); 2 fix
refused or could not run (nothing changed, or the message says what did); 130 interrupted
(Ctrl-C, also at the prompt). An in-place change needs consent: a prompt on a terminal, else
``--yes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiecheck.cli._fix_run import FixFormat, read_answer, run_fix
from tiecheck.cli.app import app


@app.command("fix")
def fix_command(
    path: Annotated[Path, typer.Argument(help="Checkpoint folder (or a weight file or index inside it).")],
    drop_duplicates: Annotated[
        bool, typer.Option("--drop-duplicates", help="Drop redundant tied copies (TC101) that loaders restore.")
    ] = False,
    tie_head: Annotated[
        bool,
        typer.Option("--tie-head", help="TC104: drop a head identical to the embedding and set tie_word_embeddings."),
    ] = False,
    to_safetensors: Annotated[
        bool,
        typer.Option(
            "--to-safetensors", help="Convert pickle (.bin) weights to safetensors shards, without unpickling."
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the fixed checkpoint to this new folder.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before changing the folder in place.")] = False,
    output_format: Annotated[FixFormat, typer.Option("--format", "-f", help="Report format.")] = FixFormat.table,
) -> None:
    """Fix index, metadata and redundant tensors: streamed, verified, atomic. Index repairs always apply."""
    run_fix(
        path,
        drop_duplicates=drop_duplicates,
        tie_head=tie_head,
        to_safetensors=to_safetensors,
        output=output,
        dry_run=dry_run,
        yes=yes,
        output_format=output_format,
    )


__all__ = ["FixFormat", "fix_command", "read_answer"]
