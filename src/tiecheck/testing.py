"""Small real checkpoints of each case tiecheck knows, for your own tests.

    from tiecheck.testing import CASES, make_checkpoint

    def test_my_upload_gate(tmp_path):
        folder = make_checkpoint("gemma2-merge-duplicated-head", tmp_path / "ckpt")
        assert my_gate(folder) is False

Each case is a tiny checkpoint (kilobytes) that reproduces one real-world breakage, or a clean
one; the names say which and :data:`CASES` describes them. Values come from a seeded generator, so the
same case is the same bytes every time (the repository's ``fixtures/`` folder is made by this
module, and a test checks it byte for byte). Needs neither torch nor numpy.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

from tiecheck.formats.safetensors import write_file

__all__ = [
    "CASES",
    "FFN",
    "HIDDEN",
    "VOCAB",
    "Tensor",
    "config",
    "decoder_layers",
    "llama_like",
    "make_all",
    "make_checkpoint",
    "split",
    "values",
    "write_json",
    "write_sharded",
]

#: A tensor to write: (safetensors dtype, shape, raw little-endian bytes).
Tensor = tuple[str, tuple[int, ...], bytes]
#: The tiny shapes every case uses: vocabulary, hidden size, feed-forward size.
VOCAB, HIDDEN, FFN = 32, 8, 16


def values(seed: str, shape: tuple[int, ...], dtype: str = "BF16") -> Tensor:
    """Seeded small random values (BF16 or F32): the same seed gives the same bytes."""
    rng = random.Random(seed)
    count = 1
    for d in shape:
        count *= d
    floats = [rng.uniform(-0.1, 0.1) for _ in range(count)]
    if dtype == "F32":
        return dtype, shape, struct.pack(f"<{count}f", *floats)
    # bfloat16: the high half of the float32 bit pattern
    raw = struct.unpack(f"<{count}I", struct.pack(f"<{count}f", *floats))
    return dtype, shape, struct.pack(f"<{count}H", *(r >> 16 for r in raw))


def decoder_layers(prefix: str, layers: int, dtype: str = "BF16") -> dict[str, Tensor]:
    """The tensors of ``layers`` Llama-style decoder layers under ``prefix``."""
    tensors: dict[str, Tensor] = {}
    for i in range(layers):
        p = f"{prefix}layers.{i}."
        for name, shape in (
            ("self_attn.q_proj.weight", (HIDDEN, HIDDEN)),
            ("self_attn.k_proj.weight", (HIDDEN // 2, HIDDEN)),
            ("self_attn.v_proj.weight", (HIDDEN // 2, HIDDEN)),
            ("self_attn.o_proj.weight", (HIDDEN, HIDDEN)),
            ("mlp.gate_proj.weight", (FFN, HIDDEN)),
            ("mlp.up_proj.weight", (FFN, HIDDEN)),
            ("mlp.down_proj.weight", (HIDDEN, FFN)),
            ("input_layernorm.weight", (HIDDEN,)),
            ("post_attention_layernorm.weight", (HIDDEN,)),
        ):
            tensors[p + name] = values(p + name, shape, dtype)
    return tensors


def llama_like(dtype: str = "BF16", head: bool = False, prefix: str = "model.") -> dict[str, Tensor]:
    """A two-layer Llama-shaped decoder's tensors, with ``lm_head.weight`` when ``head``."""
    tensors = {f"{prefix}embed_tokens.weight": values("embed", (VOCAB, HIDDEN), dtype)}
    tensors.update(decoder_layers(prefix, 2, dtype))
    tensors[f"{prefix}norm.weight"] = values("norm", (HIDDEN,), dtype)
    if head:
        tensors["lm_head.weight"] = values("head", (VOCAB, HIDDEN), dtype)
    return tensors


def config(model_type: str, architecture: str, dtype: str = "bfloat16", **extra: object) -> dict[str, object]:
    """A ``config.json`` document for the tiny shapes these helpers write; ``extra`` adds or overrides keys."""
    return {
        "architectures": [architecture],
        "model_type": model_type,
        "hidden_size": HIDDEN,
        "intermediate_size": FFN,
        "num_hidden_layers": 2,
        "vocab_size": VOCAB,
        "dtype": dtype,
        **extra,
    }


