"""Round trip with the real loader: transformers writes a tied model, a merge tool adds the head back,
`tiecheck fix --drop-duplicates` removes it, and transformers loads the result with no missing or
unexpected key and identical logits."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fixhelpers import codes, loadable, run_hooked
from tiecheck.fixer import Options, run_fix
from tiecheck.fixer.hooks import CHUNK
from tiecheck.formats.safetensors import read_header
from tiecheck.io.source import LocalFileSource

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.transformers

TINY = {"vocab_size": 96, "num_hidden_layers": 2, "num_attention_heads": 2, "tie_word_embeddings": True}


def gemma2() -> Any:
    config = transformers.Gemma2Config(hidden_size=16, intermediate_size=32, num_key_value_heads=1, head_dim=8, **TINY)
    return transformers.Gemma2ForCausalLM(config)


def qwen2() -> Any:
    config = transformers.Qwen2Config(hidden_size=16, intermediate_size=32, num_key_value_heads=1, **TINY)
    return transformers.Qwen2ForCausalLM(config)


def gpt2() -> Any:
    config = transformers.GPT2Config(
        n_embd=16, n_layer=2, n_head=2, n_positions=32, vocab_size=96, tie_word_embeddings=True
    )
    return transformers.GPT2LMHeadModel(config)


MODELS = {"gemma2": gemma2, "qwen2": qwen2, "gpt2": gpt2}


def save_with_merged_head(model: Any, folder: Path) -> None:
    """save_pretrained (sharded, tied head left out), then add lm_head.weight as mergekit does:
    a copy of the embedding, written into the last shard and listed in the index."""
    model.save_pretrained(folder, max_shard_size="20KB")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    assert "lm_head.weight" not in index["weight_map"]
    last = sorted(set(index["weight_map"].values()))[-1]
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / last)
    tensors["lm_head.weight"] = model.get_input_embeddings().weight.detach().clone().contiguous()
    save_file(tensors, folder / last, metadata={"format": "pt"})
    index["weight_map"]["lm_head.weight"] = last
    head = tensors["lm_head.weight"]
    index["metadata"]["total_size"] += head.numel() * head.element_size()
    index["metadata"]["total_parameters"] += head.numel()
    index_path.write_text(json.dumps(index, indent=2))


def logits(model: Any) -> Any:
    model.eval()
    ids = torch.arange(12).reshape(2, 6) % 96
    with torch.no_grad():
        return model(input_ids=ids).logits


def load(folder: Path) -> tuple[Any, dict[str, Any]]:
    model, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    return model, info


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_round_trip(arch: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MODELS[arch]()
    expected = logits(model)
    save_with_merged_head(model, tmp_path)
    shards = sorted(tmp_path.glob("*.safetensors"))
    assert len(shards) > 1, "the test needs a sharded checkpoint"
    assert codes(tmp_path) == {"TC101"}

    outcome = run_fix(tmp_path, Options(drop_duplicates=True))
    assert outcome.applied is not None
    assert [d.record.name for d in outcome.plan.dropped] == ["lm_head.weight"]
    assert codes(tmp_path) == set()
    assert "lm_head.weight" not in loadable(tmp_path)

    fixed, info = load(tmp_path)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert torch.equal(logits(fixed), expected)
    assert fixed.get_output_embeddings().weight.data_ptr() == fixed.get_input_embeddings().weight.data_ptr()


def test_killed_after_commit_still_loads_with_transformers(tmp_path: Path) -> None:
    """SIGKILL between the index switch and the shard switch: old shard, new index. transformers loads it."""
    torch.manual_seed(0)
    model = gemma2()
    expected = logits(model)
    save_with_merged_head(model, tmp_path)
    trace = tmp_path.parent / "trace.txt"
    reference = tmp_path.parent / "reference"
    subprocess.run(["cp", "-r", str(tmp_path), str(reference)], check=True)
    assert run_hooked(reference, ["--drop-duplicates"], chunk=CHUNK, trace=trace).returncode == 0
    steps = trace.read_text().splitlines()
    commit = next(int(line.split()[0]) for line in steps if line.endswith("replace model.safetensors.index.json"))
    killed = run_hooked(tmp_path, ["--drop-duplicates"], chunk=CHUNK, kill_at=commit)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / ".tiecheck-fix.json").exists(), "killed mid-switch: the journal is still there"
    last = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    with LocalFileSource(last) as source:
        assert "lm_head.weight" in {t.name for t in read_header(source, last.name).tensors}, "old shard"
    assert "lm_head.weight" not in json.loads((tmp_path / "model.safetensors.index.json").read_text())["weight_map"]

    loaded, info = load(tmp_path)
    assert not info["unexpected_keys"] and not info["missing_keys"]
    assert torch.equal(logits(loaded), expected)

    outcome = run_fix(tmp_path, Options(drop_duplicates=True))
    assert outcome.recovery is not None and outcome.recovery.rolled_forward and outcome.plan.empty
    assert codes(tmp_path) == set()
    loaded, _ = load(tmp_path)
    assert torch.equal(logits(loaded), expected)
