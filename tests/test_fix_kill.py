"""SIGKILL `tiecheck fix` at its named steps: the folder always loads (old or new), and the next run finishes.

The fix runs as a subprocess (``fixhelpers.run_hooked``) with injected hooks: a first run
traces its steps; then, for each step N, a fresh copy is fixed with a hook that makes the
process SIGKILL itself at step N. A small copy chunk makes each tensor copy take several
chunks, so kills land mid-file too.
Every step that changes the folder is killed at; of the many chunk-copy steps (all alike: a
temp file partly written), the first of each file is.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fixhelpers import codes, loadable, run_hooked
from tiecheck.fixer import Options, run_fix
from tiecheck.formats.safetensors import write_file

CHUNK = 4096


#: The config of big_llama's embedding (TC014/TC015 compare it with the stored rows and columns).
BIG = {"vocab_size": 512, "hidden_size": 64}


def big_llama(gen: Any) -> dict[str, Any]:
    """A Llama-like model whose embedding (64 KB) takes 16 chunks to copy."""
    tensors = {"model.embed_tokens.weight": gen.values("embed", (512, 64))}
    tensors.update(gen.decoder_layers("model.", 2))
    tensors["model.norm.weight"] = gen.values("norm", (8,))
    return tensors


def sharded_head_in_last_shard(gen: Any, folder: Path) -> Options:
    """The merge-tool case: the head is written into the last shard, beside other tensors (the embedding)."""
    tensors = big_llama(gen)
    shards = gen.split(tensors, 3)
    shards[-1]["model.embed_tokens.weight"] = shards[0].pop("model.embed_tokens.weight")
    shards[-1]["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    gen.write_sharded(folder, shards)
    gen.write_json(folder / "config.json", gen.config("gemma2", "Gemma2ForCausalLM", **BIG))
    return Options(drop_duplicates=True)


def head_in_own_shard(gen: Any, folder: Path) -> Options:
    """The head alone in a last shard: the shard goes and the others are renumbered."""
    tensors = big_llama(gen)
    shards = [*gen.split(tensors, 2), {"lm_head.weight": tensors["model.embed_tokens.weight"]}]
    gen.write_sharded(folder, shards)
    gen.write_json(folder / "config.json", gen.config("gemma2", "Gemma2ForCausalLM", **BIG))
    return Options(drop_duplicates=True)


def single_file_tie_head(gen: Any, folder: Path) -> Options:
    """One model.safetensors, untied config: --tie-head drops the head and edits the config."""
    tensors = big_llama(gen)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    gen.write_json(folder / "config.json", gen.config("qwen2", "Qwen2ForCausalLM", tie_word_embeddings=False, **BIG))
    return Options(tie_head=True)


SCENARIOS: dict[str, Callable[[Any, Path], Options]] = {
    "head-in-last-shard": sharded_head_in_last_shard,
    "head-in-own-shard": head_in_own_shard,
    "single-file-tie-head": single_file_tie_head,
}


def run(folder: Path, options: Options, **hooks: Any) -> subprocess.CompletedProcess[str]:
    flags = ["--drop-duplicates"] if options.drop_duplicates else []
    flags += ["--tie-head"] if options.tie_head else []
    return run_hooked(folder, flags, chunk=CHUNK, **hooks)


def chosen_steps(trace: list[str]) -> list[int]:
    """Every step but the chunk copies after the first of each file (all alike: a partial temp file)."""
    chosen, seen = [], set()
    for line in trace:
        number, name = line.split(" ", 1)
        file = name.split(":", 1)[0] if name.startswith("copy ") else None
        if file is None or file not in seen:
            chosen.append(int(number))
        if file is not None:
            seen.add(file)
    return chosen


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_kill_at_every_step(gen: Any, tmp_path: Path, scenario: str) -> None:
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    options = SCENARIOS[scenario](gen, pristine)
    old = loadable(pristine)

    reference = tmp_path / "reference"
    shutil.copytree(pristine, reference)
    trace_file = tmp_path / "trace.txt"
    done = run(reference, options, trace=trace_file)
    assert done.returncode == 0, done.stderr
    new = loadable(reference)
    assert new != old and all(old[n] == b for n, b in new.items())
    final_files = sorted(p.name for p in reference.iterdir())
    trace = trace_file.read_text().splitlines()
    steps = chosen_steps(trace)
    copies = [line for line in trace if line.split(" ", 1)[1].startswith("copy ")]
    if scenario != "head-in-own-shard":  # there every kept shard is only renamed (hard link): nothing copied
        files = {c.split(" ", 1)[1].split(":", 1)[0] for c in copies}
        assert len(copies) > 2 * len(files), "copies must take several chunks"
    assert len(steps) >= 8

    for number in steps:
        folder = tmp_path / f"kill-{number}"
        shutil.copytree(pristine, folder)
        killed = run(folder, options, kill_at=number)
        assert killed.returncode == -signal.SIGKILL, (number, killed.stderr)
        state = loadable(folder)
        assert state in (old, new), f"step {trace[number - 1]}: the folder holds neither checkpoint"

        outcome = run_fix(folder, options)
        assert loadable(folder) == new, trace[number - 1]
        assert sorted(p.name for p in folder.iterdir()) == final_files
        assert codes(folder) == set()
        if state == new:
            assert outcome.plan.empty, "a committed fix is only completed, never redone"
        shutil.rmtree(folder)