def write_json(path: Path, document: object) -> None:
    """Write ``document`` as indented JSON, as transformers does."""
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def write_sharded(folder: Path, shards: list[dict[str, Tensor]], index_extra: dict[str, object] | None = None) -> None:
    """Write ``model-0000i-of-0000N.safetensors`` shards and their index (totals included)."""
    total = len(shards)
    weight_map: dict[str, str] = {}
    size = params = 0
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{total:05d}.safetensors"
        write_file(folder / name, shard, {"format": "pt"})
        for tensor, (dtype, _shape, data) in shard.items():
            weight_map[tensor] = name
            size += len(data)
            params += len(data) // (2 if dtype == "BF16" else 4)
    index = {
        "metadata": {"total_parameters": params, "total_size": size},
        "weight_map": dict(sorted(weight_map.items())),
    }
    for key, value in (index_extra or {}).items():
        index[key] = value
    write_json(folder / "model.safetensors.index.json", index)


def split(tensors: dict[str, Tensor], parts: int) -> list[dict[str, Tensor]]:
    """Split tensors into ``parts`` shards in order, as evenly as names allow."""
    names = list(tensors)
    step = -(-len(names) // parts)
    return [{n: tensors[n] for n in names[i : i + step]} for i in range(0, len(names), step)]


# --- the fixtures --------------------------------------------------------------------------------


def gemma2_merge_duplicated_head(folder: Path) -> None:
    """A tied Gemma2, sharded; a merge tool wrote lm_head.weight back (a copy of the embedding)."""
    tensors = llama_like()
    shards = split(tensors, 2)
    shards[-1]["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    write_sharded(folder, shards)
    write_json(folder / "config.json", config("gemma2", "Gemma2ForCausalLM", tie_word_embeddings=True))


def clean_llama_sharded(folder: Path) -> None:
    """An untied Llama as save_pretrained writes it: nothing to report."""
    write_sharded(folder, split(llama_like(head=True), 3))
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False))


def llama_missing_head(folder: Path) -> None:
    """An untied Llama saved without lm_head: loaders initialise the head at random."""
    write_file(folder / "model.safetensors", llama_like(), {"format": "pt"})
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM"))


def gemma_tie_mismatch(folder: Path) -> None:
    """A tied Gemma whose stored head was fine-tuned away from the embedding."""
    write_file(folder / "model.safetensors", llama_like(head=True), {"format": "pt"})
    write_json(folder / "config.json", config("gemma", "GemmaForCausalLM"))


def qwen2_tieable_head(folder: Path) -> None:
    """An untied Qwen2 whose head is a byte copy of the embedding: tying would save the bytes."""
    tensors = llama_like()
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    write_json(folder / "config.json", config("qwen2", "Qwen2ForCausalLM", tie_word_embeddings=False))


def gpt2_head_without_embedding(folder: Path) -> None:
    """A tied GPT-2 that kept lm_head.weight and dropped transformer.wte.weight."""
    tensors = {
        "lm_head.weight": values("embed", (VOCAB, HIDDEN), "F32"),
        "transformer.wpe.weight": values("wpe", (16, HIDDEN), "F32"),
        "transformer.ln_f.weight": values("ln_f", (HIDDEN,), "F32"),
    }
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    write_json(folder / "config.json", config("gpt2", "GPT2LMHeadModel", dtype="float32"))


def index_drift(folder: Path) -> None:
    """Index and shards disagree in every way the index rules catch."""
    tensors = llama_like(head=True)
    shards = split(tensors, 3)
    write_sharded(folder, shards)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    # TC002: a shard the index names was never uploaded.
    weight_map["model.layers.9.mlp.up_proj.weight"] = "model-00004-of-00004.safetensors"
    # TC003: the index points a tensor at a shard that does not hold it.
    weight_map["model.norm.weight"] = "model-00001-of-00003.safetensors"
    # TC004: a tensor stored in a shard but left out of the index.
    del weight_map["model.layers.1.mlp.down_proj.weight"]
    write_json(folder / "model.safetensors.index.json", index)
    # TC005: a tensor stored in two shards; TC007: a leftover shard from an earlier upload.
    first = dict(shards[0])
    first["lm_head.weight"] = tensors["lm_head.weight"]
    write_file(folder / "model-00001-of-00003.safetensors", first, {"format": "pt"})
    write_file(folder / "model-00001-of-00002.safetensors", {"model.norm.weight": tensors["model.norm.weight"]})
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False))


