"""Property: whatever the shard layout, a fix keeps every tensor a loader reads, byte for byte,
drops exactly the redundant tied copies, and leaves a clean, consistently numbered checkpoint."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import make_fixtures as gen
from hypothesis import given, settings
from hypothesis import strategies as st

from fixhelpers import codes, loadable
from tiecheck.fix import Options, run_fix
from tiecheck.loader import SHARD_PATTERN

layouts = st.fixed_dictionaries(
    {
        "shards": st.integers(1, 4),
        "head_shard": st.integers(-1, 3),  # -1: a shard of its own
        "tied": st.booleans(),
        "stale_totals": st.booleans(),
        "drop": st.booleans(),
    }
)


@settings(max_examples=25, deadline=None)
@given(layout=layouts)
def test_fix_keeps_what_loaders_read(layout: dict[str, Any]) -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        tensors = gen.llama_like()
        shards = gen.split(tensors, layout["shards"])
        head = tensors["model.embed_tokens.weight"]
        if layout["head_shard"] < 0 or layout["head_shard"] >= len(shards):
            shards.append({"lm_head.weight": head})
        else:
            shards[layout["head_shard"]]["lm_head.weight"] = head
        extra = {"metadata": {"total_size": 1}} if layout["stale_totals"] else None
        gen.write_sharded(folder, shards, extra)
        model = ("gemma2", "Gemma2ForCausalLM") if layout["tied"] else ("llama", "LlamaForCausalLM")
        gen.write_json(folder / "config.json", gen.config(*model, tie_word_embeddings=layout["tied"]))
        before = loadable(folder)

        outcome = run_fix(folder, Options(drop_duplicates=layout["drop"]))
        after = loadable(folder)
        dropped = {"lm_head.weight"} if layout["tied"] and layout["drop"] else set()
        assert set(after) == set(before) - dropped
        assert all(after[n] == before[n] for n in after)
        remaining = codes(folder)
        assert "TC006" not in remaining
        assert remaining == ({"TC101"} if layout["tied"] and not layout["drop"] else set()) | (
            {"TC104"} if not layout["tied"] else set()
        )
        names = sorted(p.name for p in folder.glob("*.safetensors"))
        numbers = [SHARD_PATTERN.match(n) for n in names]
        assert all(numbers) and [int(m.group("part")) for m in numbers if m] == list(range(1, len(names) + 1))
        assert {int(m.group("total")) for m in numbers if m} == {len(names)}
        assert not [p for p in folder.iterdir() if p.name.startswith(".tiecheck")]
        assert outcome.applied is not None or outcome.plan.empty
    finally:
        shutil.rmtree(folder)
