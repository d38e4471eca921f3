"""Rule behaviour on checkpoints assembled for each edge case."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import ModuleType

import pytest

from conftest import make, sampled_bytes, t
from tiecheck import Report, TiecheckError, scan
from tiecheck.formats.safetensors import write_file
from tiecheck.rules.catalog import RULES


def codes(report: Report) -> list[str]:
    return [f.code for f in report.findings]


def test_t5_encoder_embedding_is_always_tied_to_shared(tmp_path: Path, gen: ModuleType) -> None:
    shared = t(gen, "shared")
    folder = make(
        tmp_path,
        {"shared.weight": shared, "encoder.embed_tokens.weight": shared, "lm_head.weight": t(gen, "head")},
        {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "tie_word_embeddings": False},
    )
    report = scan(folder)
    assert codes(report) == ["TC101"]
    assert report.findings[0].tensors == ("encoder.embed_tokens.weight", "shared.weight")
    assert "always ties" in report.findings[0].message


def test_t5_v1_1_untied_head_that_differs_is_fine(tmp_path: Path, gen: ModuleType) -> None:
    folder = make(
        tmp_path,
        {"shared.weight": t(gen, "shared"), "lm_head.weight": t(gen, "head")},
        {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "tie_word_embeddings": False},
    )
    assert codes(scan(folder)) == []


def test_bert_decoder_bias_is_tied_to_predictions_bias(tmp_path: Path, gen: ModuleType) -> None:
    bias = t(gen, "bias", (8,))
    folder = make(
        tmp_path,
        {
            "bert.embeddings.word_embeddings.weight": t(gen, "emb"),
            "cls.predictions.bias": bias,
            "cls.predictions.decoder.bias": bias,
        },
        {"model_type": "bert", "architectures": ["BertForMaskedLM"]},
    )
    report = scan(folder)
    assert [(f.code, f.tensors) for f in report.findings] == [
        ("TC101", ("cls.predictions.decoder.bias", "cls.predictions.bias"))
    ]


@pytest.mark.parametrize(
    ("embedding", "head"),
    [
        ("model.language_model.embed_tokens.weight", "lm_head.weight"),
        ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight"),
    ],
    ids=["transformers-5-naming", "transformers-4-naming"],
)
def test_gemma3_multimodal_naming(tmp_path: Path, gen: ModuleType, embedding: str, head: str) -> None:
    emb = t(gen, "emb")
    folder = make(
        tmp_path,
        {embedding: emb, head: emb, "vision_tower.patch.weight": t(gen, "v")},
        {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"], "text_config": {}},
    )
    report = scan(folder)
    assert [(f.code, f.tensors) for f in report.findings] == [("TC101", (head, embedding))]


def test_gemma3_multimodal_untied_in_text_config_without_head(tmp_path: Path, gen: ModuleType) -> None:
    folder = make(
        tmp_path,
        {"model.language_model.embed_tokens.weight": t(gen, "emb")},
        {
            "model_type": "gemma3",
            "architectures": ["Gemma3ForConditionalGeneration"],
            "text_config": {"tie_word_embeddings": False},
        },
    )
    report = scan(folder)
    # transformers 5 ties Gemma3ForConditionalGeneration by the outer flag (default true): the head is restored.
    # transformers 4.x read text_config's flag and left the head random: information, not a warning.
    assert [(f.code, f.severity.label) for f in report.findings] == [("TC103", "info")]
    assert "transformers 4.57" in report.findings[0].message


def test_unknown_architecture_falls_back_to_name_patterns(tmp_path: Path, gen: ModuleType) -> None:
    emb = t(gen, "emb")
    folder = make(
        tmp_path,
        {"model.embed_tokens.weight": emb, "lm_head.weight": emb},
        {"model_type": "brand_new", "architectures": ["BrandNewForCausalLM"], "tie_word_embeddings": True},
    )
    report = scan(folder)
    assert codes(report) == ["TC101"]
    assert "name pattern, a guess (model_type 'brand_new' is unknown to transformers" in report.findings[0].message
    assert report.ties[0].basis.startswith("name pattern")


def test_without_config_identical_head_is_only_tieable(tmp_path: Path, gen: ModuleType) -> None:
    emb = t(gen, "emb")
    report = scan(make(tmp_path, {"transformer.wte.weight": emb, "lm_head.weight": emb}, None))
    assert sorted((f.code, f.severity.label) for f in report.findings) == [("TC010", "info"), ("TC104", "info")]
    # With no config.json the fix has nowhere to declare the tie: the finding must not promise a fix.
    (tieable,) = [f for f in report.findings if f.code == "TC104"]
    assert not tieable.fixable and "tiecheck fix" not in tieable.message
    untied = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "tie_word_embeddings": False}
    folder = make(tmp_path / "with-config", {"transformer.wte.weight": emb, "lm_head.weight": emb}, untied)
    (tieable,) = [f for f in scan(folder).findings if f.code == "TC104"]
    assert tieable.fixable and "`tiecheck fix --tie-head`" in tieable.message


def test_same_size_tensors_differing_in_the_last_byte_are_not_identical(tmp_path: Path, gen: ModuleType) -> None:
    dtype, shape, data = t(gen, "emb")
    changed = data[:-1] + bytes([data[-1] ^ 1])
    folder = make(
        tmp_path,
        {"model.embed_tokens.weight": (dtype, shape, data), "lm_head.weight": (dtype, shape, changed)},
        {"model_type": "gemma", "architectures": ["GemmaForCausalLM"]},
    )
    report = scan(folder)
    assert codes(report) == ["TC102"]
    assert report.bytes_read <= sampled_bytes(report) + 2 * len(data)


def test_tie_mismatch_names_a_shape_difference(tmp_path: Path, gen: ModuleType) -> None:
    folder = make(
        tmp_path,
        {"model.embed_tokens.weight": t(gen, "emb"), "lm_head.weight": t(gen, "emb", (4, 8))},
        {"model_type": "gemma2", "architectures": ["Gemma2ForCausalLM"]},
    )
    report = scan(folder)
    assert codes(report) == ["TC102"]
    assert "F32[4, 8] vs F32[8, 4]" in report.findings[0].message
    assert report.bytes_read == sampled_bytes(report)  # the tie question needed no byte


def test_only_tied_tensors_are_read(tmp_path: Path, gen: ModuleType) -> None:
    """Beyond the sampled fingerprints, only the tied pair is read."""
    emb = t(gen, "emb", (256, 256))
    tensors = {f"model.layers.{i}.mlp.weight": t(gen, str(i), (256, 256)) for i in range(10)}
    tensors |= {"model.embed_tokens.weight": emb, "lm_head.weight": emb}
    report = scan(make(tmp_path, tensors, {"model_type": "qwen2", "tie_word_embeddings": True}))
    assert codes(report) == ["TC101"]
    assert report.bytes_read == sampled_bytes(report) + 2 * len(emb[2])
    assert sampled_bytes(report) == 12 * 4 * 4096  # 10 layers, embedding, head


def test_head_in_a_broken_shard_is_not_called_missing(fixtures_dir: Path) -> None:
    report = scan(fixtures_dir / "invalid-safetensors")
    assert codes(report) == ["TC012"]  # a cut-off shard (TC012), and no missing head claimed


def test_single_file_is_scanned_with_the_config_beside_it(fixtures_dir: Path) -> None:
    report = scan(fixtures_dir / "llama-missing-head" / "model.safetensors")
    assert codes(report) == ["TC103"]
    assert report.summary.files == 1


def test_shards_without_an_index(tmp_path: Path, gen: ModuleType) -> None:
    tmp_path.mkdir(exist_ok=True)
    write_file(tmp_path / "model-00001-of-00002.safetensors", {"a": t(gen, "a")})
    write_file(tmp_path / "model-00002-of-00002.safetensors", {"b": t(gen, "b")})
    report = scan(tmp_path)
    assert codes(report) == ["TC008", "TC010"]
    assert "shards without an index" in report.findings[0].message


def test_float32_declared_but_bfloat16_stored(tmp_path: Path, gen: ModuleType) -> None:
    folder = make(tmp_path, {"w": t(gen, "w", dtype="BF16")}, {"model_type": "llama", "dtype": "float32"})
    report = scan(folder)
    assert codes(report) == ["TC301"]
    assert "upcast" in report.findings[0].message


def test_quantized_checkpoints_are_not_dtype_mismatches(tmp_path: Path, gen: ModuleType) -> None:
    folder = make(
        tmp_path,
        {"w": t(gen, "w", dtype="F32"), "w_scale": t(gen, "s", (1,), "F32")},
        {"model_type": "llama", "dtype": "bfloat16", "quantization_config": {"quant_method": "fp8"}},
    )
    assert codes(scan(folder)) == []


def test_integer_buffers_do_not_count_as_dtypes(tmp_path: Path, gen: ModuleType) -> None:
    folder = make(
        tmp_path,
        {"w": t(gen, "w", dtype="BF16"), "position_ids": ("I64", (1, 4), struct.pack("<4q", 0, 1, 2, 3))},
        {"model_type": "llama", "dtype": "bfloat16"},
    )
    assert codes(scan(folder)) == []


def test_a_folder_without_weights_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TiecheckError, match="not a checkpoint"):
        scan(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(TiecheckError, match="no such file or directory"):
        scan(tmp_path / "nope")


def test_summary_counts(fixtures_dir: Path) -> None:
    s = scan(fixtures_dir / "gemma2-merge-duplicated-head").summary
    assert s.files == 2
    assert s.dtypes == {"BF16": s.parameters}
    assert s.bytes == 2 * s.parameters
    assert s.load_memory["bfloat16"] == 2 * s.unique_parameters
    assert s.load_memory["float32"] == 4 * s.unique_parameters


def test_single_file_beside_an_index_shadows_it(tmp_path: Path, fixtures_dir: Path, gen: ModuleType) -> None:
    import shutil

    folder = tmp_path / "ckpt"
    shutil.copytree(fixtures_dir / "clean-llama-sharded", folder)
    write_file(folder / "model.safetensors", gen.llama_like(head=True))  # type: ignore[attr-defined]
    report = scan(folder)
    assert codes(report) == ["TC007"]
    (f,) = report.findings
    assert f.files[-1] == "model.safetensors.index.json"
    assert len(f.files) == 4
    assert "transformers loads model.safetensors" in f.message
    assert [w.name for w in report.checkpoint.files] == ["model.safetensors"]


def test_ignoring_the_content_rules_reads_only_what_ties_need(tmp_path: Path, gen: ModuleType) -> None:
    """`--ignore TC202,TC203,TC205` is a headers-only scan: no fingerprint sample, only the tie pair."""
    emb = t(gen, "emb", (256, 256))
    tensors = {f"model.layers.{i}.mlp.weight": t(gen, str(i), (256, 256)) for i in range(4)}
    tensors |= {"model.embed_tokens.weight": emb, "lm_head.weight": emb}
    folder = make(tmp_path, tensors, {"model_type": "qwen2", "tie_word_embeddings": True})
    everything = scan(folder)
    headers = scan(folder, rules=frozenset(RULES) - {"TC202", "TC203", "TC205"})
    assert codes(headers) == codes(everything) == ["TC101"]
    assert headers.bytes_read < everything.bytes_read
    assert headers.bytes_read <= 2 * len(emb[2]) + 2 * 4 * 4096  # the pair (and its fingerprints), nothing else


def test_cli_ignore_skips_the_content_stage(tmp_path: Path, gen: ModuleType) -> None:
    import subprocess
    import sys

    folder = make(
        tmp_path, {"model.layers.0.w": t(gen, "a", (64, 64)), "model.layers.1.w": t(gen, "b", (64, 64))}, None
    )
    result = subprocess.run(
        [sys.executable, "-m", "tiecheck", "scan", str(folder), "--ignore", "TC202,TC203,TC205", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(result.stdout)["reports"][0]["summary"]["bytes_read"] == 0


def test_a_broken_index_without_shards_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    assert codes(scan(tmp_path)) == ["TC008", "TC010"]


def test_rules_limit_what_the_library_reports(fixtures_dir: Path) -> None:
    merged = fixtures_dir / "gemma2-merge-duplicated-head"
    assert codes(scan(merged, rules=frozenset({"TC001"}))) == []
    assert scan(merged, rules=frozenset({"TC001"})).summary.redundant_bytes == 512  # a fact about the checkpoint