def index_stale_totals(folder: Path) -> None:
    """total_size and total_parameters from before lm_head was dropped: the index overstates the model."""
    write_sharded(folder, split(llama_like(head=True), 2))
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["metadata"]["total_size"] += VOCAB * HIDDEN * 2
    index["metadata"]["total_parameters"] += VOCAB * HIDDEN
    write_json(folder / "model.safetensors.index.json", index)
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False))


def invalid_safetensors(folder: Path) -> None:
    """Shard 2 was truncated by an interrupted upload; shard 1 is fine and still scanned."""
    shards = split(llama_like(head=True), 2)
    write_sharded(folder, shards)
    path = folder / "model-00002-of-00002.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False))


def invalid_index(folder: Path) -> None:
    """The index lost its weight_map (a hand edit): loaders cannot map tensors to shards."""
    write_sharded(folder, split(llama_like(head=True), 2))
    write_json(folder / "model.safetensors.index.json", {"metadata": {"total_size": 1}})
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False))


def invalid_config(folder: Path) -> None:
    """config.json is cut off mid-write."""
    write_file(folder / "model.safetensors", llama_like(head=True), {"format": "pt"})
    (folder / "config.json").write_text(
        '{"model_type": "llama", "architectures": ["LlamaForCausalLM"],', encoding="utf-8"
    )


def llama_base_model(folder: Path) -> None:
    """LlamaModel (an embedding backbone): keys lack 'model.', no head. Fine, but worth knowing."""
    write_file(folder / "model.safetensors", llama_like(prefix=""), {"format": "pt"})
    write_json(folder / "config.json", config("llama", "LlamaModel"))


def llama_float32_declared_bfloat16(folder: Path) -> None:
    """Saved in float32 although the config says bfloat16: twice the download. One tensor stayed bf16."""
    tensors = llama_like(dtype="F32", head=True)
    tensors["model.norm.weight"] = values("norm", (HIDDEN,), "BF16")
    write_file(folder / "model.safetensors", tensors, {"format": "pt"})
    write_json(folder / "config.json", config("llama", "LlamaForCausalLM", tie_word_embeddings=False))


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "gemma2-merge-duplicated-head": gemma2_merge_duplicated_head,
    "clean-llama-sharded": clean_llama_sharded,
    "llama-missing-head": llama_missing_head,
    "gemma-tie-mismatch": gemma_tie_mismatch,
    "qwen2-tieable-head": qwen2_tieable_head,
    "gpt2-head-without-embedding": gpt2_head_without_embedding,
    "index-drift": index_drift,
    "index-stale-totals": index_stale_totals,
    "invalid-safetensors": invalid_safetensors,
    "invalid-index": invalid_index,
    "invalid-config": invalid_config,
    "llama-base-model": llama_base_model,
    "llama-float32-declared-bfloat16": llama_float32_declared_bfloat16,
}


#: Every case, by name, with what it reproduces.
CASES: dict[str, str] = {name: (build.__doc__ or "").strip() for name, build in _BUILDERS.items()}


def make_checkpoint(case: str, folder: str | Path) -> Path:
    """Write the checkpoint of ``case`` (a key of :data:`CASES`) into ``folder``, replacing what was there."""
    build = _BUILDERS.get(case)
    if build is None:
        raise ValueError(f"unknown case {case!r}; one of: {', '.join(CASES)}")
    target = Path(folder)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    build(target)
    return target


def make_all(out: str | Path) -> list[Path]:
    """Write every case into its own folder under ``out``."""
    return [make_checkpoint(name, Path(out) / name) for name in _BUILDERS]
